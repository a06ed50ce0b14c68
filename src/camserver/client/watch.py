"""``camserver watch NAME``: a stream's live rate and latency, a line a second.

Built on :class:`~camserver.client.AsyncClient`, as any script of a user's would be.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from camserver.client.aio import AsyncClient
from camserver.client.errors import ClientError
from camserver.client.frame import Frame

__all__ = ["Window", "add_arguments", "run"]


@dataclass
class Window:
    """The frames of the last report period."""

    started: float = field(default_factory=time.monotonic)
    latencies: list[float] = field(default_factory=list)
    sizes: int = 0
    resent: int = 0
    last_seq: int | None = None
    skipped: int = 0
    """Socket.IO: frames the server had that this client did not get (seq gaps)."""

    def add(self, frame: Frame) -> None:
        if frame.resent:
            self.resent += 1
            return
        if self.last_seq is not None and frame.seq > self.last_seq + 1:
            self.skipped += frame.seq - self.last_seq - 1
        self.last_seq = frame.seq
        self.latencies.append(frame.latency)
        self.sizes += len(frame.data)

    def report(self, name: str, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        n = len(self.latencies)
        line = f"{name}: {n / elapsed:5.1f} fps"
        if n:
            ordered = sorted(self.latencies)
            median = ordered[n // 2] * 1000
            line += f"  latency {median:.0f} ms (max {ordered[-1] * 1000:.0f})"
            line += f"  {self.sizes / n / 1024:.0f} KB/frame"
        else:
            line += "  no new frames"
            if self.resent:
                line += " (the server resends the last one: the camera is down)"
        if self.skipped:
            line += f"  skipped {self.skipped}"
        return line


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the stream to watch")
    p.add_argument("--url", help="the server (default $CAMSERVER_URL or http://127.0.0.1:8000)")
    p.add_argument("--token", help="API or view token (default $CAMSERVER_TOKEN)")
    p.add_argument("--fps", type=float, help="cap the rate received")
    p.add_argument("--mjpeg", action="store_true", help="read the MJPEG path, not Socket.IO")
    p.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")


async def _watch(args: argparse.Namespace, out: TextIO) -> None:
    async with AsyncClient(args.url, token=args.token) as client:
        frames = client.mjpeg if args.mjpeg else client.frames
        window = Window()

        async def receive() -> None:
            async for frame in frames(args.name, fps=args.fps):
                window.add(frame)

        receiver = asyncio.create_task(receive())
        print(f"watching {args.name} on {client.base_url} (Ctrl-C stops)", file=out, flush=True)
        end = time.monotonic() + args.seconds if args.seconds else float("inf")
        try:
            while (now := time.monotonic()) < end:
                await asyncio.wait({receiver}, timeout=min(window.started + 1.0, end) - now)
                if receiver.done():
                    receiver.result()  # the error that ended it (no such stream, ...)
                    return
                now = time.monotonic()
                if now >= window.started + 1.0:
                    print(window.report(args.name, now), file=out, flush=True)
                    window = Window(started=now, last_seq=window.last_seq)
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        asyncio.run(_watch(args, out))
    except ClientError as exc:
        print(f"camserver watch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
