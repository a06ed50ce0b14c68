"""The shipped cluster deployment files agree with each other and with what the tests run
(the tests start redis-server and haproxy from these very files)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def test_compose_cluster_profile_wires_redis_nodes_and_haproxy() -> None:
    services = compose()["services"]
    assert "profiles" not in services["camserver"]  # `docker compose up` stays one node
    cluster = {name for name, s in services.items() if "cluster" in s.get("profiles", [])}
    redis = {"redis", "redis-replica", "sentinel1", "sentinel2", "sentinel3"}
    assert cluster == redis | {"node1", "node2", "node3", "lb"}
    sentinels = []
    for name in redis:
        s = services[name]
        # The shipped files, started by the shipped script (which the Sentinel test runs).
        assert "./deploy/cluster:/usr/local/etc/redis:ro" in s["volumes"]
        assert s["entrypoint"] == ["sh", "/usr/local/etc/redis/start-redis.sh"]
        assert set(s["environment"]) >= {
            "CAMSERVER_REDIS_PASSWORD",
            "REDIS_REPLICA_PASSWORD",
            "REDIS_SENTINEL_PASSWORD",
            "REDIS_ADMIN_PASSWORD",
        }
        assert s["command"][0] == ("sentinel" if name.startswith("sentinel") else "server")
        if name.startswith("sentinel"):
            sentinels.append(f"{name}:26379")
    assert services["redis-replica"]["command"][-3:] == ["--replicaof", "redis", "6379"]
    assert len({str(services[n]["volumes"]) for n in redis}) == len(redis)  # own data each
    ids = set()
    for name in ("node1", "node2", "node3"):
        env = services[name]["environment"]
        assert sorted(env["CAMSERVER_REDIS_SENTINELS"].split(",")) == sorted(sentinels)
        assert env["CAMSERVER_REDIS_USERNAME"] == "camserver"
        assert env["CAMSERVER_REDIS_PASSWORD"] == "${CAMSERVER_REDIS_PASSWORD}"
        ids.add(env["CAMSERVER_NODE_ID"])
        # The recorder writes where every node reads (docs/recording.md, cluster mode).
        assert env["CAMSERVER_RECORDINGS_DIR"] == "/recordings"
        assert "recordings:/recordings" in services[name]["volumes"]
    assert ids == {"n1", "n2", "n3"}  # one id per node
    lb = services["lb"]
    assert "./deploy/cluster/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in lb["volumes"]
    assert {lb["environment"][f"CS_NODE{i}"] for i in (1, 2, 3)} == {
        f"node{i}:8000" for i in (1, 2, 3)
    }


def test_redis_conf_keeps_changes_and_fits_video() -> None:
    lines = {
        line.split(None, 1)[0]: line.split(None, 1)[1]
        for line in (ROOT / "deploy/cluster/redis.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert lines["appendonly"] == "yes"
    assert lines["appendfsync"] == "everysec"
    assert lines["client-output-buffer-limit"] == "pubsub 64mb 16mb 10"
    assert lines["bind"].startswith("127.0.0.1")


@pytest.mark.requires("haproxy")
def test_haproxy_cfg_is_valid_and_checks_health_with_a_host_header() -> None:
    cfg = ROOT / "deploy/cluster/haproxy.cfg"
    env = {**os.environ, "CS_BIND": "127.0.0.1:1"}
    env.update({f"CS_NODE{i}": f"127.0.0.1:{i + 1}" for i in (1, 2, 3)})
    out = subprocess.run(
        ["haproxy", "-c", "-f", str(cfg)], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = cfg.read_text()
    assert "hdr Host" in text  # camserver refuses requests without a Host header
    assert "cookie" not in text  # WebSocket-only Socket.IO needs no sticky sessions
