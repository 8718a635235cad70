"""``libhub run``, ``check-config`` and ``status``: start the service, validate a config
file, and show feed health and the delivery queue."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from rich.table import Table

from network.cli.common import Subparsers, add, config, open_storage, out, run_async, setup_logging


def cmd_run(args: argparse.Namespace) -> int:
    settings = config(args)
    setup_logging(args.verbose)
    from network.service import run_service

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_service(settings, stop)
        return 0

    return run_async(main())


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = config(args)
    out.print(
        f"{args.config}: OK ({len(settings.feeds)} feeds, {len(settings.channels)} channels, "
        f"{len(settings.routes)} routes, {len(settings.cohorts)} cohorts)"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = config(args)
    from network.matrix.ratelimit import stored_notice

    async def main() -> int:
        storage = await open_storage(settings)
        try:
            feeds = await storage.feed_states()
            notice = await stored_notice(storage)
            report: dict[str, Any] = {
                "database": storage.where,
                "feeds": [
                    {
                        "id": f.id,
                        "url": f.url,
                        "status": f.status,
                        "last_check": f.last_check.isoformat() if f.last_check else None,
                        "last_success": f.last_success.isoformat() if f.last_success else None,
                        "next_check": f.next_check.isoformat() if f.next_check else None,
                        "consecutive_errors": f.consecutive_errors,
                        "last_error": f.last_error,
                    }
                    for f in feeds
                ],
                "outbox": await storage.outbox_counts(),
                "items": await storage.item_count(),
                "failed_deliveries": [
                    {
                        "id": r.id,
                        "target": r.target if r.target_type == "matrix" else r.channel,
                        "error": r.last_error,
                    }
                    for r in await storage.failed_rows()
                ],
                "matrix_rate_limited": notice.as_dict() if notice else None,
            }
        finally:
            await storage.close()
        if args.json:
            print(json.dumps(report, indent=2))
            return 0
        _print_feed_table(report["feeds"])
        o = report["outbox"]
        out.print(
            f"outbox: {o['pending']} pending, {o['sent']} sent, {o['failed']} failed; "
            f"{report['items']} items stored"
        )
        for f in report["failed_deliveries"]:
            out.print(f"[red]failed[/red] #{f['id']} to {f['target']}: {f['error']}")
        if notice is not None:
            out.print(f"[yellow]rate limited[/yellow] since {notice.first_seen}: {notice.advice}")
        return 0

    return run_async(main())


def _print_feed_table(feeds: list[dict[str, Any]]) -> None:
    table = Table(title="Feeds")
    for col in ("id", "status", "last success", "next check", "errors", "last error"):
        table.add_column(col)
    for f in feeds:
        colour = {"ok": "green", "new": "yellow"}.get(f["status"], "red")
        table.add_row(
            f["id"],
            f"[{colour}]{f['status']}[/{colour}]",
            (f["last_success"] or "never")[:19],
            (f["next_check"] or "-")[:19],
            str(f["consecutive_errors"]),
            (f["last_error"] or "")[:60],
        )
    out.print(table)


def register(sub: Subparsers) -> None:
    add(sub, "run", cmd_run, "run the service")
    add(sub, "check-config", cmd_check_config, "validate a config file and exit")
    st = add(sub, "status", cmd_status, "show feed health and the delivery queue")
    st.add_argument("--json", action="store_true", help="print JSON")
