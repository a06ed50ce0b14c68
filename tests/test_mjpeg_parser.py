"""The sans-I/O MJPEG parser: fed whole, byte by byte, in random chunks, with trailing
data, and with the quirks real cameras send."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from camserver.codecs.mjpeg import (
    END,
    NEED_DATA,
    BadPart,
    Event,
    Frame,
    MJPEGParser,
    boundary_from_content_type,
)

B = b"123456789000000000000987654321"


def make_jpeg(color: tuple[int, int, int], size: tuple[int, int] = (32, 24), **kw: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", **kw)
    return out.getvalue()


JPEGS = [make_jpeg((i * 40 % 256, 90, 200 - i * 30)) for i in range(5)]


def esp32_part(jpeg: bytes, ts: str = "12.000345") -> bytes:
    """CameraWebServer: boundary before the part, Content-Length, X-Timestamp."""
    return (
        b"\r\n--"
        + B
        + b"\r\n"
        + b"Content-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: %s\r\n\r\n"
        % (len(jpeg), ts.encode())
        + jpeg
    )


def esphome_stream(jpegs: list[bytes]) -> bytes:
    """ESPHome: boundary after each part, first boundary up front."""
    out = b"--" + B + b"\r\n"
    for j in jpegs:
        out += b"Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(j) + j
        out += b"\r\n--" + B + b"\r\n"
    return out


def drain(p: MJPEGParser) -> list[Event]:
    events: list[Event] = []
    while (e := p.next_event()) is not NEED_DATA and e is not END:
        events.append(e)
    return events


def feed(data: bytes, chunks: list[int] | None = None, **kw: object) -> list[Event]:
    p = MJPEGParser(**kw)  # type: ignore[arg-type]
    events: list[Event] = []
    pos = 0
    sizes = iter(chunks or [])
    while pos < len(data):
        n = next(sizes, len(data))
        p.receive_data(data[pos : pos + max(1, n)])
        pos += max(1, n)
        events += drain(p)
    p.receive_data(b"")
    events += drain(p)
    assert p.next_event() is END
    return events


def frames(events: list[Event]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Frame)]


def bad(events: list[Event]) -> list[BadPart]:
    return [e for e in events if isinstance(e, BadPart)]


ESP32 = b"".join(esp32_part(j) for j in JPEGS)


def test_esp32_stream_whole() -> None:
    events = feed(ESP32, boundary=B)
    assert frames(events) == JPEGS
    assert not bad(events)
    assert all(e.camera_ts == "12.000345" for e in events if isinstance(e, Frame))


def test_esp32_stream_byte_by_byte() -> None:
    p = MJPEGParser(B)
    got: list[bytes] = []
    for i in range(len(ESP32)):
        p.receive_data(ESP32[i : i + 1])
        got += frames(drain(p))
    assert got == JPEGS


def test_frame_is_published_as_soon_as_it_is_complete() -> None:
    # The ESP32 sends the boundary BEFORE each part: a frame must not wait for the next one.
    p = MJPEGParser(B)
    p.receive_data(esp32_part(JPEGS[0]))
    assert frames(drain(p)) == [JPEGS[0]]


def test_trailing_partial_part_waits_then_is_reported_at_eof() -> None:
    data = ESP32 + esp32_part(JPEGS[0])[:-10]
    p = MJPEGParser(B)
    p.receive_data(data)
    events = drain(p)
    assert frames(events) == JPEGS
    assert p.next_event() is NEED_DATA
    p.receive_data(b"")
    tail = p.next_event()
    assert isinstance(tail, BadPart)
    assert "ended" in tail.reason
    assert p.next_event() is END


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=400))
def test_random_chunking_gives_the_same_frames(chunks: list[int]) -> None:
    assert frames(feed(ESP32, chunks, boundary=B)) == JPEGS


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=400))
def test_random_chunking_without_length_or_declared_boundary(chunks: list[int]) -> None:
    data = b"".join(b"--" + B + b"\nContent-Type: image/jpeg\n\n" + j + b"\n" for j in JPEGS)
    assert frames(feed(data, chunks)) == JPEGS


def test_boundary_from_content_type_variants() -> None:
    assert (
        boundary_from_content_type(
            "multipart/x-mixed-replace;boundary=123456789000000000000987654321"
        )
        == B
    )
    assert boundary_from_content_type('multipart/x-mixed-replace; Boundary="my frame"') == (
        b"my frame"
    )
    assert boundary_from_content_type("multipart/x-mixed-replace; boundary=--xyz") == b"--xyz"
    assert boundary_from_content_type("image/jpeg") is None
    assert boundary_from_content_type(None) is None


def test_boundary_learned_from_body_and_after_parts() -> None:
    events = feed(esphome_stream(JPEGS))
    assert frames(events) == JPEGS
    assert not bad(events)


def test_declared_boundary_with_leading_dashes() -> None:
    # Quirk: header says boundary=--myboundary, body uses "--myboundary".
    data = b"".join(
        b"--myboundary\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(j)
        + j
        + b"\r\n"
        for j in JPEGS
    )
    assert frames(feed(data, boundary=b"--myboundary")) == JPEGS


def test_no_content_length_lf_only_and_header_case() -> None:
    data = b"".join(b"\n--" + B + b"\ncOnTeNt-TyPe: image/jpeg\n\n" + j for j in JPEGS)
    assert frames(feed(data, boundary=B)) == JPEGS
    data = b"".join(b"\r\n--" + B + b"\r\nCONTENT-LENGTH: %d\r\n\r\n" % len(j) + j for j in JPEGS)
    assert frames(feed(data, boundary=B)) == JPEGS


def test_garbage_before_and_between_parts() -> None:
    junk = b"\x00\xffHTTP garbage -- not a boundary\r\n\xff\xd9 more junk"
    data = junk + b"".join(esp32_part(j) + junk for j in JPEGS)
    events = feed(data, boundary=B)
    assert frames(events) == JPEGS
    events = feed(b"".join(junk + b"\r\n--" + B + b"\r\n\r\n" + j for j in JPEGS))
    assert frames(events) == JPEGS


def test_exif_thumbnail_eoi_does_not_end_the_frame() -> None:
    # An APP1 segment whose payload holds FF D9 (as an EXIF thumbnail does).
    base = JPEGS[0]
    app1_payload = b"Exif\x00\x00" + make_jpeg((1, 2, 3), (8, 8))
    app1 = b"\xff\xe1" + (len(app1_payload) + 2).to_bytes(2, "big") + app1_payload
    with_exif = base[:2] + app1 + base[2:]
    data = b"\r\n--" + B + b"\r\nContent-Type: image/jpeg\r\n\r\n" + with_exif
    assert frames(feed(data, boundary=B)) == [with_exif]
    assert frames(feed(data, [7] * 2000, boundary=B)) == [with_exif]


def test_truncated_jpeg_is_skipped_and_counted() -> None:
    half = JPEGS[1][: len(JPEGS[1]) // 2]
    data = esp32_part(JPEGS[0]) + esp32_part(half) + esp32_part(JPEGS[2])
    events = feed(data, boundary=B)
    assert frames(events) == [JPEGS[0], JPEGS[2]]
    assert len(bad(events)) == 1


def test_part_shorter_than_its_content_length_does_not_lose_the_next_frame() -> None:
    # The camera dropped mid-frame and the next part began inside the declared length.
    cut = esp32_part(JPEGS[0])[:-300]
    data = cut + esp32_part(JPEGS[1]) + esp32_part(JPEGS[2]) + esp32_part(JPEGS[3])
    for chunks in (None, [1] * len(data), [7] * len(data)):  # whole, byte by byte, 7 bytes
        events = feed(data, chunks, boundary=B)
        assert frames(events) == [JPEGS[1], JPEGS[2], JPEGS[3]]
        assert [b.reason for b in bad(events)] == ["incomplete JPEG (no SOI/EOI)"]


def test_not_a_jpeg_part_is_skipped() -> None:
    data = b"\r\n--" + B + b"\r\nContent-Type: text/plain\r\n\r\nhello" + esp32_part(JPEGS[0])
    events = feed(data, boundary=B)
    assert frames(events) == [JPEGS[0]]
    assert bad(events)


def test_oversized_part_with_length_is_dropped_without_buffering() -> None:
    limit = 64 * 1024
    p = MJPEGParser(B, max_frame_bytes=limit)
    p.receive_data(b"\r\n--" + B + b"\r\nContent-Length: 50000000\r\n\r\n")
    peak = 0
    for _ in range(50_000_000 // 65536):
        p.receive_data(b"\xff" * 65536)
        assert drain(p) == []
        peak = max(peak, p.buffered)
    p.receive_data(b"\xff" * (50_000_000 % 65536) + esp32_part(JPEGS[0]))
    events = drain(p)
    assert isinstance(events[0], BadPart)
    assert "limit" in events[0].reason
    assert frames(events) == [JPEGS[0]]
    assert peak <= limit


def test_endless_part_without_length_or_boundary_stays_bounded() -> None:
    limit = 256 * 1024
    p = MJPEGParser(B, max_frame_bytes=limit)
    p.receive_data(b"\r\n--" + B + b"\r\n\r\n\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00")
    seen_bad = 0
    for _ in range(200):
        p.receive_data(bytes(range(0x7F)) * 512)
        seen_bad += len(bad(drain(p)))
        assert p.buffered <= limit + 65536
    assert seen_bad >= 1
    p.receive_data(esp32_part(JPEGS[0]))
    assert frames(drain(p)) == [JPEGS[0]]


def test_endless_garbage_without_boundary_keeps_only_a_tail() -> None:
    p = MJPEGParser(B)
    for _ in range(100):
        p.receive_data(b"x" * 65536)
        assert drain(p) == []
        assert p.buffered < len(B) + 2
    p2 = MJPEGParser()  # boundary unknown: same bound
    for _ in range(100):
        p2.receive_data(b"x" * 65536)
        assert drain(p2) == []
        assert p2.buffered <= 1


def test_receive_after_eof_is_an_error() -> None:
    p = MJPEGParser(B)
    p.receive_data(b"")
    with pytest.raises(RuntimeError):
        p.receive_data(b"more")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=2000), max_size=30), st.booleans())
def test_fuzz_never_raises_and_stays_bounded(chunks: list[bytes], declared: bool) -> None:
    limit = 4096
    p = MJPEGParser(B if declared else None, max_frame_bytes=limit)
    for c in chunks:
        p.receive_data(c)
        for e in drain(p):
            assert isinstance(e, Frame | BadPart)
            if isinstance(e, Frame):
                assert e.data[:2] == b"\xff\xd8"
        assert p.buffered <= limit + 2000 + 8192
    p.receive_data(b"")
    drain(p)
    assert p.next_event() is END


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated_esp32_stream(data: st.DataObject) -> None:
    stream = bytearray(ESP32)
    for _ in range(data.draw(st.integers(0, 8))):
        i = data.draw(st.integers(0, len(stream) - 1))
        stream[i] = data.draw(st.integers(0, 255))
    chunks = data.draw(st.lists(st.integers(1, 4000), min_size=1, max_size=50))
    events = feed(bytes(stream), chunks, boundary=B)
    # Whatever survives is a whole JPEG; at most one frame per mutation is lost.
    assert all(f[:2] == b"\xff\xd8" for f in frames(events))


def _view(events: list[Event]) -> list[tuple[str, object, object]]:
    return [
        ("frame", e.data, e.camera_ts) if isinstance(e, Frame) else ("bad", e.reason, e.size)
        for e in events
        if isinstance(e, Frame | BadPart)
    ]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_esp32_fast_path_gives_the_events_of_the_general_path(data: st.DataObject) -> None:
    """A declared boundary enables the one-match path for CameraWebServer's part head; a
    boundary learned from the body does not. Both must see the same frames and faults."""
    stream = bytearray(ESP32 * 2)
    for _ in range(data.draw(st.integers(0, 12))):
        i = data.draw(st.integers(len(B) + 8, len(stream) - 1))  # keep the first boundary
        stream[i] = data.draw(st.sampled_from([0x00, 0x20, 0x0A, 0x0D, 0x2D, 0x31, 0xFF, 0xD9]))
    chunks = data.draw(st.lists(st.integers(1, 5000), min_size=1, max_size=60))
    fast = feed(bytes(stream), chunks, boundary=B)
    general = feed(bytes(stream), chunks)
    assert _view(fast) == _view(general)
    assert len(frames(fast)) >= 2 * len(JPEGS) - 12


def test_esp32_fast_path_keeps_the_camera_timestamp() -> None:
    events = feed(esp32_part(JPEGS[0], "7.000001") + esp32_part(JPEGS[1], "7.066668"), boundary=B)
    assert [e.camera_ts for e in events if isinstance(e, Frame)] == ["7.000001", "7.066668"]


def test_camserver_keep_alive_parts_are_marked_resent() -> None:
    # camserver's own re-stream (another camserver, the Python client) read back.
    from camserver.live.mjpeg import BOUNDARY, encode_part, encode_resent
    from camserver.streaming.hub import HubFrame

    one, two = HubFrame(1, 5.5, JPEGS[0]), HubFrame(2, 6.5, JPEGS[1])
    stream = encode_part(one) + encode_resent(one) + encode_part(two) + b"--" + BOUNDARY.encode()
    for chunks in (None, [1] * len(stream)):
        got = [e for e in feed(stream, chunks, boundary=BOUNDARY.encode()) if isinstance(e, Frame)]
        assert [(f.data, f.resent, f.camera_ts) for f in got] == [
            (JPEGS[0], False, "5.500000"),
            (JPEGS[0], True, "5.500000"),
            (JPEGS[1], False, "6.500000"),
        ]
