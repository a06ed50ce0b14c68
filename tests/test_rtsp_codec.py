"""RTSP's sans-I/O parts (issue 29): the request reader fed whole, byte by byte and with
trailing data; transports; the RFC 2435 packetizer against frames of both samplings, with
restart markers, and what it refuses."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from camserver.live.rtsp import rtp_jpeg
from camserver.live.rtsp.sdp import describe_jpeg, sender_report
from camserver.live.rtsp.wire import (
    END,
    MAX_HEAD,
    MAX_LINE,
    NEED_DATA,
    Interleaved,
    Refused,
    Request,
    RtspReader,
    parse_transport,
    response,
)
from camserver.sim.camera import SimCamera

OPTIONS = b"OPTIONS rtsp://h:8554/porch RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: t\r\n\r\n"
SET = (
    b"SET_PARAMETER rtsp://h:8554/porch RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 5\r\n"
    b"Content-Type: text/parameters\r\n\r\nx: 1\n"
)
RTCP = b"$\x01\x00\x04\x81\xc9\x00\x00"


def events(reader: RtspReader) -> list[object]:
    out: list[object] = []
    while (e := reader.next_event()) is not NEED_DATA and e is not END:
        out.append(e)
    return out


def feed(data: bytes, step: int | None = None) -> list[object]:
    reader = RtspReader()
    got: list[object] = []
    for i in range(0, len(data), step or len(data)):
        reader.receive_data(data[i : i + (step or len(data))])
        got += events(reader)
    return got


@pytest.mark.parametrize("step", [None, 1, 7])
def test_pipelined_requests_and_interleaved_data_whole_and_byte_by_byte(
    step: int | None,
) -> None:
    got = feed(OPTIONS + RTCP + SET + OPTIONS.replace(b"CSeq: 1", b"CSeq: 3"), step)
    assert [type(e).__name__ for e in got] == ["Request", "Interleaved", "Request", "Request"]
    first, rtcp, param, last = got
    assert isinstance(first, Request)
    assert (first.method, first.uri, first.cseq) == ("OPTIONS", "rtsp://h:8554/porch", "1")
    assert first.headers["user-agent"] == "t"
    assert rtcp == Interleaved(1, RTCP[4:])
    assert isinstance(param, Request)
    assert param.body == b"x: 1\n"
    assert isinstance(last, Request)
    assert last.cseq == "3"


def test_trailing_data_waits_and_bare_newlines_are_read() -> None:
    reader = RtspReader()
    reader.receive_data(OPTIONS + b"DESCRIBE rtsp://h/porch RTSP/1.0\r\nCSe")
    assert [type(e).__name__ for e in events(reader)] == ["Request"]
    assert reader.next_event() is NEED_DATA
    reader.receive_data(b"q: 2\r\n\r\n")
    (describe,) = events(reader)
    assert isinstance(describe, Request)
    assert describe.cseq == "2"
    lf = feed(b"\r\nOPTIONS * RTSP/1.0\nCSeq: 9\n\n")
    assert isinstance(lf[0], Request)
    assert lf[0].uri == "*"
    assert lf[0].cseq == "9"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"OPTIONS * HTTP/1.1\r\nCSeq: 1\r\n\r\n", 505),
        (b"FETCH * RTSP/1.0\r\nCSeq: 1\r\n\r\n", 501),
        (b"OPTIONS\r\nCSeq: 1\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.0\r\nno colon here\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.0\r\nContent-Length: lots\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.0\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"OPTIONS rtsp://" + b"a" * (MAX_LINE + 10), 414),
        (b"OPTIONS * RTSP/1.0\r\n" + b"X-A: b\r\n" * (MAX_HEAD // 8 + 10), 413),
    ],
)
def test_what_cannot_be_read_is_refused_with_a_status(data: bytes, status: int) -> None:
    got = feed(data)
    assert isinstance(got[0], Refused), got
    assert got[0].status == status


def test_a_refusal_with_a_cseq_keeps_it_and_a_mangled_head_ends_the_reader() -> None:
    (refused,) = feed(b"OPTIONS * RTSP/2.0\r\nCSeq: 4\r\n\r\n")
    assert refused == Refused(505, "'RTSP/2.0': this server speaks RTSP/1.0", "4")
    reader = RtspReader()
    reader.receive_data(b"OPTIONS * RTSP/1.0\r\nbad\r\n\r\n" + OPTIONS)
    assert isinstance(reader.next_event(), Refused)
    assert reader.next_event() is END
    eof = RtspReader()
    eof.receive_data(b"OPTIONS * RTS")
    eof.receive_data(b"")
    assert eof.next_event() is END


def test_transports() -> None:
    tcp = parse_transport("RTP/AVP/TCP;unicast;interleaved=2-3")
    assert tcp is not None
    assert (tcp.tcp, tcp.interleaved) == (True, (2, 3))
    udp = parse_transport("RTP/AVP;unicast;client_port=5000-5001")
    assert udp is not None
    assert (udp.tcp, udp.client_ports) == (False, (5000, 5001))
    # The first choice the server can serve, of several.
    both = parse_transport("RTP/AVP;multicast,RTP/AVP/UDP;unicast;client_port=6000")
    assert both is not None
    assert both.client_ports == (6000, 6001)
    for bad in (
        "",
        "RTP/SAVP;unicast;client_port=1-2",
        "RTP/AVP;unicast",
        "x;y",
        "RTP/AVP/TCP;interleaved=300-301",
        "RTP/AVP;client_port=0-1",
    ):
        assert parse_transport(bad) is None, bad


def test_responses_and_sdp() -> None:
    text = response(401, "5", [("WWW-Authenticate", "Basic"), ("WWW-Authenticate", "Digest")])
    assert text == (
        b"RTSP/1.0 401 Unauthorized\r\nCSeq: 5\r\nWWW-Authenticate: Basic\r\n"
        b"WWW-Authenticate: Digest\r\n\r\n"
    )
    assert response(200, "1", {"Content-Type": "application/sdp"}, b"v=0\r\n").endswith(
        b"Content-Length: 5\r\n\r\nv=0\r\n"
    )
    sdp = describe_jpeg("porch", "rtsp://h:8554/porch/", "10.0.0.2", 7, 15.0, (640, 480))
    assert "m=video 0 RTP/AVP 26\r\n" in sdp
    assert "a=rtpmap:26 JPEG/90000\r\n" in sdp
    assert "a=control:trackID=0\r\n" in sdp
    assert "a=framerate:15\r\n" in sdp
    assert "a=x-dimensions:640,480\r\n" in sdp
    sr = sender_report(0x1234, 9000, 10, 5000, now=1_700_000_000.5)
    assert sr[1] == 200
    assert struct.unpack("!I", sr[4:8])[0] == 0x1234
    assert struct.unpack("!I", sr[8:12])[0] == 1_700_000_000 + 2208988800
    assert len(sr) % 4 == 0


def jpeg(size: tuple[int, int], **options: object) -> bytes:
    out = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(out, "JPEG", **options)
    return out.getvalue()


def reassemble(packets: list[bytes]) -> tuple[int, int, bytes, bytes, bytes]:
    """What a receiver gets: (type, Q, tables, restart header, scan), checking offsets."""
    scan = b""
    tables = b""
    restart = b""
    kind = q = 0
    for i, p in enumerate(packets):
        assert len(p) <= rtp_jpeg.MAX_PACKET
        assert p[0] == 0x80
        assert p[1] & 0x7F == 26
        assert bool(p[1] & 0x80) == (i == len(packets) - 1)  # the marker ends the frame
        offset = struct.unpack("!I", p[12:16])[0] & 0xFFFFFF
        assert offset == len(scan)
        kind, q = p[16], p[17]
        body = p[20:]
        if kind >= 64:
            restart, body = body[:4], body[4:]
        if offset == 0:
            length = struct.unpack("!H", body[2:4])[0]
            tables, body = body[4 : 4 + length], body[4 + length :]
        scan += body
    return kind, q, tables, restart, scan


@pytest.mark.parametrize(
    ("options", "kind"),
    [({"subsampling": 1}, 0), ({"subsampling": 2}, 1), ({"restart_marker_rows": 1}, 65)],
)
def test_packets_carry_the_scan_unchanged(options: dict[str, object], kind: int) -> None:
    data = jpeg((640, 480), **options)
    scan = rtp_jpeg.parse(data)
    assert isinstance(scan, rtp_jpeg.JpegScan)
    packets = rtp_jpeg.packetize(scan, seq=65530, timestamp=2**32 + 5, ssrc=0xABCDEF01)
    seqs = [struct.unpack("!H", p[2:4])[0] for p in packets]
    assert seqs == [(65530 + i) & 0xFFFF for i in range(len(packets))]
    assert {struct.unpack("!I", p[4:8])[0] for p in packets} == {5}
    got_kind, q, tables, restart, body = reassemble(packets)
    assert (got_kind, q, len(tables)) == (kind, 255, 128)
    assert body == data[data.index(bytes(scan.scan[:16])) : -2]  # byte for byte, no EOI
    assert (packets[0][20 if kind < 64 else 24], packets[0][18], packets[0][19]) == (0, 80, 60)
    if kind >= 64:
        assert restart == struct.pack("!HH", scan.restart_interval, 0xFFFF)


def test_what_rfc_2435_cannot_carry_says_why() -> None:
    cases = {
        "a progressive JPEG": jpeg((64, 48), progressive=True),
        "Huffman tables other than the standard ones (an optimized JPEG)": jpeg(
            (64, 48), optimize=True
        ),
        "sampling 1x1, 1x1, 1x1 (RFC 2435 carries 4:2:2 and 4:2:0)": jpeg((64, 48), subsampling=0),
        "2048x64: RFC 2435 carries sides of 8 to 2040 px": jpeg((2048, 64)),
        "not a JPEG": b"hello",
    }
    for reason, data in cases.items():
        assert rtp_jpeg.parse(data) == rtp_jpeg.Unsupported(reason)
    grey = io.BytesIO()
    Image.new("L", (64, 48)).save(grey, "JPEG")
    assert "colour components" in rtp_jpeg.parse(grey.getvalue()).reason  # type: ignore[union-attr]
    truncated = SimCamera("t").render()[:300]
    assert isinstance(rtp_jpeg.parse(truncated), rtp_jpeg.Unsupported)


def test_the_simulators_frames_are_both_types() -> None:
    pattern = rtp_jpeg.parse(SimCamera("a", framesize=10).render())
    scene = rtp_jpeg.parse(SimCamera("b", framesize=10, scene={}).render())
    assert isinstance(pattern, rtp_jpeg.JpegScan)
    assert isinstance(scene, rtp_jpeg.JpegScan)
    assert (pattern.type, scene.type) == (1, 0)
