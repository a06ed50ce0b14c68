"""Motion events, kept in the database: start, end (None while it goes on), the peak changed
area and the snapshot taken at the peak (a JPEG file under the recordings folder).
Thread-safe and blocking: call from worker threads.

:class:`EventStore` is the seam; :class:`SQLiteEvents` keeps them in the same SQLite file as
the streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from camserver.errors import MotionError
from camserver.sqlite_table import LockedSQLite

__all__ = ["EventStore", "MotionEvent", "SQLiteEvents"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS motion_events (
    id INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL,
    peak_area REAL NOT NULL DEFAULT 0,
    snapshot TEXT
);
CREATE INDEX IF NOT EXISTS motion_events_by_time ON motion_events (start);
"""
_COLUMNS = "id, stream, start, end, peak_area, snapshot"


@dataclass(frozen=True, slots=True)
class MotionEvent:
    id: int
    stream: str
    start: float
    end: float | None
    """None while it goes on."""
    peak_area: float
    """The most of the watched picture that changed, in percent."""
    snapshot: str | None
    """The JPEG at the peak, relative to the recordings folder."""

    def public(self, base_url: str = "") -> dict[str, Any]:
        """What the API, Socket.IO, webhooks and MQTT show of it (``base_url``: prefix
        of the snapshot URL, '' for a path)."""
        return {
            "id": self.id,
            "stream": self.stream,
            "start": self.start,
            "end": self.end,
            "peak_area": round(self.peak_area, 2),
            "snapshot_url": f"{base_url}/api/events/{self.id}/snapshot.jpg"
            if self.snapshot
            else None,
        }


class EventStore(Protocol):
    def add(self, stream: str, start: float, peak_area: float) -> int: ...

    def update(
        self, eid: int, *, end: float | None, peak_area: float, snapshot: str | None
    ) -> None: ...

    def get(self, eid: int) -> MotionEvent | None: ...

    def between(
        self, streams: Sequence[str] | None, start: float, end: float, limit: int
    ) -> list[MotionEvent]:
        """Events of ``streams`` (None: all) that overlap [start, end], newest first."""
        ...

    def delete(self, eid: int) -> None: ...

    def older_than(self, before: float, limit: int) -> list[MotionEvent]:
        """Finished events that ended before ``before``, oldest first."""
        ...

    def unfinished(self, *, own: bool) -> list[MotionEvent]:
        """Open events nobody will close: this node's from before a restart (``own``, at
        start-up only), and (cluster mode) those of nodes that are gone."""
        ...

    def close(self) -> None: ...


def _event(row: Any) -> MotionEvent:
    eid, stream, start, end, peak, snapshot = row
    return MotionEvent(eid, stream, start, end, peak, snapshot)


class SQLiteEvents:
    def __init__(self, db: Path) -> None:
        self._sql = LockedSQLite(db, _SCHEMA, MotionError, "motion events")
        self._run = self._sql.run

    def add(self, stream: str, start: float, peak_area: float) -> int:
        rows = self._run(
            "INSERT INTO motion_events (stream, start, peak_area) VALUES (?, ?, ?) RETURNING id",
            (stream, start, peak_area),
        )
        return int(rows[0][0])

    def update(
        self, eid: int, *, end: float | None, peak_area: float, snapshot: str | None
    ) -> None:
        self._run(
            "UPDATE motion_events SET end = ?, peak_area = ?, snapshot = ? WHERE id = ?",
            (end, peak_area, snapshot, eid),
        )

    def get(self, eid: int) -> MotionEvent | None:
        rows = self._run(f"SELECT {_COLUMNS} FROM motion_events WHERE id = ?", (eid,))
        return _event(rows[0]) if rows else None

    def between(
        self, streams: Sequence[str] | None, start: float, end: float, limit: int
    ) -> list[MotionEvent]:
        where = "start <= ? AND (end IS NULL OR end >= ?)"
        args: tuple[object, ...] = (end, start)
        if streams is not None:
            if not streams:
                return []
            where += f" AND stream IN ({', '.join('?' for _ in streams)})"
            args += tuple(streams)
        rows = self._run(
            f"SELECT {_COLUMNS} FROM motion_events WHERE {where} "
            f"ORDER BY start DESC, id DESC LIMIT {int(limit)}",
            args,
        )
        return [_event(r) for r in rows]

    def delete(self, eid: int) -> None:
        self._run("DELETE FROM motion_events WHERE id = ?", (eid,))

    def older_than(self, before: float, limit: int) -> list[MotionEvent]:
        rows = self._run(
            f"SELECT {_COLUMNS} FROM motion_events WHERE end IS NOT NULL AND end < ? "
            f"ORDER BY start LIMIT {int(limit)}",
            (before,),
        )
        return [_event(r) for r in rows]

    def unfinished(self, *, own: bool) -> list[MotionEvent]:
        if not own:  # one node: its open events are its own, going on now
            return []
        rows = self._run(f"SELECT {_COLUMNS} FROM motion_events WHERE end IS NULL")
        return [_event(r) for r in rows]

    def close(self) -> None:
        self._sql.close()
