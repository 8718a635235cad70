"""``libhub subscribers ...`` and ``libhub digest ...``: coordinators' tools for subscribers.

* ``subscribers import FILE.csv``: a coordinator's existing list. Everyone gets a
  confirmation message (double opt-in) unless ``--confirmed`` is given, which needs a
  ``--consent`` note saying how these people agreed, prints a loud warning, and stores the
  note with each new subscriber. Addresses already known, including people who
  unsubscribed, are never changed by an import.
* ``subscribers list [--suspended]``, ``subscribers remove``, ``subscribers resume``.
* ``digest preview --subscriber ADDRESS``: what that person would get now.
* ``digest send --frequency daily|weekly [--dry-run] [--force]``: run a round by hand.
  Without ``--force`` it sends the digests that are due (safe from cron and next to a
  running service: a period is claimed once); ``--force`` sends everyone of that
  frequency what is pending for them now.

Registered on the ``libhub`` parser by `network.cli.main`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from network.cli.common import Subparsers, add, config, err, open_storage, out
from network.delivery.channels import ChannelSender
from network.errors import ConfigError
from network.settings.checks import weekday_number
from network.settings.model import Settings, secret
from network.storage import Storage
from network.storage.subscribers import Preferences, Subscriber
from network.subscriptions.digests.outcomes import SendReport
from network.subscriptions.digests.runner import DigestRunner
from network.subscriptions.lifecycle import Subscriptions
from network.subscriptions.postman import Postman
from network.subscriptions.topics import (
    Address,
    SubscriptionError,
    next_due,
    parse_address,
)

CSV_COLUMNS = ("address", "topics", "frequency", "tz", "hour", "weekday")


@dataclass
class Tools:
    settings: Settings
    storage: Storage
    postman: Postman
    subscriptions: Subscriptions
    runner: DigestRunner


@asynccontextmanager
async def _tools(settings: Settings) -> AsyncIterator[Tools]:
    storage = await open_storage(settings)
    postman = Postman(settings, ChannelSender())
    web_secret = secret(settings.web.secret_env)
    subs = Subscriptions(
        settings, storage, postman, secret=web_secret.encode() if web_secret else None
    )
    try:
        yield Tools(settings, storage, postman, subs, DigestRunner(settings, storage, subs))
    finally:
        await postman.close()
        await storage.close()


def _shown(sub: Subscriber) -> str:
    return Address(sub.address, sub.address_key, sub.channel).display() if (
        sub.channel == "apprise"
    ) else sub.address  # fmt: skip


# -- import ----------------------------------------------------------------------------------


@dataclass
class ImportReport:
    added: int = 0
    known: int = 0
    confirmations: int = 0
    limited: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def row_preferences(subs: Subscriptions, row: dict[str, str]) -> Preferences:
    """Preferences from one CSV row; empty cells take the configured defaults."""
    d = subs.defaults()
    words = (row.get("topics") or "").replace(";", " ").replace("|", " ").replace(",", " ")
    topics = []
    for word in words.split():
        topic = word if word in subs.catalog else subs.catalog.from_word(word)
        if topic is None:
            raise SubscriptionError(f"unknown topic {word!r}", field="topics")
        topics.append(topic)
    weekday = (row.get("weekday") or "").strip().lower()
    return subs.preferences(
        topics or d.topics,
        (row.get("frequency") or "").strip().lower() or d.frequency,
        (row.get("tz") or "").strip() or d.tz,
        (row.get("hour") or "").strip() or d.hour,
        _weekday(weekday) if weekday else d.weekday,
    )


def _weekday(cell: str) -> int | str:
    # Day names by the rule of the settings ("mon", "Monday"); anything else ("3") is left
    # for `Subscriptions.preferences` to accept or refuse.
    number = weekday_number(cell)
    return cell if number is None else number


def read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV file with a header row; unknown columns are an error."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text: save it as 'CSV UTF-8'") from e
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "address" not in header:
        raise ConfigError(
            f"{path}: the first line must name the columns, with at least 'address' "
            f"(known: {', '.join(CSV_COLUMNS)})"
        )
    unknown = sorted(set(header) - set(CSV_COLUMNS) - {""})
    if unknown:
        raise ConfigError(
            f"{path}: unknown column(s) {', '.join(unknown)}; known: {', '.join(CSV_COLUMNS)}"
        )
    reader.fieldnames = header
    return [
        (n + 2, {k: (v or "").strip() for k, v in row.items() if k}) for n, row in enumerate(reader)
    ]


async def import_rows(
    tools: Tools,
    rows: list[tuple[int, dict[str, str]]],
    *,
    confirmed: bool,
    consent: str,
    source: str,
    advance: Callable[[], None] = lambda: None,
) -> ImportReport:
    report = ImportReport()
    subs = tools.subscriptions
    gate = asyncio.Semaphore(tools.postman.parallelism)

    async def one(line: int, row: dict[str, str]) -> None:
        try:
            prefs = row_preferences(subs, row)
            address = parse_address(row.get("address", ""), schemes=None)
            if confirmed:
                _, created = await tools.storage.add_subscriber(
                    address=address.value,
                    address_key=address.key,
                    channel=address.channel,
                    prefs=prefs,
                    source=source,
                    consent=consent,
                    now=subs.clock(),
                    next_due=next_due,
                )
                if created:
                    report.added += 1
                else:
                    report.known += 1
                return
            async with gate:
                outcome = await subs.request(address.value, prefs, source=source, any_scheme=True)
            if outcome.sent:
                report.confirmations += 1
            elif outcome.detail == "rate-limited":
                report.limited += 1
            else:
                report.failed += 1
                report.errors.append(f"line {line}: {outcome.address.display()}: {outcome.detail}")
        except SubscriptionError as e:
            report.errors.append(f"line {line}: {e}")
        finally:
            advance()

    await asyncio.gather(*(one(line, row) for line, row in rows))
    return report


def cmd_subscribers_import(args: argparse.Namespace) -> int:
    settings = config(args)
    if args.confirmed and not (args.consent or "").strip():
        err.print(
            'libhub: --confirmed needs --consent "how these people agreed to get email" '
            '(for example "opted in on the 2025 conference form"); it is stored with each '
            "subscriber.",
            highlight=False,
        )
        return 2
    path = Path(args.file)
    rows = read_rows(path)
    stamp = datetime.now(UTC).date().isoformat()
    consent = f"imported from {path.name} on {stamp} without confirmation: {args.consent}"
    if args.confirmed:
        name = settings.digests.network_name or settings.network.name
        err.print(
            Panel(
                f"[bold]--confirmed: no confirmation messages will be sent.[/bold]\n\n"
                f"{len(rows)} addresses will get digests from {name} straight away. Only do "
                "this if every person on the list agreed to get this email (consent), for "
                "example an existing opt-in mailing list. Sending to people who did not agree "
                "is spam, may be illegal where they live, and harms the network's mail "
                "reputation.\n\n"
                f"Consent note stored with each new subscriber: {args.consent!r}",
                title="WARNING",
                border_style="bold red",
            )
        )

    async def main() -> int:
        async with _tools(settings) as tools:
            with Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=err, transient=True,
            ) as progress:  # fmt: skip
                task = progress.add_task("importing", total=len(rows))
                report = await import_rows(
                    tools,
                    rows,
                    confirmed=args.confirmed,
                    consent=consent,
                    source=f"import:{path.name}",
                    advance=lambda: progress.advance(task),
                )
        table = Table(title=f"Imported {path.name}")
        table.add_column("result")
        table.add_column("addresses", justify="right")
        if args.confirmed:
            table.add_row("added as confirmed subscribers", str(report.added))
        else:
            table.add_row("confirmation sent", str(report.confirmations))
            table.add_row("not sent (too many requests lately)", str(report.limited))
            table.add_row("sending failed", str(report.failed))
        table.add_row("already known, left unchanged", str(report.known))
        table.add_row("rows with errors", str(len(report.errors)))
        out.print(table)
        for line in report.errors:
            err.print(f"[red]{line}[/red]", highlight=False)
        return 1 if report.errors else 0

    return asyncio.run(main())


# -- list, remove, resume --------------------------------------------------------------------


def cmd_subscribers_list(args: argparse.Namespace) -> int:
    settings = config(args)
    statuses: tuple[str, ...] = ("active", "suspended")
    if args.suspended:
        statuses = ("suspended",)
    elif args.all:
        statuses = ()

    async def main() -> int:
        async with _tools(settings) as tools:
            subs = await tools.storage.list_subscribers(statuses=statuses)
            counts = await tools.storage.subscriber_counts()
            catalog = tools.subscriptions.catalog
        if args.json:
            print(json.dumps([_as_json(s) for s in subs], indent=2))
            return 0
        title = "Suspended subscriptions (bounces)" if args.suspended else "Subscribers"
        table = Table(title=title)
        for col in ("address", "status", "gets", "topics", "bounces", "last sent", "last error"):
            table.add_column(col)
        for s in subs:
            p = s.prefs
            gets = p.frequency if p.frequency == "immediate" else f"{p.frequency} {p.hour:02d}:00"
            table.add_row(
                _shown(s),
                s.status + (f" since {s.suspended_at:%Y-%m-%d}" if s.suspended_at else ""),
                f"{gets} {p.tz}",
                catalog.labels(p.topics),
                f"{s.bounce_score:g}",
                f"{s.last_sent_at:%Y-%m-%d %H:%M}" if s.last_sent_at else "never",
                (s.last_error or "")[:60],
            )
        out.print(table)
        out.print(
            f"{counts['active']} active, {counts['suspended']} suspended, "
            f"{counts['unsubscribed']} unsubscribed"
        )
        if args.suspended and subs:
            out.print("Fix the address with its owner, then: libhub subscribers resume ADDRESS")
        return 0

    return asyncio.run(main())


def _as_json(s: Subscriber) -> dict[str, Any]:
    return {
        "address": _shown(s),
        "status": s.status,
        "frequency": s.prefs.frequency,
        "tz": s.prefs.tz,
        "hour": s.prefs.hour,
        "weekday": s.prefs.weekday,
        "topics": list(s.prefs.topics),
        "bounce_score": s.bounce_score,
        "suspended_at": s.suspended_at.isoformat() if s.suspended_at else None,
        "last_sent_at": s.last_sent_at.isoformat() if s.last_sent_at else None,
        "last_error": s.last_error,
        "source": s.source,
        "consent": s.consent,
    }


async def _find(tools: Tools, text: str) -> Subscriber:
    address = parse_address(text, schemes=None)
    sub = await tools.storage.subscriber_by_key(address.key)
    if sub is None:
        raise ConfigError(f"{address.display()} is not a subscriber")
    return sub


def cmd_subscribers_remove(args: argparse.Namespace) -> int:
    settings = config(args)

    async def main() -> int:
        async with _tools(settings) as tools:
            sub = await _find(tools, args.address)
            changed = await tools.subscriptions.unsubscribe(sub)
        out.print(f"{_shown(sub)}: {'unsubscribed' if changed else 'was already unsubscribed'}")
        return 0

    return asyncio.run(main())


def cmd_subscribers_resume(args: argparse.Namespace) -> int:
    settings = config(args)

    async def main() -> int:
        async with _tools(settings) as tools:
            sub = await _find(tools, args.address)
            changed = await tools.storage.resume_subscriber(sub.id, now=datetime.now(UTC))
        out.print(f"{_shown(sub)}: {'resumed' if changed else f'not suspended ({sub.status})'}")
        return 0

    return asyncio.run(main())


# -- digest preview and send -----------------------------------------------------------------


def cmd_digest_preview(args: argparse.Namespace) -> int:
    settings = config(args)

    async def main() -> int:
        async with _tools(settings) as tools:
            sub = await _find(tools, args.subscriber)
            message = await tools.runner.preview(sub)
        if message is None:
            out.print(f"Nothing new for {_shown(sub)} since their last digest: no email.")
            return 0
        out.print(f"[bold]Subject:[/bold] {message.subject}\n", highlight=False)
        print(message.text)
        if args.html:
            await asyncio.to_thread(Path(args.html).write_text, message.html, encoding="utf-8")
            out.print(f"HTML part written to {args.html}")
        return 0

    return asyncio.run(main())


def cmd_digest_send(args: argparse.Namespace) -> int:
    settings = config(args)

    async def main() -> int:
        async with _tools(settings) as tools:
            now = tools.runner.clock()
            if args.dry_run:
                planned = await tools.runner.dry_run(
                    now, frequency=args.frequency, force=args.force
                )
                table = Table(title=f"{args.frequency} digests that would go out now (dry run)")
                table.add_column("subscriber")
                table.add_column("items", justify="right")
                for p in planned:
                    table.add_row(_shown(p.subscriber), str(p.items))
                out.print(table)
                out.print(f"{len(planned)} digests; nothing was sent or changed.")
                return 0
            planned = await tools.runner.plan(now, frequency=args.frequency, force=args.force)
            pending = (await tools.storage.run_counts())["pending"]
            with Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=err, transient=True,
            ) as progress:  # fmt: skip
                task = progress.add_task("sending", total=pending)

                def advance(report: SendReport) -> None:
                    progress.update(task, completed=report.done)

                report = await tools.runner.send_pending(progress=advance)
        out.print(
            f"{len(planned)} new {args.frequency} digests planned; sent {report.sent}, "
            f"bounced {report.permanent} ({report.suspended} suspended), "
            f"to retry {report.temporary}, dropped {report.dropped}."
        )
        return 0 if not report.temporary else 1

    return asyncio.run(main())


def register(sub: Subparsers) -> None:
    """Add ``subscribers`` and ``digest`` to the ``libhub`` parser."""
    subscribers = sub.add_parser("subscribers", help="email and channel subscribers")
    ssub = subscribers.add_subparsers(dest="subscribers_command", metavar="COMMAND", required=True)
    imp = add(
        ssub,
        "import",
        cmd_subscribers_import,
        "import a CSV list (columns: address, topics, frequency, tz, hour, weekday); "
        "sends confirmation messages unless --confirmed",
    )
    imp.add_argument("file", help="CSV file with a header row; only 'address' is required")
    imp.add_argument(
        "--confirmed",
        action="store_true",
        help="add everyone without confirmation (they already agreed; needs --consent)",
    )
    imp.add_argument("--consent", help="how these people agreed to get email (stored)")
    ls = add(ssub, "list", cmd_subscribers_list, "show subscribers")
    ls.add_argument("--suspended", action="store_true", help="only those suspended by bounces")
    ls.add_argument("--all", action="store_true", help="include people who unsubscribed")
    ls.add_argument("--json", action="store_true", help="print JSON")
    rm = add(ssub, "remove", cmd_subscribers_remove, "unsubscribe an address")
    rm.add_argument("address")
    rs = add(ssub, "resume", cmd_subscribers_resume, "resume an address suspended by bounces")
    rs.add_argument("address")

    digest = sub.add_parser("digest", help="preview and send digests by hand")
    dsub = digest.add_subparsers(dest="digest_command", metavar="COMMAND", required=True)
    pv = add(dsub, "preview", cmd_digest_preview, "show what a subscriber would get now")
    pv.add_argument("--subscriber", required=True, metavar="ADDRESS")
    pv.add_argument("--html", metavar="FILE", help="also write the HTML part to FILE")
    sd = add(dsub, "send", cmd_digest_send, "send the digests that are due, with a progress bar")
    sd.add_argument("--frequency", required=True, choices=["daily", "weekly"])
    sd.add_argument("--dry-run", action="store_true", help="show who would get what; send nothing")
    sd.add_argument(
        "--force",
        action="store_true",
        help="send everyone of this frequency what is pending now, whatever their hour",
    )
