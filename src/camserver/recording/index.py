"""The recordings index: one row per segment, event clip and timelapse file. Retention and
playback find files through it, never by scanning folders. Thread-safe and blocking: the
recorder's worker writes, the API reads (from worker threads).

:class:`RecordingIndex` is the seam; :class:`SQLiteIndex` keeps it in the same SQLite file
as the streams (one node), ``camserver.cluster.recording_index.RedisIndex`` in the
cluster's Redis, where every node sees every node's recordings."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from camserver.errors import RecordingError
from camserver.schema import RecordingKind
from camserver.sqlite_table import LockedSQLite

__all__ = ["Recording", "RecordingIndex", "RecordingKind", "SQLiteIndex"]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    id INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    start REAL NOT NULL,
    end REAL NOT NULL,
    frames INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    closed INTEGER NOT NULL DEFAULT 0,
    derived INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS recordings_by_time ON recordings (stream, start);
"""
_COLUMNS = "id, stream, kind, path, start, end, frames, bytes, closed, derived"


@dataclass(frozen=True, slots=True)
class Recording:
    id: int
    stream: str
    kind: RecordingKind
    path: str
    """Relative to the recordings folder."""
    start: float
    end: float
    frames: int
    bytes: int
    closed: bool
    """False while it is being written (or after a crash, until it is repaired)."""
    derived: int = 0
    """Bytes of files made from it that retention deletes with it (a day's timelapse MP4)."""
    node: str | None = None
    """Cluster mode: the node that wrote it (None on one node)."""


def _migrate(db: sqlite3.Connection) -> None:
    columns = {row[1] for row in db.execute("PRAGMA table_info(recordings)")}
    if "derived" not in columns:  # an index from before timelapse MP4s were kept
        db.execute("ALTER TABLE recordings ADD COLUMN derived INTEGER NOT NULL DEFAULT 0")


def _recording(row: Any) -> Recording:
    rid, stream, kind, path, start, end, frames, size, closed, derived = row
    return Recording(rid, stream, kind, path, start, end, frames, size, bool(closed), derived)


class RecordingIndex(Protocol):
    """Raises :class:`~camserver.errors.RecordingError` when the index cannot be used."""

    def begin(self, stream: str, kind: RecordingKind, path: str, start: float) -> int:
        """A new open recording; its id."""
        ...

    def update(self, rid: int, end: float, frames: int, size: int, *, closed: bool) -> None: ...

    def set_derived(self, rid: int, size: int) -> None: ...

    def get(self, rid: int) -> Recording | None: ...

    def between(self, stream: str, start: float, end: float) -> list[Recording]:
        """Recordings of ``stream`` that overlap [start, end], oldest first."""
        ...

    def delete(self, rid: int) -> None: ...

    def total_bytes(self, stream: str) -> int:
        """Bytes of ``stream``'s recordings and of the files derived from them."""
        ...

    def oldest_closed(self, stream: str | None = None, limit: int = 50) -> list[Recording]:
        """Closed recordings in the order retention deletes them: continuous segments
        (oldest first) before timelapse files and event clips."""
        ...

    def closed_before(self, stream: str, before: float, limit: int = 50) -> list[Recording]:
        """Closed recordings of ``stream`` that ended before ``before``, oldest first."""
        ...

    def at(self, stream: str, t: float) -> Recording | None:
        """The recording of ``stream`` that started last at or before ``t``."""
        ...

    def timelapse_days(self) -> set[tuple[str, str]]:
        """(stream, UTC day) of every finished timelapse file, from its folder's name."""
        ...

    def unfinished(self, *, own: bool) -> list[Recording]:
        """Open recordings nobody is writing any longer: this node's from before a
        restart (``own``, at start-up only), and those of nodes that are gone."""
        ...

    def claim(self, job: str, seconds: float) -> bool:
        """True for one caller per ``job`` in ``seconds`` across the cluster (a repair, a
        day's MP4), so that two nodes never do the same file's work at once."""
        ...

    def close(self) -> None: ...


