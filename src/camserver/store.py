"""Where stream configurations live.

:class:`StreamStore` is the interface the rest of camserver uses; :class:`SQLiteStore` the
embedded default. Every change is one transaction, committed with ``synchronous=FULL`` in
WAL mode before the call returns, so an acknowledged change survives ``kill -9``.
SQLite runs on one dedicated thread, so the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from camserver.errors import ConfigError, StoreError, StreamExists, StreamNotFound
from camserver.schema import MotionSettings, RecordingSettings, StreamConfig
from camserver.tokens import ManagedToken

__all__ = ["SQLiteStore", "StreamStore", "check_database"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    name TEXT PRIMARY KEY,
    host TEXT,
    stream_url TEXT NOT NULL,
    snapshot_url TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    on_demand INTEGER NOT NULL DEFAULT 0,
    username TEXT,
    password TEXT,
    auth_scheme TEXT NOT NULL DEFAULT 'basic',
    recording TEXT,
    motion TEXT
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    streams TEXT,
    created_at REAL NOT NULL,
    expires_at REAL,
    last_used REAL
);
"""
_TOKEN_COLUMNS = "id, name, hash, role, streams, created_at, expires_at, last_used"
# Columns added after the first release: (name, definition), applied when missing.
_MIGRATIONS = [
    ("on_demand", "INTEGER NOT NULL DEFAULT 0"),
    ("username", "TEXT"),
    ("password", "TEXT"),
    ("auth_scheme", "TEXT NOT NULL DEFAULT 'basic'"),
    ("recording", "TEXT"),  # RecordingSettings as JSON; NULL: the defaults
    ("motion", "TEXT"),  # MotionSettings as JSON; NULL: the defaults
    ("source", "TEXT NOT NULL DEFAULT 'http'"),  # issue 28: push cameras
    ("expect_every", "REAL"),
    ("push_key_hash", "TEXT"),
    ("port", "INTEGER"),  # issue 30: ESPHome cameras
    ("encryption_key", "TEXT"),
]
_COLUMN_NAMES = [
    "name",
    "host",
    "stream_url",
    "snapshot_url",
    "enabled",
    "on_demand",
    "username",
    "password",
    "auth_scheme",
    "recording",
    "motion",
    "source",
    "expect_every",
    "push_key_hash",
    "port",
    "encryption_key",
]


_COLUMNS = ", ".join(_COLUMN_NAMES)
_MARKS = ", ".join("?" for _ in _COLUMN_NAMES)
_SETS = ", ".join(f"{c} = ?" for c in _COLUMN_NAMES[1:])


class StreamStore(Protocol):
    async def list(self) -> list[StreamConfig]: ...

    async def add(self, cfg: StreamConfig) -> None: ...

    async def update(self, cfg: StreamConfig) -> None: ...

    async def delete(self, name: str) -> None: ...

    async def close(self) -> None: ...

    async def list_tokens(self) -> builtins.list[ManagedToken]: ...

    async def add_token(self, token: ManagedToken) -> None: ...

    async def delete_token(self, token_id: str) -> bool: ...

    async def touch_token(self, token_id: str, when: float) -> None: ...


def _row(row: tuple[Any, ...]) -> StreamConfig:
    return StreamConfig(
        name=row[0],
        host=row[1],
        stream_url=row[2],
        snapshot_url=row[3],
        enabled=bool(row[4]),
        on_demand=bool(row[5]),
        username=row[6],
        password=row[7],
        auth_scheme=row[8],
        recording=RecordingSettings.model_validate_json(row[9]) if row[9] else RecordingSettings(),
        motion=MotionSettings.model_validate_json(row[10]) if row[10] else MotionSettings(),
        source=row[11],
        expect_every=row[12],
        push_key_hash=row[13],
        port=row[14],
        encryption_key=row[15],
    )


def _values(cfg: StreamConfig) -> tuple[str | int | float | None, ...]:
    """The row for ``cfg``, in ``_COLUMNS`` order."""
    return (
        cfg.name,
        cfg.host,
        cfg.stream_url,
        cfg.snapshot_url,
        int(cfg.enabled),
        int(cfg.on_demand),
        cfg.username,
        cfg.password,
        cfg.auth_scheme,
        cfg.recording.model_dump_json(),
        cfg.motion.model_dump_json(),
        cfg.source,
        cfg.expect_every,
        cfg.push_key_hash,
        cfg.port,
        cfg.encryption_key,
    )


