"""``libhub cohorts sync|list``: the network's space, rooms and cohorts in Matrix."""

from __future__ import annotations

import argparse
import asyncio
import logging
from contextlib import nullcontext

from network.cli.common import Subparsers, add, config, err, open_storage, out, setup_logging


def _cmd_cohorts_sync(args: argparse.Namespace) -> int:
    from rich.table import Table

    from network.community.cohorts import CohortSync, smtp_mailer
    from network.matrix.gateway import MatrixGateway
    from network.storage.lock import service_lock

    settings = config(args)
    setup_logging(args.verbose)
    logging.getLogger().setLevel(logging.WARNING)

    async def main() -> int:
        storage = await open_storage(settings)
        matrix = MatrixGateway.from_settings(settings, storage)
        try:
            await matrix.login()
            sync = CohortSync(
                settings, matrix, storage, mailer=smtp_mailer(settings), max_wait=args.max_wait
            )
            report = await (sync.plan() if args.dry_run else sync.apply())
        finally:
            await matrix.close()
            await storage.close()
        title = "What `libhub cohorts sync` would do" if args.dry_run else "Done"
        table = Table(title=title)
        for col in ("room", "action", "who / what", "detail"):
            table.add_column(col)
        for a in report.actions:
            style = "" if a.changes else "dim"
            table.add_row(a.room, a.kind, a.target, a.detail, style=style)
        if report.actions:
            out.print(table)
        n = len(report.changes)
        out.print(f"{n} change(s)" if n else "Nothing to change: Matrix matches the config.")
        for line in report.errors:
            err.print(f"[red]error:[/red] {line}", highlight=False)
        if report.rate_limit_waits:
            out.print(f"waited out {report.rate_limit_waits} rate limit(s) of the homeserver")
        if report.interrupted:
            err.print(f"[yellow]incomplete:[/yellow] {report.interrupted}", highlight=False)
            return 75  # EX_TEMPFAIL: run again to continue
        return 1 if report.errors else 0

    # The bot's device and crypto store are the running service's: on SQLite one process
    # at a time (with `community.sync_on_start` the service reconciles the cohorts itself).
    lock = nullcontext() if settings.database.url else service_lock(settings.database_path)
    with lock:
        return asyncio.run(main())


def _cmd_cohorts_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    settings = config(args)

    async def main() -> int:
        storage = await open_storage(settings)
        try:
            counts = await storage.cohort_update_counts()
            for cohort in settings.cohorts:
                room = await storage.community_room(f"cohort:{cohort.id}")
                invited = await storage.invited_users(room.room_id) if room else set()
                emailed = await storage.emailed_members(cohort.id)
                table = Table(
                    title=f"{cohort.name} ({cohort.room}): {counts.get(cohort.id, 0)} update(s)"
                )
                for col in ("member", "library", "libhub did"):
                    table.add_column(col)
                for member in cohort.all_members:
                    did = (
                        "invited"
                        if member in invited
                        else "emailed"
                        if member in emailed
                        else "nothing yet (run `libhub cohorts sync`)"
                    )
                    table.add_row(member, cohort.library_of(member) or "", did)
                out.print(table)
        finally:
            await storage.close()
        return 0

    return asyncio.run(main())


def register(sub: Subparsers) -> None:
    cohorts = sub.add_parser("cohorts", help="the network's space, rooms and cohorts in Matrix")
    csub = cohorts.add_subparsers(dest="cohorts_command", metavar="COMMAND", required=True)
    sync = add(
        csub,
        "sync",
        _cmd_cohorts_sync,
        "create the space and rooms, invite members, pin resources (shows the plan first)",
    )
    sync.add_argument("--dry-run", action="store_true", help="only show what would change")
    sync.add_argument(
        "--max-wait",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="wait out the homeserver's rate limits for at most this long in all, then stop; "
        "a rerun continues (default 600)",
    )
    add(csub, "list", _cmd_cohorts_list, "show each cohort's members and what libhub did")
