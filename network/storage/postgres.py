"""The PostgreSQL backend (asyncpg): one database shared by any number of libhub instances.

A small connection pool; statements outside a transaction take any connection, a
transaction holds one until it commits. The schema version lives in the ``libhub_schema``
table, which also marks the database as libhub's; migrations run under a transaction-level
advisory lock, so instances started together migrate once. The password comes from the
caller (the settings' ``password_env``) and never appears in a message or a log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from network.errors import DatabaseTooNew, NotOurDatabase, StorageError
from network.storage.dialect import POSTGRESQL, to_postgres
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

MIGRATION_LOCK = 0x4C494248  # the advisory lock key instances migrate under ("LIBH")
POOL_SIZE = 8


def safe_url(url: str) -> str:
    """The URL without a password, fit for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _count(status: str) -> int:
    """Rows changed, from a command status such as ``INSERT 0 3`` or ``UPDATE 2``."""
    m = re.search(r"(\d+)$", status or "")
    return int(m.group(1)) if m else 0


def _returns_rows(sql: str) -> bool:
    head = sql.lstrip()[:6].upper()
    return head in ("SELECT", "WITH R", "VALUES") or " RETURNING " in sql.upper()


async def _run(conn: Any, sql: str, params: Sequence[Any]) -> Result:
    query = to_postgres(sql)
    try:
        if _returns_rows(query):
            rows = list(await conn.fetch(query, *params))
            return Result(rows, len(rows))
        return Result([], _count(await conn.execute(query, *params)))
    except asyncpg.UniqueViolationError as e:
        raise DuplicateKey(str(e)) from e


async def _keep_session(conn: Any) -> None:
    """What a connection needs before it goes back to the pool: nothing beyond the rollback
    asyncpg always does. Its default reset (unlock advisory locks, close cursors, UNLISTEN,
    RESET ALL) is one more round trip for every statement (a digest makes one per message)
    and undoes nothing: the stores take only transaction-level advisory locks and never
    LISTEN, SET or leave a cursor open."""


class PostgresConn(Conn):
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Query:
        return Query(_run(self._conn, sql, tuple(params)))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Result:
        # One by one (a prepared statement, in the open transaction): asyncpg's executemany
        # does not say how many rows it changed, and callers count their inserts.
        total = 0
        for r in rows:
            total += (await _run(self._conn, sql, tuple(r))).rowcount
        return Result([], total)


class PostgresBackend(Backend):
    dialect = POSTGRESQL

    def __init__(self, pool: Any, url: str) -> None:
        self._pool = pool
        self.where = safe_url(url)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresConn(conn)

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        async with self._pool.acquire() as conn:
            try:
                return (await _run(conn, sql, tuple(params))).rowcount
            except DuplicateKey:
                raise
            except asyncpg.PostgresError as e:
                raise StorageError(f"database write failed: {e}") from e

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        async with self._pool.acquire() as conn:
            return list(await conn.fetch(to_postgres(sql), *tuple(params)))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        async with self._pool.acquire() as conn:
            return await conn.fetchrow(to_postgres(sql), *tuple(params))

    async def schema_version(self) -> int:
        async with self._pool.acquire() as conn:
            return await _version(conn)

    async def table_exists(self, name: str) -> bool:
        async with self._pool.acquire() as conn:
            found = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
        return bool(found)

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self, target: int) -> None:
        async with self._pool.acquire() as conn:
            await self._check_identity(conn)
            for version, name, sql in migrations(POSTGRESQL):
                if version > target:
                    break
                async with conn.transaction():
                    # Instances starting together: one migrates, the others wait and skip.
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS libhub_schema (version BIGINT NOT NULL)"
                    )
                    current = await _version(conn)
                    self._refuse_newer(current)
                    if version <= current:
                        continue
                    log.info("migrating database to version %d (%s)", version, name)
                    try:
                        await conn.execute(sql)
                    except asyncpg.PostgresError as e:
                        raise StorageError(f"migration {version} ({name}) failed: {e}") from e
                    await conn.execute("DELETE FROM libhub_schema")
                    await conn.execute("INSERT INTO libhub_schema (version) VALUES ($1)", version)
            self._refuse_newer(await _version(conn))

    def _refuse_newer(self, current: int) -> None:
        if current > SCHEMA_VERSION:
            raise DatabaseTooNew(
                f"database {self.where} has schema version {current}, but this libhub knows "
                f"only up to {SCHEMA_VERSION}: upgrade libhub, or restore a backup"
            )

    async def _check_identity(self, conn: Any) -> None:
        """Refuse a database with tables of another program (an empty one is fine)."""
        if await conn.fetchval("SELECT to_regclass('libhub_schema') IS NOT NULL"):
            return
        others = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        if others:
            raise NotOurDatabase(
                f"database {self.where} has tables of another program; libhub refuses to "
                "change it: set database.url to an empty database or to libhub's own"
            )


async def _version(conn: Any) -> int:
    if not await conn.fetchval("SELECT to_regclass('libhub_schema') IS NOT NULL"):
        return 0
    value = await conn.fetchval("SELECT max(version) FROM libhub_schema")
    return int(value or 0)


async def open_postgres(url: str, *, password: str | None, target: int) -> PostgresBackend:
    """Connect to ``url`` and migrate the database to ``target``."""
    where = safe_url(url)
    try:
        pool = await asyncpg.create_pool(
            dsn=url,
            password=password,
            min_size=1,
            max_size=POOL_SIZE,
            command_timeout=60,
            reset=_keep_session,
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        raise StorageError(
            f"cannot connect to database {where}: {e}; check database.url, the password in "
            "the variable named by database.password_env, and that PostgreSQL is running"
        ) from e
    db = PostgresBackend(pool, url)
    try:
        await db.migrate(target)
    except BaseException:
        await pool.close()
        raise
    return db
