"""One SQLite connection shared by threads, for the tables beside the streams' (recordings,
motion events): opened with its schema, every statement under one lock, sqlite3 errors
turned into the caller's own exception type (``raise … from exc``)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camserver.errors import CamServerError

__all__ = ["LockedSQLite"]


class LockedSQLite:
    def __init__(
        self,
        db: Path,
        schema: str,
        error: type[CamServerError],
        what: str,
        migrate: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """Open ``db`` and create ``schema``; ``what`` names the data in error messages."""
        self._error = error
        self._what = what
        try:
            self._db = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.executescript(schema)
            if migrate is not None:
                migrate(self._db)
        except sqlite3.Error as exc:
            raise error(f"cannot open the {what} in {db}: {exc}") from exc
        self._lock = threading.Lock()

    def run(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._error(f"{self._what}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
