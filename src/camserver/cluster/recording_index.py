"""The recordings index in the cluster's Redis, so that every node lists, plays and retains
every node's recordings (the files themselves are in a folder all nodes share).

Keys (under the cluster's prefix, ``cs:`` by default):

- ``rec:id``: the last id handed out; ``rec:<id>``: one recording (a hash);
- ``rec:s:<stream>``: the stream's recordings by start time (a sorted set of ids), and
  ``rec:s:<stream>:<kind>`` and ``rec:k:<kind>`` by kind, in the order retention deletes;
- ``rec:open``: ids still being written; ``rec:bytes``: bytes per stream (a hash kept by the
  scripts, so that a size check reads one field instead of every row);
- ``rec:claim:<job>``: one node's claim on a repair or a day's MP4 (expires by itself).

The recorder's worker and the API's threads call it, so it uses redis-py's blocking client
(``cluster.redis_table``). Commands fail within a second when Redis is away: the recorder
keeps writing files and logs that the index could not be told.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from pathlib import Path

from camserver.cluster.redis_table import RedisTable
from camserver.cluster.wire import Keys
from camserver.errors import RecordingError
from camserver.recording.index import Recording, RecordingKind

__all__ = ["RedisIndex"]

KINDS: tuple[RecordingKind, ...] = ("continuous", "timelapse", "event")
"""The order in which retention deletes."""
LONGEST = 86400.0 + 3600.0
"""No recording lasts longer than a day's timelapse file (segments and clips roll over
every ``recording_segment_seconds``): how far before a range ``between`` looks."""

# KEYS: recording, bytes per stream, open set. ARGV: end, frames, bytes, closed (0/1), id.
UPDATE = """
local stream = redis.call('HGET', KEYS[1], 'stream')
if not stream then return 0 end
local old = tonumber(redis.call('HGET', KEYS[1], 'bytes')) or 0
redis.call('HSET', KEYS[1], 'end', ARGV[1], 'frames', ARGV[2], 'bytes', ARGV[3],
           'closed', ARGV[4])
