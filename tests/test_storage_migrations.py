"""Migrations, on SQLite and PostgreSQL: a fresh database and a migrated one end with the
same schema; newer is refused, and so is another program's database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest

from network.errors import DatabaseTooNew, NotOurDatabase
from network.storage import SCHEMA_VERSION, Storage
from tests.pgkit import PgServer


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


async def pg_schema(url: str) -> list[tuple[str, str, str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name, data_type, COALESCE(column_default, '') "
            "FROM information_schema.columns WHERE table_schema = 'public' "
            "ORDER BY table_name, column_name"
        )
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "ORDER BY indexname"
        )
    finally:
        await conn.close()
    return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows] + [
        (str(i[0]), str(i[1]), "", "") for i in indexes
    ]


async def test_postgresql_fresh_and_stepwise_migrated_databases_match(postgres: PgServer) -> None:
    fresh_url, old_url = await postgres.new_database(), await postgres.new_database()
    fresh = await Storage.open(fresh_url)
    await fresh.close()
    for version in range(1, SCHEMA_VERSION + 1):
        db = await Storage.open(old_url, target_version=version)
        assert await db.schema_version() == version
        if version == 1:
            await db.set_state("kept", "yes")
        await db.close()
    migrated = await Storage.open(old_url)
    assert await migrated.get_state("kept") == "yes"
    await migrated.close()
    assert await pg_schema(fresh_url) == await pg_schema(old_url)


async def test_postgresql_database_from_newer_libhub_is_refused(postgres: PgServer) -> None:
    url = await postgres.new_database()
    db = await Storage.open(url)
    await db.close()
    conn = await asyncpg.connect(url)
    await conn.execute("UPDATE libhub_schema SET version = $1", SCHEMA_VERSION + 1)
    await conn.close()
    with pytest.raises(DatabaseTooNew, match="upgrade libhub"):
        await Storage.open(url)


async def test_postgresql_database_of_another_program_is_left_alone(postgres: PgServer) -> None:
    url = await postgres.new_database()
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE orders (id int)")
    await conn.close()
    with pytest.raises(NotOurDatabase, match="another program"):
        await Storage.open(url)
