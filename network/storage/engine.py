"""The storage engine interface: what a backend offers (`Backend`, `Conn`, `Result`)
and the one numbered list of migrations both backends apply.

Migrations are the numbered ``migrations/NNNN_name.sql`` files, applied in order, one
transaction each; ``NNNN_name.postgresql.sql`` (or ``.sqlite.sql``) replaces a step for one
backend where the two differ, and otherwise `postgres_ddl` turns the shared step into
PostgreSQL's types.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Generator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from importlib import resources
from typing import Any

from network.errors import StorageError
from network.storage.dialect import POSTGRESQL, SQLITE, postgres_ddl

# A row: indexable by column name and by position (sqlite3.Row and asyncpg.Record both are).
Row = Any


def migrations(dialect: str = SQLITE) -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration step of ``dialect``, in order."""
    shared: dict[int, tuple[str, str]] = {}
    own: dict[int, tuple[str, str]] = {}
    folder = resources.files("network.storage").joinpath("migrations")
    for entry in folder.iterdir():
        m = re.match(r"^(\d{4})_([a-z0-9_]+)(?:\.(sqlite|postgresql))?\.sql$", entry.name)
        if not m:
            continue
        version, name, only = int(m.group(1)), m.group(2), m.group(3)
        target = shared if only is None else own if only == dialect else None
        if target is None:
            continue
        if version in target:
            raise StorageError(f"two migrations share the number {version}")
        target[version] = (name, entry.read_text(encoding="utf-8"))
    found: list[tuple[int, str, str]] = []
    for version in sorted(shared.keys() | own.keys()):
        if version in own:
            name, sql = own[version]
        else:
            name, sql = shared[version]
            sql = postgres_ddl(sql) if dialect == POSTGRESQL else sql
        found.append((version, name, sql))
    return found


SCHEMA_VERSION = migrations()[-1][0]


class Result:
    """What one statement returned: its rows (none for a write) and the rows it changed."""

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    async def fetchall(self) -> list[Row]:
        return self._rows

    async def fetchone(self) -> Row:
        """The first row, or None."""
        return self._rows[0] if self._rows else None


class Query:
    """A statement on its way: ``await`` it or ``async with`` it for its `Result`."""

    def __init__(self, run: Awaitable[Result]) -> None:
        self._run = run

    def __await__(self) -> Generator[Any, None, Result]:
        return self._run.__await__()

    async def __aenter__(self) -> Result:
        return await self._run

    async def __aexit__(self, *exc: object) -> None:
        return None


class Conn(ABC):
    """A connection inside one transaction (what ``Database.transaction`` yields)."""

    @abstractmethod
    def execute(self, sql: str, params: Iterable[Any] = ()) -> Query: ...

    @abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Result: ...


class Backend(ABC):
    """One database engine. ``dialect`` is `SQLITE` or `POSTGRESQL`."""

    dialect: str
    # A person-readable name of the database (a file path, or a URL without its password).
    where: str

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Conn]: ...

    @abstractmethod
    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int: ...

    @abstractmethod
    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]: ...

    @abstractmethod
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None: ...

    @abstractmethod
    async def schema_version(self) -> int: ...

    @abstractmethod
    async def table_exists(self, name: str) -> bool: ...

    @abstractmethod
    async def close(self) -> None: ...


class DuplicateKey(StorageError):
    """A write broke a unique constraint (both backends raise this one)."""
