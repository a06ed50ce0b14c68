"""Parser throughput: the MJPEG parser against a plain ``bytearray`` copy of the same bytes.

    .venv/bin/python bench/parser.py [--seconds 2] [--json]

ESP32 format (Content-Length) and without Content-Length (walk to EOI), chunk sizes 1 KB,
4 KB and 64 KB, ~25 KB frames. The baseline appends each chunk to a bytearray and drops
what it has seen (what any buffering reader must at least do): the copy ceiling.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from camserver.sim.frames import FrameRenderer
from camserver.streaming.mjpeg import NEED_DATA, Frame, MJPEGParser

B = b"123456789000000000000987654321"


def stream(with_length: bool, frames: int = 200) -> tuple[bytes, int]:
    r = FrameRenderer("bench", replay=40)
    out = bytearray()
    for i in range(frames):
        j = r.render(i, 10, 10)
        head = b"Content-Type: image/jpeg\r\n"
        if with_length:
            head += b"Content-Length: %d\r\nX-Timestamp: 1.000000\r\n" % len(j)
        out += b"\r\n--" + B + b"\r\n" + head + b"\r\n" + j
    return bytes(out), frames


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def run_parser(chunks: list[bytes]) -> int:
    p = MJPEGParser(B)
    n = 0
    for c in chunks:
        p.receive_data(c)
        while (e := p.next_event()) is not NEED_DATA:
            if isinstance(e, Frame):
                n += 1
    return n


def run_copy(chunks: list[bytes]) -> int:
    buf = bytearray()
    for c in chunks:
        buf += c
        if len(buf) > 65536:
            del buf[: len(buf) - 4096]
    return 0


def rate(fn: Callable[[list[bytes]], int], chunks: list[bytes], seconds: float) -> float:
    """Bytes per second, best of repeated runs over ``seconds``."""
    total = sum(map(len, chunks))
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        fn(chunks)
        best = min(best, time.perf_counter() - t)
    return total / best


def main() -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description="MJPEG parser throughput")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = bench(args.seconds)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(
            f"{'format':<18}{'chunk':>7}{'parser MB/s':>13}{'frames/s':>11}"
            f"{'copy MB/s':>12}{'ratio':>8}"
        )
        for r in rows:
            print(
                f"{r['format']:<18}{r['chunk']:>7}{r['parser_mb_s']:>13.0f}"
                f"{r['frames_s']:>11.0f}{r['copy_mb_s']:>12.0f}{r['ratio']:>8.2f}"
            )
    return rows


def bench(seconds: float) -> list[dict[str, Any]]:
    rows = []
    for with_length in (True, False):
        data, frames = stream(with_length)
        assert run_parser(chunked(data, 4096)) == frames
        for size in (1024, 4096, 65536):
            chunks = chunked(data, size)
            parser = rate(run_parser, chunks, seconds)
            copy = rate(run_copy, chunks, seconds)
            rows.append(
                {
                    "format": "ESP32 (length)" if with_length else "no Content-Length",
                    "chunk": f"{size // 1024} KB",
                    "parser_mb_s": parser / 1e6,
                    "frames_s": parser / (len(data) / frames),
                    "copy_mb_s": copy / 1e6,
                    "ratio": parser / copy,
                }
            )
    return rows


if __name__ == "__main__":
    main()
