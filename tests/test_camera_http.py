"""The ingest's plain-HTTP path (``camserver.sources.camera_http``) against small real
servers on loopback: framing by chunks, by length and by connection close, answers sent
whole and byte by byte, heads that never end, and bodies cut short."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import uvloop

from camserver.errors import UpstreamProtocolError, UpstreamTimeout
from camserver.sources.camera_http import open_stream

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]
REQUEST = b"GET /stream HTTP/1.1\r\nHost: cam\r\n\r\n"


@asynccontextmanager
async def camera(answer: Answer) -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            await answer(writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def body_of(port: int, read_timeout: float = 5.0) -> tuple[int, bytes]:
    stream = await open_stream("127.0.0.1", port, REQUEST, 5.0)
    try:
        head = await stream.wait_head(read_timeout)
        got: list[bytes] = []
        stream.receive_body(got.append)
        await stream.wait_end(read_timeout)
        return head.status, b"".join(got)
    finally:
        stream.close()


BODY = b"--b\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\n\r\n\xff\xd8\xff\xd9\r\n" * 3
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=b\r\n"


def chunked(body: bytes, size: int) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


ANSWERS = {
    "chunked": HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(BODY, 7),
    "length": HEAD + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY,
    "close": HEAD + b"\r\n" + BODY,  # no length, no chunks: the body ends with the connection
}


@pytest.mark.parametrize("framing", list(ANSWERS))
@pytest.mark.parametrize("piece", [0, 1, 5])
async def test_the_body_arrives_whole_however_it_is_framed_and_cut(
    framing: str, piece: int
) -> None:
    data = ANSWERS[framing]

    async def answer(writer: asyncio.StreamWriter) -> None:
        if not piece:  # all at once: the body comes in the same read as the head
            writer.write(data)
        for i in range(0, len(data), piece or len(data)):
            writer.write(data[i : i + piece])
            await writer.drain()
            await asyncio.sleep(0)

    async with camera(answer) as port:
        assert await body_of(port) == (200, BODY)


async def test_an_endless_head_is_cut_at_64_kib() -> None:
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(10_000):
            writer.write(b"X-Junk-%d: %s\r\n" % (i, b"a" * 100))
            await writer.drain()

    async with camera(answer) as port:
        with pytest.raises(UpstreamProtocolError, match="64 KiB of headers"):
            await body_of(port)


async def test_a_body_cut_short_is_an_error_and_silence_a_timeout() -> None:
    async def cut(writer: asyncio.StreamWriter) -> None:
        writer.write(ANSWERS["chunked"][:-20])

    async with camera(cut) as port:
        with pytest.raises(UpstreamProtocolError, match="broke mid-stream"):
            await body_of(port)

    async def silent(writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        await asyncio.sleep(5)

    async with camera(silent) as port:
        with pytest.raises(UpstreamTimeout, match=r"sent nothing for 0\.5 s"):
            await body_of(port, read_timeout=0.5)


async def test_garbage_instead_of_http_is_a_clear_error() -> None:
    async def garbage(writer: asyncio.StreamWriter) -> None:
        writer.write(b"\xff\xd8 this is not HTTP\r\n\r\n")

    async with camera(garbage) as port:
        with pytest.raises(UpstreamProtocolError):
            await body_of(port)


def test_under_uvloop_as_the_server_runs() -> None:
    # camserver serves with uvloop, whose transports are not asyncio.Transport subclasses.
    async def main() -> tuple[int, bytes]:
        async def answer(writer: asyncio.StreamWriter) -> None:
            writer.write(ANSWERS["chunked"])

        async with camera(answer) as port:
            return await body_of(port)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) == (200, BODY)
