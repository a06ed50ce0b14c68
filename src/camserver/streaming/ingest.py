"""One task per started stream: pull the camera's MJPEG over one connection, parse it,
publish each whole frame once to the stream's hub, and reconnect when it breaks.

Plain-HTTP cameras (no login, or Basic auth) are read by ``camera_http`` (httptools in the
protocol callback, ~10 µs per network read); HTTPS and Digest auth by httpx (~40 µs).

Reconnects back off exponentially with jitter (``backoff_initial`` doubling up to
``backoff_max``); the delay resets once a connection has streamed for ``healthy_after``
seconds. ``last_error`` always holds a short sentence a user can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from httpx import BasicAuth

from camserver import __version__
from camserver.codecs.mjpeg import END, NEED_DATA, BadPart, MJPEGParser
from camserver.errors import (
    TargetNotAllowed,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from camserver.netguard import NetworkGuard, Target
from camserver.schema import StreamState, StreamStatus
from camserver.streaming.camera_http import open_stream
from camserver.streaming.hub import FrameHub
from camserver.upstream import REQUEST_ERRORS, describe_error

__all__ = ["FpsMeter", "Ingest", "IngestCounters", "IngestTiming", "backoff_delay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestTiming:
    connect_timeout: float = 5.0
    read_timeout: float = 5.0
    frame_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    healthy_after: float = 10.0
    max_frame_bytes: int = 4 * 1024 * 1024


def backoff_delay(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Delay before reconnect ``attempt`` (0-based): half fixed, half random ("equal jitter")."""
    base = min(cap, initial * 2.0 ** min(attempt, 30))
    return base / 2 + rng.uniform(0, base / 2)


class FpsMeter:
    """Frames per second over the last ``window`` seconds."""

    __slots__ = ("_times", "window")

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        limit = now - self.window
        times = self._times
        while times and times[0] < limit:
            times.popleft()

    def rate(self, now: float) -> float:
        self._trim(now)
        times = self._times
        if len(times) < 2:
            return 0.0
        span = max(now, times[-1]) - times[0]
        return round((len(times) - 1) / span, 2) if span > 0 else 0.0

    def reset(self) -> None:
        self._times.clear()


@dataclass(slots=True)
class IngestCounters:
    """What the ingest counts as frames arrive: plain slotted fields, cheap to bump on the
    hot path. The API's :class:`StreamStatus` is built from them only when asked for."""

    state: StreamState = StreamState.STOPPED
    frames: int = 0
    bytes: int = 0
    bad_frames: int = 0
    last_frame_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    retry_at: float | None = None
    upstream_connects: int = 0


