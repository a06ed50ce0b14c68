"""The simulator's ESPHome framing without I/O (camserver.sim.esphome_wire): plaintext and
Noise, fed whole, byte by byte and with trailing data; the client side is aioesphomeapi's
own sans-I/O Noise initiator."""

from __future__ import annotations

from base64 import b64decode

from aioesphomeapi.noise import NoiseHandshake

from camserver.sim.esphome_wire import NEED_DATA, DeviceFrames, Fail, Message, _varint
from tests.helpers.esphome import KEY, OTHER_KEY

PROLOGUE = b"NoiseAPIInit\x00\x00"


def plain(type_: int, payload: bytes) -> bytes:
    return b"\x00" + _varint(len(payload)) + _varint(type_) + payload


def events(frames: DeviceFrames, data: bytes, *, bytewise: bool = False) -> list[object]:
    out: list[object] = []
    for piece in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
        frames.receive_data(piece)
        while (event := frames.next_event()) is not NEED_DATA:
            out.append(event)
            if isinstance(event, Fail):
                return out
    return out


def test_plaintext_messages_whole_byte_by_byte_and_with_trailing_data() -> None:
    big = bytes(range(256)) * 3  # a length that takes two varint bytes
    data = plain(1, b"hello") + plain(45, big) + plain(7, b"")
    want = [Message(1, b"hello"), Message(45, big), Message(7, b"")]
    assert events(DeviceFrames(None, "cam", "mac"), data) == want
    assert events(DeviceFrames(None, "cam", "mac"), data, bytewise=True) == want
    frames = DeviceFrames(None, "cam", "mac")
    assert events(frames, data + plain(9, b"x")[:2]) == want  # the rest comes later
    assert events(frames, plain(9, b"x")[2:]) == [Message(9, b"x")]
    frames.send(2, b"answer")
    assert frames.data_to_send() == plain(2, b"answer")
    assert frames.data_to_send() == b""


def test_plaintext_refuses_a_noise_client_and_overlong_messages() -> None:
    frames = DeviceFrames(None, "cam", "mac")
    (fail,) = events(frames, b"\x01\x00\x00")
    assert isinstance(fail, Fail)
    assert "plaintext" in fail.reason
    assert frames.data_to_send() == b"\x00Bad indicator byte"  # what the firmware says
    assert frames.next_event() == fail  # and stays failed
    (fail,) = events(DeviceFrames(None, "cam", "mac"), b"\x00" + _varint(70000) + b"\x01")
    assert isinstance(fail, Fail)
    assert "too long" in fail.reason


def _client_hello() -> tuple[NoiseHandshake, bytes]:
    client = NoiseHandshake(KEY, PROLOGUE)
    first = client.write_message()
    hello = b"\x01\x00\x00" + b"\x01" + (len(first) + 1).to_bytes(2, "big") + b"\x00" + first
    return client, hello


def _frames_of(data: bytes) -> list[bytes]:
    out = []
    while data:
        assert data[0] == 0x01
        size = int.from_bytes(data[1:3], "big")
        out.append(data[3 : 3 + size])
        data = data[3 + size :]
    return out


def test_noise_handshake_and_messages_whole_and_byte_by_byte() -> None:
    for bytewise in (False, True):
        client, hello = _client_hello()
        device = DeviceFrames(b64decode(KEY), "porch", "24:0A:C4:00:00:01")
        assert events(device, hello, bytewise=bytewise) == []
        server_hello, answer = _frames_of(device.data_to_send())
        assert server_hello == b"\x01porch\x0024:0A:C4:00:00:01\x00"
        assert answer[0] == 0x00
        client.read_message(answer[1:])
        encrypt, decrypt = client.get_ciphers()
        assert device.ready
        body = b"\x00\x01\x00\x03abc"  # type 1, 3 bytes
        sealed = [encrypt.encrypt(body) for _ in range(2)]  # (a nonce each)
        data = b"".join(b"\x01" + len(s).to_bytes(2, "big") + s for s in sealed)
        assert events(device, data, bytewise=bytewise) == [Message(1, b"abc")] * 2
        device.send(2, b"reply")
        (frame,) = _frames_of(device.data_to_send())
        assert decrypt.decrypt(frame) == b"\x00\x02\x00\x05reply"


def test_noise_refuses_a_wrong_key_a_plaintext_client_and_a_forged_frame() -> None:
    client = NoiseHandshake(OTHER_KEY, PROLOGUE)
    first = client.write_message()
    device = DeviceFrames(b64decode(KEY), "porch", "mac")
    hello = b"\x01\x00\x00" + b"\x01" + (len(first) + 1).to_bytes(2, "big") + b"\x00" + first
    (fail,) = events(device, hello)
    assert isinstance(fail, Fail)
    assert "key differs" in fail.reason
    assert _frames_of(device.data_to_send())[-1] == b"\x01Handshake MAC failure"
    device = DeviceFrames(b64decode(KEY), "porch", "mac")
    (fail,) = events(device, b"\x00\x05\x01hello")
    assert isinstance(fail, Fail)
    assert _frames_of(device.data_to_send()) == [b"\x01Bad indicator byte"]
    client, hello = _client_hello()
    device = DeviceFrames(b64decode(KEY), "porch", "mac")
    events(device, hello)
    forged = b"\x01\x00\x14" + bytes(20)
    (fail,) = events(device, forged)
    assert isinstance(fail, Fail)
    assert "decrypt" in fail.reason
