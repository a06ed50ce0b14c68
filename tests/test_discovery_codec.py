"""The discovery codec (no sockets) and interface selection."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camserver.config import Settings
from camserver.discovery.codec import (
    MAX_DATAGRAM,
    NEED_DATA,
    PROBE,
    Announcement,
    DiscoveryCodec,
    Event,
    Probe,
    Rejected,
    encode_announcement,
    encode_legacy_announcement,
    safe_name,
)
from camserver.discovery.interfaces import Interface, list_interfaces, select_interfaces

SRC = ("192.168.1.50", 8888)


def parse(data: bytes, source: tuple[str, int] = SRC, codec: DiscoveryCodec | None = None) -> Event:
    codec = codec or DiscoveryCodec()
    codec.receive_datagram(data, source, 0.0)
    event = codec.next_event()
    assert codec.next_event() is NEED_DATA
    return event


def test_probe() -> None:
    assert parse(PROBE) == Probe(SRC)
    assert parse(b"DISCOVER_CAMERAS\r\n") == Probe(SRC)


def test_legacy_announcement() -> None:
    e = parse(encode_legacy_announcement("192.168.1.50", 80))
    assert isinstance(e, Announcement)
    assert (e.name, e.ip, e.port, e.stream_port, e.legacy) == (
        "esp32-192-168-1-50",
        "192.168.1.50",
        80,
        81,
        True,
    )
    assert e.claimed_ip is None
    e = parse(b"ESP32_CAMERA:192.168.1.50:8080")
    assert isinstance(e, Announcement)
    assert (e.name, e.port, e.stream_port) == ("esp32-192-168-1-50-8080", 8080, 8081)


def test_json_announcement() -> None:
    data = encode_announcement(
        "ESP32-CAM 1A2B",
        "192.168.1.50",
        80,
        81,
        mac="24:0a:c4:00:1a:2b",
        model="AI-Thinker",
        fw="2.0.14",
    )
    e = parse(data)
    assert isinstance(e, Announcement)
    assert e.name == "esp32-cam-1a2b"
    assert (e.ip, e.port, e.stream_port, e.legacy) == ("192.168.1.50", 80, 81, False)
    assert (e.mac, e.model, e.fw) == ("24:0a:c4:00:1a:2b", "AI-Thinker", "2.0.14")
    # Minimal: only the port; the stream port follows the firmware rule.
    e = parse(b'{"port": 8080}')
    assert isinstance(e, Announcement)
    assert (e.name, e.stream_port) == ("esp32-192-168-1-50-8080", 8081)


def test_claimed_address_is_flagged_and_ignored() -> None:
    e = parse(encode_announcement("cam", "10.0.0.99", 80, 81))
    assert isinstance(e, Announcement)
    assert e.ip == "192.168.1.50"
    assert e.claimed_ip == "10.0.0.99"
    e = parse(b"ESP32_CAMERA:10.0.0.99:80")
    assert isinstance(e, Announcement)
    assert (e.ip, e.claimed_ip) == ("192.168.1.50", "10.0.0.99")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"x" * (MAX_DATAGRAM + 1), "oversize"),
        (b"\xff\xfe\x00garbage", "not_utf8"),
        (b"{not json", "bad_json"),
        (b"[1, 2]", "unknown"),
        (b'{"camera": "c"} trailing', "bad_json"),
        (b"HELLO", "unknown"),
        (b"", "unknown"),
        (b"ESP32_CAMERA:192.168.1.50:0", "bad_port"),
        (b"ESP32_CAMERA:192.168.1.50:65535", "bad_port"),
        (b"ESP32_CAMERA:192.168.1.50:http", "bad_port"),
        (b"ESP32_CAMERA:192.168.1.50", "bad_port"),
        (b"ESP32_CAMERA:not-an-ip:80", "bad_ip"),
        (b'{"port": 70000}', "bad_port"),
        (b'{"port": true}', "bad_port"),
        (b'{"port": 80, "stream_port": -1}', "bad_port"),
        (b'{"ip": 5}', "bad_ip"),
        (b'{"ip": "999.1.1.1"}', "bad_ip"),
        (b'{"mac": ["x"]}', "bad_fields"),
        (json.dumps({"model": "m" * 100}).encode(), "bad_fields"),
        (json.dumps({"camera": 7}).encode(), "bad_fields"),
    ],
)
def test_bad_datagrams_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    e = parse(data)
    assert isinstance(e, Rejected), e
    assert e.reason == reason
    assert e.source == SRC


def test_flood_from_one_source_is_rate_limited_per_source() -> None:
    codec = DiscoveryCodec(rate=10, per=1.0)
    for i in range(25):
        codec.receive_datagram(PROBE, SRC, 0.01 * i)
    codec.receive_datagram(PROBE, ("192.168.1.51", 1), 0.3)
    events = []
    while (e := codec.next_event()) is not NEED_DATA:
        events.append(e)
    limited = [e for e in events if isinstance(e, Rejected) and e.reason == "rate_limited"]
    assert len(limited) == 15
    assert isinstance(events[-1], Probe)  # another source is not affected
    codec.receive_datagram(PROBE, SRC, 5.0)  # a second later the source may speak again
    assert isinstance(codec.next_event(), Probe)


def test_name_sanitising() -> None:
    assert safe_name("  Porch Cam #1 ") == "porch-cam-1"
    assert safe_name("--__--") == ""
    assert len(safe_name("x" * 200)) == 64
    e = parse(json.dumps({"camera": "!!!", "port": 80}).encode())
    assert isinstance(e, Announcement)
    assert e.name == "esp32-192-168-1-50"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=MAX_DATAGRAM + 10))
def test_fuzz_bytes_never_raise(data: bytes) -> None:
    assert isinstance(parse(data), Probe | Announcement | Rejected)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["camera", "ip", "port", "stream_port", "mac", "model", "fw", "x"]),
        st.none() | st.booleans() | st.integers() | st.text(max_size=80) | st.floats(),
    )
)
def test_fuzz_json_never_raises_and_announcements_are_sane(body: dict[str, object]) -> None:
    e = parse(json.dumps(body).encode())
    assert isinstance(e, Announcement | Rejected)
    if isinstance(e, Announcement):
        assert 1 <= e.port <= 65535
        assert 1 <= e.stream_port <= 65535
        assert e.ip == SRC[0]
        assert e.name
        assert len(e.name) <= 64


IFACES = [
    Interface("lo", "127.0.0.1", "255.0.0.0", "127.255.255.255", True),
    Interface("eth0", "192.168.1.10", "255.255.255.0", "192.168.1.255", False),
    Interface("wlan0", "10.0.0.5", "255.255.255.0", "10.0.0.255", False),
    Interface("docker0", "172.17.0.1", "255.255.0.0", "172.17.255.255", False),
    Interface("veth12ab", "172.18.0.1", "255.255.0.0", "172.18.255.255", False),
    Interface("vEthernet (WSL)", "172.20.0.1", "255.255.240.0", "172.20.15.255", False),
    Interface("wan", "93.184.216.34", "255.255.255.0", "93.184.216.255", False),
    Interface("ll", "169.254.3.3", "255.255.0.0", "169.254.255.255", False),
]


def test_auto_picks_private_non_virtual_interfaces() -> None:
    assert [i.name for i in select_interfaces("auto", IFACES)] == ["eth0", "wlan0"]


def test_named_interfaces_and_none() -> None:
    assert [i.name for i in select_interfaces("lo", IFACES)] == ["lo"]
    assert [i.name for i in select_interfaces(" lo , wlan0 ", IFACES)] == ["lo", "wlan0"]
    assert select_interfaces("none", IFACES) == []
    assert select_interfaces("", IFACES) == []
    with pytest.raises(ValueError, match="no usable IPv4 interface named nope"):
        select_interfaces("lo,nope", IFACES)


def test_loopback_is_found_with_a_computed_broadcast() -> None:
    lo = [i for i in list_interfaces() if i.name == "lo"]
    assert lo
    assert lo[0].broadcast == "127.255.255.255"  # psutil gives none for lo: computed


def test_demo_keeps_discovery_on_loopback_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAMSERVER_DISCOVERY_INTERFACES", raising=False)
    assert Settings(demo=2).effective_discovery_interfaces() == "lo"
    assert Settings().effective_discovery_interfaces() == "auto"
    monkeypatch.setenv("CAMSERVER_DISCOVERY_INTERFACES", "none")
    assert Settings(demo=2).effective_discovery_interfaces() == "none"
