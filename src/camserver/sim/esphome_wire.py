"""The ESPHome native API's framing, as a device speaks it, with no I/O.

Bytes in through :meth:`DeviceFrames.receive_data`, events out of
:meth:`DeviceFrames.next_event` (a :class:`Message`, :data:`NEED_DATA`, or :class:`Fail`
after which the connection is to be closed); bytes to send from
:meth:`DeviceFrames.data_to_send`. Messages out through :meth:`DeviceFrames.send`.

- Plaintext: ``0x00``, varint length, varint message type, protobuf body.
- Noise (``api: encryption: key:``): frames ``0x01``, 16-bit big-endian length, payload.
  The client's first frame is an empty hello; the device answers a ServerHello (``0x01``,
  its name, ``0x00``, its MAC, ``0x00``); the client's second frame is ``0x00`` and the
  first Noise_NNpsk0_25519_ChaChaPoly_SHA256 handshake message (prologue
  ``NoiseAPIInit\\0\\0``); the device answers ``0x00`` and its handshake message, or
  ``0x01`` and "Handshake MAC failure" when the key differs. After that each payload is
  encrypted: 16-bit type, 16-bit length, protobuf body.
- A client that speaks the other mode gets what the firmware answers: a plaintext device
  sends ``0x00`` + "Bad indicator byte" (aioesphomeapi: "the device is using plaintext"),
  an encrypted one a ServerHello-shaped rejection (aioesphomeapi: "requires encryption").
"""

from __future__ import annotations

import binascii
import enum
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from noise.connection import NoiseConnection
from noise.exceptions import NoiseInvalidMessage

__all__ = ["NEED_DATA", "DeviceFrames", "Fail", "Message", "decode_key"]

NOISE_PROTOCOL: Final = b"Noise_NNpsk0_25519_ChaChaPoly_SHA256"
PROLOGUE: Final = b"NoiseAPIInit\x00\x00"
MAX_FRAME: Final = 65535
"""The longest frame either mode carries here (a Noise frame's length is 16 bits)."""


class _Signal(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = _Signal.NEED_DATA
_Need = Literal[_Signal.NEED_DATA]


@dataclass(frozen=True, slots=True)
class Message:
    type: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Fail:
    reason: str


def decode_key(key: str) -> bytes:
    """A base64 Noise pre-shared key as ESPHome's YAML gives it: 32 bytes."""
    try:
        raw = binascii.a2b_base64(key.encode())
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise ValueError("the encryption key is not base64") from exc
    if len(raw) != 32:
        raise ValueError("the encryption key must be 32 bytes, base64-encoded")
    return raw


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: bytearray, pos: int) -> tuple[int, int] | None:
    """``(value, next position)``, or None while the varint is incomplete."""
    value = shift = 0
    while pos < len(buf):
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise ValueError("varint too long")
    return None


class DeviceFrames:
    """One connection's framing, plaintext (``psk`` None) or Noise."""

    def __init__(self, psk: bytes | None, name: str, mac: str) -> None:
        self._psk = psk
        self._name = name
        self._mac = mac
        self._buf = bytearray()
        self._out = bytearray()
        self._failed: Fail | None = None
        self._hello_seen = False
        self._noise: NoiseConnection | None = None

    @property
    def encrypted(self) -> bool:
        return self._psk is not None

    @property
    def ready(self) -> bool:
        """Messages may be sent (plaintext: at once; Noise: after the handshake)."""
        return self._psk is None or (self._noise is not None and self._noise.handshake_finished)

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def send(self, type_: int, payload: bytes) -> None:
        if self._psk is None:
            self._out += b"\x00" + _varint(len(payload)) + _varint(type_) + payload
            return
        assert self._noise is not None
        assert self._noise.handshake_finished
        body = type_.to_bytes(2, "big") + len(payload).to_bytes(2, "big") + payload
        self._frame(bytes(self._noise.encrypt(body)))

    def _frame(self, payload: bytes) -> None:
        self._out += b"\x01" + len(payload).to_bytes(2, "big") + payload

    def _fail(self, reason: str) -> Fail:
        self._failed = Fail(reason)
        self._buf.clear()
        return self._failed

    def next_event(self) -> Message | Fail | _Need:
        if self._failed is not None:
            return self._failed
        while self._buf:
            try:
                event = self._plain() if self._psk is None else self._encrypted()
            except ValueError as exc:
                return self._fail(str(exc))
            if event is not None:
                return event
        return NEED_DATA

    # -- plaintext --------------------------------------------------------------------------

    def _plain(self) -> Message | Fail | _Need:
        if self._buf[0] != 0x00:
            # ESPHome's plaintext helper answers an encrypted hello with this text.
            self._out += b"\x00Bad indicator byte"
            return self._fail("the client speaks Noise; this device is plaintext")
        length = _read_varint(self._buf, 1)
        if length is None:
            return NEED_DATA
        if length[0] > MAX_FRAME:
            return self._fail(f"a {length[0]}-byte message is too long")
        kind = _read_varint(self._buf, length[1])
        if kind is None or len(self._buf) < kind[1] + length[0]:
            return NEED_DATA
        payload = bytes(self._buf[kind[1] : kind[1] + length[0]])
        del self._buf[: kind[1] + length[0]]
        return Message(kind[0], payload)

    # -- Noise --------------------------------------------------------------------------------

    def _encrypted(self) -> Message | Fail | _Need | None:
        """The next message; None when a handshake step was taken (look again)."""
        if self._buf[0] != 0x01:
            self._frame(b"\x01Bad indicator byte")  # the firmware's explicit reject
            return self._fail("the client speaks plaintext; this device wants encryption")
        if len(self._buf) < 3:
            return NEED_DATA
        size = int.from_bytes(self._buf[1:3], "big")
        if len(self._buf) < 3 + size:
            return NEED_DATA
        payload = bytes(self._buf[3 : 3 + size])
        del self._buf[: 3 + size]
        if not self._hello_seen:
            self._hello_seen = True  # the client's hello: answer who this device is
            self._frame(b"\x01" + self._name.encode() + b"\x00" + self._mac.encode() + b"\x00")
            return None
        if self._noise is None:
            return self._handshake(payload)
        try:
            body = bytes(self._noise.decrypt(payload))
        except (InvalidTag, NoiseInvalidMessage):
            return self._fail("a frame failed to decrypt")
        if len(body) < 4:
            return self._fail("a decrypted frame is shorter than its header")
        type_ = int.from_bytes(body[:2], "big")
        length = int.from_bytes(body[2:4], "big")
        if length != len(body) - 4:
            return self._fail("a frame's length does not match its body")
        return Message(type_, body[4:])

    def _handshake(self, payload: bytes) -> Fail | None:
        if not payload or payload[0] != 0x00:
            return self._fail("the handshake frame is malformed")
        assert self._psk is not None
        noise = NoiseConnection.from_name(NOISE_PROTOCOL)
        noise.set_as_responder()
        noise.set_psks(self._psk)
        noise.set_prologue(PROLOGUE)
        noise.start_handshake()
        try:
            noise.read_message(payload[1:])
        except Exception:  # (noiseprotocol raises InvalidTag or errors of its own)
            self._frame(b"\x01Handshake MAC failure")
            return self._fail("the client's encryption key differs")
        self._frame(b"\x00" + bytes(noise.write_message()))
        self._noise = noise
        return None
