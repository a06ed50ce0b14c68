"""H.264 over RTP (RFC 6184), packetization mode 1, without I/O.

:func:`nal_units` splits an Annex B access unit (what libx264 writes: start codes before
each NAL unit) into NAL units; :func:`packetize` makes RTP packets of one access unit: a NAL
unit that fits is sent whole (a single NAL unit packet), a larger one in FU-A fragments
(RFC 6184 section 5.8), the marker bit on the access unit's last packet.
:func:`sprop_parameter_sets` and :func:`profile_level_id` give the SDP's ``fmtp`` values.
"""

from __future__ import annotations

import base64
import struct
from typing import Final

from camserver.live.rtsp.rtp_jpeg import MAX_PACKET

__all__ = [
    "PAYLOAD_TYPE",
    "nal_units",
    "packetize",
    "profile_level_id",
    "sprop_parameter_sets",
]

PAYLOAD_TYPE: Final = 96
"""A dynamic payload type (RFC 3551), named ``H264/90000`` in the SDP."""
SPS: Final = 7
PPS: Final = 8
FU_A: Final = 28


def nal_units(access_unit: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes removed)."""
    out = []
    data = access_unit
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(data)
        unit = data[start:end]
        while unit.endswith(b"\x00") and n + 1 < len(starts):
            unit = unit[:-1]  # the extra zero of a 4-byte start code, or trailing zeros
        if unit:
            out.append(unit)
    return out


def packetize(
    units: list[bytes],
    seq: int,
    timestamp: int,
    ssrc: int,
    payload_type: int = PAYLOAD_TYPE,
    max_packet: int = MAX_PACKET,
) -> list[bytes]:
    """RTP packets of one access unit's NAL units, sequence numbers from ``seq``."""
    room = max_packet - 12
    payloads: list[bytes] = []
    for unit in units:
        if len(unit) <= room:
            payloads.append(unit)
            continue
        indicator = (unit[0] & 0xE0) | FU_A
        kind = unit[0] & 0x1F
        body = memoryview(unit)[1:]
        step = room - 2
        for offset in range(0, len(body), step):
            start = offset == 0
            end = offset + step >= len(body)
            header = (0x80 if start else 0) | (0x40 if end else 0) | kind
            payloads.append(bytes([indicator, header]) + body[offset : offset + step])
    packets = []
    for i, payload in enumerate(payloads):
        marker = i == len(payloads) - 1
        head = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if marker else 0) | payload_type,
            (seq + i) & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            ssrc,
        )
        packets.append(head + payload)
    return packets


def sprop_parameter_sets(units: list[bytes]) -> str | None:
    """``sprop-parameter-sets`` (base64 SPS,PPS) from an access unit that has both."""
    sps = next((u for u in units if u[0] & 0x1F == SPS), None)
    pps = next((u for u in units if u[0] & 0x1F == PPS), None)
    if sps is None or pps is None:
        return None
    return f"{base64.b64encode(sps).decode()},{base64.b64encode(pps).decode()}"


def profile_level_id(units: list[bytes]) -> str | None:
    """``profile-level-id``: the SPS's profile, constraints and level bytes in hex."""
    sps = next((u for u in units if u[0] & 0x1F == SPS), None)
    return sps[1:4].hex().upper() if sps is not None and len(sps) >= 4 else None
