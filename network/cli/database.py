"""``libhub db migrate-to URL``: copy the network's SQLite database into PostgreSQL."""

from __future__ import annotations

import argparse

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from network.cli.common import Subparsers, add, config, out, run_async


def cmd_migrate_to(args: argparse.Namespace) -> int:
    """Copy every row of the configured SQLite database into an empty PostgreSQL database
    (created and migrated if new). Stop `libhub run` first, so nothing changes meanwhile;
    then set database.url (and password_env) and start libhub on PostgreSQL."""
    settings = config(args)
    from network.settings.model import secret
    from network.storage import Storage
    from network.storage.copy import copy_database

    async def main() -> int:
        source = await Storage.open(settings.database_path)
        try:
            target = await Storage.open(args.url, password=secret(args.password_env))
            try:
                with Progress(
                    TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                    console=out,
                ) as bar:  # fmt: skip
                    tasks: dict[str, object] = {}

                    def progress(table: str, done: int, total: int) -> None:
                        if table not in tasks:
                            tasks[table] = bar.add_task(table, total=max(total, 1))
                        task = tasks[table]
                        bar.update(task, completed=done if total else 1)  # type: ignore[arg-type]

                    copied = await copy_database(source, target, progress)
            finally:
                await target.close()
        finally:
            await source.close()
        out.print(
            f"copied {sum(copied.values())} rows in {len(copied)} tables from "
            f"{settings.database_path} to {target.where}: set database.url to it (and "
            "database.password_env), remove database.path, and start libhub"
        )
        return 0

    return run_async(main())


def register(sub: Subparsers) -> None:
    db = sub.add_parser("db", help="database tools")
    tools = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    move = add(
        tools,
        "migrate-to",
        cmd_migrate_to,
        "copy the SQLite database into an empty PostgreSQL database",
    )
    move.add_argument("url", help="postgresql://user@host:port/database")
    move.add_argument(
        "--password-env",
        default="",
        help="environment variable holding the PostgreSQL password (default: none)",
    )
