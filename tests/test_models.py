"""The API's data shapes on their own: host and URL rules, and what a patch changes."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from camserver.schema import StreamConfig, StreamCreate, StreamPatch, check_url, urls_for_host


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (
            "192.0.2.5",
            ("192.0.2.5:80", "http://192.0.2.5:80/capture", "http://192.0.2.5:81/stream"),
        ),
        (
            "cam.local:8080",
            ("cam.local:8080", "http://cam.local:8080/capture", "http://cam.local:8081/stream"),
        ),
        (
            " 10.0.0.1:65534 ",
            ("10.0.0.1:65534", "http://10.0.0.1:65534/capture", "http://10.0.0.1:65535/stream"),
        ),
        ("::1", ("[::1]:80", "http://[::1]:80/capture", "http://[::1]:81/stream")),
        (
            "[fd00::2]:88",
            ("[fd00::2]:88", "http://[fd00::2]:88/capture", "http://[fd00::2]:89/stream"),
        ),
    ],
)
def test_urls_for_host(host: str, expected: tuple[str, str, str]) -> None:
    assert urls_for_host(host) == expected


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("10.0.0.1:65535", "from 1 to 65534 (the stream is served on port + 1)"),
        ("10.0.0.1:0", "from 1 to 65534"),
        ("10.0.0.1:http", "from 1 to 65534"),
        ("10.0.0.1:8²", "from 1 to 65534"),
        ("http://10.0.0.1", "give a full URL as stream_url"),
        ("[::1", "unclosed"),
        ("[::1]x", "expected ':port'"),
        ("bad host", "not a valid host name"),
        ("xn--", "invalid host name"),
    ],
)
def test_bad_hosts_say_why(host: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        urls_for_host(host)


def test_an_announced_stream_port_lifts_the_port_rule() -> None:
    assert urls_for_host("10.0.0.1:65535", stream_on=8081)[2] == "http://10.0.0.1:8081/stream"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://x/", "must start with http"),
        ("http:///x", "has no host"),
        ("http://x:99999/", "not a valid URL"),
        ("http://x/a b", "must not contain spaces"),
        ("http://" + "a" * 2050, "longer than 2048"),
    ],
)
def test_bad_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_url(url, "stream_url")


def test_create_needs_exactly_one_source() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        StreamCreate(name="a")
    with pytest.raises(ValidationError, match="exactly one"):
        StreamCreate(name="a", host="10.0.0.1", stream_url="http://x/")
    with pytest.raises(ValidationError, match="derived from host"):
        StreamCreate(name="a", host="10.0.0.1", snapshot_url="http://x/")
    with pytest.raises(ValidationError):
        StreamCreate(name="Not OK", host="10.0.0.1")
    cfg = StreamCreate(name="a", host="10.0.0.1", username="u", password="p").to_config()
    assert (cfg.stream_url, cfg.password) == ("http://10.0.0.1:81/stream", "p")
    assert "password" not in cfg.model_dump()


def test_patch_apply() -> None:
    cfg = StreamConfig.for_host("a", "10.0.0.1").model_copy(
        update={"username": "u", "password": "p"}
    )
    assert StreamPatch().apply(cfg) == cfg
    moved = StreamPatch(stream_url="http://10.0.0.2/s").apply(cfg)
    assert (moved.host, moved.stream_url, moved.snapshot_url) == (None, "http://10.0.0.2/s", None)
    back = StreamPatch(host="10.0.0.3:8080").apply(moved)
    assert (back.host, back.snapshot_url) == ("10.0.0.3:8080", "http://10.0.0.3:8080/capture")
    assert StreamPatch(snapshot_url="http://s/c").apply(moved).snapshot_url == "http://s/c"
    no_login = StreamPatch(username="").apply(cfg)
    assert (no_login.username, no_login.password) == (None, None)
    flags = StreamPatch(enabled=False, on_demand=True, auth_scheme="digest").apply(cfg)
    assert (flags.enabled, flags.on_demand, flags.auth_scheme) == (False, True, "digest")
    with pytest.raises(ValidationError, match="not both"):
        StreamPatch(host="10.0.0.1", stream_url="http://x/")
