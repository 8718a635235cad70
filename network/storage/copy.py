"""Copying a whole database into another (``libhub db migrate-to``): SQLite into PostgreSQL.

Both must be at the same schema version (opening migrates them). Tables are copied in the
order the migrations created them, so every row a foreign key points at is there first;
identity counters then continue after the highest copied id. The target must be empty of
libhub data: copying never merges two networks.
"""

from __future__ import annotations

from collections.abc import Callable

from network.errors import StorageError
from network.storage.base import Database
from network.storage.dialect import POSTGRESQL

# Per instance, not per network: a copy starts without them.
_SKIP = frozenset({"instances", "leases", "libhub_schema"})
BATCH = 1000

Progress = Callable[[str, int, int], None]  # (table, rows copied so far, rows in table)


async def _tables(db: Database) -> list[str]:
    rows = await db.fetchall(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY rowid"
    )
    # SQLite's full-text index (a virtual table and its shadow tables) is rebuilt from the
    # items on PostgreSQL by its own index; it is not data to copy.
    fts = {str(r[0]) for r in rows if "VIRTUAL TABLE" in str(r[1] or "").upper()}
    return [
        name
        for r in rows
        if (name := str(r[0])) not in _SKIP
        and name not in fts
        and not any(name.startswith(f"{v}_") for v in fts)
    ]


async def copy_database(source: Database, target: Database, progress: Progress) -> dict[str, int]:
    """Copy every row of ``source`` (SQLite) into ``target``; returns rows per table."""
    if source.dialect == POSTGRESQL:
        raise StorageError("the source must be an SQLite database")
    if await source.schema_version() != await target.schema_version():
        raise StorageError("the two databases have different schema versions: upgrade libhub")
    tables = await _tables(source)
    for table in tables:
        row = await target.fetchone(f"SELECT COUNT(*) FROM {table}")
        if row and int(row[0]):
            raise StorageError(
                f"the target database already holds libhub data (table {table}); copy into "
                "an empty database"
            )
    copied: dict[str, int] = {}
    for table in tables:
        total_row = await source.fetchone(f"SELECT COUNT(*) FROM {table}")
        total = int(total_row[0]) if total_row else 0
        progress(table, 0, total)
        done = 0
        last = 0
        while True:
            # Pages by rowid: memory stays flat however large the table is.
            rows = await source.fetchall(
                f"SELECT rowid AS _rowid_, * FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (last, BATCH),
            )
            if not rows:
                break
            last = int(rows[-1]["_rowid_"])
            columns = [c for c in rows[0].keys() if c != "_rowid_"]
            sql = (
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})"
            )
            async with target.transaction() as conn:
                await conn.executemany(sql, [tuple(r[c] for c in columns) for r in rows])
            done += len(rows)
            progress(table, done, total)
        copied[table] = done
        if target.dialect == POSTGRESQL and done:
            await _continue_identity(target, table)
    return copied


async def _continue_identity(target: Database, table: str) -> None:
    """Make the table's identity column (if any) continue after the copied ids."""
    found = await target.fetchone(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = "
        "current_schema() AND table_name = ? AND is_identity = 'YES'",
        (table,),
    )
    if found is None:
        return
    column = str(found[0])
    await target.fetchone(
        f"SELECT setval(pg_get_serial_sequence(?, ?), "
        f"(SELECT COALESCE(MAX({column}), 0) + 1 FROM {table}), false)",
        (table, column),
    )
