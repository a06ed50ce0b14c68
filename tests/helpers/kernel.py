"""What the kernel holds for a socket (Linux)."""

from __future__ import annotations

import fcntl
import struct

SIOCOUTQNSD = 0x894B
"""ioctl: bytes in a TCP socket's send queue not yet sent (linux/sockios.h)."""


def unsent_in_kernel(fd: int) -> int:
    """Bytes the kernel holds not yet sent on TCP socket ``fd``."""
    return int(struct.unpack("i", fcntl.ioctl(fd, SIOCOUTQNSD, b"\0" * 4))[0])
