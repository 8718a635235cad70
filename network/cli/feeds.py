"""``libhub feeds parse|list|poll|import``: what libhub sees in a feed file, every feed's
health, a poll of the due feeds now with a progress bar, and an OPML list imported as live
feeds (each checked like ``!feed add``; a summary of what was added and skipped, and why)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rich.progress import Progress
from rich.table import Table

from network.cli.common import (
    EXIT_NOT_A_FEED,
    Subparsers,
    add,
    config,
    err,
    out,
    run_async,
    setup_logging,
)
from network.cli.service import cmd_status
from network.errors import ConfigError


def cmd_feeds_parse(args: argparse.Namespace) -> int:
    from feeds.classify import enrich
    from feeds.errors import FeedError
    from feeds.parse import parse_feed, parsed_feed_to_json

    path = Path(args.file)
    try:
        body = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    base = args.base_url or path.resolve().as_uri()
    try:
        parsed = parse_feed(body, url=base)
    except FeedError as e:
        print(json.dumps({"error": str(e)}))
        return EXIT_NOT_A_FEED
    enriched = [enrich(item, args.kind) for item in parsed.items]
    from dataclasses import replace

    parsed = replace(parsed, items=tuple(item for _, item in enriched))
    doc = parsed_feed_to_json(parsed, kinds=[kind for kind, _ in enriched])
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        out.print(f"[bold]{doc['title']}[/bold] ({doc['link']}): {len(doc['items'])} items")
        for item in doc["items"]:
            out.print(f"- [{item['kind']}] {item['title']} {item['link'] or ''}")
        for w in doc["warnings"]:
            out.print(f"[yellow]warning:[/yellow] {w}")
    return 0


def cmd_feeds_list(args: argparse.Namespace) -> int:
    args.json = False
    return cmd_status(args)


def cmd_feeds_poll(args: argparse.Namespace) -> int:
    settings = config(args)
    setup_logging(args.verbose)
    logging.getLogger().setLevel(logging.WARNING)
    from network.service import Service

    async def main() -> int:
        service = await Service.create(settings)
        try:
            await service.poller.prepare()
            with Progress(console=err, transient=True) as progress:
                task = progress.add_task("polling feeds", total=len(settings.feeds))
                outcomes = await service.poller.poll_due(
                    force=args.all, progress=lambda _o: progress.advance(task)
                )
        finally:
            await service.close()
        table = Table(title=f"Polled {len(outcomes)} feeds")
        for col in ("feed", "status", "new", "updated", "queued", "error"):
            table.add_column(col)
        for o in outcomes:
            table.add_row(
                o.feed_id, o.status, str(o.new), str(o.updated), str(o.queued), o.error or ""
            )
        out.print(table)
        out.print("Deliveries are sent by the running service (libhub run).")
        return 0

    return run_async(main())


def cmd_feeds_import(args: argparse.Namespace) -> int:
    settings = config(args)
    setup_logging(args.verbose)
    logging.getLogger().setLevel(logging.WARNING)
    from network.feedadmin.opml_import import import_feeds, parse
    from network.service import Service

    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    entries = parse(data, source=str(path))

    async def main() -> int:
        service = await Service.create(settings)
        try:
            await service.catalog.reload(service.storage)
            with Progress(console=err, transient=True) as progress:
                task = progress.add_task("checking feeds", total=len(entries))
                report = await import_feeds(
                    service.feed_admin,
                    args.actor,
                    entries,
                    kind=args.kind,
                    rooms=args.room or (),
                    channels=args.channel or (),
                    progress=lambda _f: progress.advance(task),
                )
        finally:
            await service.close()
        table = Table(
            title=f"{path.name}: {len(report.added)} added, {len(report.skipped)} skipped"
        )
        for col in ("feed", "address", "result"):
            table.add_column(col)
        for a in report.added:
            table.add_row(a.feed.id, a.feed.url, f"added ({a.count} current items marked seen)")
        for s in report.skipped:
            table.add_row(s.title or "-", s.url, f"skipped: {s.reason}")
        out.print(table)
        if report.added:
            out.print("A running service (libhub run) starts polling them at its next poll cycle.")
        return 0

    return run_async(main())


def register(sub: Subparsers) -> None:
    feeds = sub.add_parser("feeds", help="inspect and poll feeds")
    fsub = feeds.add_subparsers(dest="feeds_command", metavar="COMMAND", required=True)
    fp = add(
        fsub,
        "parse",
        cmd_feeds_parse,
        "parse a feed file and print what libhub sees",
        config=False,
    )
    fp.add_argument("file")
    fp.add_argument("--base-url", help="the URL the file was served from (resolves relative links)")
    fp.add_argument("--kind", default="news", choices=["news", "webinar", "cohort-update"])
    fp.add_argument("--json", action="store_true", help="print JSON")
    add(fsub, "list", cmd_feeds_list, "show every feed with its health")
    pl = add(fsub, "poll", cmd_feeds_poll, "poll due feeds now, with a progress bar")
    pl.add_argument("--once", action="store_true", help="one cycle, then exit (the default)")
    pl.add_argument("--all", action="store_true", help="poll every feed, due or not")
    im = add(fsub, "import", cmd_feeds_import, "add the feeds of an OPML file as live feeds")
    im.add_argument("file", help="the OPML file (from a feed reader or /feeds.opml)")
    im.add_argument("--kind", default="news", choices=["news", "webinar", "cohort-update"])
    im.add_argument("--room", action="append", help="a room the feeds post to (repeatable)")
    im.add_argument("--channel", action="append", help="a channel they post to (repeatable)")
    im.add_argument("--actor", default="cli", help="who is named in the audit log")
