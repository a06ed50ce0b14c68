"""Webhooks: a JSON POST at every motion event's start and end, and when a push camera
becomes overdue and when it is back, to the server's URLs (``CAMSERVER_WEBHOOK_URLS``) and
the stream's own (``motion.webhook_url``).

Each URL has its own bounded queue and sender, so a receiver that hangs or fails delays
only its own deliveries: never detection, other URLs or live video. A delivery is tried
up to four times (backoff 1, 2, 4 s) on a network error, a 5xx or a 429; other 4xx
answers are final. One deadline (``timeout``) covers a whole attempt, from connecting to the
answer's end, and at most ``MAX_ANSWER`` bytes of an answer are read (and thrown away): a
receiver answering 1 GiB took the server from 319 MB to 5.7 GB, one dripping a byte every
2 s held a "5 s" attempt for 40 s. URLs are secrets (a Home Assistant webhook's id is in
its path): logs show them masked (:func:`camserver.schema.urls.mask_url`). The same network
rules as camera URLs apply (``CAMSERVER_ALLOWED_NETWORKS``; link-local addresses refused),
checked at each attempt on the address actually used.

Body::

    {"event": "motion_start" | "motion_end", "stream": "porch", "id": 41,
     "start": 1795593712.31, "end": null, "peak_area": 6.12,
     "snapshot_url": "http://camserver.lan:8000/api/events/41/snapshot.jpg"}

    {"event": "stream_overdue" | "stream_back", "stream": "shed", "state": "overdue",
     "reason": "no picture for 11 s (expected every 5 s)", "last_frame_at": 1795593712.31}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from camserver import __version__
from camserver.errors import StreamNotFound, TargetNotAllowed, UpstreamConnectError
from camserver.motion.events import MotionEvent
from camserver.motion.service import MotionState
from camserver.netguard import NetworkGuard
from camserver.schema import StreamState, StreamStatus
from camserver.schema.urls import mask_url

__all__ = ["WebhookCounters", "Webhooks"]

log = logging.getLogger(__name__)

MAX_ANSWER = 64 * 1024
"""Most bytes of a receiver's answer read; the rest is never read (the connection closes)."""
QUEUE = 100
"""Deliveries waiting per URL; beyond it the oldest is dropped (and counted)."""
BACKOFF = (1.0, 2.0, 4.0)


@dataclass(slots=True)
class WebhookCounters:
    sent: int = 0
    failed: int = 0
    """Given up after every attempt, or refused for good (4xx, a forbidden address)."""
    dropped: int = 0
    """Not sent: the URL's queue was full (its receiver is far behind)."""


class _Sender:
    def __init__(self, hooks: Webhooks, url: str) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE)
        self.task = asyncio.get_running_loop().create_task(hooks._deliver_all(url, self.queue))


class Webhooks:
    """A :class:`~camserver.motion.service.MotionSink`."""

    def __init__(
        self,
        urls: list[str],
        stream_url: Callable[[str], str | None],
        guard: NetworkGuard,
        base_url: str,
        timeout: float,
    ) -> None:
        self.urls = urls
        self._stream_url = stream_url
        self._guard = guard
        self._base_url = base_url
        self.counters = WebhookCounters()
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            timeout=timeout,
            trust_env=False,
            follow_redirects=False,  # a redirect could lead past the network rules
            headers={"User-Agent": f"camserver/{__version__}"},
        )
        self._senders: dict[str, _Sender] = {}
        self._overdue: set[str] = set()

    def motion(self, event: MotionEvent, state: MotionState) -> None:
        self._post(event.stream, {"event": f"motion_{state}", **event.public(self._base_url)})

    def status_changed(self, name: str, status: StreamStatus) -> None:
        """A registry status listener: a push camera overdue, and back."""
        overdue = status.state is StreamState.OVERDUE
        if overdue == (name in self._overdue):
            return
        if overdue:
            self._overdue.add(name)
        else:
            self._overdue.discard(name)
            if status.state is not StreamState.STREAMING:
                return  # deleted or stopped meanwhile: nothing to tell
        body = {
            "event": "stream_overdue" if overdue else "stream_back",
            "stream": name,
            "state": status.state.value,
            "reason": status.last_error if overdue else None,
            "last_frame_at": status.last_frame_at,
        }
        self._post(name, body)

    def _post(self, stream: str, body: dict[str, Any]) -> None:
        try:
            own = self._stream_url(stream)
        except StreamNotFound:
            own = None
        for url in dict.fromkeys([*self.urls, *([own] if own else [])]):
            sender = self._senders.get(url)
            if sender is None:
                sender = self._senders[url] = _Sender(self, url)
            if sender.queue.full():
                sender.queue.get_nowait()
                self.counters.dropped += 1
                log.warning("webhook %s: its receiver is behind; dropped the oldest", mask_url(url))
            sender.queue.put_nowait(body)

    async def _deliver_all(self, url: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            body = await queue.get()
            if await self._deliver(url, body):
                self.counters.sent += 1
            else:
                self.counters.failed += 1

    async def _attempt(self, url: str, body: dict[str, Any]) -> int:
        """One POST within one deadline; its status code. The answer's body is read up
        to MAX_ANSWER bytes, only so that the exchange ends cleanly."""
        async with asyncio.timeout(self._timeout):
            target = await self._guard.pin(url)
            async with self._client.stream(
                "POST", target.url, json=body, headers=target.headers, extensions=target.extensions
            ) as r:
                read = 0
                async for chunk in r.aiter_raw():
                    read += len(chunk)
                    if read >= MAX_ANSWER:
                        break  # leaving the block closes the connection, unread
                return r.status_code

    async def _deliver(self, url: str, body: dict[str, Any]) -> bool:
        why = ""
        shown = mask_url(url)
        for attempt, pause in enumerate((*BACKOFF, None)):
            try:
                status = await self._attempt(url, body)
            except TargetNotAllowed as exc:
                log.error("webhook %s: %s", shown, exc)
                return False
            except TimeoutError:
                why = f"no whole answer within {self._timeout:g} s"
            except (httpx.HTTPError, UpstreamConnectError) as exc:
                # (Transport errors name the address, never the URL: no raise_for_status.)
                why = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= status < 300:
                    return True
                why = f"HTTP {status}"
                if status < 500 and status != 429:
                    break  # the receiver refuses it: trying again will not help
            if pause is None:
                break
            log.info("webhook %s: %s (attempt %d); again in %g s", shown, why, attempt + 1, pause)
            await asyncio.sleep(pause)
        what = f"{body['event']} {body.get('id', body.get('stream'))}"
        log.warning("webhook %s: gave up on %s: %s", shown, what, why)
        return False

    async def close(self) -> None:
        for sender in self._senders.values():
            sender.task.cancel()
        for sender in self._senders.values():
            with contextlib.suppress(asyncio.CancelledError):
                await sender.task
        await self._client.aclose()
