"""NetworkGuard on its own: literals, names that resolve, names that do not, and the
empty list that allows everything."""

from __future__ import annotations

import re
from ipaddress import ip_network

import pytest

from camserver.errors import TargetNotAllowed
from camserver.netguard import NetworkGuard

LOOPBACK = NetworkGuard([ip_network("127.0.0.0/8")])


async def test_no_networks_allows_anything() -> None:
    guard = NetworkGuard([])
    assert guard.enabled is False
    await guard.check("http://203.0.113.5/")
    await guard.check("http://no-such-host.invalid/")  # not even resolved


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/", "http://127.8.9.10:81/stream", "http://localhost:8080/"]
)
async def test_inside_is_allowed(url: str) -> None:
    await LOOPBACK.check(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.0.0.1/", "outside the allowed networks (127.0.0.0/8)"),
        ("http://[::1]/", "outside"),
        ("http://[::ffff:10.0.0.1]/", "outside"),
        ("http://no-such-host.invalid/", "cannot resolve"),
    ],
)
async def test_outside_or_unknown_is_refused(url: str, why: str) -> None:
    with pytest.raises(TargetNotAllowed, match=re.escape(why)):
        await LOOPBACK.check(url)


async def test_v6_networks() -> None:
    guard = NetworkGuard([ip_network("::1/128"), ip_network("fd00::/8")])
    await guard.check("http://[::1]:81/")
    await guard.check("http://[fd12::5]/")
    with pytest.raises(TargetNotAllowed):
        await guard.check("http://127.0.0.1/")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud instance metadata
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://224.0.0.1/",
        "http://0.0.0.0:81/stream",
        "http://[::]/",
    ],
)
async def test_without_a_list_link_local_multicast_and_unspecified_are_refused(url: str) -> None:
    with pytest.raises(TargetNotAllowed, match="link-local, multicast or unspecified"):
        await NetworkGuard([]).check(url)
    # Listed explicitly, they are allowed.
    await NetworkGuard([ip_network("0.0.0.0/0"), ip_network("::/0")]).check(url)


async def test_pin_connects_to_the_checked_address_and_keeps_the_name() -> None:
    target = await LOOPBACK.pin("http://localhost:8081/stream?x=1")
    assert target.url == "http://127.0.0.1:8081/stream?x=1"
    assert target.headers == {"Host": "localhost:8081"}
    assert target.extensions == {}
    tls = await LOOPBACK.pin("https://localhost/capture")
    assert (tls.url, tls.headers, tls.extensions) == (
        "https://127.0.0.1/capture",
        {"Host": "localhost"},
        {"sni_hostname": "localhost"},
    )
    literal = await LOOPBACK.pin("http://127.0.0.5:81/stream")
    assert (literal.url, literal.headers) == ("http://127.0.0.5:81/stream", {})