class SQLiteStore:
    """SQLite-backed :class:`StreamStore`. Open with ``await SQLiteStore.open(path)``."""

    def __init__(self, path: Path, executor: ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
        self.path = path
        self._executor = executor
        self._conn = conn

    @classmethod
    async def open(cls, path: Path) -> SQLiteStore:
        """Open or create the database; ConfigError with a clear reason if it cannot."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, _connect, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(path, executor, conn)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, self._conn)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise StoreError(f"database error in {self.path}: {exc}") from exc

    async def list(self) -> list[StreamConfig]:
        rows = await self._call(
            lambda c: c.execute(
                f"SELECT {_COLUMNS} FROM streams ORDER BY created_at, name"
            ).fetchall()
        )
        return [_row(r) for r in rows]

    async def add(self, cfg: StreamConfig) -> None:
        def add(c: sqlite3.Connection) -> None:
            with c:
                c.execute(
                    f"INSERT INTO streams ({_COLUMNS}, created_at) VALUES ({_MARKS}, ?)",
                    (*_values(cfg), time.time()),
                )

        try:
            await self._call(add)
        except sqlite3.IntegrityError as exc:
            raise StreamExists(cfg.name) from exc

    async def update(self, cfg: StreamConfig) -> None:
        def update(c: sqlite3.Connection) -> int:
            with c:
                cur = c.execute(
                    f"UPDATE streams SET {_SETS} WHERE name = ?",
                    (*_values(cfg)[1:], cfg.name),
                )
                return cur.rowcount

        if await self._call(update) == 0:
            raise StreamNotFound(cfg.name)

    async def delete(self, name: str) -> None:
        def delete(c: sqlite3.Connection) -> int:
            with c:
                return c.execute("DELETE FROM streams WHERE name = ?", (name,)).rowcount

        if await self._call(delete) == 0:
            raise StreamNotFound(name)

    async def list_tokens(self) -> builtins.list[ManagedToken]:
        rows = await self._call(
            lambda c: c.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_at"
            ).fetchall()
        )
        return [
            ManagedToken(
                id=r[0],
                name=r[1],
                hash=r[2],
                role=r[3],
                streams=json.loads(r[4]) if r[4] is not None else None,
                created_at=r[5],
                expires_at=r[6],
                last_used=r[7],
            )
            for r in rows
        ]

    async def add_token(self, token: ManagedToken) -> None:
        streams = json.dumps(token.streams) if token.streams is not None else None
        row = (
            token.id,
            token.name,
            token.hash,
            token.role,
            streams,
            token.created_at,
            token.expires_at,
            token.last_used,
        )

        def add(c: sqlite3.Connection) -> None:
            with c:
                c.execute(f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", row)

        await self._call(add)

    async def delete_token(self, token_id: str) -> bool:
        def delete(c: sqlite3.Connection) -> int:
            with c:
                return c.execute("DELETE FROM tokens WHERE id = ?", (token_id,)).rowcount

        return await self._call(delete) > 0

    async def touch_token(self, token_id: str, when: float) -> None:
        def touch(c: sqlite3.Connection) -> None:
            with c:
                c.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (when, token_id))

        await self._call(touch)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the database folder {path.parent}: {exc}") from exc
    conn: sqlite3.Connection | None = None
    try:
        _private(path)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.isolation_level = "DEFERRED"
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        check = conn.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        with conn:
            conn.executescript(_SCHEMA)
            have = {r[1] for r in conn.execute("PRAGMA table_info(streams)")}
            for column, definition in _MIGRATIONS:
                if column not in have:
                    conn.execute(f"ALTER TABLE streams ADD COLUMN {column} {definition}")
        return conn
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise ConfigError(
            f"cannot use the database file {path}: {exc} "
            "(is it a camserver database, and writable? move it away to start afresh)"
        ) from exc


def _private(path: Path) -> None:
    """The database holds camera passwords: readable by its owner only (0600). SQLite
    gives the -wal and -shm files the database file's permissions."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return  # sqlite3 reports why it cannot open the file
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def check_database(path: Path) -> None:
    """Open, check and close the database: ConfigError with a clear reason if unusable."""
    _connect(path).close()
