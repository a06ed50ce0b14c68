"""Baseline (c): the practical ceiling. A minimal asyncio relay: one connection to the
camera, de-chunk its body, write every byte to every connected viewer. Nothing else: no
parsing of frames, no per-viewer pacing, no backpressure handling.

    python bench/baselines/raw_relay.py --camera http://127.0.0.1:P/stream --port Q
"""

from __future__ import annotations

import argparse
import asyncio
from urllib.parse import urlsplit


class Relay:
    def __init__(self) -> None:
        self.viewers: set[asyncio.WriteTransport] = set()
        self.content_type = b"multipart/x-mixed-replace"

    async def pull(self, url: str) -> None:
        u = urlsplit(url)
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        writer.write(f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-type:"):
                self.content_type = line.split(b":", 1)[1].strip()
        while True:  # chunked body: size line, data, CRLF
            size = int(await reader.readuntil(b"\r\n"), 16)
            data = await reader.readexactly(size + 2)
            payload = data[:-2]
            for t in self.viewers:
                t.write(payload)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: " + self.content_type + b"\r\n\r\n")
        transport = writer.transport  # uvloop's is not an asyncio.Transport subclass
        self.viewers.add(transport)
        try:
            await reader.read()  # until the viewer leaves
        finally:
            self.viewers.discard(transport)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--camera", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    relay = Relay()
    server = await asyncio.start_server(relay.serve, "127.0.0.1", args.port)
    async with server:
        await relay.pull(args.camera)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(main())
