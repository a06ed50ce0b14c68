"""Sockets as the kernel sees them (Linux): what it holds unsent, a loopback pair with
small buffers, everything a peer receives."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct

SIOCOUTQNSD = 0x894B
"""ioctl: bytes in a TCP socket's send queue not yet sent (linux/sockios.h)."""


def unsent_in_kernel(fd: int) -> int:
    """Bytes the kernel holds not yet sent on TCP socket ``fd``."""
    return int(struct.unpack("i", fcntl.ioctl(fd, SIOCOUTQNSD, b"\0" * 4))[0])


async def tcp_pair(sndbuf: int, rcvbuf: int) -> tuple[socket.socket, asyncio.Transport]:
    """A loopback TCP connection: (the peer's plain socket with receive buffer ``rcvbuf``,
    an asyncio transport over the other end with send buffer ``sndbuf``)."""
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        sock, _ = listener.accept()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, sock)
    return peer, transport


async def read_all(peer: socket.socket, got: bytearray, want: int, timeout: float = 10) -> bytes:
    """Read ``peer`` (non-blocking) into ``got`` until it holds ``want`` bytes or
    ``timeout`` passed, then whatever more comes within 0.1 s."""
    loop = asyncio.get_running_loop()
    peer.setblocking(False)
    deadline = loop.time() + timeout
    while len(got) < want and loop.time() < deadline:
        try:
            got += peer.recv(65536)
        except BlockingIOError:
            await asyncio.sleep(0.001)
    await asyncio.sleep(0.1)
    with contextlib.suppress(BlockingIOError):
        got += peer.recv(1 << 20)
    return bytes(got)
