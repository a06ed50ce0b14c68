"""Parser throughput: the MJPEG parser against a plain ``bytearray`` copy of the same bytes.

    .venv/bin/python bench/parser.py [--seconds 2] [--json]

ESP32 format (Content-Length) and without Content-Length (walk to EOI), chunk sizes 1 KB,
4 KB and 64 KB, ~25 KB frames. The baseline appends each chunk to a bytearray and drops
what it has seen (what any buffering reader must at least do): the copy ceiling.
"oracle ratio" is the same for a parser that already knows every frame's offsets and only
builds one event per frame around a view: the best any CPython parser could reach.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from camserver.codecs.mjpeg import NEED_DATA, Frame, MJPEGParser
from camserver.sim.frames import FrameRenderer

B = b"123456789000000000000987654321"


def stream(with_length: bool, frames: int = 200) -> tuple[bytes, int]:
    data, spans = stream_spans(with_length, frames)
    return data, len(spans)


def stream_spans(with_length: bool, frames: int = 200) -> tuple[bytes, list[tuple[int, int]]]:
    """The stream, and where each JPEG sits in it."""
    r = FrameRenderer("bench", replay=40)
    out = bytearray()
    spans = []
    for i in range(frames):
        j = r.render(i, 10, 10)
        head = b"Content-Type: image/jpeg\r\n"
        if with_length:
            head += b"Content-Length: %d\r\nX-Timestamp: 1.000000\r\n" % len(j)
        out += b"\r\n--" + B + b"\r\n" + head + b"\r\n"
        spans.append((len(out), len(out) + len(j)))
        out += j
    return bytes(out), spans


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


class _Parser(Protocol):
    def receive_data(self, data: bytes) -> None: ...
    def next_event(self) -> object: ...


def drive(p: _Parser, chunks: list[bytes]) -> int:
    """Feed every chunk and drain the events after each; the frames seen."""
    n = 0
    for c in chunks:
        p.receive_data(c)
        while (e := p.next_event()) is not NEED_DATA:
            if isinstance(e, Frame):
                n += 1
    return n


def run_parser(chunks: list[bytes]) -> int:
    return drive(MJPEGParser(B), chunks)


class Oracle:
    """The floor for any CPython parser with this API: it already knows where every frame
    is, so per chunk it only answers ``receive_data``/``next_event`` and per frame it only
    builds the event around a zero-copy view. No parsing at all."""

    def __init__(self, data: bytes, spans: list[tuple[int, int]], size: int) -> None:
        self._view = memoryview(data)
        self._by_chunk: list[list[tuple[int, int]]] = [[] for _ in range(0, len(data), size)]
        for a, b in spans:
            self._by_chunk[(b - 1) // size].append((a, b))
        self._chunk = -1
        self._ready: list[tuple[int, int]] = []
        self._next = 0

    def receive_data(self, data: bytes) -> None:
        self._chunk += 1
        self._ready = self._by_chunk[self._chunk]
        self._next = 0

    def next_event(self) -> object:
        if self._next < len(self._ready):
            a, b = self._ready[self._next]
            self._next += 1
            return Frame(self._view[a:b], None)  # type: ignore[arg-type]
        return NEED_DATA


def run_oracle_with(
    data: bytes, spans: list[tuple[int, int]], size: int
) -> Callable[[list[bytes]], int]:
    def run(chunks: list[bytes]) -> int:
        return drive(Oracle(data, spans, size), chunks)

    return run


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
            f"{'copy MB/s':>12}{'ratio':>8}{'oracle ratio':>14}"
        )
        for r in rows:
            print(
                f"{r['format']:<18}{r['chunk']:>7}{r['parser_mb_s']:>13.0f}"
                f"{r['frames_s']:>11.0f}{r['copy_mb_s']:>12.0f}{r['ratio']:>8.2f}"
                f"{r['oracle_ratio']:>14.2f}"
            )
    return rows


def bench(seconds: float) -> list[dict[str, Any]]:
    rows = []
    for with_length in (True, False):
        data, spans = stream_spans(with_length)
        frames = len(spans)
        assert run_parser(chunked(data, 4096)) == frames
        for size in (1024, 4096, 65536):
            chunks = chunked(data, size)
            oracle = run_oracle_with(data, spans, size)
            assert oracle(chunks) == frames
            parser = rate(run_parser, chunks, seconds)
            copy = rate(run_copy, chunks, seconds)
            floor = rate(oracle, chunks, seconds)
            rows.append(
                {
                    "format": "ESP32 (length)" if with_length else "no Content-Length",
                    "chunk": f"{size // 1024} KB",
                    "parser_mb_s": parser / 1e6,
                    "frames_s": parser / (len(data) / frames),
                    "copy_mb_s": copy / 1e6,
                    "ratio": parser / copy,
                    "oracle_ratio": floor / copy,
                }
            )
    return rows


if __name__ == "__main__":
    main()
