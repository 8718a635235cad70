"""The SQLite backend: the embedded default (one file, WAL, one aiosqlite connection).

Every statement runs under one asyncio lock, so a transaction of one coroutine never
interleaves with another's statements. ``PRAGMA user_version`` records the schema version
and ``PRAGMA application_id`` marks the file as libhub's.

The file holds the bot's Matrix access token and every subscriber's address, so it is
created readable by the service's user only (0600, whatever the umask); SQLite gives its
``-wal`` and ``-shm`` files the database file's mode.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from network.errors import DatabaseTooNew, NotOurDatabase, StorageError
from network.storage.dialect import SQLITE
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

log = logging.getLogger(__name__)

APPLICATION_ID = 0x4C494248  # "LIBH": marks the file as ours
FILE_MODE = 0o600  # owner only: the file holds secrets and subscribers' addresses


def _owner_only(path: Path) -> None:
    """Create ``path`` with mode 0600 before SQLite opens it, or tighten an existing file
    and its companions (an earlier libhub created them under the usual umask, 0644)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    except FileExistsError:
        pass
    except OSError as e:
        raise StorageError(f"cannot create database {path}: {e.strerror}") from e
    else:
        os.close(fd)
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if file.is_file() and stat.S_IMODE(file.stat().st_mode) & 0o077:
                file.chmod(FILE_MODE)
        except OSError as e:
            # Owned by another user: SQLite may still open it; say what to fix.
            log.warning("%s is readable by others; run chmod 600 on it (%s)", file, e.strerror)


class SqliteConn(Conn):
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def _run(self, sql: str, params: tuple[Any, ...]) -> Result:
        try:
            cur = await self._conn.execute(sql, params)
        except sqlite3.IntegrityError as e:
            raise DuplicateKey(str(e)) from e
        try:
            rows = list(await cur.fetchall()) if cur.description else []
            return Result(rows, int(cur.rowcount))
        finally:
            await cur.close()

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Query:
        return Query(self._run(sql, tuple(params)))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Result:
        try:
            cur = await self._conn.executemany(sql, [tuple(r) for r in rows])
        except sqlite3.IntegrityError as e:
            raise DuplicateKey(str(e)) from e
        count = int(cur.rowcount)
        await cur.close()
        return Result([], count)


class SqliteBackend(Backend):
    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._wrapped = SqliteConn(conn)
        self.path = path
        self.where = str(path)
        self._lock = asyncio.Lock()

    async def check_identity(self) -> None:
        """Refuse an SQLite file of another program: libhub's migrations would be written
        into it. A new, empty file is fine; libhub marks its files with `APPLICATION_ID`."""
        async with self._conn.execute("PRAGMA application_id") as cur:
            row = await cur.fetchone()
        app_id = int(row[0]) if row else 0
        if app_id == APPLICATION_ID:
            return
        async with self._conn.execute("SELECT count(*) FROM sqlite_master") as cur:
            row = await cur.fetchone()
        if app_id == 0 and not (row and int(row[0])):
            return
        whose = f"application_id {app_id:#x}" if app_id else "tables of its own"
        raise NotOurDatabase(
            f"database {self.path} belongs to another program ({whose}); libhub refuses to "
            "change it: set database.path to a new file or to libhub's own database"
        )

    async def migrate(self, target: int) -> None:
        current = await self.schema_version()
        if current > SCHEMA_VERSION:
            raise DatabaseTooNew(
                f"database {self.path} has schema version {current}, but this libhub knows "
                f"only up to {SCHEMA_VERSION}: upgrade libhub, or restore a backup"
            )
        for version, name, sql in migrations(SQLITE):
            if version <= current or version > target:
                continue
            log.info("migrating database to version %d (%s)", version, name)
            try:
                # executescript commits first, so wrap the whole step in one transaction.
                await self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version={version};\n"
                    f"PRAGMA application_id={APPLICATION_ID};\nCOMMIT;"
                )
            except sqlite3.Error as e:
                if self._conn.in_transaction:
                    await self._conn.execute("ROLLBACK")
                raise StorageError(f"migration {version} ({name}) failed: {e}") from e

    async def close(self) -> None:
        await self._conn.close()

    async def schema_version(self) -> int:
        async with self._conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def table_exists(self, name: str) -> bool:
        row = await self.fetchone(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        )
        return row is not None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """Hold the lock and one write transaction; commit on success, roll back on error."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._wrapped
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        async with self._lock:
            try:
                cur = await self._conn.execute(sql, tuple(params))
            except sqlite3.IntegrityError as e:
                raise DuplicateKey(f"database write failed: {e}") from e
            except sqlite3.Error as e:
                raise StorageError(f"database write failed: {e}") from e
            count = cur.rowcount
            await cur.close()
            return int(count)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        async with self._lock:
            async with self._conn.execute(sql, tuple(params)) as cur:
                return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        async with self._lock:
            async with self._conn.execute(sql, tuple(params)) as cur:
                return await cur.fetchone()


async def open_sqlite(p: Path, *, target: int) -> SqliteBackend:
    """Open (creating if new) and migrate the SQLite database at ``p``."""
    try:
        if str(p) != ":memory:":
            p.parent.mkdir(parents=True, exist_ok=True)
            _owner_only(p)
        connecting = aiosqlite.connect(p, isolation_level=None)
    except OSError as e:
        raise StorageError(
            f"cannot open database {p}: {e.strerror}; check database.path and the folder's "
            "permissions"
        ) from e
    try:
        conn = await connecting
    except sqlite3.Error as e:
        # A failed connect stops aiosqlite's worker thread; let it finish while the
        # event loop still runs, or it reports to a closed loop as the process exits.
        worker = getattr(connecting, "_thread", None)
        if worker is not None and worker.is_alive():
            await asyncio.to_thread(worker.join, 10)
        raise StorageError(
            f"cannot open database {p}: {e}; check database.path and the folder's permissions"
        ) from e
    conn.row_factory = aiosqlite.Row
    db = SqliteBackend(conn, p)
    try:
        # Before anything is written (WAL mode changes the file header): is it ours?
        await db.check_identity()
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=5000")
        await db.migrate(target)
    except sqlite3.Error as e:
        await conn.close()
        raise StorageError(
            f"cannot use database {p}: {e}; is database.path a libhub database? "
            "Restore a backup or point it at a new file"
        ) from e
    except BaseException:
        await conn.close()
        raise
    return db
