"""SQLiteStore on its own: changes, errors, persistence, and migrating old databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from camserver.errors import ConfigError, StreamExists, StreamNotFound
from camserver.schema import StreamConfig
from camserver.store import SQLiteStore, check_database


def cfg(name: str, **kw: object) -> StreamConfig:
    return StreamConfig.for_host(name, "192.0.2.7").model_copy(update=kw)


async def test_add_list_update_delete_and_reopen(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = await SQLiteStore.open(db)
    try:
        await store.add(cfg("b"))
        await store.add(cfg("a", username="u", password="p", auth_scheme="digest"))
        assert [c.name for c in await store.list()] == ["b", "a"]  # in creation order
        with pytest.raises(StreamExists):
            await store.add(cfg("a"))
        await store.update(cfg("b", enabled=False, on_demand=True))
        with pytest.raises(StreamNotFound):
            await store.update(cfg("ghost"))
        await store.delete("b")
        with pytest.raises(StreamNotFound):
            await store.delete("b")
    finally:
        await store.close()
    store = await SQLiteStore.open(db)
    try:
        (a,) = await store.list()
    finally:
        await store.close()
    assert a == cfg("a", username="u", password="p", auth_scheme="digest")
    assert a.password == "p"  # kept in the database, though never serialised


async def test_a_database_of_the_first_release_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the schema before on_demand and camera logins
        conn.execute(
            "CREATE TABLE streams (name TEXT PRIMARY KEY, host TEXT, stream_url TEXT NOT NULL,"
            " snapshot_url TEXT, enabled INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL)"
        )
        conn.execute(
            "INSERT INTO streams VALUES ('porch', '10.0.0.5:80', 'http://10.0.0.5:81/stream',"
            " 'http://10.0.0.5:80/capture', 0, 1.0)"
        )
    conn.close()
    store = await SQLiteStore.open(db)
    try:
        (porch,) = await store.list()
        await store.add(cfg("new", on_demand=True, username="u", password="p"))
        new = (await store.list())[1]
    finally:
        await store.close()
    assert porch == StreamConfig(
        name="porch",
        host="10.0.0.5:80",
        stream_url="http://10.0.0.5:81/stream",
        snapshot_url="http://10.0.0.5:80/capture",
        enabled=False,
        on_demand=False,
        username=None,
        password=None,
        auth_scheme="basic",
    )
    assert (new.on_demand, new.username, new.password) == (True, "u", "p")
    with sqlite3.connect(db) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(streams)")]
    conn.close()
    assert columns[-11:] == [
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


async def test_an_esphome_camera_keeps_its_port_and_key_across_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    hall = StreamConfig(
        name="hall",
        source="esphome",
        host="hall-cam.local",
        stream_url="",
        port=6054,
        encryption_key="a2V5" * 11,
        password="old-api-password",
    )
    store = await SQLiteStore.open(db)
    try:
        await store.add(hall)
    finally:
        await store.close()
    store = await SQLiteStore.open(db)
    try:
        (back,) = await store.list()
    finally:
        await store.close()
    assert back == hall
    assert (back.encryption_key, back.password) == (hall.encryption_key, hall.password)
    assert "encryption_key" not in back.model_dump()


def test_unusable_files_give_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="cannot use the database file"):
        check_database(junk)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create the database folder"):
        check_database(blocker / "sub" / "x.db")
