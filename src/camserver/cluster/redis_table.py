"""Rows as Redis hashes (``<prefix><id>``) for blocking callers: the part the cluster's
recordings index and motion events share.

redis-py's blocking client with its own small pool (the recorder's and the motion worker's
threads, the API's worker threads call it); every command fails within a second when Redis
is away, as the caller's own error type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from redis.exceptions import RedisError

from camserver.cluster.connect import sync_client
from camserver.cluster.wire import Keys
from camserver.errors import CamServerError

__all__ = ["RedisTable"]

R = TypeVar("R")
T = TypeVar("T")


class RedisTable(Generic[R]):
    """Hashes ``<cluster prefix><name>:<id>``, read into ``R`` by ``row``."""

    def __init__(
        self,
        url: str,
        keys: Keys,
        node: str,
        *,
        name: str,
        row: Callable[[int, dict[bytes, bytes]], R | None],
        error: type[CamServerError],
        what: str,
    ) -> None:
        self.node = node
        self.prefix = f"{keys.prefix}{name}:"
        self.redis = sync_client(url)
        self._node_key = keys.node
        self._row = row
        self._error = error
        self._what = what

    def key(self, suffix: int | str) -> str:
        return f"{self.prefix}{suffix}"

    def run(self, step: Callable[[], T]) -> T:
        """``step()``, with Redis' and the socket's errors as the caller's error type."""
        try:
            return step()
        except (RedisError, OSError) as exc:
            raise self._error(f"{self._what} (Redis): {exc}") from exc

    def next_id(self) -> int:
        return int(self.run(lambda: self.redis.incr(self.key("id"))))

    def load(self, raw: Iterable[Any]) -> list[R]:
        """The rows of these ids (in one round trip), skipping those that are gone."""
        ids = [int(i) for i in raw]
        if not ids:
            return []

        def read() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            for rid in ids:
                pipe.hgetall(self.key(rid))
            return pipe.execute()

        rows = self.run(read)
        return [r for rid, h in zip(ids, rows, strict=True) if (r := self._row(rid, h))]

    def orphaned(self, owners: Sequence[tuple[T, str | None]], *, own: bool) -> list[T]:
        """Of these (item, writing node) pairs, the items nobody writes any more: another
        node's whose heartbeat has expired, and, with ``own``, this node's (from before a
        restart: at start-up only)."""
        others = sorted({n for _, n in owners if n and n != self.node})
        alive: set[str] = set()
        if others:
            beats = self.run(lambda: self.redis.mget([self._node_key(n) for n in others]))
            alive = {n for n, beat in zip(others, beats, strict=True) if beat}
        return [item for item, n in owners if (own if n == self.node else (n or "") not in alive)]

    def close(self) -> None:
        self.redis.close()
