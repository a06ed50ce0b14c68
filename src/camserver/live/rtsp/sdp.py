"""The SDP a DESCRIBE answers (RFC 4566), and RTCP sender reports (RFC 3550): text and
bytes, no I/O."""

from __future__ import annotations

import struct
import time
from typing import Final

from camserver.live.rtsp import rtp_h264
from camserver.live.rtsp.rtp_jpeg import PAYLOAD_TYPE

__all__ = ["NTP_EPOCH", "describe_h264", "describe_jpeg", "sender_report"]

NTP_EPOCH: Final = 2208988800
"""Seconds from 1900 (NTP) to 1970 (Unix)."""


def describe_jpeg(
    name: str,
    base_url: str,
    address: str,
    session_id: int,
    fps: float | None,
    size: tuple[int, int] | None,
) -> str:
    """One video track of JPEG over RTP (payload type 26), controlled at ``trackID=0``."""
    lines = [
        *_head(name, base_url, address, session_id),
        f"m=video 0 RTP/AVP {PAYLOAD_TYPE}",
        f"a=rtpmap:{PAYLOAD_TYPE} JPEG/90000",
        "a=control:trackID=0",
    ]
    if fps:
        lines.append(f"a=framerate:{fps:.2f}".rstrip("0").rstrip("."))
    if size:
        lines.append(f"a=x-dimensions:{size[0]},{size[1]}")
    return "\r\n".join(lines) + "\r\n"


def describe_h264(
    name: str, base_url: str, address: str, session_id: int, parameter_sets: list[bytes]
) -> str:
    """One H.264 track (RFC 6184, packetization mode 1) with its SPS and PPS."""
    lines = _head(name, base_url, address, session_id)
    fmtp = ["packetization-mode=1"]
    level = rtp_h264.profile_level_id(parameter_sets)
    if level:
        fmtp.append(f"profile-level-id={level}")
    sprop = rtp_h264.sprop_parameter_sets(parameter_sets)
    if sprop:
        fmtp.append(f"sprop-parameter-sets={sprop}")
    lines += [
        f"m=video 0 RTP/AVP {rtp_h264.PAYLOAD_TYPE}",
        f"a=rtpmap:{rtp_h264.PAYLOAD_TYPE} H264/90000",
        f"a=fmtp:{rtp_h264.PAYLOAD_TYPE} {';'.join(fmtp)}",
        "a=control:trackID=0",
    ]
    return "\r\n".join(lines) + "\r\n"


def _head(name: str, base_url: str, address: str, session_id: int) -> list[str]:
    ip4 = "IP6" if ":" in address else "IP4"
    return [
        "v=0",
        f"o=- {session_id} 1 IN {ip4} {address}",
        f"s={name}",
        "c=IN " + ("IP6 ::" if ip4 == "IP6" else "IP4 0.0.0.0"),
        "t=0 0",
        "a=tool:camserver",
        "a=range:npt=now-",
        f"a=control:{base_url}",
    ]


def sender_report(
    ssrc: int, rtp_timestamp: int, packets: int, octets: int, now: float | None = None
) -> bytes:
    """An RTCP SR (payload type 200) with no report blocks, and an SDES CNAME (a compound
    packet, as RFC 3550 wants)."""
    now = time.time() if now is None else now
    seconds = int(now) + NTP_EPOCH
    fraction = int((now % 1) * (1 << 32)) & 0xFFFFFFFF
    sr = struct.pack(
        "!BBHIIIIII",
        0x80,
        200,
        6,
        ssrc,
        seconds & 0xFFFFFFFF,
        fraction,
        rtp_timestamp & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )
    cname = b"camserver"
    item = bytes([1, len(cname)]) + cname + b"\x00"
    item += b"\x00" * (-len(item) % 4)
    sdes = struct.pack("!BBHI", 0x81, 202, (4 + len(item)) // 4, ssrc) + item
    return sr + sdes
