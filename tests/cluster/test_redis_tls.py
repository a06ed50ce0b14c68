"""Cluster mode over TLS (issue 31, Must show 4, middle part): redis-server on a TLS port only
(a certificate of a test CA made here with openssl), two nodes with
``rediss://...?ssl_ca_certs=`` (the frame relay, the configuration, the socket.io manager,
the blocking clients): a camera pulled by one node reaches viewers on both."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import REDIS_CONF, Cluster, ClusterFactory, frames_of
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.requires("redis-server", "openssl")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[str]:
    d = tmp_path / "tls"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             "/CN=camserver test CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "redis.key", "-out", "redis.csr", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "redis.crt",
             cwd=d)  # fmt: skip
    conf = d / "redis.conf"
    conf.write_text(REDIS_CONF.read_text())
    port = free_port()
    proc = subprocess.Popen(
        [
            *("redis-server", str(conf), "--port", "0", "--tls-port", str(port)),
            *("--tls-cert-file", str(d / "redis.crt"), "--tls-key-file", str(d / "redis.key")),
            *("--tls-ca-cert-file", str(d / "ca.crt"), "--tls-auth-clients", "no"),
            *("--bind", "127.0.0.1", "--dir", str(d)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    yield f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={d / 'ca.crt'}"
    proc.kill()
    proc.wait(10)


async def test_a_cluster_over_tls_relays_frames_to_every_node(
    make_cluster: ClusterFactory, tls_redis: str
) -> None:
    c: Cluster = await make_cluster(nodes=2, cams=1, redis_urls={"n1": tls_redis, "n2": tls_redis})
    await c.add_streams()
    viewers = [await c.viewer(i, "cam0") for i in range(2)]
    await wait_for(
        lambda: all(len(frames_of(v, "cam0")) >= 20 for v in viewers),
        20,
        what="frames on both nodes over TLS",
    )
    info = (await c.http.get(c.url(0) + "/api/cluster")).json()
    assert info["redis"]["reachable"] is True
    assert info["redis"]["url"].startswith("rediss://")
    assert sorted(n["id"] for n in info["nodes"]) == ["n1", "n2"]
    assert c.max_clients() == [1]
