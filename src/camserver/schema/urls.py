"""Camera and receiver URLs: checked as they come in, built from a host, and shown without
what may be a secret."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from camserver.schema.esp32 import MAX_HTTP_PORT, MAX_PORT, parse_port, stream_port

__all__ = ["MAX_URL_LENGTH", "check_url", "mask_url", "split_host", "urls_for_host"]

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")
MAX_URL_LENGTH = 2048


def mask_url(url: str) -> str:
    """``url`` without what may be a secret: its login, path, query and fragment
    (``http://ha.lan:8123/***``). A Home Assistant webhook's id is in its path, other
    receivers take a key in the query or a password in the login."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "***"
    if not parts.scheme or not host:
        return "***"
    if ":" in host:
        host = f"[{host}]"
    where = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    hidden = parts.username is not None or parts.password is not None
    if hidden or parts.path.strip("/") or parts.query or parts.fragment:
        return where + "/***"
    return where + "/"


def split_host(value: str, highest: int = MAX_HTTP_PORT) -> tuple[str, int]:
    """``"host"``, ``"host:port"`` or ``"[v6]:port"`` → (host for a URL, port). The port
    goes up to ``highest``: by default one that leaves room for the stream on port + 1."""
    value = value.strip()
    if "://" in value or "/" in value:
        raise ValueError(
            "host must be a host name or IP address, optionally with :port "
            "(give a full URL as stream_url instead)"
        )
    port = 80
    host = value
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError("unclosed '[' in IPv6 host")
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError("expected ':port' after the IPv6 address")
            port = _port(rest[1:], highest)
        ipaddress.IPv6Address(host)
        return f"[{host}]", port
    if value.count(":") == 1:
        host, port_text = value.split(":")
        port = _port(port_text, highest)
    elif value.count(":") > 1:
        ipaddress.IPv6Address(value)
        return f"[{value}]", port
    if not _HOSTNAME.match(host):
        raise ValueError(f"{host!r} is not a valid host name or IP address")
    _check_hostname(host, "host")
    return host, port


def _port(text: str, highest: int) -> int:
    port = parse_port(text, highest)
    if port is None:
        why = " (the stream is served on port + 1)" if highest == MAX_HTTP_PORT else ""
        raise ValueError(f"port must be a number from 1 to {highest}{why}")
    return port


def urls_for_host(host: str, stream_on: int | None = None) -> tuple[str, str, str]:
    """(normalised host, snapshot URL, stream URL): the stream on ``stream_on`` if given
    (a camera that announced its stream port), else by the firmware's rule, port + 1."""
    name, port = split_host(host, MAX_HTTP_PORT if stream_on is None else MAX_PORT)
    return (
        f"{name}:{port}",
        f"http://{name}:{port}/capture",
        f"http://{name}:{stream_port(port) if stream_on is None else stream_on}/stream",
    )


def check_url(url: str, field: str) -> str:
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"{field} is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{field} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{field} must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"{field} has no host")
    if any(c.isspace() for c in url):
        raise ValueError(f"{field} must not contain spaces")
    if parts.username is not None or parts.password is not None:
        # It would be shown to every viewer and written to logs: logins are kept apart.
        raise ValueError(
            f"{field} must not contain a login (user:password@): give username and password"
        )
    _check_hostname(parts.hostname, field)
    return url


def _check_hostname(host: str, field: str) -> None:
    """Refuse host names that cannot be IDNA-encoded: they would fail on every request."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        encoded = host.encode("idna")
        encoded.decode("idna")
    except UnicodeError as exc:
        raise ValueError(f"{field} has an invalid host name {host!r}") from exc
