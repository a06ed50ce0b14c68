"""URLs as they may be shown: without what may be a secret."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["mask_url"]


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
