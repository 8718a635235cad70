"""Migrations: a fresh database and a migrated one end with the same schema; newer is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from network.errors import DatabaseTooNew
from network.storage import SCHEMA_VERSION, Storage


def schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
    return [(t, n, " ".join((s or "").split())) for t, n, s in rows]


async def test_fresh_and_stepwise_migrated_databases_match(tmp_path: Path) -> None:
    fresh = await Storage.open(tmp_path / "fresh.db")
    await fresh.close()
    # Migrate one version at a time, with data in between, as a long-lived install would.
    for version in range(1, SCHEMA_VERSION + 1):
        db = await Storage.open(tmp_path / "old.db", target_version=version)
        assert await db.schema_version() == version
        if version == 1:
            await db.set_state("kept", "yes")
        await db.close()
    migrated = await Storage.open(tmp_path / "old.db")
    assert await migrated.get_state("kept") == "yes"
    await migrated.close()
    assert schema(tmp_path / "fresh.db") == schema(tmp_path / "old.db")


async def test_database_from_newer_libhub_is_refused(tmp_path: Path) -> None:
    db = await Storage.open(tmp_path / "x.db")
    await db.close()
    with sqlite3.connect(tmp_path / "x.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(DatabaseTooNew, match="upgrade libhub"):
        await Storage.open(tmp_path / "x.db")


async def test_wal_mode(tmp_path: Path) -> None:
    db = await Storage.open(tmp_path / "w.db")
    await db.close()
    with sqlite3.connect(tmp_path / "w.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
