"""SOAP 1.2 for ONVIF, without I/O: what a request asks (:func:`parse`), whether its
WS-Security UsernameToken holds (:func:`check_username_token`), and the envelopes of
answers and faults (:func:`envelope`, :func:`fault`).

Requests are read with the standard library's expat-based ElementTree (Python's expat
refuses entity expansion bombs) from bodies the HTTP layer caps at
``CAMSERVER_MAX_BODY_BYTES``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

__all__ = [
    "NS",
    "BadRequest",
    "Call",
    "UsernameToken",
    "check_username_token",
    "envelope",
    "fault",
    "parse",
]

NS: Final = {
    "env": "http://www.w3.org/2003/05/soap-envelope",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
}
_DIGEST: Final = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    "#PasswordDigest"
)
MAX_SKEW: Final = 300.0
"""Seconds a UsernameToken's ``Created`` may be from the server's clock."""


class BadRequest(ValueError):
    """Not a SOAP request this server can read (answered with a Sender fault)."""


@dataclass(frozen=True, slots=True)
class UsernameToken:
    username: str
    password: str
    digest: bool
    nonce: bytes
    created: str


@dataclass(frozen=True, slots=True)
class Call:
    operation: str
    """The body's first element's local name (``GetProfiles``)."""
    namespace: str
    body: ET.Element
    token: UsernameToken | None

    def text(self, name: str) -> str | None:
        """The text of the first element named ``name`` (any namespace) in the call."""
        for element in self.body.iter():
            if element.tag.rpartition("}")[2] == name and element.text:
                return element.text.strip()
        return None


def parse(data: bytes) -> Call:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise BadRequest(f"not XML: {exc}") from exc
    if root.tag != f"{{{NS['env']}}}Envelope":
        raise BadRequest("not a SOAP 1.2 envelope")
    body = root.find("env:Body", NS)
    if body is None or len(body) == 0:
        raise BadRequest("a SOAP envelope without a body")
    call = body[0]
    namespace, _, operation = call.tag[1:].partition("}")
    return Call(operation, namespace, call, _token(root))


def _token(root: ET.Element) -> UsernameToken | None:
    token = root.find("env:Header/wsse:Security/wsse:UsernameToken", NS)
    if token is None:
        return None
    password = token.find("wsse:Password", NS)
    nonce = token.find("wsse:Nonce", NS)
    created = token.find("wsu:Created", NS)
    try:
        nonce_bytes = base64.b64decode(nonce.text or "") if nonce is not None else b""
    except ValueError:
        nonce_bytes = b""
    return UsernameToken(
        username=token.findtext("wsse:Username", "", NS),
        password=(password.text or "") if password is not None else "",
        digest=password is not None and password.get("Type", "") == _DIGEST,
        nonce=nonce_bytes,
        created=(created.text or "") if created is not None else "",
    )


def check_username_token(
    token: UsernameToken, secrets: list[str], now: float | None = None
) -> str | None:
    """The secret among ``secrets`` the token proves, or None. PasswordDigest is
    base64(SHA-1(nonce + created + password)) within ``MAX_SKEW`` of the server's clock;
    PasswordText is the password itself."""
    if not token.digest:
        return next((s for s in secrets if hmac.compare_digest(s, token.password)), None)
    try:
        created = datetime.fromisoformat(token.created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    if abs((time.time() if now is None else now) - created) > MAX_SKEW:
        return None
    for secret in secrets:
        digest = hashlib.sha1(token.nonce + token.created.encode() + secret.encode())
        if hmac.compare_digest(base64.b64encode(digest.digest()).decode(), token.password):
            return secret
    return None


def envelope(body: str) -> bytes:
    """A SOAP 1.2 envelope around ``body`` (already XML, using the prefixes of ``NS``)."""
    names = " ".join(f'xmlns:{k}="{v}"' for k, v in NS.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><env:Envelope {names}><env:Body>{body}'
        "</env:Body></env:Envelope>"
    ).encode()


def fault(code: str, subcode: str, reason: str) -> bytes:
    """A SOAP fault (``code``: Sender or Receiver; ``subcode``: ONVIF's ``ter:`` code)."""
    return envelope(
        "<env:Fault><env:Code><env:Value>env:"
        f'{code}</env:Value><env:Subcode><env:Value xmlns:ter="http://www.onvif.org/ver10/error">'
        f"ter:{subcode}</env:Value></env:Subcode></env:Code><env:Reason><env:Text "
        f'xml:lang="en">{escape(reason)}</env:Text></env:Reason></env:Fault>'
    )
