"""``camserver.live.sio_wire`` against the libraries' own decoders: if an upgrade of
python-socketio, python-engineio or websockets changes the wire format, this fails."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import engineio.packet
import pytest
import socketio.packet
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from camserver.live.sio_wire import event_frames


def parse_frames(data: bytes) -> list[Frame]:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        gen: Generator[None, None, Frame] = Frame.parse(
            reader.read_exact, mask=False, max_size=None, extensions=[]
        )
        try:
            next(gen)
        except StopIteration as done:
            frames.append(done.value)
        else:  # pragma: no cover - the generator wanted more bytes than were fed
            raise AssertionError("truncated frame")
    return frames


def decode(frames: list[Frame]) -> tuple[str, Any]:
    """What python-socketio's client does with the messages."""
    first = engineio.packet.Packet(encoded_packet=bytes(frames[0].data).decode())
    assert first.packet_type == engineio.packet.MESSAGE
    pkt = socketio.packet.Packet(encoded_packet=first.data)
    for frame in frames[1:]:
        attachment = engineio.packet.Packet(encoded_packet=bytes(frame.data))
        assert attachment.packet_type == engineio.packet.MESSAGE
        pkt.add_attachment(attachment.data)
    event, data = pkt.data
    return str(event), data


# Sizes around the WebSocket length encodings (7 bits, 16 bits, 64 bits).
@pytest.mark.parametrize("size", [0, 100, 125, 126, 65535, 65536, 300_000])
def test_a_binary_event_is_a_text_frame_and_a_binary_frame(size: int) -> None:
    payload = {"name": "porch", "seq": 7, "ts": 1.5, "token": 0, "data": b"\xff\xd8" * (size // 2)}
    frames = parse_frames(event_frames("frame", payload))
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.BINARY]
    assert all(f.fin and not (f.rsv1 or f.rsv2 or f.rsv3) for f in frames)
    assert decode(frames) == ("frame", payload)


def test_a_text_only_event_is_one_frame() -> None:
    frames = parse_frames(event_frames("stream_status", {"name": "porch", "n": [1, 2]}))
    assert [f.opcode for f in frames] == [Opcode.TEXT]
    assert decode(frames) == ("stream_status", {"name": "porch", "n": [1, 2]})
