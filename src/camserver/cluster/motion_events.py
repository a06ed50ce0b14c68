"""Motion events in the cluster's Redis, so every node lists every node's events (the
snapshots are files in the recordings folder the nodes share).

Keys (under the cluster's prefix): ``ev:id`` (the last id), ``ev:<id>`` (a hash),
``ev:all`` and ``ev:s:<stream>`` (ids by start time), ``ev:open`` (events going on).
Blocking redis-py client, called from worker threads, failing within a second when Redis
is away (a :class:`~camserver.errors.MotionError`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis
from redis.exceptions import RedisError

from camserver.cluster.wire import Keys
from camserver.errors import MotionError
from camserver.motion.events import MotionEvent

__all__ = ["RedisEvents"]

T = TypeVar("T")

LONGEST = 86400.0
"""How far before a range ``between`` looks for events still overlapping it."""


def _event(eid: int, h: dict[bytes, bytes]) -> MotionEvent | None:
    if not h:
        return None
    end = h.get(b"end", b"")
    snapshot = h.get(b"snapshot", b"").decode()
    return MotionEvent(
        id=eid,
        stream=h.get(b"stream", b"").decode(),
        start=float(h.get(b"start", 0)),
        end=float(end) if end else None,
        peak_area=float(h.get(b"peak_area", 0)),
        snapshot=snapshot or None,
    )


class RedisEvents:
    """:class:`~camserver.motion.events.EventStore` on Redis."""

    def __init__(self, url: str, keys: Keys, node: str) -> None:
        self.node = node
        self._node_key = keys.node
        self._p = keys.prefix + "ev:"
        self._r = redis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, protocol=2
        )

    def _run(self, step: Callable[[], T]) -> T:
        try:
            return step()
        except (RedisError, OSError) as exc:
            raise MotionError(f"motion events (Redis): {exc}") from exc

    def _load(self, raw: Iterable[Any]) -> list[MotionEvent]:
        ids = [int(i) for i in raw]
        if not ids:
            return []

        def read() -> list[Any]:
            pipe = self._r.pipeline(transaction=False)
            for eid in ids:
                pipe.hgetall(f"{self._p}{eid}")
            return pipe.execute()

        rows = self._run(read)
        return [e for eid, h in zip(ids, rows, strict=True) if (e := _event(eid, h))]

    def add(self, stream: str, start: float, peak_area: float) -> int:
        eid = int(self._run(lambda: self._r.incr(f"{self._p}id")))

        def write() -> None:
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(
                f"{self._p}{eid}",
                mapping={
                    "stream": stream,
                    "start": repr(start),
                    "peak_area": repr(peak_area),
                    "node": self.node,
                },
            )
            pipe.zadd(f"{self._p}all", {str(eid): start})
            pipe.zadd(f"{self._p}s:{stream}", {str(eid): start})
            pipe.sadd(f"{self._p}open", eid)
            pipe.execute()

        self._run(write)
        return eid

    def update(
        self, eid: int, *, end: float | None, peak_area: float, snapshot: str | None
    ) -> None:
        def write() -> None:
            pipe = self._r.pipeline(transaction=True)
            key = f"{self._p}{eid}"
            pipe.hset(
                key,
                mapping={
                    "end": "" if end is None else repr(end),
                    "peak_area": repr(peak_area),
                    "snapshot": snapshot or "",
                },
            )
            if end is not None:
                pipe.srem(f"{self._p}open", eid)
            pipe.execute()

        if self._run(lambda: self._r.exists(f"{self._p}{eid}")):
            self._run(write)

    def get(self, eid: int) -> MotionEvent | None:
        found = self._load([eid])
        return found[0] if found else None

    def between(
        self, streams: Sequence[str] | None, start: float, end: float, limit: int
    ) -> list[MotionEvent]:
        keys = [f"{self._p}all"] if streams is None else [f"{self._p}s:{s}" for s in streams]
        found: list[MotionEvent] = []
        for key in keys:
            ids = self._run(
                lambda key=key: self._r.zrevrangebyscore(  # type: ignore[misc]
                    key, end, start - LONGEST, start=0, num=limit * 4 + 50
                )
            )
            found += [e for e in self._load(ids) if e.end is None or e.end >= start]
        found.sort(key=lambda e: (e.start, e.id), reverse=True)
        return found[:limit]

    def delete(self, eid: int) -> None:
        found = self.get(eid)
        if found is None:
            return

        def remove() -> None:
            pipe = self._r.pipeline(transaction=True)
            pipe.delete(f"{self._p}{eid}")
            pipe.zrem(f"{self._p}all", eid)
            pipe.zrem(f"{self._p}s:{found.stream}", eid)
            pipe.srem(f"{self._p}open", eid)
            pipe.execute()

        self._run(remove)

    def older_than(self, before: float, limit: int) -> list[MotionEvent]:
        ids = self._run(
            lambda: self._r.zrangebyscore(f"{self._p}all", "-inf", before, start=0, num=limit)
        )
        return [e for e in self._load(ids) if e.end is not None and e.end < before]

    def unfinished(self, *, own: bool) -> list[MotionEvent]:
        ids = [int(i) for i in self._run(lambda: self._r.smembers(f"{self._p}open"))]
        if not ids:
            return []

        def read() -> list[Any]:
            pipe = self._r.pipeline(transaction=False)
            for eid in ids:
                pipe.hget(f"{self._p}{eid}", "node")
            return pipe.execute()

        nodes = {eid: (n or b"").decode() for eid, n in zip(ids, self._run(read), strict=True)}
        others = sorted({n for n in nodes.values() if n and n != self.node})
        alive: dict[str, Any] = {}
        if others:
            beats = self._run(lambda: self._r.mget([self._node_key(n) for n in others]))
            alive = dict(zip(others, beats, strict=True))
        gone = [
            eid
            for eid, n in nodes.items()
            if (n == self.node and own) or (n != self.node and not alive.get(n))
        ]
        return self._load(sorted(gone))

    def close(self) -> None:
        self._r.close()
