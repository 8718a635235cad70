"""Subcommands that belong to later parts of the service (ask, kb, subscribers, digest,
cohorts, admin), registered on the parser built in `network.cli.main`.

Kept apart so `network/cli/main.py` stays the small core every deployment uses.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from network.cli.main import _EXTENSIONS

# -- cohorts and admin (community of practice, staff dashboard) ---------------------------


def _community_commands(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    cohorts = sub.add_parser("cohorts", help="the network's space, rooms and cohorts in Matrix")
    csub = cohorts.add_subparsers(dest="cohorts_command", metavar="COMMAND", required=True)
    sync = add(
        "sync",
        _cmd_cohorts_sync,
        "create the space and rooms, invite members, pin resources (shows the plan first)",
        parent=csub,
    )
    sync.add_argument("--dry-run", action="store_true", help="only show what would change")
    add("list", _cmd_cohorts_list, "show each cohort's members and what libhub did", parent=csub)
    admin = sub.add_parser("admin", help="staff dashboard access")
    asub = admin.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)
    token = add(
        "token",
        _cmd_admin_token,
        "print a one-time login link for the staff dashboard",
        parent=asub,
    )
    token.add_argument("--name", default="coordinator", help="who the login is for (shown)")


def _cmd_cohorts_sync(args: argparse.Namespace) -> int:
    from rich.table import Table

    from network.cli.main import _config, err, out, setup_logging
    from network.community.cohorts import CohortSync, smtp_mailer
    from network.matrix.gateway import MatrixGateway
    from network.settings.model import secret
    from network.storage import Storage

    settings = _config(args)
    setup_logging(args.verbose)
    logging.getLogger().setLevel(logging.WARNING)

    async def main() -> int:
        storage = await Storage.open(settings.database_path)
        matrix = MatrixGateway(
            settings.matrix,
            storage,
            password=secret(settings.matrix.password_env),
            access_token=secret(settings.matrix.access_token_env),
        )
        try:
            await matrix.login()
            sync = CohortSync(settings, matrix, storage, mailer=smtp_mailer(settings))
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
        return 1 if report.errors else 0

    return asyncio.run(main())


def _cmd_cohorts_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from network.cli.main import _config, out
    from network.storage import Storage

    settings = _config(args)

    async def main() -> int:
        storage = await Storage.open(settings.database_path)
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


def _cmd_admin_token(args: argparse.Namespace) -> int:
    from network.cli.main import _config, out
    from network.web.dashboard import issue_login_token, login_url

    settings = _config(args)
    token = issue_login_token(settings, args.name, now=datetime.now(UTC))
    hours = settings.dashboard.token_ttl.total_seconds() / 3600
    out.print(
        f"Dashboard login for {args.name} (works once, for {hours:g} h; keep it private):",
        highlight=False,
    )
    print(login_url(settings, token))
    return 0


_EXTENSIONS.append(_community_commands)


# -- ask and kb (assistance bot) ------------------------------------------------------------


def _assistance_commands(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    ask = add("ask", _cmd_ask, "answer a question from the toolbox pages (no Matrix)", config=False)
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument(
        "-c", "--config", type=Path, help="config file (default: the shipped toolbox pages)"
    )
    ask.add_argument("--json", action="store_true", help="print JSON")
    kb = sub.add_parser("kb", help="the assistance bot's knowledge base")
    ksub = kb.add_subparsers(dest="kb_command", metavar="COMMAND", required=True)
    add(
        "reload",
        _cmd_kb_reload,
        "check the pages and have the running service reload them",
        parent=ksub,
    )
    candidates = add(
        "candidates",
        _cmd_kb_candidates,
        "questions the Need Assistance team answered: material for new pages",
        parent=ksub,
    )
    candidates.add_argument("--json", action="store_true", help="print JSON")


def _cmd_ask(args: argparse.Namespace) -> int:
    import json

    from bots.assistant import toolbox_dir
    from bots.kb.index import KnowledgeBase
    from network.cli.main import out
    from network.settings.model import load_settings

    settings = load_settings(args.config) if args.config else None
    answer = KnowledgeBase.load(toolbox_dir(settings)).ask(args.question)
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False))
        return 0
    out.print(answer.answer, highlight=False, soft_wrap=True)
    if answer.title:
        out.print(f"Source: {answer.title} {answer.url or ''}", highlight=False, soft_wrap=True)
    if answer.related:
        out.print(f"Related: {', '.join(answer.related)}", highlight=False, soft_wrap=True)
    verdict = "would ask a person" if answer.escalate else "answers"
    out.print(f"[dim]score {answer.score:.2f}; the bot {verdict}[/dim]")
    return 0


def _cmd_kb_reload(args: argparse.Namespace) -> int:
    from bots.assistant import toolbox_dir
    from bots.kb.index import KnowledgeBase
    from network.cli.main import _config, out
    from network.storage import Storage

    settings = _config(args)
    folder = toolbox_dir(settings)
    kb = KnowledgeBase.load(folder)  # a broken page stops here, with its file name

    async def main() -> None:
        storage = await Storage.open(settings.database_path)
        try:
            # The running service compares this with what it loaded (every check_every).
            await storage.set_state("kb.reload_requested", datetime.now(UTC).isoformat())
        finally:
            await storage.close()

    asyncio.run(main())
    every = int(settings.assistance.check_every.total_seconds())
    out.print(
        f"{len(kb.pages)} pages in {folder} are valid; the running service reloads them "
        f"within {every} s.",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _cmd_kb_candidates(args: argparse.Namespace) -> int:
    import json

    from network.cli.main import _config, out
    from network.storage import Storage

    settings = _config(args)

    async def main() -> list[dict[str, Any]]:
        storage = await Storage.open(settings.database_path)
        try:
            found = await storage.kb_candidates()
        finally:
            await storage.close()
        return [
            {
                "case": c.case.id,
                "question": c.case.question,
                "asked_by": c.case.asker,
                "asked_at": c.case.progress.opened_at.isoformat(),
                "state": c.case.state,
                "bot_guess": c.case.guess_page,
                "answers": [
                    {"by": m.sender, "at": m.created_at.isoformat(), "text": m.body}
                    for m in c.answers
                ],
            }
            for c in found
        ]

    rows = asyncio.run(main())
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        out.print("No question has been answered by a person yet.")
    for row in rows:
        out.print(f"[bold]Case {row['case']}[/bold] ({row['asked_at'][:10]}, {row['state']})")
        # What people wrote is printed as written: "[/]" or "[bold]" in it is not markup.
        out.print(f"Q: {row['question']}", highlight=False, soft_wrap=True, markup=False)
        for answer in row["answers"]:
            line = f"A ({answer['by']}): {answer['text']}"
            out.print(line, highlight=False, soft_wrap=True, markup=False)
        out.print("")
    return 0


_EXTENSIONS.append(_assistance_commands)


# -- subscribers and digests (implemented in network/cli/digests.py) -----------------------


def _digest_commands(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    from network.cli.digests import register

    register(sub, add)


_EXTENSIONS.append(_digest_commands)
