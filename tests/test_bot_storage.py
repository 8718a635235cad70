"""The assistance bot's storage: idempotent cases, mapping events to cases, the inbox,
feedback, KB candidates; and the command line (`libhub ask`, `kb reload`) with the
service's reload of changed pages."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bots.assistant import DEFAULT_TOOLBOX
from network.service import Service
from network.settings.model import parse_settings
from network.storage import Storage
from network.storage.bot_events import BotAnswer
from network.storage.cases import CaseProgress, MessageKind, NewCase

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
async def storage(db_location: str | Path) -> AsyncIterator[Storage]:
    s = await Storage.open(db_location)
    try:
        yield s
    finally:
        await s.close()


def new_case(question_event: str, root: str, *, direct: bool = True) -> NewCase:
    return NewCase(
        question_event,
        "How do I renew my card?",
        "@ana:x",
        "!dm:x",
        direct,
        None if direct else question_event,
        None,
        None,
        "!team:x",
        root,
        T0,
        True,
    )


async def test_cases_are_opened_once_and_found_from_events(storage: Storage) -> None:
    first = await storage.create_case(new_case("$q1", "$root1"))
    again = await storage.create_case(new_case("$q1", "$root1"))
    assert first.id == again.id and first.state == "open" and first.email_status == "pending"
    assert (await storage.active_case_for("!dm:x", "@ana:x")) == first
    assert await storage.active_case_for("!dm:x", "@bob:x") is None
    assert await storage.case_by_thread_root("$root1") == first

    # The bot's messages to the asker map back to the case (a reply to them reopens it).
    await storage.add_case_message(
        first.id,
        "to_asker",
        sender="@bot:x",
        body="closed",
        source_event_id="$close",
        sent_event_id="$told",
        now=T0,
    )
    assert (await storage.case_for_asker_event("!dm:x", "$told")) == first
    assert (await storage.case_for_asker_event("!dm:x", "$q1")) == first
    assert await storage.case_for_asker_event("!elsewhere:x", "$told") is None

    closed = CaseProgress("closed", "@team:x", T0, T0 + timedelta(hours=1), T0, T0)
    await storage.update_case(first.id, closed)
    assert await storage.active_case_for("!dm:x", "@ana:x") is None
    reloaded = await storage.case(first.id)
    assert reloaded is not None and reloaded.progress == closed


async def test_kb_candidates_are_cases_a_person_answered(storage: Storage) -> None:
    answered = await storage.create_case(new_case("$q1", "$r1"))
    await storage.create_case(new_case("$q2", "$r2"))
    messages: list[tuple[MessageKind, str]] = [
        ("note", "internal"),
        ("answer", "At any desk."),
        ("answer", "Or online."),
    ]
    for kind, text in messages:
        await storage.add_case_message(
            answered.id, kind, sender="@team:x", body=text, source_event_id=f"${text}", now=T0
        )
    # The same event recorded twice (a replay) is one message.
    await storage.add_case_message(
        answered.id,
        "answer",
        sender="@team:x",
        body="Or online.",
        source_event_id="$Or online.",
        sent_event_id="$relayed",
        now=T0,
    )
    [candidate] = await storage.kb_candidates()
    assert candidate.case.id == answered.id
    assert [m.body for m in candidate.answers] == ["At any desk.", "Or online."]
    assert candidate.answers[1].sent_event_id == "$relayed"


async def test_inbox_feedback_and_rooms(storage: Storage) -> None:
    assert await storage.inbox_add("$e1", "!r:x", {"type": "m.room.message", "n": 1})
    assert not await storage.inbox_add("$e1", "!r:x", {"type": "m.room.message", "n": 1})
    await storage.inbox_add("$e2", "!r:x", {"type": "m.reaction"})
    assert [i.event_id for i in await storage.inbox_pending()] == ["$e1", "$e2"]
    assert await storage.inbox_failed("$e2", "boom") == 1
    answer = BotAnswer("$a1", "!r:x", "$e1", "@ana:x", "where?", "makerspaces", 0.8, False, T0)
    await storage.inbox_done("$e1", "!r:x", answer=answer)
    assert await storage.event_processed("$e1")
    assert [i.event_id for i in await storage.inbox_pending()] == ["$e2"]
    assert await storage.answer_by_event("$a1") == answer
    assert await storage.last_answer_for("!r:x", "@ana:x") == answer

    assert await storage.record_feedback("$re1", "$a1", "@ana:x", "down", T0)
    assert not await storage.record_feedback("$re1", "$a1", "@ana:x", "down", T0)
    assert await storage.feedback_counts() == {"up": 0, "down": 1}

    await storage.set_bot_room_joined("!r:x", 1000)
    await storage.set_bot_room_joined("!r:x", 5000)  # rejoining keeps the first join
    room = await storage.bot_room("!r:x")
    assert room is not None and (room.joined_ts, room.greeted) == (1000, False)
    await storage.set_room_flag("!r:x", "greeted")
    room = await storage.bot_room("!r:x")
    assert room is not None and (room.joined_ts, room.greeted) == (1000, True)


async def _libhub(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from network.cli.main import main; sys.exit(main())",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_ask_prints_exactly_the_answer_fields() -> None:
    code, out, _ = await _libhub("ask", "how do we keep Wi-Fi on after closing?", "--json")
    assert code == 0
    doc = json.loads(out)
    assert list(doc) == [
        "page", "title", "answer", "url", "score", "escalate", "related", "intent", "language",
        "choices",
    ]  # fmt: skip
    assert doc["page"] == "wi-fi-access-after-hours" and doc["escalate"] is False
    code, out, _ = await _libhub("ask", "How do I renew my library card?", "--json")
    doc = json.loads(out)
    assert (doc["page"], doc["escalate"], doc["related"]) == (None, True, [])


async def test_kb_reload_reaches_the_service(tmp_path: Path) -> None:
    pages = tmp_path / "toolbox"
    shutil.copytree(DEFAULT_TOOLBOX, pages)
    config = tmp_path / "libhub.toml"
    config.write_text(
        f'[database]\npath = "{tmp_path / "db.sqlite"}"\n'
        '[matrix]\nhomeserver = "http://127.0.0.1:9"\nuser_id = "@bot:x"\npassword_env = "P"\n'
        '[assistance]\ntoolbox_dir = "toolbox"\n'
    )
    service = await Service.create(parse_settings(config.read_text(), base_dir=tmp_path))
    try:
        bot = service.assistant
        assert await bot.check_reload() and bot.kb is not None
        assert not await bot.check_reload()  # nothing changed

        # A broken page: the command says which file, the service keeps the pages it has.
        (pages / "broken.md").write_text("no front matter\n")
        code, _, err = await _libhub("kb", "reload", "-c", str(config))
        assert code == 2 and "broken.md" in err
        assert not await bot.check_reload() and bot.kb is not None and bot.kb_error
        (pages / "broken.md").unlink()

        # A new page is picked up on the next check; `kb reload` forces one.
        text = (pages / "makerspaces.md").read_text()
        (pages / "sewing-circles.md").write_text(
            text.replace('slug = "makerspaces"', 'slug = "sewing-circles"')
        )
        assert await bot.check_reload() and "sewing-circles" in bot.kb.pages
        code, out, err = await _libhub("kb", "reload", "-c", str(config))
        assert code == 0, err
        assert "pages in" in out and "are valid" in out
        assert await bot.check_reload()
    finally:
        await service.close()


async def test_kb_candidates_prints_what_people_wrote_as_written(tmp_path: Path) -> None:
    config = tmp_path / "libhub.toml"
    config.write_text(
        f'[database]\npath = "{tmp_path / "db.sqlite"}"\n'
        '[matrix]\nhomeserver = "http://127.0.0.1:9"\nuser_id = "@bot:x"\npassword_env = "P"\n'
    )
    storage = await Storage.open(tmp_path / "db.sqlite")
    try:
        case = await storage.create_case(
            replace(new_case("$q1", "$r1"), question="Is [/] or [bold]x[/bold] allowed?")
        )
        await storage.add_case_message(
            case.id, "answer", sender="@team:x", body="Use [red]brackets[/] freely.",
            source_event_id="$a1", now=T0,
        )  # fmt: skip
    finally:
        await storage.close()
    code, out, err = await _libhub("kb", "candidates", "-c", str(config))
    assert code == 0, err
    assert "Q: Is [/] or [bold]x[/bold] allowed?" in out
    assert "A (@team:x): Use [red]brackets[/] freely." in out
