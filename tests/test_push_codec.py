"""The push protocol's sans-I/O part (issue 28): messages in, frames/telemetry/refusals out."""

from __future__ import annotations

import json

import pytest

from camserver.codecs.push import (
    MAX_TELEMETRY_BYTES,
    BadMessage,
    PushedFrame,
    RateCap,
    Telemetry,
    classify,
    next_in,
    overdue,
    pause_message,
    set_message,
)

JPEG = b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9"


def test_a_binary_message_is_a_frame_when_it_is_a_whole_jpeg_under_the_cap() -> None:
    assert classify(JPEG, 1000) == PushedFrame(JPEG)
    assert classify(JPEG + b"\r\n", 1000) == PushedFrame(JPEG + b"\r\n")  # padding after EOI
    cut = classify(JPEG[:50], 1000)
    assert isinstance(cut, BadMessage)
    assert "whole JPEG" in cut.reason
    assert not cut.too_big
    big = classify(JPEG, 50)
    assert isinstance(big, BadMessage)
    assert big.too_big
    assert "over the cap of 50" in big.reason
    assert isinstance(classify(b"", 1000), BadMessage)
    assert isinstance(classify(b"GARBAGE" * 10, 1000), BadMessage)


def test_a_text_message_is_telemetry_of_short_scalars() -> None:
    got = classify('{"battery_v": 3.71, "rssi": -67, "heap": 51234, "ok": true, "fw": "1.2"}', 10)
    assert got == Telemetry(
        {"battery_v": 3.71, "rssi": -67, "heap": 51234, "ok": True, "fw": "1.2"}
    )
    assert classify("{}", 10) == Telemetry({})


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"a": {"nested": 1}}', "must be a number"),
        ('{"a": [1]}', "must be a number"),
        ('{"a": NaN}', "finite"),
        ('{"a": Infinity}', "finite"),
        (json.dumps({"k" * 65: 1}), "key over 64"),
        (json.dumps({"a": "x" * 129}), "over 128 characters"),
        (json.dumps({f"k{i}": i for i in range(33)}), "over 32 keys"),
    ],
)
def test_bad_telemetry_is_refused_with_the_reason(text: str, why: str) -> None:
    got = classify(text, 10)
    assert isinstance(got, BadMessage)
    assert why in got.reason


def test_telemetry_over_its_cap_is_too_big() -> None:
    got = classify(json.dumps({"a": "x" * MAX_TELEMETRY_BYTES}), 10)
    assert isinstance(got, BadMessage)
    assert got.too_big


def test_server_messages() -> None:
    assert json.loads(set_message({"framesize": 11, "quality": 12})) == {
        "set": {"framesize": 11, "quality": 12}
    }
    assert json.loads(pause_message(True)) == {"pause": True}
    assert json.loads(pause_message(False)) == {"pause": False}


def test_next_in_and_overdue_follow_the_expected_interval() -> None:
    assert next_in(None, 100.0, 101.0) is None
    assert next_in(5.0, None, 101.0) == 5.0
    assert next_in(5.0, 100.0, 101.0) == 4.0
    assert next_in(5.0, 100.0, 107.0) == 0.0  # late: wake at once
    assert not overdue(None, 100.0, 1000.0)
    assert not overdue(5.0, None, 1000.0)  # never posted yet: waiting, not overdue
    assert not overdue(5.0, 100.0, 110.0)  # two intervals: still on time
    assert overdue(5.0, 100.0, 110.1)


def test_the_rate_cap_passes_the_rate_and_drops_beyond_it() -> None:
    cap = RateCap(fps=30)
    # 200 fps for 2 s: about 30 a second pass (plus the first burst).
    passed = sum(cap.allow(i / 200) for i in range(400))
    assert 60 <= passed <= 60 + cap.burst + 1
    # At the rate itself, everything passes.
    steady = RateCap(fps=30)
    assert all(steady.allow(i / 30) for i in range(300))
    with pytest.raises(ValueError, match="fps"):
        RateCap(fps=0)


def test_frame_sizes_by_name_or_number_as_a_pushing_camera_is_told() -> None:
    from camserver.schema.esp32 import FRAMESIZE_NAMES, framesize_number

    assert FRAMESIZE_NAMES[10] == "VGA"
    assert FRAMESIZE_NAMES[11] == "SVGA"
    assert framesize_number("SVGA") == 11
    assert framesize_number(" svga ") == 11
    assert framesize_number(10) == 10
    for bad in ("XXL", 16, -1, True, 10.0, None):
        assert framesize_number(bad) is None
