"""Webinar reminders without a homeserver: the wording across time zones, and scheduling
against a real database with a clock passed in: planned at the configured leads, moved
(not doubled) when the webinar's time changes, dropped when too late; and the .ics file."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from network.community.webinars import MAX_IDLE, WebinarReminders, ics_url, reminder_content
from network.devtools.devserver import free_port
from network.service import Service
from network.settings.model import Settings, parse_settings
from network.storage import ItemInput, Storage, Target

ROOM = "#webinars:example.org"


def settings(tmp: Path, extra: str = "") -> Settings:
    return parse_settings(
        f"""
[network]
timezone = "America/Chicago"
[database]
path = "{tmp / "libhub.db"}"
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@bot:example.org"
password_env = "WEBINAR_TEST_PW"
[web]
listen = "127.0.0.1:{free_port()}"
public_url = "https://libhub.example.org"
{extra}
""",
        base_dir=tmp,
    )


def webinar(key: str, start: datetime | None, *, kind: str = "webinar") -> ItemInput:
    title = "Webinar: Wi-Fi after hours"
    digest = hashlib.sha256(f"{title}|{start}|{kind}".encode()).hexdigest()
    return ItemInput(
        key=key, kind=kind, title=title, link="https://example.org/wifi", published=None,
        author=None, categories=(), summary_html="<p>Keep the hotspot on.</p>", enclosures=(),
        event_start=start, content_hash=digest,
    )  # fmt: skip


async def store(
    storage: Storage, item: ItemInput, now: datetime, *, post: bool = True, room: str = ROOM
) -> int:
    await storage.store_items(
        "webinars",
        [item],
        targets=lambda _i: [Target("matrix", room)],
        post=lambda _i: post,
        edit_window=timedelta(days=2),
        now=now,
    )
    row = await storage.fetchone("SELECT id FROM items WHERE key = ?", (item.key,))
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("start", "tz", "now", "expected"),
    [
        # Across the US spring-forward night: the "1d" reminder is 24 elapsed hours
        # before, 1:00 PM CST on Saturday, and names the start in the new offset.
        (
            datetime(2026, 3, 8, 19, 0, tzinfo=UTC),  # Sun 2:00 PM CDT
            "America/Chicago",
            datetime(2026, 3, 7, 19, 0, tzinfo=UTC),  # Sat 1:00 PM CST
            "starts tomorrow at 2:00 PM CDT.",
        ),
        (
            datetime(2026, 11, 20, 20, 0, tzinfo=UTC),
            "America/New_York",
            datetime(2026, 11, 20, 19, 0, tzinfo=UTC),
            "starts in 1 hour (3:00 PM EST).",
        ),
        (
            datetime(2026, 11, 20, 20, 0, tzinfo=UTC),
            "Europe/London",
            datetime(2026, 11, 19, 20, 0, tzinfo=UTC),
            "starts tomorrow at 8:00 PM GMT.",
        ),
        # For a room in Auckland the same webinar is on the next calendar day.
        (
            datetime(2026, 11, 20, 20, 0, tzinfo=UTC),
            "Pacific/Auckland",
            datetime(2026, 11, 19, 20, 0, tzinfo=UTC),
            "starts tomorrow at 9:00 AM NZDT.",
        ),
        (
            datetime(2026, 11, 20, 20, 0, tzinfo=UTC),
            "America/Los_Angeles",
            datetime(2026, 11, 13, 20, 0, tzinfo=UTC),
            "starts Friday, November 20 at 12:00 PM PST.",
        ),
    ],
)
def test_reminder_wording_in_the_rooms_time_zone(
    start: datetime, tz: str, now: datetime, expected: str
) -> None:
    content = reminder_content(
        title="Wi-Fi after hours", link="https://example.org/w", start=start, tz=tz, now=now,
        ics="https://libhub.example.org/webinars/7.ics",
    )  # fmt: skip
    assert content["msgtype"] == "m.notice"
    assert content["body"].startswith("Reminder: the webinar “Wi-Fi after hours” " + expected)
    assert "https://libhub.example.org/webinars/7.ics" in content["body"]
    assert 'href="https://example.org/w"' in content["formatted_body"]


async def test_reminders_follow_a_moved_webinar_and_are_never_doubled(tmp_path: Path) -> None:
    s = settings(tmp_path)
    storage = await Storage.open(s.database_path)
    try:
        t0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
        start = datetime(2026, 11, 20, 20, 0, tzinfo=UTC)
        item_id = await store(storage, webinar("w1", start), t0)
        rem = WebinarReminders(s, None, storage)
        first = await rem.schedule(t0)
        assert (first.added, first.cancelled) == (2, 0)
        rows = await storage.reminders_for(item_id)
        assert sorted((r.lead, r.due_at, r.status, r.room) for r in rows) == [
            (timedelta(hours=1), start - timedelta(hours=1), "pending", ROOM),
            (timedelta(days=1), start - timedelta(days=1), "pending", ROOM),
        ]
        again = await rem.schedule(t0 + timedelta(minutes=5))
        assert (again.added, again.cancelled) == (0, 0)

        # The publisher moves the webinar by two days: the reminders move with it.
        moved = start + timedelta(days=2)
        await store(storage, webinar("w1", moved), t0 + timedelta(hours=1))
        shift = await rem.schedule(t0 + timedelta(hours=1))
        assert (shift.added, shift.cancelled) == (2, 2)
        live = [r for r in await storage.reminders_for(item_id) if r.status == "pending"]
        assert sorted(r.due_at for r in live) == [
            moved - timedelta(days=1),
            moved - timedelta(hours=1),
        ]
        assert len(await storage.reminders_for(item_id)) == 4

        # Moved back: the cancelled rows come back (same transaction ids), nothing new.
        await store(storage, webinar("w1", start), t0 + timedelta(hours=2))
        back = await rem.schedule(t0 + timedelta(hours=2))
        assert (back.added, back.cancelled) == (2, 2)
        rows = await storage.reminders_for(item_id)
        assert len(rows) == 4
        assert sorted(r.start for r in rows if r.status == "pending") == [start, start]

        # No longer a webinar (no start time): pending reminders are cancelled.
        await store(storage, webinar("w1", None, kind="news"), t0 + timedelta(hours=3))
        gone = await rem.schedule(t0 + timedelta(hours=3))
        assert gone.cancelled == 2
        assert all(r.status == "cancelled" for r in await storage.reminders_for(item_id))
    finally:
        await storage.close()


async def test_late_reminders_are_dropped_and_history_gets_none(tmp_path: Path) -> None:
    s = settings(tmp_path, '[webinars]\nreminder_leads = ["2h", "30m"]\ngrace = "10m"\n')
    storage = await Storage.open(s.database_path)
    try:
        now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
        # Starts in 100 minutes: the 2h reminder is already too late, the 30m one is not.
        soon = await store(storage, webinar("soon", now + timedelta(minutes=100)), now)
        # Seen during the feed's initial sync (stored, not posted): no room, no reminder.
        await store(storage, webinar("history", now + timedelta(days=3)), now, post=False)
        rem = WebinarReminders(s, None, storage)
        result = await rem.schedule(now)
        assert result.added == 1
        [row] = await storage.reminders_for(soon)
        assert row.lead == timedelta(minutes=30)
        # The service was down from before the reminder was due until after the grace:
        # the reminder is dropped, not sent late.
        late = now + timedelta(minutes=100 - 30 + 11)
        done = await rem.send_due(late)
        assert done.dropped == 1 and done.sent == 0
        [row] = await storage.reminders_for(soon)
        assert row.status == "dropped" and "not sent" in (row.last_error or "")
    finally:
        await storage.close()


async def test_webinar_ics_is_served(tmp_path: Path, bot_env: dict[str, str]) -> None:
    s = settings(tmp_path, '[webinars]\nduration = "90m"\n')
    service = await Service.create(s)
    try:
        start = datetime(2026, 11, 20, 20, 0, tzinfo=UTC)
        item_id = await store(service.storage, webinar("w", start), start - timedelta(days=5))
        news = await store(service.storage, webinar("n", None, kind="news"), start)
        await service.start_web()
        async with aiohttp.ClientSession() as http:
            url = ics_url(f"http://{s.web.listen}", item_id)
            async with http.get(url) as resp:
                assert resp.status == 200
                assert resp.content_type == "text/calendar"
                body = await resp.text()
            async with http.get(ics_url(f"http://{s.web.listen}", news)) as missing:
                assert missing.status == 404
        assert "\r\nDTSTART:20261120T200000Z\r\n" in body
        assert "\r\nDTEND:20261120T213000Z\r\n" in body
        assert f"UID:item-{item_id}@libhub.example.org" in body
        assert "SUMMARY:Webinar: Wi-Fi after hours" in body
    finally:
        await service.close()


class _Waits(WebinarReminders):
    """The reminder loop with its waits recorded instead of waited; stops after ``rounds``."""

    def __init__(self, *args: Any, rounds: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.rounds = rounds
        self.waits: list[float] = []

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) >= self.rounds:
            stop.set()


async def test_reminder_loop_backs_off_while_nothing_can_be_sent(tmp_path: Path) -> None:
    s = settings(tmp_path)
    storage = await Storage.open(s.database_path)
    try:
        now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
        # The 1h reminder was due a minute ago, but Matrix is not logged in: it stays due.
        item_id = await store(storage, webinar("soon", now + timedelta(minutes=59)), now)
        rem = _Waits(s, None, storage, clock=lambda: now, rounds=4)
        await rem.run(asyncio.Event())
        assert rem.waits == [1.0, 2.0, 4.0, 8.0]  # not a round every half second
        assert [r.status for r in await storage.reminders_for(item_id)] == ["pending"]
    finally:
        await storage.close()


async def test_reminder_loop_survives_a_database_error(tmp_path: Path) -> None:
    s = settings(tmp_path)
    storage = await Storage.open(s.database_path)
    try:
        calls = 0
        real = storage.next_reminder_due

        async def flaky() -> datetime | None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise sqlite3.OperationalError("database is locked")
            return await real()

        storage.next_reminder_due = flaky  # type: ignore[method-assign]
        rem = _Waits(s, None, storage, rounds=3)
        await rem.run(asyncio.Event())  # the error ends a round, not the loop
        assert calls == 3
        assert rem.waits == [1.0, MAX_IDLE, MAX_IDLE]  # nothing due: the usual idle wait
    finally:
        await storage.close()
