"""The database the domain stores use: one interface, two backends.

`Database` is what every domain store (state.py, feeds.py, outbox.py, …) subclasses. It
offers ``execute``, ``fetchall``, ``fetchone`` and ``transaction`` over a `Backend`
(engine.py): SQLite (sqlite.py, the embedded default: one aiosqlite connection, WAL) or
PostgreSQL (postgres.py, asyncpg: several libhub instances on one database). The stores
write one dialect (dialect.py says how it becomes PostgreSQL's). A database written by a
newer libhub is refused on both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from network.storage.dialect import POSTGRESQL
from network.storage.engine import (
    SCHEMA_VERSION,
    Backend,
    Conn,
    DuplicateKey,
    Query,
    Result,
    Row,
    migrations,
)
from network.storage.postgres import open_postgres
from network.storage.sqlite import open_sqlite

__all__ = [
    "SCHEMA_VERSION",
    "Backend",
    "Conn",
    "Database",
    "DuplicateKey",
    "Query",
    "Result",
    "Row",
    "from_iso",
    "migrations",
    "now_iso",
]


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")


def from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def is_postgres_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


class Database:
    """The database, whichever backend holds it. Domain classes in this package use it."""

    def __init__(self, backend: Backend, path: Path | None = None) -> None:
        self._backend = backend
        self.dialect = backend.dialect
        # The SQLite file (None for PostgreSQL): the service lock and crypto store sit beside it.
        self.path = path
        # Outbox rows this process claimed -> the claim's lease token (fencing, outbox.py).
        self._lease_tokens: dict[int, str] = {}
        # The instance whose claims these are (network/leadership.py): its id starts each
        # lease token, so another instance can take back the claims of one that died.
        self.claimant = ""

    @classmethod
    async def open(
        cls,
        location: Path | str,
        *,
        password: str | None = None,
        target_version: int | None = None,
    ) -> Self:
        """Open (creating if new) and migrate the database at ``location``: an SQLite file
        path, or a ``postgresql://user@host:port/db`` URL (``password`` from the settings'
        ``password_env``, never in the URL of a config file).

        Raises `StorageError` saying what is wrong when it cannot be opened, is another
        program's database (it is never written to), or is newer than this libhub.
        """
        target = SCHEMA_VERSION if target_version is None else target_version
        if is_postgres_url(location):
            return cls(await open_postgres(str(location), password=password, target=target))
        p = Path(location)
        return cls(await open_sqlite(p, target=target), p)

    @property
    def where(self) -> str:
        return self._backend.where

    async def close(self) -> None:
        await self._backend.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        return await self._backend.schema_version()

    # The helpers below are for this package's domain modules only.

    def transaction(self) -> AbstractAsyncContextManager[Conn]:
        """One write transaction: committed on success, rolled back on error."""
        return self._backend.transaction()

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement in its own transaction; returns the number of rows changed."""
        return await self._backend.execute(sql, params)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        return await self._backend.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        return await self._backend.fetchone(sql, params)

    async def table_exists(self, name: str) -> bool:
        return await self._backend.table_exists(name)

    def new_lease_token(self) -> str:
        """A claim's lease token: the instance's id first (so the claims of an instance
        that went silent can be taken back), then a part of its own."""
        return f"{self.claimant}/{uuid.uuid4().hex}" if self.claimant else uuid.uuid4().hex

    def for_update(self) -> str:
        """What a SELECT that checks a row before writing ends with: on PostgreSQL it locks
        the row until the transaction ends; SQLite's write transaction already excludes
        every other writer."""
        return " FOR UPDATE" if self.dialect == POSTGRESQL else ""

    def skip_locked(self, of: str = "") -> str:
        """What a leasing SELECT ends with: on PostgreSQL, rows another instance is leasing
        right now are skipped rather than waited for; SQLite has one writer at a time."""
        if self.dialect != POSTGRESQL:
            return ""
        return f" FOR UPDATE OF {of} SKIP LOCKED" if of else " FOR UPDATE SKIP LOCKED"
