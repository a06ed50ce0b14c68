"""A viewer worker process for the fan-out benchmark: N MJPEG or Socket.IO viewers.
``socketio-browser`` viewers offer permessage-deflate on the WebSocket, as browsers do.

    python bench/viewers.py --kind mjpeg --url URL --count N --seconds S [--slow K]

Waits ``--warmup`` seconds, then for ``--seconds`` counts each viewer's frames and the
latency of each (receive time minus the send time the simulator embedded in the JPEG).
Prints one JSON object. ``--slow K``: the first K viewers read slowly (50 ms pause per
read, 4 KB reads) and are reported apart.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import websockets

from camserver.codecs.mjpeg import NEED_DATA, Frame, MJPEGParser
from camserver.sim.frames import read_send_time


@dataclass
class Stats:
    slow: bool
    frames: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


class Window:
    def __init__(self, warmup: float, seconds: float) -> None:
        self.start = time.time() + warmup
        self.end = self.start + seconds

    def inside(self, t: float) -> bool:
        return self.start <= t < self.end


def record(st: Stats, win: Window, data: bytes | memoryview) -> None:
    now = time.time()
    if win.inside(now):
        st.frames += 1
        sent = read_send_time(data)
        if sent is not None:
            st.latencies.append(now - sent)


async def open_mjpeg(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, MJPEGParser]:
    """A GET of the MJPEG stream at ``url``, read up to its body; the parser for the body."""
    u = urlsplit(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    # HTTP/1.0: the body comes without chunked framing, straight into the parser.
    path = u.path + (f"?{u.query}" if u.query else "")
    writer.write(f"GET {path} HTTP/1.0\r\nHost: {u.hostname}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    ctype = next(
        (
            line.split(b":", 1)[1].decode().strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-type:")
        ),
        None,
    )
    return reader, writer, MJPEGParser.from_content_type(ctype)


async def mjpeg_viewer(url: str, st: Stats, win: Window) -> None:
    try:
        reader, writer, parser = await open_mjpeg(url)
        size = 4096 if st.slow else 65536
        while time.time() < win.end:
            chunk = await reader.read(size)
            if not chunk:
                break
            parser.receive_data(chunk)
            while (e := parser.next_event()) is not NEED_DATA:
                if isinstance(e, Frame):
                    record(st, win, e.data)
            if st.slow:
                await asyncio.sleep(0.05)
        writer.close()
    except (OSError, asyncio.IncompleteReadError):
        st.errors += 1


def sio_url(url: str) -> str:
    """The Engine.IO WebSocket endpoint of the Socket.IO server at ``url``."""
    return url.replace("http://", "ws://").rstrip("/") + "/socket.io/?EIO=4&transport=websocket"


async def sio_open(
    url: str, stream: str, token: str | None = None, browser: bool = False, timeout: float = 30
) -> websockets.ClientConnection:
    """A bare WebSocket that has done the Engine.IO and Socket.IO handshakes and sent
    ``join_stream`` (its answer is the first message with ack id 0: ``430[...]``).

    Not python-socketio's client: that costs ~100 µs of Python per frame, and 1,000 of them
    on a 2-core machine could not keep up (every viewer fell to ~7 fps while the server
    idled), so the bench measured its clients. This is the wire protocol as browsers'
    socket.io-client speaks it (Engine.IO 4, Socket.IO 5): a binary event is a text packet
    with a placeholder, then the attachment as a binary WebSocket message."""
    # browser: offer permessage-deflate as Chromium and Firefox do.
    ws = await websockets.connect(
        sio_url(url),
        max_size=None,
        open_timeout=timeout,
        compression="deflate" if browser else None,
        ping_interval=None,  # (Engine.IO pings in its own packets)
    )
    try:
        await ws.recv()  # Engine.IO open: 0{"sid": ...}
        await ws.send("40" + (json.dumps({"token": token}) if token else ""))
        connected = await ws.recv()
        if not isinstance(connected, str) or not connected.startswith("40"):
            raise ConnectionError(f"Socket.IO connect refused: {connected!r}")
        await ws.send("420" + json.dumps(["join_stream", {"name": stream}]))
    except BaseException:
        await ws.close()
        raise
    return ws


async def sio_viewer(
    url: str, stream: str, st: Stats, win: Window, token: str | None, browser: bool = False
) -> None:
    try:
        ws = await sio_open(url, stream, token, browser)
    except (OSError, websockets.WebSocketException, TimeoutError, ConnectionError):
        st.errors += 1
        return
    try:
        async with asyncio.timeout(max(0.0, win.end - time.time())):
            async for msg in ws:
                if isinstance(msg, bytes):  # a frame's attachment
                    record(st, win, msg)
                    if st.slow:
                        await asyncio.sleep(0.5)
                elif msg == "2":
                    await ws.send("3")  # Engine.IO ping -> pong
                elif msg.startswith("430"):  # join_stream's answer
                    if not json.loads(msg[3:])[0].get("ok"):
                        st.errors += 1
                elif msg.startswith('42["frame"'):  # baseline (a): base64 text, no attachment
                    data = json.loads(msg[2:])[1]["data"]
                    record(st, win, base64.b64decode(data))
    except TimeoutError:
        pass  # the window is over
    except (OSError, websockets.WebSocketException):
        st.errors += 1
    finally:
        await ws.close()


def summary(stats: list[Stats], seconds: float) -> dict[str, Any]:
    lat = sorted(x for s in stats for x in s.latencies)

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None

    fps = [s.frames / seconds for s in stats]
    return {
        "viewers": len(stats),
        "fps_mean": round(sum(fps) / len(fps), 2) if fps else 0.0,
        "fps_min": round(min(fps), 2) if fps else 0.0,
        "fps_all": [round(f, 2) for f in fps],
        "latency_p50_ms": pct(0.50),
        "latency_p99_ms": pct(0.99),
        "frames": sum(s.frames for s in stats),
        "errors": sum(s.errors for s in stats),
        "latency_samples": lat[:: max(1, len(lat) // 2000)],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    win = Window(args.warmup, args.seconds)
    stats = [Stats(slow=i < args.slow) for i in range(args.count)]
    if args.kind == "mjpeg":
        tasks = [mjpeg_viewer(args.url, s, win) for s in stats]
    else:
        browser = args.kind == "socketio-browser"
        tasks = [sio_viewer(args.url, args.stream, s, win, args.token, browser) for s in stats]
    await asyncio.gather(*tasks)
    return {
        "fast": summary([s for s in stats if not s.slow], args.seconds),
        "slow": summary([s for s in stats if s.slow], args.seconds),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["mjpeg", "socketio", "socketio-browser"], required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--stream", default="cam")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--slow", type=int, default=0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--token")
    ap.add_argument("--out", required=True, help="file to write the JSON result to")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    result = asyncio.run(run(args))
    with open(args.out, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
