"""Long fuzzing run of the MJPEG parser and the discovery codec (hypothesis), beyond what the
test suite does. Stops by itself.

    .venv/bin/python scripts/fuzz.py --minutes 10

Invariants checked on every input: nothing raises but the parser's own RuntimeError for
misuse; frames are whole JPEGs; the parser never holds more than the frame limit plus one
read; discovery events are sane.
"""

from __future__ import annotations

import argparse
import io
import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from camserver.codecs.mjpeg import END, NEED_DATA, BadPart, Frame, MJPEGParser
from camserver.discovery.codec import Announcement, DiscoveryCodec, Probe, Rejected

B = b"123456789000000000000987654321"
LIMIT = 8192


def _jpeg(i: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (i * 50 % 256, 0, 0)).save(out, "JPEG")
    return out.getvalue()


SEED = b"".join(
    b"\r\n--" + B + b"\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(j) + j
    for j in map(_jpeg, range(4))
)

chunks = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=3000),
        st.sampled_from([SEED, SEED[:100], B, b"\r\n--" + B + b"\r\n", b"\xff\xd8", b"\xff\xd9"]),
    ),
    max_size=40,
)


def check_parser(parts: list[bytes], declared: bool) -> None:
    p = MJPEGParser(B if declared else None, max_frame_bytes=LIMIT)
    for part in parts:
        p.receive_data(part)
        while (e := p.next_event()) is not NEED_DATA:
            assert isinstance(e, Frame | BadPart), e
            if isinstance(e, Frame):
                assert e.data[:2] == b"\xff\xd8"
                assert len(e.data) <= LIMIT
        assert p.buffered <= LIMIT + len(part) + 8192
    p.receive_data(b"")
    while p.next_event() is not END:
        pass


def check_codec(data: bytes) -> None:
    codec = DiscoveryCodec(rate=10**9)
    codec.receive_datagram(data, ("10.0.0.1", 8888), 0.0)
    e = codec.next_event()
    assert isinstance(e, Probe | Announcement | Rejected)
    if isinstance(e, Announcement):
        assert e.ip == "10.0.0.1"
        assert 1 <= e.port <= 65535
        assert 1 <= e.stream_port <= 65535
        assert 0 < len(e.name) <= 64


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=100),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=10,
)
datagrams = st.one_of(
    st.binary(max_size=1100),
    st.dictionaries(
        st.sampled_from(["camera", "ip", "port", "stream_port", "mac", "model", "fw"]),
        json_values,
    ).map(lambda d: json.dumps(d).encode()),
    st.text(max_size=40).map(lambda t: f"ESP32_CAMERA:{t}".encode()),
)


def main() -> None:
    ap = argparse.ArgumentParser(description="long fuzzing run")
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    budget = args.minutes * 60 / 2
    config = settings(
        max_examples=2000,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    parser_test = settings(config)(given(chunks, st.booleans())(check_parser))
    codec_test = settings(config)(given(datagrams)(check_codec))
    for name, test in (("mjpeg parser", parser_test), ("discovery codec", codec_test)):
        start = time.monotonic()
        count = 0
        # Rounds of 2000 inputs, so the time budget is respected.
        while time.monotonic() - start < budget:
            test()
            count += 2000
        print(f"{name}: {count} inputs in {time.monotonic() - start:.0f} s, no failure")


if __name__ == "__main__":
    main()
