"""The blocking client: :class:`AsyncClient`'s methods, run on a private event loop.

One daemon thread per :class:`Client` runs the loop; each call waits for its result. So a
plain script (OpenCV, a small model) gets the same behaviour as asyncio code: the same
errors, reconnecting live frames, the newest frame when the script is slow.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from camserver.client.aio import AsyncClient
from camserver.client.frame import Frame

__all__ = ["Client"]

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Client, P], T]:
    """``AsyncClient.method`` as a blocking method of :class:`Client`."""

    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(method(self._aio, *args, **kwargs))

    return call


class Client:
    """camserver's API for plain (blocking) code: ``with Client() as client:``.

    The arguments, defaults (``$CAMSERVER_URL``, ``$CAMSERVER_TOKEN``), methods and errors
    are :class:`AsyncClient`'s; :meth:`frames` and :meth:`mjpeg` are plain iterators.
    """

    def __init__(
        self, base_url: str | None = None, *, token: str | None = None, timeout: float = 10.0
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="camserver-client", daemon=True
        )
        self._thread.start()

        async def make() -> AsyncClient:  # httpx's client belongs to the loop it runs on
            return AsyncClient(base_url, token=token, timeout=timeout)

        self._aio = self._run(make())
        self.base_url, self.token = self._aio.base_url, self._aio.token

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._aio.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    health = _blocking(AsyncClient.health)
    cluster = _blocking(AsyncClient.cluster)
    streams = _blocking(AsyncClient.streams)
    stream = _blocking(AsyncClient.stream)
    create_stream = _blocking(AsyncClient.create_stream)
    update_stream = _blocking(AsyncClient.update_stream)
    delete_stream = _blocking(AsyncClient.delete_stream)
    start = _blocking(AsyncClient.start)
    stop = _blocking(AsyncClient.stop)
    status = _blocking(AsyncClient.status)
    snapshot = _blocking(AsyncClient.snapshot)
    camera_settings = _blocking(AsyncClient.camera_settings)
    set_camera_settings = _blocking(AsyncClient.set_camera_settings)
    discovered = _blocking(AsyncClient.discovered)
    scan = _blocking(AsyncClient.scan)
    add_discovered = _blocking(AsyncClient.add_discovered)
    recordings = _blocking(AsyncClient.recordings)
    recording = _blocking(AsyncClient.recording)
    recording_file = _blocking(AsyncClient.recording_file)
    delete_recording = _blocking(AsyncClient.delete_recording)
    recorded_frame = _blocking(AsyncClient.recorded_frame)
    clip = _blocking(AsyncClient.clip)
    mark_event = _blocking(AsyncClient.mark_event)
    events = _blocking(AsyncClient.events)
    event = _blocking(AsyncClient.event)
    event_snapshot = _blocking(AsyncClient.event_snapshot)
    delete_event = _blocking(AsyncClient.delete_event)

    def frames(self, name: str, *, fps: float | None = None) -> Iterator[Frame]:
        """Live frames over Socket.IO: ``for frame in client.frames("porch"): ...``"""
        return self._iterate(self._aio.frames(name, fps=fps))

    def mjpeg(self, name: str, *, fps: float | None = None) -> Iterator[Frame]:
        """Live frames over the MJPEG path."""
        return self._iterate(self._aio.mjpeg(name, fps=fps))

    def _iterate(self, frames: AsyncIterator[Frame]) -> Iterator[Frame]:
        try:
            while True:  # the async generator runs on the client's loop, step by step
                yield self._run(_next(frames))
        except StopAsyncIteration:
            return
        finally:
            close = getattr(frames, "aclose", None)
            if close is not None and not self._loop.is_closed():
                self._run(close())


async def _next(frames: AsyncIterator[Frame]) -> Frame:
    return await anext(frames)
