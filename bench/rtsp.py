"""RTSP out's cost (issue 29): one VGA camera at 15 fps to N RTSP clients over TCP
interleaved and N over UDP, from load processes, beside the same number of MJPEG viewers
in the same run: server CPU per viewer-frame and the frame rate each client got. Then the
H.264 path: one encoder's CPU for one camera.

    .venv/bin/python bench/rtsp.py [--clients 200] [--seconds 10] [--json] [--smoke]

The load (``--load``) is asyncio RTSP clients that count whole frames (RTP marker bits) and
drop the bytes; only the server's CPU is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import PY, Meter, add_streams, cameras, camserver, free_port, run_viewers, table

# -- the load process --------------------------------------------------------------------------


async def _client(url: str, udp: bool, seconds: float, frames: list[int], i: int) -> None:
    host, port = url.removeprefix("rtsp://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    cseq = 0
    session = ""

    async def request(method: str, target: str, extra: str = "") -> dict[str, str]:
        nonlocal cseq, session
        cseq += 1
        head = f"{method} {target} RTSP/1.0\r\nCSeq: {cseq}\r\n"
        if session:
            head += f"Session: {session}\r\n"
        writer.write((head + extra + "\r\n").encode())
        text = (await reader.readuntil(b"\r\n\r\n")).decode()
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (ln.partition(":") for ln in text.split("\r\n")[1:])
            if k
        }
        await reader.readexactly(int(headers.get("content-length", "0")))
        if "session" in headers:
            session = headers["session"].split(";")[0]
        return headers

    await request("DESCRIBE", url)
    sock = None
    if udp:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        p = sock.getsockname()[1]
        transport = f"RTP/AVP;unicast;client_port={p}-{p + 1}"
    else:
        transport = "RTP/AVP/TCP;unicast;interleaved=0-1"
    await request("SETUP", url + "/trackID=0", f"Transport: {transport}\r\n")
    await request("PLAY", url + "/")
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    if sock is not None:
        sock.setblocking(False)
        while loop.time() < end:
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 2048), end - loop.time())
            except TimeoutError:
                break
            if len(data) > 1 and data[1] & 0x80:
                frames[i] += 1
        sock.close()
    else:
        while loop.time() < end:
            try:
                head = await asyncio.wait_for(reader.readexactly(4), end - loop.time())
            except TimeoutError:
                break
            size = int.from_bytes(head[2:4], "big")
            data = await reader.readexactly(size)
            if head[1] == 0 and data[1] & 0x80:
                frames[i] += 1
    with contextlib.suppress(ConnectionError):
        writer.close()


async def _load(url: str, udp: bool, count: int, seconds: float) -> dict[str, Any]:
    frames = [0] * count
    got = await asyncio.gather(
        *(_client(url, udp, seconds, frames, i) for i in range(count)), return_exceptions=True
    )
    errors = [repr(e) for e in got if isinstance(e, BaseException)]
    return {"frames": frames, "errors": len(errors), "first_error": errors[0] if errors else None}


# -- the benchmark -------------------------------------------------------------------------------


def _rtsp_phase(
    rtsp: str, proc: Any, udp: bool, count: int, seconds: float, workers: int
) -> dict[str, Any]:
    warmup = 3.0
    per = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    outs = [Path(tempfile.mkstemp(suffix=".json")[1]) for _ in per]
    loads = [
        subprocess.Popen(
            [
                *(PY, __file__, "--load", "udp" if udp else "tcp", "--url", rtsp),
                *("--count", str(n), "--seconds", str(warmup + seconds), "--out", str(out)),
            ],
            stdout=subprocess.DEVNULL,
        )
        for n, out in zip(per, outs, strict=True)
        if n
    ]
    time.sleep(warmup)
    meter = Meter(proc)
    meter.start()
    time.sleep(seconds)
    meter.stop()
    for load in loads:
        load.wait(timeout=120)
    results = [json.loads(out.read_text()) for out in outs if out.stat().st_size]
    frames = [f for r in results for f in r["frames"]]
    errors = sum(r["errors"] for r in results) + (len(loads) - len(results)) * count // workers
    fps = [f / (warmup + seconds) for f in frames]
    delivered = sum(fps) * meter.wall
    return {
        "output": "RTSP UDP" if udp else "RTSP TCP",
        "viewers": count,
        "fps_median": round(statistics.median(fps), 2) if fps else 0.0,
        "fps_min": round(min(fps), 2) if fps else 0.0,
        "server_cpu_pct": round(meter.percent, 1),
        "us_per_viewer_frame": round(1e6 * meter.cpu / delivered, 2) if delivered else None,
        "errors": errors,
    }


def _floor_phase(kind: str, count: int, seconds: float, workers: int) -> dict[str, Any]:
    """bench/floor.py: the same frame to ``count`` viewers by a sender doing nothing else."""
    import psutil

    warmup = 3.0
    floor = str(Path(__file__).with_name("floor.py"))
    tmp = Path(tempfile.mkdtemp(prefix="camserver-floor-"))
    per = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    ports = [tmp / f"ports{i}.json" for i in range(workers)]
    outs = [tmp / f"out{i}.json" for i in range(workers)]
    sinks = [
        subprocess.Popen(
            [
                *(PY, floor, "--sink", kind, "--count", str(n)),
                *("--seconds", str(warmup + seconds + 2), "--out", str(out)),
                *("--ports", str(ports[i] if kind == "udp" else ports[0])),
            ],
            stdout=subprocess.DEVNULL,
        )
        for i, (n, out) in enumerate(zip(per, outs, strict=True))
    ]
    files = [a for p in (ports if kind == "udp" else ports[:1]) for a in ("--ports", str(p))]
    sender = subprocess.Popen(
        [
            *(PY, floor, "--send", kind, "--count", str(count)),
            *("--seconds", str(warmup + seconds + 1), *files),
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(warmup + 1)
    meter = Meter(psutil.Process(sender.pid))
    meter.start()
    time.sleep(seconds)
    meter.stop()
    sender.wait(timeout=60)
    for s in sinks:
        s.wait(timeout=60)
    frames = [f for out in outs for f in json.loads(out.read_text())["frames"]]
    fps = [f / (warmup + seconds + 1) for f in frames]
    delivered = sum(fps) * meter.wall
    return {
        "output": f"floor: {'UDP GSO sendmsg' if kind == 'udp' else 'TCP send'} (bench/floor.py)",
        "viewers": count,
        "fps_median": round(statistics.median(fps), 2) if fps else 0.0,
        "fps_min": round(min(fps), 2) if fps else 0.0,
        "server_cpu_pct": round(meter.percent, 1),
        "us_per_viewer_frame": round(1e6 * meter.cpu / delivered, 2) if delivered else None,
        "errors": 0,
    }


def bench(
    smoke: bool = False, clients: int | None = None, seconds: float | None = None
) -> list[dict[str, Any]]:
    count = clients or (10 if smoke else 200)
    seconds = seconds or (1.5 if smoke else 10.0)
    workers = 2 if smoke else 4
    port = free_port()
    rows = []
    with cameras(1) as ports, camserver({"CAMSERVER_RTSP_PORT": str(port)}) as (url, proc):
        add_streams(url, ports)
        rtsp = f"rtsp://127.0.0.1:{port}/cam"
        result, meter = run_viewers(
            "mjpeg", f"{url}/api/streams/cam/mjpeg", count, seconds, 3.0, workers, 0, proc
        )
        assert meter is not None
        fast = result["fast"]
        delivered = fast["fps_mean"] * fast["viewers"] * meter.wall
        rows.append(
            {
                "output": "MJPEG",
                "viewers": count,
                "fps_median": fast["fps_median"],
                "fps_min": fast["fps_min"],
                "server_cpu_pct": round(meter.percent, 1),
                "us_per_viewer_frame": round(1e6 * meter.cpu / delivered, 2) if delivered else None,
                "errors": fast["errors"],
            }
        )
        rows.append(_rtsp_phase(rtsp, proc, False, count, seconds, workers))
        rows.append(_rtsp_phase(rtsp, proc, True, count, seconds, workers))
        rows.append(_rtsp_phase(rtsp + "/h264", proc, False, 1, seconds, 1))
        rows[-1]["output"] = "RTSP H.264 (1 client: the encoder)"
    # What the kernel alone costs for the same frames (MJPEG's TCP, RTSP's UDP).
    rows.append(_floor_phase("tcp", count, seconds, workers))
    rows.append(_floor_phase("udp", count, seconds, workers))
    base = rows[0]["us_per_viewer_frame"]
    for r in rows:
        value = r["us_per_viewer_frame"]
        r["vs_mjpeg"] = round(value / base, 2) if base and value else None
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description="RTSP out's cost")
    ap.add_argument("--clients", type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--load", choices=["tcp", "udp"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load:
        frames = asyncio.run(_load(args.url, args.load == "udp", args.count, args.seconds))
        args.out.write_text(json.dumps(frames))
        return
    rows = bench(args.smoke, args.clients, args.seconds)
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
