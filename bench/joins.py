"""Join bursts: N viewers connect at once to a server relaying one camera (VGA, 15 fps); how
long until the last of them has its first whole frame.

MJPEG (camserver, the C relay, the npm ``mjpeg-proxy``) and Socket.IO over WebSocket
(camserver, the Node ``socket.io`` server). The viewers are raw sockets (MJPEG: a GET and the
multipart parser; Socket.IO: the Engine.IO/Socket.IO handshake on a bare WebSocket, then
``join_stream``), spread over 4 worker processes that all start at one agreed instant; each
records the time from that instant to its first frame. Reported: the first frames' median,
p99 and last, and how many never came within the timeout.

    .venv/bin/python bench/joins.py [--mjpeg 2000] [--socketio 1000] [--json] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import peers
from bench.harness import PY, table
from bench.viewers import open_mjpeg, sio_open
from camserver.codecs.mjpeg import NEED_DATA, Frame

WORKERS = 4
TIMEOUT = 20.0
"""Seconds a viewer waits for its first frame before it counts as never served."""


# -- the worker process -------------------------------------------------------------------


async def _mjpeg_first(url: str, start: float, out: list[float | None], i: int) -> None:
    try:
        reader, writer, parser = await open_mjpeg(url)
        while out[i] is None:
            chunk = await reader.read(65536)
            if not chunk:
                return
            parser.receive_data(chunk)
            while (e := parser.next_event()) is not NEED_DATA:
                if isinstance(e, Frame):
                    out[i] = time.time() - start
                    break
        await asyncio.sleep(max(0.0, start + TIMEOUT - time.time()))  # stay a viewer
        writer.close()
    except (OSError, asyncio.IncompleteReadError):
        return


async def _sio_first(url: str, start: float, out: list[float | None], i: int) -> None:
    try:
        ws = await sio_open(url, "cam", timeout=TIMEOUT)
    except (OSError, websockets.WebSocketException, TimeoutError, ConnectionError):
        return
    try:
        while out[i] is None:
            msg = await ws.recv()
            if isinstance(msg, bytes):  # a frame's attachment
                out[i] = time.time() - start
            elif msg == "2":
                await ws.send("3")  # Engine.IO ping
        await asyncio.sleep(max(0.0, start + TIMEOUT - time.time()))  # stay a viewer
    except (OSError, websockets.WebSocketException):
        return
    finally:
        await ws.close()


async def _worker(kind: str, url: str, count: int, start: float) -> list[float | None]:
    out: list[float | None] = [None] * count
    await asyncio.sleep(max(0.0, start - time.time()))
    first = _mjpeg_first if kind == "mjpeg" else _sio_first
    tasks = [asyncio.create_task(first(url, start, out, i)) for i in range(count)]
    await asyncio.wait(tasks, timeout=TIMEOUT + 5)
    for t in tasks:
        t.cancel()
    return out


# -- the bench ------------------------------------------------------------------------------


def burst(system: str, kind: str, n: int) -> dict[str, Any]:
    with peers.serving(system, kind) as (url, _proc, _port), tempfile.TemporaryDirectory() as tmp:
        time.sleep(2)  # the server has the camera's frames
        start = time.time() + 3  # every worker has started by then
        per = [n // WORKERS + (1 if i < n % WORKERS else 0) for i in range(WORKERS)]
        outs = [Path(tmp) / f"w{i}.json" for i in range(WORKERS)]
        procs = [
            subprocess.Popen(
                [PY, __file__, "--worker", kind, url, str(c), repr(start), str(o)],
                stdout=subprocess.DEVNULL,
            )
            for c, o in zip(per, outs, strict=True)
        ]
        for p in procs:
            p.wait(TIMEOUT + 60)
        firsts: list[float | None] = [x for o in outs for x in json.loads(o.read_text())]
    got = sorted(x for x in firsts if x is not None)
    return {
        "kind": kind,
        "viewers": n,
        "system": system,
        "served": len(got),
        "never": n - len(got),
        "first_p50_s": round(statistics.median(got), 3) if got else None,
        "first_p99_s": round(got[min(len(got) - 1, int(0.99 * len(got)))], 3) if got else None,
        "last_first_s": round(got[-1], 3) if got else None,
    }


def bench(mjpeg: int, socketio: int) -> list[dict[str, Any]]:
    rows = []
    for system in (peers.CAMSERVER, peers.C_RELAY, peers.MJPEG_PROXY):
        rows.append(burst(system, "mjpeg", mjpeg))
    for system in (peers.CAMSERVER, peers.NODE_SIO):
        rows.append(burst(system, "socketio", socketio))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mjpeg", type=int, default=2000)
    ap.add_argument("--socketio", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="20 viewers of each kind")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        kind, url, count, start, out = args.worker
        got = asyncio.run(_worker(kind, url, int(count), float(start)))
        Path(out).write_text(json.dumps(got))
        return
    rows = bench(20, 20) if args.smoke else bench(args.mjpeg, args.socketio)
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