redis.call('HINCRBY', KEYS[2], stream, tonumber(ARGV[3]) - old)
if ARGV[4] == '1' then redis.call('SREM', KEYS[3], ARGV[5]) end
return 1
"""
# KEYS: recording, bytes per stream. ARGV: derived bytes.
SET_DERIVED = """
local stream = redis.call('HGET', KEYS[1], 'stream')
if not stream then return 0 end
local old = tonumber(redis.call('HGET', KEYS[1], 'derived')) or 0
redis.call('HSET', KEYS[1], 'derived', ARGV[1])
redis.call('HINCRBY', KEYS[2], stream, tonumber(ARGV[1]) - old)
return 1
"""
# KEYS: recording, bytes per stream, open set, by stream, by stream and kind, by kind.
# ARGV: id. Deleting twice (two nodes' retention at once) is harmless.
DELETE = """
local row = redis.call('HMGET', KEYS[1], 'stream', 'bytes', 'derived')
if not row[1] then return 0 end
redis.call('HINCRBY', KEYS[2], row[1], -(tonumber(row[2]) or 0) - (tonumber(row[3]) or 0))
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
return 1
"""


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _recording(rid: int, h: dict[bytes, bytes]) -> Recording | None:
    if not h:
        return None
    kind = _text(h.get(b"kind"))
    return Recording(
        id=rid,
        stream=_text(h.get(b"stream")),
        kind=kind if kind in KINDS else "continuous",
        path=_text(h.get(b"path")),
        start=float(h.get(b"start", 0)),
        end=float(h.get(b"end", 0)),
        frames=int(h.get(b"frames", 0)),
        bytes=int(h.get(b"bytes", 0)),
        closed=h.get(b"closed") == b"1",
        derived=int(h.get(b"derived", 0)),
        node=_text(h.get(b"node")) or None,
    )


class RedisIndex:
    """:class:`~camserver.recording.index.RecordingIndex` on Redis, for node ``node``."""

    def __init__(self, url: str, keys: Keys, node: str) -> None:
        self.node = node
        t = self._t = RedisTable(
            url,
            keys,
            node,
            name="rec",
            row=_recording,
            error=RecordingError,
            what="recordings index",
        )
        self._p = t.prefix
        self._r = t.redis
        self._update = t.redis.register_script(UPDATE)
        self._set_derived = t.redis.register_script(SET_DERIVED)
        self._delete = t.redis.register_script(DELETE)
        self._run = t.run
        self._load = t.load

    # -- keys --------------------------------------------------------------------------

    def _row(self, rid: int | str) -> str:
        return f"{self._p}{rid}"

    def _by_stream(self, stream: str, kind: str | None = None) -> str:
        return f"{self._p}s:{stream}" + ("" if kind is None else f":{kind}")

    def _by_kind(self, kind: str) -> str:
        return f"{self._p}k:{kind}"

    # -- helpers -------------------------------------------------------------------------

    def _scan(
        self, key: str, lo: float | str, hi: float | str, keep: Callable[[Recording], bool]
    ) -> Iterable[Recording]:
        """Recordings of the sorted set ``key`` with start in [lo, hi], oldest first, that
        ``keep`` keeps; read in batches."""
        offset = 0
        while True:
            ids = self._run(
                lambda o=offset: self._r.zrangebyscore(key, lo, hi, start=o, num=200)  # type: ignore[misc]
            )
            if not ids:
                return
            offset += len(ids)
            yield from (r for r in self._load(ids) if keep(r))

    # -- RecordingIndex --------------------------------------------------------------------

    def begin(self, stream: str, kind: RecordingKind, path: str, start: float) -> int:
        rid = self._t.next_id()

        def write() -> None:
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(
                self._row(rid),
                mapping={
                    "stream": stream,
                    "kind": kind,
                    "path": path,
                    "start": repr(start),
                    "end": repr(start),
                    "frames": 0,
                    "bytes": 0,
                    "closed": 0,
                    "derived": 0,
                    "node": self.node,
                },
            )
            pipe.sadd(f"{self._p}open", rid)
            for key in (
                self._by_stream(stream),
                self._by_stream(stream, kind),
                self._by_kind(kind),
            ):
                pipe.zadd(key, {str(rid): start})
            pipe.execute()

        self._run(write)
        return rid

    def update(self, rid: int, end: float, frames: int, size: int, *, closed: bool) -> None:
        keys = [self._row(rid), f"{self._p}bytes", f"{self._p}open"]
        args: list[str | int] = [repr(end), frames, size, int(closed), rid]
        self._run(lambda: self._update(keys=keys, args=args))

    def set_derived(self, rid: int, size: int) -> None:
        keys = [self._row(rid), f"{self._p}bytes"]
        self._run(lambda: self._set_derived(keys=keys, args=[size]))

    def get(self, rid: int) -> Recording | None:
        found = self._load([rid])
        return found[0] if found else None

    def between(self, stream: str, start: float, end: float) -> list[Recording]:
        rows = self._scan(self._by_stream(stream), start - LONGEST, end, lambda r: r.end >= start)
        return sorted(rows, key=lambda r: (r.start, r.id))

    def delete(self, rid: int) -> None:
        found = self.get(rid)
        if found is None:
            return
        keys = [
            self._row(rid),
            f"{self._p}bytes",
            f"{self._p}open",
            self._by_stream(found.stream),
            self._by_stream(found.stream, found.kind),
            self._by_kind(found.kind),
        ]
        self._run(lambda: self._delete(keys=keys, args=[rid]))

    def total_bytes(self, stream: str) -> int:
        return int(self._run(lambda: self._r.hget(f"{self._p}bytes", stream)) or 0)

    def oldest_closed(self, stream: str | None = None, limit: int = 50) -> list[Recording]:
        keys = [self._by_kind(k) if stream is None else self._by_stream(stream, k) for k in KINDS]
        found = (r for key in keys for r in self._scan(key, "-inf", "+inf", lambda r: r.closed))
        return list(itertools.islice(found, limit))

    def closed_before(self, stream: str, before: float, limit: int = 50) -> list[Recording]:
        found = self._scan(
            self._by_stream(stream), "-inf", before, lambda r: r.closed and r.end < before
        )
        return list(itertools.islice(found, limit))

    def at(self, stream: str, t: float) -> Recording | None:
        ids = self._run(
            lambda: self._r.zrevrangebyscore(self._by_stream(stream), t, "-inf", start=0, num=8)
        )
        rows = self._load(ids)
        return max(rows, key=lambda r: (r.start, r.id)) if rows else None

    def timelapse_days(self) -> set[tuple[str, str]]:
        rows = self._scan(self._by_kind("timelapse"), "-inf", "+inf", lambda r: r.closed)
        return {(r.stream, Path(r.path).parent.name) for r in rows}

    def unfinished(self, *, own: bool) -> list[Recording]:
        rows = self._load(self._run(lambda: self._r.smembers(f"{self._p}open")))
        orphans = self._t.orphaned([(r, r.node) for r in rows], own=own)
        return sorted(orphans, key=lambda r: r.id)

    def claim(self, job: str, seconds: float) -> bool:
        key = f"{self._p}claim:{job}"
        ms = max(1, int(seconds * 1000))
        return bool(self._run(lambda: self._r.set(key, self.node, nx=True, px=ms)))

    def close(self) -> None:
        self._t.close()