class SQLiteIndex:
    """The index of one node, in its SQLite database."""

    def __init__(self, db: Path) -> None:
        self._sql = LockedSQLite(db, _SCHEMA, RecordingError, "recordings index", _migrate)
        self._run = self._sql.run

    def begin(self, stream: str, kind: RecordingKind, path: str, start: float) -> int:
        rows = self._run(
            "INSERT INTO recordings (stream, kind, path, start, end) VALUES (?, ?, ?, ?, ?) "
            "RETURNING id",
            (stream, kind, path, start, start),
        )
        return int(rows[0][0])

    def update(self, rid: int, end: float, frames: int, size: int, *, closed: bool) -> None:
        self._run(
            "UPDATE recordings SET end = ?, frames = ?, bytes = ?, closed = ? WHERE id = ?",
            (end, frames, size, int(closed), rid),
        )

    def set_derived(self, rid: int, size: int) -> None:
        self._run("UPDATE recordings SET derived = ? WHERE id = ?", (size, rid))

    def get(self, rid: int) -> Recording | None:
        rows = self._run(f"SELECT {_COLUMNS} FROM recordings WHERE id = ?", (rid,))
        return _recording(rows[0]) if rows else None

    def between(self, stream: str, start: float, end: float) -> list[Recording]:
        rows = self._run(
            f"SELECT {_COLUMNS} FROM recordings WHERE stream = ? AND start <= ? AND end >= ? "
            "ORDER BY start, id",
            (stream, end, start),
        )
        return [_recording(r) for r in rows]

    def delete(self, rid: int) -> None:
        self._run("DELETE FROM recordings WHERE id = ?", (rid,))

    def total_bytes(self, stream: str) -> int:
        rows = self._run(
            "SELECT COALESCE(SUM(bytes + derived), 0) FROM recordings WHERE stream = ?",
            (stream,),
        )
        return int(rows[0][0])

    def oldest_closed(self, stream: str | None = None, limit: int = 50) -> list[Recording]:
        where = "closed = 1" + ("" if stream is None else " AND stream = ?")
        args: tuple[object, ...] = () if stream is None else (stream,)
        rows = self._run(
            f"SELECT {_COLUMNS} FROM recordings WHERE {where} ORDER BY "
            "CASE kind WHEN 'continuous' THEN 0 WHEN 'timelapse' THEN 1 ELSE 2 END, start "
            f"LIMIT {int(limit)}",
            args,
        )
        return [_recording(r) for r in rows]

    def closed_before(self, stream: str, before: float, limit: int = 50) -> list[Recording]:
        rows = self._run(
            f"SELECT {_COLUMNS} FROM recordings WHERE stream = ? AND closed = 1 AND end < ? "
            f"ORDER BY start LIMIT {int(limit)}",
            (stream, before),
        )
        return [_recording(r) for r in rows]

    def at(self, stream: str, t: float) -> Recording | None:
        rows = self._run(
            f"SELECT {_COLUMNS} FROM recordings WHERE stream = ? AND start <= ? "
            "ORDER BY start DESC, id DESC LIMIT 1",
            (stream, t),
        )
        return _recording(rows[0]) if rows else None

    def timelapse_days(self) -> set[tuple[str, str]]:
        rows = self._run(
            "SELECT stream, path FROM recordings WHERE kind = 'timelapse' AND closed = 1"
        )
        return {(stream, Path(path).parent.name) for stream, path in rows}

    def unfinished(self, *, own: bool) -> list[Recording]:
        if not own:  # one node: every open row is this node's, written now or before
            return []
        rows = self._run(f"SELECT {_COLUMNS} FROM recordings WHERE closed = 0 ORDER BY id")
        return [_recording(r) for r in rows]

    def claim(self, job: str, seconds: float) -> bool:
        return True  # one node: nobody else

    def close(self) -> None:
        self._sql.close()
