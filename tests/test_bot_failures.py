"""The assistance bot when something fails, without a homeserver: one broken case does not
stop the others' reminders, auto-closing or team emails; a homeserver hiccup does not take
a room's events out of order; one failing event hook does not hide the event from the
rest; a long question from before is cut before retrieval and its answer marked as
handed to the team."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nio
import pytest

from bots import inbox as inbox_module
from bots.assistant import MAX_QUESTION, Assistant
from bots.cases.escalation import Escalation, Question
from bots.cases.transitions import progress_of, to_case
from bots.commands import CommandContext
from bots.inbox import Inbox
from bots.kb.index import Answer
from network.errors import MatrixPermanent, MatrixUnavailable
from network.service import Service
from network.settings.model import Settings, parse_settings
from network.storage import Storage
from network.storage.bot_events import BotAnswer
from network.storage.cases import NewCase
from tests.waiting import eventually

MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _settings(tmp: Path) -> Settings:
    return parse_settings(
        f"""
[database]
path = "{tmp / "libhub.db"}"
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@bot:x"
password_env = "BOT_FAILURES_PW"
[assistance]
team_room = "!team:x"
team_members = ["@team:x"]
timezone = "UTC"
hours = "09:00-17:00"
remind_unclaimed_after = 2.0
max_reminders = 2
auto_close_days = 3.0
""",
        base_dir=tmp,
    )


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    s = await Storage.open(tmp_path / "libhub.db")
    try:
        yield s
    finally:
        await s.close()


class Host:
    """The bot as cases see it; the bot is no longer in the room ``!gone:x``."""

    user_id = "@bot:x"

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings, self.storage = settings, storage
        self.sent: list[tuple[str, str]] = []

    async def send(self, room_id: str, content: dict[str, Any], txn_id: str) -> str:
        if room_id == "!gone:x":
            raise MatrixPermanent("M_FORBIDDEN: the bot is not in the room")
        self.sent.append((room_id, str(content["body"])))
        return f"$sent{len(self.sent)}"

    async def display_name(self, user_id: str) -> str:
        return user_id

    async def room_label(self, room_id: str) -> str:
        return room_id

    async def team_room(self) -> str | None:
        return "!team:x"


async def _case(storage: Storage, room: str, *, answered: bool) -> int:
    rec = await storage.create_case(
        NewCase(f"$q{room}", "q", "@ana:x", room, True, None, None, None, "!team:x",
                f"$root{room}", MONDAY_10, False)
    )  # fmt: skip
    if answered:
        progress = replace(
            progress_of(to_case(rec)),
            state="answered",
            claimed_by="@team:x",
            answered_at=MONDAY_10,
        )
        await storage.update_case(rec.id, progress)
    return rec.id


async def test_a_broken_case_does_not_stop_the_others(tmp_path: Path, storage: Storage) -> None:
    host = Host(_settings(tmp_path), storage)
    escalation = Escalation(host)
    # First in line: a case whose asker the bot can no longer write to.
    broken = await _case(storage, "!gone:x", answered=True)
    answered = await _case(storage, "!ok:x", answered=True)
    waiting = await _case(storage, "!waiting:x", answered=False)

    await escalation.tick(MONDAY_10 + timedelta(days=7))  # the next Monday, team open

    states = {c.id: c.state for c in await storage.active_cases()}
    assert states == {broken: "answered", waiting: "open"}
    closed = await storage.case(answered)
    assert closed is not None and closed.state == "closed"
    assert any(room == "!ok:x" and "closed this request" in text for room, text in host.sent)
    reminders = [text for room, text in host.sent if room == "!team:x" and "Reminder" in text]
    assert len(reminders) == 1 and "(reminder 2 of 2)" in reminders[0]
    rec = await storage.case(waiting)
    assert rec is not None and rec.progress.reminders_sent == 2


async def test_team_emails_go_out_when_reminders_fail(
    tmp_path: Path, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    escalation = Escalation(Host(_settings(tmp_path), storage))
    emailed: list[bool] = []

    async def broken(now: datetime) -> None:
        raise RuntimeError("database is locked")

    async def send_pending_emails() -> int:
        emailed.append(True)
        return 0

    monkeypatch.setattr(escalation, "remind_and_auto_close", broken)
    monkeypatch.setattr(escalation, "send_pending_emails", send_pending_emails)
    await escalation.tick(MONDAY_10)
    assert emailed == [True]


class Rooms:
    user_id = "@bot:x"

    def forget(self, room_id: str) -> None:
        pass


def _event(event_id: str) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": event_id,
        "sender": "@ana:x",
        "content": {"msgtype": "m.text", "body": event_id},
    }


async def test_a_homeserver_hiccup_keeps_a_rooms_order(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_module, "RETRY_DELAY", 0.01)
    handled: list[str] = []
    failures = {"$first": 2}  # the homeserver is away for the first two tries

    async def handle(room_id: str, ev: dict[str, Any], now: datetime) -> None:
        handled.append(ev["event_id"])
        if failures.get(ev["event_id"], 0) > 0:
            failures[ev["event_id"]] -= 1
            raise MatrixUnavailable("cannot reach the homeserver")

    inbox = Inbox(storage, Rooms(), handle)  # type: ignore[arg-type]
    for event_id in ("$first", "$second"):
        await storage.inbox_add(event_id, "!r:x", _event(event_id))
    inbox.ready.set()
    await inbox.resume()
    try:
        await eventually(lambda: storage.event_processed("$second"), what="the second event")
    finally:
        await inbox.close()
    assert handled == ["$first", "$first", "$first", "$second"]
    assert await storage.event_processed("$first")


async def test_a_homeserver_that_stays_away_leaves_the_room_in_order(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_module, "RETRY_DELAY", 0.01)
    handled: list[str] = []
    away = True

    async def handle(room_id: str, ev: dict[str, Any], now: datetime) -> None:
        handled.append(ev["event_id"])
        if away:
            raise MatrixUnavailable("cannot reach the homeserver")

    inbox = Inbox(storage, Rooms(), handle)  # type: ignore[arg-type]
    for event_id in ("$first", "$second"):
        await storage.inbox_add(event_id, "!r:x", _event(event_id))
    inbox.ready.set()
    await inbox.resume()
    try:
        await eventually(lambda: not inbox._workers, what="the room's worker to give up for now")
        # Bounded: a few tries of the first event, and the second was not handled before it.
        assert handled == ["$first"] * inbox_module.TRANSIENT_TRIES
        assert [i.event_id for i in await storage.inbox_pending()] == ["$first", "$second"]
        # The periodic check brings the room back, in order.
        away = False
        await inbox.resume()
        await eventually(lambda: storage.event_processed("$second"), what="the second event")
    finally:
        await inbox.close()
    assert handled[-2:] == ["$first", "$second"]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    s = await Service.create(_settings(tmp_path))
    try:
        yield s
    finally:
        await s.close()


async def test_a_failing_event_hook_does_not_hide_the_event(service: Service) -> None:
    seen: list[str] = []

    async def failing(room_id: str, event: nio.Event) -> None:
        raise RuntimeError("a bug in one hook")

    async def recording(room_id: str, event: nio.Event) -> None:
        seen.append(event.event_id)

    service.event_hooks = [failing, recording]
    event = nio.RoomMessageText.from_dict({**_event("$ev"), "origin_server_ts": 1})
    await service._on_event("!r:x", event)
    assert seen == ["$ev"]


async def test_human_hands_over_the_question_before_cut_for_retrieval(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot: Assistant = service.assistant
    await bot.check_reload()
    assert bot.kb is not None
    asked: list[int] = []
    real_ask = bot.kb.ask

    def ask(question: str) -> Answer:
        asked.append(len(question))
        return real_ask(question)

    monkeypatch.setattr(bot.kb, "ask", ask)
    opened: list[Question] = []

    async def open_case(q: Question, **kw: Any) -> None:
        opened.append(q)

    monkeypatch.setattr(bot.escalation, "open_case", open_case)
    long_question = "where would a book kiosk go? " * 200
    answer = BotAnswer("$answer", "!r:x", "$q", "@ana:x", long_question, None, 0.1, False,
                       MONDAY_10)  # fmt: skip
    await service.storage.record_answer(answer)

    ctx = CommandContext("@ana:x", "!r:x", "$human", "", True, None, None, bot)
    await bot.escalate(ctx, "")

    assert asked and max(asked) <= MAX_QUESTION < len(long_question)
    [q] = opened
    assert q.text == long_question  # the team gets the whole question
    stored = await service.storage.answer_by_event("$answer")
    assert stored is not None and stored.escalated  # a 👎 on it no longer offers !human
