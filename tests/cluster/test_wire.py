"""The cluster's messages (no I/O), and single-node mode never loading the cluster."""

from __future__ import annotations

import subprocess
import sys

import pytest

from camserver.cluster.wire import (
    ConfigChange,
    Keys,
    WireError,
    decode_change,
    decode_frame,
    encode_change,
    encode_frame,
)

JPEG = b"\xff\xd8" + bytes(range(256)) * 40 + b"\xff\xd9"


def test_frame_round_trip_keeps_every_field_and_byte() -> None:
    token = 1_795_625_169_822_646  # seeded from Redis' clock in microseconds
    msg = encode_frame(token, 42, 1795625169.5, "123.456", JPEG)
    assert len(msg) == 27 + len("123.456") + len(JPEG)  # header, no base64
    got = decode_frame(msg)
    assert (got.token, got.seq, got.ts, got.camera_ts, got.data) == (
        token,
        42,
        1795625169.5,
        "123.456",
        JPEG,
    )
    assert decode_frame(encode_frame(1, 1, 0.0, None, b"")).camera_ts is None


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (b"", "shorter than its header"),
        (b"\x01" * 10, "shorter than its header"),
        (b"\x02" + encode_frame(1, 1, 0.0, None, JPEG)[1:], "version 2"),
        (encode_frame(1, 1, 0.0, "abc", b"")[:-2], "cut inside its camera timestamp"),
    ],
)
def test_bad_frame_messages_are_refused_with_a_reason(message: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        decode_frame(message)


def test_config_change_round_trip_and_refusals() -> None:
    change = ConfigChange("put", "porch", 7, "n1")
    assert decode_change(encode_change(change)) == change
    # What the Lua scripts publish (cjson) decodes too.
    assert decode_change(b'{"op":"delete","name":"x","v":8,"node":"n2"}').op == "delete"
    for bad in (b"not json", b"{}", b'{"op":"drop","name":"x","v":1,"node":"n"}', b"[1]"):
        with pytest.raises(WireError):
            decode_change(bad)
    with pytest.raises(WireError):
        decode_change(b'{"op":"put","name":"x","v":"1","node":"n"}')


def test_keys_share_one_prefix_and_channels_map_back_to_streams() -> None:
    k = Keys("lab:")
    assert k.lease("porch") == "lab:lease:porch"
    assert k.frame_stream(k.frames("porch").encode()) == "porch"
    assert k.frame_stream("lab:frame:a:b") == "a:b"
    with pytest.raises(WireError):
        k.frame_stream("cs:frame:porch")
    names = {k.fence("s"), k.demand("s"), k.status("s"), k.viewers("s"), k.stream("s")}
    names |= {k.node("n"), k.streams, k.tokens, k.nodes, k.version, k.config, k.sio}
    names |= {k.alive, k.quiet}
    assert len(names) == 14
    assert all(n.startswith("lab:") for n in names)


def test_single_node_server_never_imports_the_cluster(tmp_path: object) -> None:
    """A whole single-node lifespan and a request, in a fresh interpreter."""
    code = f"""
import sys
from fastapi.testclient import TestClient
from camserver.app import create_app
from camserver.config import Settings
app = create_app(Settings(db=r"{tmp_path}/x.db", discovery_listen=False))
with TestClient(app, base_url="http://127.0.0.1") as client:
    assert client.get("/api/streams").json() == []
    assert client.get("/api/cluster").status_code == 404
loaded = sorted(m for m in sys.modules if m.startswith("camserver.cluster"))
assert loaded == [], loaded
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_sentinel_settings_and_urls_become_one_target() -> None:
    from pydantic import SecretStr

    from camserver.cluster.connect import parse_sentinel_url
    from camserver.config import Settings

    s = Settings(
        redis_sentinels="10.0.0.5:26379, 10.0.0.6:26379",
        redis_master="cams",
        redis_password=SecretStr("p@ss word"),
    )
    target = s.redis_target()
    assert target == "redis+sentinel://:p%40ss%20word@10.0.0.5:26379,10.0.0.6:26379/0/cams"
    assert s.cluster
    assert s.replica_acks() == 1
    sentinels, master, options = parse_sentinel_url(target)
    assert sentinels == [("10.0.0.5", 26379), ("10.0.0.6", 26379)]
    assert (master, options) == ("cams", {"password": "p@ss word", "db": 0})
    assert parse_sentinel_url("redis+sentinel://u:pw@[::1]:1")[1:] == (
        "camserver",
        {"username": "u", "password": "pw"},
    )
    user = Settings(
        redis_sentinels="h:1", redis_username="camserver", redis_password=SecretStr("pw")
    )
    assert user.redis_target() == "redis+sentinel://camserver:pw@h:1/0/camserver"
    one = Settings(redis_url=SecretStr("redis://:x@10.0.0.5:6379/0"))
    assert (one.redis_target(), one.replica_acks()) == ("redis://:x@10.0.0.5:6379/0", 0)
    assert Settings(redis_url=SecretStr("redis://h/0"), redis_replica_acks=2).replica_acks() == 2
    assert Settings().redis_target() is None
    assert not Settings().cluster
    with pytest.raises(ValueError, match="redis\\+sentinel"):
        parse_sentinel_url("redis://h:1/0")


def test_a_newer_node_or_stored_configuration_makes_a_node_serve_only() -> None:
    from camserver.cluster.wire import VERSION, describe_node, outdated

    me = describe_node("127.0.0.1:8000", ["cam0"], 3, 1.0, True)
    assert (me["wire"], me["cameras"], me["pulls"]) == (VERSION, ["cam0"], True)
    assert outdated({"n1": me, "n2": {"address": "x"}}, VERSION) is None  # (no "wire": 1)
    why = outdated({"n1": me, "n9": {**me, "wire": VERSION + 1}}, VERSION)
    assert why is not None
    assert f"node n9 speaks cluster version {VERSION + 1}" in why
    why = outdated({"n1": me}, VERSION + 2)
    assert why is not None
    assert f"stored configuration is version {VERSION + 2}" in why
