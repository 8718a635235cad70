"""``libhub ask`` and ``libhub kb reload|candidates``: the assistance bot's knowledge base
from the command line."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from network.cli.common import Subparsers, add, config, open_storage, out


def _cmd_ask(args: argparse.Namespace) -> int:
    import json

    from bots.assistant import toolbox_dir
    from bots.kb.index import KnowledgeBase
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

    settings = config(args)
    folder = toolbox_dir(settings)
    kb = KnowledgeBase.load(folder)  # a broken page stops here, with its file name

    async def main() -> None:
        storage = await open_storage(settings)
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

    settings = config(args)

    async def main() -> list[dict[str, Any]]:
        storage = await open_storage(settings)
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


def register(sub: Subparsers) -> None:
    ask = add(sub, "ask", _cmd_ask, "answer a question from the toolbox pages (no Matrix)",
              config=False)  # fmt: skip
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument(
        "-c", "--config", type=Path, help="config file (default: the shipped toolbox pages)"
    )
    ask.add_argument("--json", action="store_true", help="print JSON")
    kb = sub.add_parser("kb", help="the assistance bot's knowledge base")
    ksub = kb.add_subparsers(dest="kb_command", metavar="COMMAND", required=True)
    add(ksub, "reload", _cmd_kb_reload, "check the pages and have the running service reload them")
    candidates = add(
        ksub,
        "candidates",
        _cmd_kb_candidates,
        "questions the Need Assistance team answered: material for new pages",
    )
    candidates.add_argument("--json", action="store_true", help="print JSON")
