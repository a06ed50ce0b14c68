"""Connections to the cluster's Redis: one server (``redis://``, ``rediss://``) or the
master that Redis Sentinel names (``redis+sentinel://[user:password@]host:port,host:port/db/
master``, the form python-socketio's AsyncRedisManager reads too), for asyncio and for the
blocking callers (the recording index and motion events' worker threads). Through Sentinel,
every new connection asks the sentinels for the master, so after a failover the clients
reconnect to the new master by themselves."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.sentinel import Sentinel

from camserver.config import Settings
from camserver.errors import ConfigError

__all__ = ["OPTIONS", "async_client", "check_login", "parse_sentinel_url", "sync_client"]

# Commands must fail fast when Redis is away: a lease renewal that waits longer than the
# lease is worse than useless.
OPTIONS: dict[str, Any] = {
    "socket_timeout": 1.0,
    "socket_connect_timeout": 1.0,
    "health_check_interval": 5,
    # RESP2: redis-py 8's RESP3 parser formats every pub/sub message for a debug log line,
    # logged or not (`"Push response: " + str(response)` in resp3.py): about half of what
    # receiving a 25 KB frame cost a node (py-spy, bench/cluster.py).
    "protocol": 2,
}


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """``redis+sentinel://[user:password@]host:port,host:port[/db[/master]]`` → the
    sentinels, the master's name (default ``camserver``) and the servers' connection options
    (python-socketio's AsyncRedisManager reads the same form)."""
    parts = urlsplit(url)
    if parts.scheme != "redis+sentinel":
        raise ValueError("not a redis+sentinel:// URL")
    auth, _, hosts = parts.netloc.rpartition("@")
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        sentinels.append((host.strip("[]"), int(port)))
    options: dict[str, Any] = {}
    user, _, password = auth.partition(":")
    if user:
        options["username"] = unquote(user)
    if password:
        options["password"] = unquote(password)
    path = [p for p in parts.path.split("/") if p]
    if path:
        options["db"] = int(path[0])
    return sentinels, path[1] if len(path) > 1 else "camserver", options


def async_client(url: str) -> tuple[aioredis.Redis, AsyncSentinel | None, str]:
    """The asyncio client for ``url``, and the Sentinel and master name behind it (if any)."""
    if not url.startswith("redis+sentinel://"):
        return aioredis.Redis.from_url(url, **OPTIONS), None, ""
    sentinels, master, options = parse_sentinel_url(url)
    sentinel = AsyncSentinel(sentinels, sentinel_kwargs=_sentinel_options(), **OPTIONS, **options)
    return sentinel.master_for(master), sentinel, master


def sync_client(url: str, **extra: Any) -> redis.Redis:
    """The blocking client for ``url`` (no health checks: short commands from threads)."""
    options = {k: v for k, v in OPTIONS.items() if k != "health_check_interval"} | extra
    if not url.startswith("redis+sentinel://"):
        return redis.Redis.from_url(url, **options)
    sentinels, master, auth = parse_sentinel_url(url)
    sentinel = Sentinel(sentinels, sentinel_kwargs=_sentinel_options(), **options, **auth)
    client: redis.Redis = sentinel.master_for(master)
    return client


def _sentinel_options() -> dict[str, Any]:
    return {k: v for k, v in OPTIONS.items() if k.startswith("socket_")}


def _password(url: str) -> str:
    if url.startswith("redis+sentinel://"):
        return str(parse_sentinel_url(url)[2].get("password", ""))
    return unquote(urlsplit(url).password or "")


def check_login(settings: Settings) -> None:
    """ConfigError naming the setting when the cluster's Redis refuses the password (or
    wants one); any other failure (Redis not up yet) is left to the node, which waits for
    Redis and catches up."""
    target = settings.redis_target()
    assert target is not None
    where = "CAMSERVER_REDIS_PASSWORD" if settings.redis_sentinels else "CAMSERVER_REDIS_URL"
    if _password(target).startswith("CHANGE-ME"):
        raise ConfigError(
            f"the Redis password in {where} is still a placeholder of the shipped configuration "
            "(deploy/cluster/users.acl): set one of your own there and here"
        )
    client = sync_client(target)
    try:
        client.ping()
    except (AuthenticationError, ResponseError) as exc:
        reason = str(exc).split("\n")[0][:120]  # Redis' own words, never the password
        if "required" in reason.lower() or "NOAUTH" in reason:
            raise ConfigError(
                f"the cluster's Redis wants a password ({reason}): give it in {where}"
            ) from None
        if isinstance(exc, AuthenticationError) or "WRONGPASS" in reason:
            raise ConfigError(
                f"the cluster's Redis refused the login ({reason}): check the password in {where}"
            ) from None
    except (RedisError, OSError):
        pass
    finally:
        client.close()
