"""Today's camera: pull its MJPEG over one HTTP connection (``GET stream_url``) and hand
each whole JPEG to the supervisor.

Two transports behind one seam, one set of sentences (``camserver.sources.sentences``):
plain-HTTP cameras (no login, or Basic auth) are read by ``camera_http`` (httptools in the
protocol callback, ~10 µs per network read); HTTPS and Digest auth by httpx (~40 µs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
from httpx import BasicAuth

from camserver import __version__
from camserver.codecs.mjpeg import END, NEED_DATA, BadPart, MJPEGParser
from camserver.errors import TargetNotAllowed, UpstreamConnectError, UpstreamError
from camserver.netguard import NetworkGuard, Target
from camserver.schema import StreamConfig
from camserver.sources.base import FrameSink, SourceTiming
from camserver.sources.camera_http import open_stream
from camserver.sources.sentences import (
    asks_for_login,
    broke_mid_stream,
    cannot_connect,
    no_connection_within,
    no_whole_frame_for,
    not_connecting,
    silent_for,
    unexpected_status,
)
from camserver.upstream import REQUEST_ERRORS, describe_error

__all__ = ["HttpPull"]

log = logging.getLogger(__name__)


class HttpPull:
    """A :class:`~camserver.sources.base.Source`: one camera's MJPEG over HTTP."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        timing: SourceTiming,
        *,
        auth: httpx.Auth | None = None,
        guard: NetworkGuard | None = None,
    ) -> None:
        self.url = url
        self.auth = auth
        self._client = client
        self._timing = timing
        self._guard = guard or NetworkGuard([])

    @classmethod
    def for_config(
        cls, cfg: StreamConfig, client: httpx.AsyncClient, timing: SourceTiming, guard: NetworkGuard
    ) -> HttpPull:
        return cls(cfg.stream_url, client, timing, auth=cfg.httpx_auth(), guard=guard)

    async def run(self, sink: FrameSink) -> None:
        """One upstream connection, until it ends. Raises UpstreamError subclasses."""
        try:
            # Connect to the address the guard checked (no second lookup: DNS rebinding).
            target = await self._guard.pin(self.url)
        except TargetNotAllowed as exc:
            raise not_connecting(str(exc)) from exc
        except UpstreamConnectError as exc:
            raise cannot_connect(str(exc)) from exc
        request = self._plain_request(target)
        if request is None:
            await self._pull_httpx(target, sink)
        else:
            await self._pull_plain(target, request, sink)

    def _plain_request(self, target: Target) -> bytes | None:
        """The GET for the fast path (camera_http), or None: HTTPS or Digest auth take
        httpx."""
        url = httpx.URL(target.url)
        if url.scheme != "http" or not (self.auth is None or isinstance(self.auth, BasicAuth)):
            return None
        headers = {"Host": url.netloc.decode("ascii"), **target.headers}
        headers |= {"User-Agent": f"camserver/{__version__}", "Accept": "*/*"}
        if self.auth is not None:
            authed = next(self.auth.auth_flow(httpx.Request("GET", url)))
            headers["Authorization"] = authed.headers["Authorization"]
        lines = [b"GET " + url.raw_path + b" HTTP/1.1"]
        lines += [f"{k}: {v}".encode("latin-1") for k, v in headers.items()]
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def _pull_plain(self, target: Target, request: bytes, sink: FrameSink) -> None:
        t = self._timing
        url = httpx.URL(target.url)
        stream = await open_stream(url.host, url.port or 80, request, t.connect_timeout)
        try:
            resp = await stream.wait_head(t.read_timeout)
            parser = self._answered(
                sink, resp.status, resp.reason, resp.headers.get("content-type")
            )
            stream.receive_body(self._feeder(parser, sink))
            await stream.wait_end(t.read_timeout)
            self._finish(parser, sink)
        finally:
            stream.close()

    async def _pull_httpx(self, target: Target, sink: FrameSink) -> None:
        t = self._timing
        timeout = httpx.Timeout(t.read_timeout, connect=t.connect_timeout)
        try:
            async with self._client.stream(
                "GET",
                target.url,
                headers=target.headers,
                extensions=target.extensions,
                timeout=timeout,
                auth=self.auth,
            ) as resp:
                parser = self._answered(
                    sink, resp.status_code, resp.reason_phrase, resp.headers.get("content-type")
                )
                feed = self._feeder(parser, sink)
                async for chunk in resp.aiter_raw():
                    feed(chunk)
                self._finish(parser, sink)
        except httpx.ConnectTimeout as exc:
            raise no_connection_within(t.connect_timeout) from exc
        except httpx.ReadTimeout as exc:
            raise silent_for(t.read_timeout) from exc
        except httpx.ConnectError as exc:
            raise cannot_connect(describe_error(exc)) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise broke_mid_stream(describe_error(exc)) from exc
        except REQUEST_ERRORS as exc:
            raise UpstreamError(f"request failed: {describe_error(exc)}") from exc

    def _answered(
        self, sink: FrameSink, status: int, reason: str, content_type: str | None
    ) -> MJPEGParser:
        """The parser for an answer's body, if the answer is a stream (any answer counts
        as an upstream connection)."""
        sink.connected()
        if status == 401:
            raise asks_for_login()
        if status != 200:
            raise unexpected_status(status, reason)
        return MJPEGParser.from_content_type(
            content_type, max_frame_bytes=self._timing.max_frame_bytes
        )

    def _feeder(self, parser: MJPEGParser, sink: FrameSink) -> Callable[[bytes], None]:
        """A function that takes each piece of the body: parses it, publishes every whole
        frame, and raises UpstreamProtocolError when no whole frame came for too long."""
        frame_timeout = self._timing.frame_timeout
        publish = sink.publish
        last_good = time.monotonic()

        def feed(chunk: bytes) -> None:
            nonlocal last_good
            parser.receive_data(chunk)
            now = time.monotonic()
            while True:
                event = parser.next_event()
                if event is NEED_DATA or event is END:
                    break
                if isinstance(event, BadPart):
                    sink.bad_frame(event.reason)
                    continue
                if event.resent:
                    # Another camserver's keep-alive (its camera is down): not a new frame,
                    # and it must not hide that the upstream stalled.
                    continue
                publish(event.data, event.camera_ts)
                last_good = now
            if now - last_good > frame_timeout:
                raise no_whole_frame_for(frame_timeout)

        return feed

    @staticmethod
    def _finish(parser: MJPEGParser, sink: FrameSink) -> None:
        parser.receive_data(b"")
        while (event := parser.next_event()) is not END:
            if isinstance(event, BadPart):
                sink.bad_frame(event.reason)
