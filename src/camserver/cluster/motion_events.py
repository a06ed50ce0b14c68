"""Motion events in the cluster's Redis, so every node lists every node's events (the
snapshots are files in the recordings folder the nodes share).

Keys (under the cluster's prefix): ``ev:id`` (the last id), ``ev:<id>`` (a hash),
``ev:all`` and ``ev:s:<stream>`` (ids by start time), ``ev:open`` (events going on).
Blocking redis-py client, called from worker threads, failing within a second when Redis
is away (a :class:`~camserver.errors.MotionError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from camserver.cluster.redis_table import RedisTable
from camserver.cluster.wire import Keys
from camserver.errors import MotionError
from camserver.motion.events import MotionEvent

__all__ = ["RedisEvents"]

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
        self._t = RedisTable(
            url, keys, node, name="ev", row=_event, error=MotionError, what="motion events"
        )

    def add(self, stream: str, start: float, peak_area: float) -> int:
        t = self._t
        eid = t.next_id()

        def write() -> None:
            pipe = t.redis.pipeline(transaction=True)
            pipe.hset(
                t.key(eid),
                mapping={
                    "stream": stream,
                    "start": repr(start),
                    "peak_area": repr(peak_area),
                    "node": self.node,
                },
            )
            pipe.zadd(t.key("all"), {str(eid): start})
            pipe.zadd(t.key(f"s:{stream}"), {str(eid): start})
            pipe.sadd(t.key("open"), eid)
            pipe.execute()

        t.run(write)
        return eid

    def update(
        self, eid: int, *, end: float | None, peak_area: float, snapshot: str | None
    ) -> None:
        t = self._t

        def write() -> None:
            pipe = t.redis.pipeline(transaction=True)
            pipe.hset(
                t.key(eid),
                mapping={
                    "end": "" if end is None else repr(end),
                    "peak_area": repr(peak_area),
                    "snapshot": snapshot or "",
                },
            )
            if end is not None:
                pipe.srem(t.key("open"), eid)
            pipe.execute()

        if t.run(lambda: t.redis.exists(t.key(eid))):
            t.run(write)

    def get(self, eid: int) -> MotionEvent | None:
        found = self._t.load([eid])
        return found[0] if found else None

    def between(
        self, streams: Sequence[str] | None, start: float, end: float, limit: int
    ) -> list[MotionEvent]:
        t = self._t
        keys = [t.key("all")] if streams is None else [t.key(f"s:{s}") for s in streams]
        found: list[MotionEvent] = []
        for key in keys:
            ids = t.run(
                lambda key=key: t.redis.zrevrangebyscore(  # type: ignore[misc]
                    key, end, start - LONGEST, start=0, num=limit * 4 + 50
                )
            )
            found += [e for e in t.load(ids) if e.end is None or e.end >= start]
        found.sort(key=lambda e: (e.start, e.id), reverse=True)
        return found[:limit]

    def delete(self, eid: int) -> None:
        found = self.get(eid)
        if found is None:
            return
        t = self._t

        def remove() -> None:
            pipe = t.redis.pipeline(transaction=True)
            pipe.delete(t.key(eid))
            pipe.zrem(t.key("all"), eid)
            pipe.zrem(t.key(f"s:{found.stream}"), eid)
            pipe.srem(t.key("open"), eid)
            pipe.execute()

        t.run(remove)

    def older_than(self, before: float, limit: int) -> list[MotionEvent]:
        t = self._t
        ids = t.run(lambda: t.redis.zrangebyscore(t.key("all"), "-inf", before, start=0, num=limit))
        return [e for e in t.load(ids) if e.end is not None and e.end < before]

    def unfinished(self, *, own: bool) -> list[MotionEvent]:
        t = self._t
        ids = sorted(int(i) for i in t.run(lambda: t.redis.smembers(t.key("open"))))
        if not ids:
            return []

        def read() -> list[Any]:
            pipe = t.redis.pipeline(transaction=False)
            for eid in ids:
                pipe.hget(t.key(eid), "node")
            return pipe.execute()

        nodes = [(eid, (n or b"").decode()) for eid, n in zip(ids, t.run(read), strict=True)]
        return t.load(t.orphaned(nodes, own=own))

    def close(self) -> None:
        self._t.close()
