"""The errors every source shows as ``last_error``, worded once: whichever transport
(httptools or httpx) or source kind meets a failure, the user reads the same sentence."""

from __future__ import annotations

from camserver.errors import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout

__all__ = [
    "asks_for_login",
    "broke_mid_stream",
    "cannot_connect",
    "closed_the_stream",
    "no_connection_within",
    "no_whole_frame_for",
    "not_connecting",
    "silent_for",
    "unexpected_status",
]

closed_the_stream = "the camera closed the stream"


def no_connection_within(seconds: float) -> UpstreamTimeout:
    return UpstreamTimeout(f"the camera did not accept a connection within {seconds:g} s")


def silent_for(seconds: float) -> UpstreamTimeout:
    return UpstreamTimeout(f"the camera sent nothing for {seconds:g} s")


def cannot_connect(detail: str) -> UpstreamConnectError:
    return UpstreamConnectError(f"cannot connect to the camera: {detail}")


def not_connecting(detail: str) -> UpstreamConnectError:
    """The network guard refused the camera's address."""
    return UpstreamConnectError(f"not connecting: {detail}")


def broke_mid_stream(detail: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"the connection broke mid-stream: {detail}")


def no_whole_frame_for(seconds: float) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"the camera sent no whole JPEG frame for {seconds:g} s")


def asks_for_login() -> UpstreamConnectError:
    return UpstreamConnectError(
        "the camera asks for a login (HTTP 401): check username, password and auth_scheme"
    )


def unexpected_status(status: int, reason: str) -> UpstreamConnectError:
    return UpstreamConnectError(f"the camera answered HTTP {status} {reason}")
