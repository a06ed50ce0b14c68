"""Wiring cluster mode into a running server (called by ``camserver.runtime`` only when
``CAMSERVER_REDIS_URL`` is set, so single-node servers never import this package)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack

from camserver.access import TokenChecker
from camserver.cluster.backend import Backend
from camserver.cluster.node import Cluster
from camserver.cluster.placement import ClusterPlacement
from camserver.cluster.store import ConfigFeed, RedisStore
from camserver.cluster.wire import Keys
from camserver.config import Settings
from camserver.errors import ClusterUnavailable
from camserver.streaming.registry import StreamRegistry
from camserver.tokens import ManagedToken

__all__ = ["join", "open_store"]

log = logging.getLogger(__name__)


async def open_store(stack: AsyncExitStack, settings: Settings) -> RedisStore:
    target = settings.redis_target()
    assert target is not None
    backend = Backend(
        target,
        Keys(settings.redis_prefix),
        settings.effective_node_id(),
        replica_acks=settings.replica_acks(),
    )
    stack.push_async_callback(backend.close)
    try:
        await backend.call("ping", backend.redis.ping)
    except ClusterUnavailable as exc:
        # The node starts anyway and catches up when Redis answers (ConfigFeed resyncs).
        log.error("cluster: %s", exc)
    return RedisStore(backend)


async def join(
    stack: AsyncExitStack,
    settings: Settings,
    store: RedisStore,
    manager: StreamRegistry,
    checker: TokenChecker,
) -> Cluster:
    """Start this node's part: config feed, frame relay, leases, heartbeat."""
    backend = store.backend
    feed = ConfigFeed(
        backend,
        store,
        manager.apply_remote,
        manager.drop_remote,
        manager.names,
        _tokens_into(checker),
        lambda: ([manager.config(n) for n in manager.names()], list(checker.managed.values())),
    )
    cluster = Cluster(
        backend,
        manager,
        feed,
        address=f"{settings.host}:{settings.port}",
        lease_ttl=settings.lease_ttl,
        pulls=settings.cluster_pull,
        grace=settings.on_demand_grace,
    )
    manager.placement = ClusterPlacement(cluster)
    cluster.start()
    stack.push_async_callback(cluster.close)
    if backend.sentinel is not None:
        watch = asyncio.create_task(backend.watch_master(settings.lease_ttl), name="redis-master")
        stack.callback(watch.cancel)
    log.info(
        "cluster mode: node %s on Redis %s (prefix %r)",
        backend.node,
        backend.safe_url,
        settings.redis_prefix,
    )
    return cluster


def _tokens_into(checker: TokenChecker) -> Callable[[list[ManagedToken]], None]:
    """A feed callback that replaces ``checker``'s managed tokens."""

    def load(tokens: list[ManagedToken]) -> None:
        checker.managed = {t.hash: t for t in tokens}

    return load