class Ingest:
    """Pulls one camera into one hub. ``start()`` / ``await stop()``."""

    def __init__(
        self,
        name: str,
        url: str,
        client: httpx.AsyncClient,
        hub: FrameHub,
        timing: IngestTiming,
        on_state: Callable[[str, StreamStatus], None] | None = None,
        auth: httpx.Auth | None = None,
        guard: NetworkGuard | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.auth = auth
        self._guard = guard or NetworkGuard([])
        self.hub = hub
        self._client = client
        self._timing = timing
        self._on_state = on_state
        self._task: asyncio.Task[None] | None = None
        self._fps = FpsMeter()
        self._rng = random.Random()
        self.status = IngestCounters()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def snapshot_status(self) -> StreamStatus:
        """A copy of the status with fps and viewers brought up to date."""
        c = self.status
        return StreamStatus(
            state=c.state,
            fps=self._fps.rate(time.monotonic()) if c.state is StreamState.STREAMING else 0.0,
            frames=c.frames,
            bytes=c.bytes,
            bad_frames=c.bad_frames,
            last_frame_at=c.last_frame_at,
            last_error=c.last_error,
            last_error_at=c.last_error_at,
            retry_at=c.retry_at,
            upstream_connects=c.upstream_connects,
            viewers=self.hub.viewers,
        )

    def start(self) -> None:
        if self.running:
            return
        self._task = asyncio.create_task(self._run(), name=f"ingest:{self.name}")
        # Connecting from now on, not when the task first runs: the 201 of POST
        # /api/streams (made before that) said "stopped" for a stream that was starting.
        self._set_state(StreamState.CONNECTING, None)

    async def stop(self, state: StreamState = StreamState.STOPPED) -> None:
        """Cancel the task (closing the camera connection) and show ``state``."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_state(state, None)

    def set_state(self, state: StreamState) -> None:
        """Show ``state`` while not running (e.g. ``idle``)."""
        if not self.running:
            self._set_state(state, None)

    def _set_state(
        self, state: StreamState, error: str | None, retry_in: float | None = None
    ) -> None:
        changed = state is not self.status.state or error != self.status.last_error
        self.status.state = state
        self.status.retry_at = None if retry_in is None else time.time() + retry_in
        if error is not None:  # kept after recovery: "what went wrong last"
            self.status.last_error = error
            self.status.last_error_at = time.time()
        if state is not StreamState.STREAMING:
            self._fps.reset()
        if changed:
            fields = {"stream": self.name, "state": state.value, "reason": error}
            if error:
                log.warning("stream %s: %s (%s)", self.name, state.value, error, extra=fields)
            else:
                log.info("stream %s: %s", self.name, state.value, extra=fields)
            if self._on_state is not None:
                self._on_state(self.name, self.snapshot_status())

    async def _run(self) -> None:
        attempt = 0
        while True:
            self._set_state(StreamState.CONNECTING, None)
            began = time.monotonic()
            try:
                await self._pull()
                error = "the camera closed the stream"
            except UpstreamError as exc:
                error = str(exc)
            except Exception as exc:  # a bug must not end the stream: log it, retry
                log.exception("stream %s: unexpected error", self.name)
                error = f"internal error: {type(exc).__name__}: {exc}"
            if time.monotonic() - began >= self._timing.healthy_after:
                attempt = 0
            delay = backoff_delay(
                attempt, self._timing.backoff_initial, self._timing.backoff_max, self._rng
            )
            attempt += 1
            self._set_state(StreamState.RETRYING, f"{error}; retrying in {delay:.1f} s", delay)
            await asyncio.sleep(delay)

    async def _pull(self) -> None:
        """One upstream connection, until it ends. Raises UpstreamError subclasses."""
        try:
            # Connect to the address the guard checked (no second lookup: DNS rebinding).
            target = await self._guard.pin(self.url)
        except TargetNotAllowed as exc:
            raise UpstreamConnectError(f"not connecting: {exc}") from exc
        except UpstreamConnectError as exc:
            raise UpstreamConnectError(f"cannot connect to the camera: {exc}") from exc
        request = self._plain_request(target)
        if request is None:
            await self._pull_httpx(target)
        else:
            await self._pull_plain(target, request)

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

    async def _pull_plain(self, target: Target, request: bytes) -> None:
        t = self._timing
        url = httpx.URL(target.url)
        stream = await open_stream(url.host, url.port or 80, request, t.connect_timeout)
        try:
            resp = await stream.wait_head(t.read_timeout)
            self._check_answer(resp.status, resp.reason)
            parser = MJPEGParser.from_content_type(
                resp.headers.get("content-type"), max_frame_bytes=t.max_frame_bytes
            )
            feed = self._feeder(parser)
            stream.receive_body(feed)
            await stream.wait_end(t.read_timeout)
            self._finish(parser)
        finally:
            stream.close()

    async def _pull_httpx(self, target: Target) -> None:
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
                self._check_answer(resp.status_code, resp.reason_phrase)
                parser = MJPEGParser.from_content_type(
                    resp.headers.get("content-type"), max_frame_bytes=t.max_frame_bytes
                )
                feed = self._feeder(parser)
                async for chunk in resp.aiter_raw():
                    feed(chunk)
                self._finish(parser)
        except httpx.ConnectTimeout as exc:
            raise UpstreamTimeout(
                f"the camera did not accept a connection within {t.connect_timeout:g} s"
            ) from exc
        except httpx.ReadTimeout as exc:
            raise UpstreamTimeout(f"the camera sent nothing for {t.read_timeout:g} s") from exc
        except httpx.ConnectError as exc:
            raise UpstreamConnectError(
                f"cannot connect to the camera: {describe_error(exc)}"
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise UpstreamProtocolError(
                f"the connection broke mid-stream: {describe_error(exc)}"
            ) from exc
        except REQUEST_ERRORS as exc:
            raise UpstreamError(f"request failed: {describe_error(exc)}") from exc

    def _check_answer(self, status: int, reason: str) -> None:
        self.status.upstream_connects += 1
        if status == 401:
            raise UpstreamConnectError(
                "the camera asks for a login (HTTP 401): check username, password and auth_scheme"
            )
        if status != 200:
            raise UpstreamConnectError(f"the camera answered HTTP {status} {reason}")

    def _feeder(self, parser: MJPEGParser) -> Callable[[bytes], None]:
        """A function that takes each piece of the body: parses it, publishes every whole
        frame, and raises UpstreamProtocolError when no whole frame came for too long."""
        frame_timeout = self._timing.frame_timeout
        hub, status, fps = self.hub, self.status, self._fps
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
                    status.bad_frames += 1
                    log.debug("stream %s: skipped a part: %s", self.name, event.reason)
                    continue
                if event.resent:
                    # Another camserver's keep-alive (its camera is down): not a new frame,
                    # and it must not hide that the upstream stalled.
                    continue
                frame = hub.publish(event.data, event.camera_ts)
                status.frames += 1
                status.bytes += len(event.data)
                status.last_frame_at = frame.ts
                fps.tick(now)
                last_good = now
                if status.state is not StreamState.STREAMING:
                    self._set_state(StreamState.STREAMING, None)
            if now - last_good > frame_timeout:
                raise UpstreamProtocolError(
                    f"the camera sent no whole JPEG frame for {frame_timeout:g} s"
                )

        return feed

    def _finish(self, parser: MJPEGParser) -> None:
        parser.receive_data(b"")
        while (event := parser.next_event()) is not END:
            if isinstance(event, BadPart):
                self.status.bad_frames += 1
