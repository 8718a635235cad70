"""The ``libhub`` command line: run, check-config, status, demo, feeds, and the rest.

Each subcommand is a small function; errors a person can fix (bad config, unreachable
database) are printed as one line starting with ``libhub:`` and exit with status 2,
never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from network.errors import ConfigError, LibhubError
from network.settings.model import Settings, load_settings

EXIT_CONFIG = 2
EXIT_NOT_A_FEED = 3

err = Console(stderr=True)
out = Console()

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Handler] = {}


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Libraries that log request URLs at INFO could leak tokens in query strings, and at
    # DEBUG aiosqlite logs SQL parameters (the stored access token) and aiosmtplib the
    # AUTH exchange: they stay at WARNING even with --verbose.
    for noisy in ("nio", "aiohttp.access", "apprise", "peewee", "mail.log", "aiosqlite",
                  "aiosmtplib"):  # fmt: skip
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    # With config/demo.toml, the secrets `libhub demo` made are used (a value set wins).
    from network.devtools.demosecrets import use_demo_secrets

    use_demo_secrets(
        args.config,
        settings.database_path,
        password_env=settings.matrix.password_env,
        secret_env=settings.web.secret_env,
    )
    return settings


def _run_async(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


# -- run / check-config / status --------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    settings = _config(args)
    setup_logging(args.verbose)
    from network.service import run_service

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_service(settings, stop)
        return 0

    return _run_async(main())


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _config(args)
    out.print(
        f"{args.config}: OK ({len(settings.feeds)} feeds, {len(settings.channels)} channels, "
        f"{len(settings.routes)} routes, {len(settings.cohorts)} cohorts)"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = _config(args)
    from network.storage import Storage

    async def main() -> int:
        storage = await Storage.open(settings.database_path)
        try:
            feeds = await storage.feed_states()
            report: dict[str, Any] = {
                "database": str(settings.database_path),
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
        return 0

    return _run_async(main())


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


# -- feeds ---------------------------------------------------------------------------


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
    settings = _config(args)
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

    return _run_async(main())


# -- demo ----------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from network.devtools.demo import run_demo

    return _run_async(run_demo(Path(args.data_dir)))


# -- parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="libhub",
        description="libhub: feeds to Matrix rooms, email digests and an assistance bot "
        "for a network of public libraries.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str, handler: Handler, help_text: str, *, config: bool = True, parent: Any = sub
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
        if config:
            p.add_argument("-c", "--config", required=True, type=Path, help="the TOML config file")
        p.set_defaults(handler=handler)
        return p

    add("run", cmd_run, "run the service")
    add("check-config", cmd_check_config, "validate a config file and exit")
    st = add("status", cmd_status, "show feed health and the delivery queue")
    st.add_argument("--json", action="store_true", help="print JSON")
    demo = add("demo", cmd_demo, "run a self-contained demo on loopback", config=False)
    demo.add_argument("--data-dir", default="var/demo", help="where the demo keeps its state")

    feeds = sub.add_parser("feeds", help="inspect and poll feeds")
    fsub = feeds.add_subparsers(dest="feeds_command", metavar="COMMAND", required=True)
    fp = add(
        "parse",
        cmd_feeds_parse,
        "parse a feed file and print what libhub sees",
        config=False,
        parent=fsub,
    )
    fp.add_argument("file")
    fp.add_argument("--base-url", help="the URL the file was served from (resolves relative links)")
    fp.add_argument("--kind", default="news", choices=["news", "webinar", "cohort-update"])
    fp.add_argument("--json", action="store_true", help="print JSON")
    add("list", cmd_feeds_list, "show every feed with its health", parent=fsub)
    pl = add("poll", cmd_feeds_poll, "poll due feeds now, with a progress bar", parent=fsub)
    pl.add_argument("--once", action="store_true", help="one cycle, then exit (the default)")
    pl.add_argument("--all", action="store_true", help="poll every feed, due or not")

    for register in _EXTENSIONS:
        register(sub, add)
    return parser


# Other modules add subcommands (ask, kb, subscribers, digest, cohorts, admin) here.
_EXTENSIONS: list[Callable[[Any, Callable[..., argparse.ArgumentParser]], None]] = []


def main(argv: list[str] | None = None) -> int:
    from network.cli import community  # noqa: F401  (registers the remaining subcommands)

    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_CONFIG
    try:
        return handler(args)
    except ConfigError as e:
        err.print(f"libhub: config error: {e}", highlight=False, soft_wrap=True)
        return EXIT_CONFIG
    except LibhubError as e:
        err.print(f"libhub: {e}", highlight=False, soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Under ``python -m network.cli.main`` this file runs as __main__, a second copy of the
    # module; the subcommands register into the importable one, so run that one's main.
    from network.cli.main import main as _main

    sys.exit(_main())
