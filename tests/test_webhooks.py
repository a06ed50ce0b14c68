"""Webhook deliveries against hostile receivers on loopback: an answer that never ends,
one that drips, and the URL's secrets kept out of the logs (issue 26: H2, L2, M5)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from camserver.integrations.webhooks import MAX_ANSWER, Webhooks
from camserver.motion.events import MotionEvent
from camserver.netguard import NetworkGuard
from camserver.schema.urls import mask_url

EVENT = MotionEvent(id=7, stream="porch", start=1.0, end=None, peak_area=3.0, snapshot=None)

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


class Receiver:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests = 0
        self.sent = 0
        """Bytes of answer body the receiver managed to hand to its socket."""
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            self.requests += 1
            await self.answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def receiving(answer: Answer) -> AsyncIterator[Receiver]:
    receiver = Receiver(answer)
    server = await asyncio.start_server(receiver._handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    async with server:
        yield receiver
        server.close()


@asynccontextmanager
async def hooks(url: str, timeout: float) -> AsyncIterator[Webhooks]:
    w = Webhooks([url], lambda name: None, NetworkGuard([]), "http://camserver.test", timeout)
    try:
        yield w
    finally:
        await w.close()


async def _delivered(w: Webhooks, deadline: float) -> float:
    """Seconds until the one delivery ended (sent or given up)."""
    start = time.monotonic()
    while w.counters.sent + w.counters.failed == 0:
        assert time.monotonic() - start < deadline, "the delivery did not end"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_an_endless_answer_is_not_read_beyond_the_cap() -> None:
    """H2: the answer was read whole (1 GiB took the server to 5.7 GB)."""
    total = 256 * 1024 * 1024
    chunk = b"x" * (1024 * 1024)

    async def huge(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        for _ in range(total // len(chunk)):
            writer.write(chunk)
            await writer.drain()
            receiver.sent += len(chunk)

    async with receiving(huge) as receiver, hooks(f"http://127.0.0.1:{receiver.port}/h", 20) as w:
        w.motion(EVENT, "start")
        await _delivered(w, 30)
        assert w.counters.sent == 1
        await asyncio.sleep(0.5)
    # What the kernel's socket buffers hold, and no more: the rest was never read.
    assert receiver.sent < 16 * 1024 * 1024 + MAX_ANSWER, receiver.sent


async def test_a_dripping_receiver_gets_one_deadline_per_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """L2: a receiver dripping a byte every 2 s held one "5 s" attempt for 40 s. Here a
    byte every 0.2 s against a 1 s deadline: each attempt ends after about 1 s."""

    async def drip(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):
            await asyncio.sleep(0.2)
            writer.write(b"x")
            await writer.drain()

    caplog.set_level(logging.INFO, logger="camserver.integrations.webhooks")
    secret = "/api/webhook/secret-id-4711?key=hunter2"
    async with receiving(drip) as receiver:
        url = f"http://user:pa55@127.0.0.1:{receiver.port}{secret}"
        async with hooks(url, 1.0) as w:
            w.motion(EVENT, "start")
            # Four attempts of ~1 s and pauses of 1, 2, 4 s: about 11 s (old code: 200 s each).
            took = await _delivered(w, 25)
            assert w.counters.failed == 1
            assert receiver.requests == 4
            assert 9 < took < 16, took
    # M5: what the logs say names the receiver but not its secrets.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"127.0.0.1:{receiver.port}/***" in logged
    assert "no whole answer within 1 s" in logged
    for secret_part in ("secret-id-4711", "hunter2", "pa55", "user"):
        assert secret_part not in logged


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://ha.lan:8123/api/webhook/abc", "http://ha.lan:8123/***"),
        ("https://u:p@example.com/", "https://example.com/***"),
        ("http://example.com?key=1", "http://example.com/***"),
        ("http://example.com/", "http://example.com/"),
        ("http://[::1]:9/x", "http://[::1]:9/***"),
        ("not a url", "***"),
        ("http://example.com:99999/", "***"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown
