"""A Socket.IO event as the bytes a WebSocket carries, encoded once for many clients.

python-socketio sends a binary event as two Engine.IO messages (the JSON with a
placeholder, then the attachment), each encoded, queued and framed again per client.
:func:`event_frames` builds the same two WebSocket frames with python-socketio's,
python-engineio's and websockets' own encoders, once; ``camserver.live.socketio`` writes the
result to every viewer's socket. ``tests/test_sio_wire.py`` checks it against what the
libraries produce and decode, so an upgrade that changes the protocol fails loudly.
"""

from __future__ import annotations

from typing import Any

import engineio.packet
import socketio.packet
from websockets.frames import Frame, Opcode

__all__ = ["event_frames"]


def event_frames(event: str, data: Any, namespace: str = "/") -> bytes:
    """Server-to-client WebSocket frames (unmasked, no extension) of one Socket.IO event."""
    pkt = socketio.packet.Packet(socketio.packet.EVENT, data=[event, data], namespace=namespace)
    encoded = pkt.encode()
    frames = []
    for part in encoded if isinstance(encoded, list) else [encoded]:
        message = engineio.packet.Packet(engineio.packet.MESSAGE, data=part).encode()
        if isinstance(message, bytes):
            frame = Frame(Opcode.BINARY, message)
        else:
            frame = Frame(Opcode.TEXT, message.encode())
        frames.append(frame.serialize(mask=False))
    return b"".join(frames)
