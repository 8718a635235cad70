"""Webinar reminder planning, moved webinars, lead parsing and start-time wording
(network/community/reminders.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from network.community.reminders import (
    Reminder,
    format_when,
    parse_leads,
    plan_reminders,
    reconcile,
    send_decision,
)
from network.settings.community import ReminderConfigError, parse_lead

CHI = ZoneInfo("America/Chicago")
DAY, HOUR, MIN = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
# Tuesday 2026-06-16, 2:00 PM CDT.
START = datetime(2026, 6, 16, 14, 0, tzinfo=CHI)
LEADS = (DAY, HOUR)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("leads", "now", "planned"),
    [
        pytest.param(LEADS, START - 3 * DAY, [DAY, HOUR], id="all-ahead"),
        pytest.param((HOUR, DAY), START - 3 * DAY, [DAY, HOUR], id="earliest-due-first"),
        pytest.param((HOUR, 60 * MIN), START - 3 * DAY, [HOUR], id="duplicate-leads"),
        pytest.param(LEADS, START - 3 * HOUR, [HOUR], id="1d-already-past"),
        pytest.param(LEADS, START - DAY + 10 * MIN, [DAY, HOUR], id="1d-late-within-grace"),
        pytest.param(LEADS, START - DAY + 16 * MIN, [HOUR], id="1d-too-late"),
        pytest.param(LEADS, START - 50 * MIN, [HOUR], id="1h-10min-late"),
        pytest.param(LEADS, START - 40 * MIN, [], id="1h-20min-late"),
        pytest.param((10 * MIN,), START - 5 * MIN, [10 * MIN], id="short-lead-late"),
        pytest.param((10 * MIN,), START + MIN, [], id="after-start-dropped"),
        pytest.param((10 * MIN,), START, [], id="at-start-dropped"),
    ],
)
def test_plan_reminders(
    leads: tuple[timedelta, ...], now: datetime, planned: list[timedelta]
) -> None:
    reminders = plan_reminders(7, START, leads, now)
    assert [r.lead for r in reminders] == planned
    for r in reminders:
        assert (r.item_id, r.start, r.due_at) == (7, START, START - r.lead)
        assert r.due_at.tzinfo is UTC


def test_leads_are_elapsed_time_across_dst() -> None:
    # Sunday 2026-03-08 2:00 PM CDT; DST began that night, so 24 h earlier is 1:00 PM CST.
    start = datetime(2026, 3, 8, 14, 0, tzinfo=CHI)
    (r,) = plan_reminders(1, start, [DAY], start - 3 * DAY)
    assert r.due_at == datetime(2026, 3, 7, 13, 0, tzinfo=CHI)
    assert r.due_at == utc("2026-03-07 19:00")


def test_plan_refuses_zero_leads_and_naive_times() -> None:
    with pytest.raises(ReminderConfigError, match="more than zero"):
        plan_reminders(1, START, [timedelta(0)], START - DAY)
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_reminders(1, START.replace(tzinfo=None), [HOUR], START - DAY)


@pytest.mark.parametrize(
    ("now", "decision"),
    [
        pytest.param(START - 2 * HOUR, "wait", id="not-yet"),
        pytest.param(START - HOUR, "send", id="on-time"),
        pytest.param(START - 50 * MIN, "send", id="10min-late"),
        pytest.param(START - 44 * MIN, "drop", id="16min-late"),
        pytest.param(START + MIN, "drop", id="after-start"),
    ],
)
def test_send_decision(now: datetime, decision: str) -> None:
    reminder = Reminder(7, HOUR, START - HOUR, START)
    assert send_decision(reminder, now) == decision


@dataclass(frozen=True)
class Stored:
    item_id: int
    lead: timedelta
    due_at: datetime
    start: datetime
    sent: bool = False


def stored(lead: timedelta, start: datetime = START, sent: bool = False) -> Stored:
    return Stored(7, lead, start - lead, start, sent)


def added(plan_leads: list[timedelta], start: datetime) -> list[Reminder]:
    return [Reminder(7, lead, start - lead, start) for lead in plan_leads]


NOW = START - 3 * DAY


@pytest.mark.parametrize(
    ("existing", "new_start", "leads", "now", "to_add", "to_cancel", "to_keep"),
    [
        pytest.param(
            [stored(DAY), stored(HOUR)], START, LEADS, NOW, [], [], [0, 1], id="unchanged"
        ),
        pytest.param(
            [stored(DAY), stored(HOUR)],
            START.astimezone(UTC),
            LEADS,
            NOW,
            [],
            [],
            [0, 1],
            id="same-instant-other-zone",
        ),
        pytest.param(
            [stored(DAY), stored(HOUR)],
            START + 2 * DAY,
            LEADS,
            NOW,
            added([DAY, HOUR], START + 2 * DAY),
            [0, 1],
            [],
            id="moved-unsent-follow",
        ),
        pytest.param(
            [stored(DAY, sent=True), stored(HOUR)],
            START + 30 * MIN,
            LEADS,
            START - 12 * HOUR,
            added([HOUR], START + 30 * MIN),
            [1],
            [0],
            id="small-move-no-resend",
        ),
        pytest.param(
            [stored(DAY, sent=True), stored(HOUR)],
            START + 7 * DAY,
            LEADS,
            START - 12 * HOUR,
            added([DAY, HOUR], START + 7 * DAY),
            [1],
            [0],
            id="big-move-resends",
        ),
        pytest.param(
            [stored(DAY, sent=True), stored(HOUR)],
            START - 11 * HOUR - 30 * MIN,  # now + 30 min: its 1h reminder is 30 min overdue
            LEADS,
            START - 12 * HOUR,
            [],
            [1],
            [0],
            id="moved-earlier-into-the-past",
        ),
        pytest.param(
            [stored(DAY), stored(HOUR)],
            START,
            (HOUR, 30 * MIN),
            NOW,
            added([30 * MIN], START),
            [0],
            [1],
            id="leads-changed",
        ),
        pytest.param(
            [stored(DAY, sent=True), stored(DAY, START + DAY)],
            START + DAY,
            (DAY,),
            START,
            [],
            [],
            [0, 1],
            id="second-reconcile-is-stable",
        ),
        pytest.param(
            [stored(HOUR), stored(HOUR)], START, (HOUR,), NOW, [], [1], [0], id="duplicate-unsent"
        ),
        pytest.param(
            [stored(DAY), stored(HOUR)],
            START,
            LEADS,
            START - 30 * MIN,
            [],
            [0, 1],
            [],
            id="stale-unsent-cleaned-up",
        ),
    ],
)
def test_reconcile(
    existing: list[Stored],
    new_start: datetime,
    leads: tuple[timedelta, ...],
    now: datetime,
    to_add: list[Reminder],
    to_cancel: list[int],
    to_keep: list[int],
) -> None:
    plan = reconcile(existing, new_start, leads, now)
    assert list(plan.to_add) == to_add
    # By identity: the caller's own objects come back, each with exactly one verdict.
    cancel = [i for i, e in enumerate(existing) if any(r is e for r in plan.to_cancel)]
    keep = [i for i, e in enumerate(existing) if any(r is e for r in plan.to_keep)]
    assert (cancel, keep) == (to_cancel, to_keep)
    assert len(plan.to_cancel) + len(plan.to_keep) == len(existing)


def test_reconcile_plans_from_nothing_and_checks_item_ids() -> None:
    nothing: list[Stored] = []
    plan = reconcile(nothing, START, LEADS, NOW, item_id=7)
    assert list(plan.to_add) == added([DAY, HOUR], START)
    with pytest.raises(ValueError, match="exactly one item"):
        reconcile(nothing, START, LEADS, NOW)
    with pytest.raises(ValueError, match="exactly one item"):
        reconcile([stored(DAY), Stored(8, HOUR, START - HOUR, START)], START, LEADS, NOW)


def test_a_moved_webinar_sends_each_lead_once_per_real_start() -> None:
    """Simulate the poller: plan, send what is due every 5 minutes, move the start a week later
    after the 1d reminder went out, and look at what the room receives."""
    stored_rows: list[Stored] = [Stored(**vars(r)) for r in plan_reminders(7, START, LEADS, NOW)]
    sent: list[tuple[timedelta, datetime]] = []
    start, now = START, NOW
    while now < START + 8 * DAY:
        if now == START - 12 * HOUR:
            start = START + 7 * DAY
            plan = reconcile(stored_rows, start, LEADS, now)
            stored_rows = [r for r in stored_rows if r not in plan.to_cancel]
            stored_rows += [Stored(**vars(r)) for r in plan.to_add]
        for i, row in enumerate(stored_rows):
            reminder = Reminder(row.item_id, row.lead, row.due_at, row.start)
            if not row.sent and send_decision(reminder, now) == "send":
                sent.append((row.lead, now))
                stored_rows[i] = Stored(**{**vars(row), "sent": True})
        now += 5 * MIN
    moved = START + 7 * DAY
    assert sent == [(DAY, START - DAY), (DAY, moved - DAY), (HOUR, moved - HOUR)]


@pytest.mark.parametrize(
    ("text", "lead"),
    [
        ("1d", DAY),
        ("1h", HOUR),
        ("30m", 30 * MIN),
        ("1d2h", DAY + 2 * HOUR),
        ("1w", 7 * DAY),
        ("1D 2H", DAY + 2 * HOUR),
        (" 90m ", 90 * MIN),
        ("2h15m", 2 * HOUR + 15 * MIN),
    ],
)
def test_parse_lead(text: str, lead: timedelta) -> None:
    assert parse_lead(text) == lead


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not understood"),
        ("1x", "not understood"),
        ("2h1d", "largest unit first"),
        ("1.5h", "not understood"),
        ("-1h", "not understood"),
        ("h", "not understood"),
        ("0m", "must be more than zero"),
    ],
)
def test_parse_lead_errors(text: str, message: str) -> None:
    with pytest.raises(ReminderConfigError, match=message):
        parse_lead(text)


def test_parse_leads_reads_a_config_list() -> None:
    assert parse_leads(["1d", "1h"]) == [DAY, HOUR]


@pytest.mark.parametrize(
    ("start", "tz", "now", "expected"),
    [
        # Tuesday 2026-01-20, 2:00 PM CST in Chicago.
        ("2026-01-20 20:00", "America/Chicago", "2026-01-20 19:00", "in 1 hour (2:00 PM CST)"),
        ("2026-01-20 20:00", "America/Chicago", "2026-01-20 19:15", "in 45 minutes (2:00 PM CST)"),
        ("2026-01-20 20:00", "America/Chicago", "2026-01-20 19:59", "in 1 minute (2:00 PM CST)"),
        (
            "2026-01-20 20:00",
            "America/Chicago",
            "2026-01-20 18:30",
            "in 1 hour 30 minutes (2:00 PM CST)",
        ),
        ("2026-01-20 20:00", "America/Chicago", "2026-01-20 14:00", "today at 2:00 PM CST"),
        ("2026-01-20 20:00", "America/Chicago", "2026-01-19 20:00", "tomorrow at 2:00 PM CST"),
        (
            "2026-01-20 20:00",
            "America/Chicago",
            "2026-01-13 20:00",
            "Tuesday, January 20 at 2:00 PM CST",
        ),
        (
            "2026-01-20 20:00",
            "America/Chicago",
            "2025-12-30 20:00",
            "Tuesday, January 20, 2026 at 2:00 PM CST",
        ),
        ("2026-01-20 20:00", "America/Chicago", "2026-01-20 20:00", "now (2:00 PM CST)"),
        ("2026-01-20 20:00", "America/Chicago", "2026-01-20 20:02", "now (2:00 PM CST)"),
        ("2026-01-20 20:00", "America/Chicago", "2026-01-20 21:00", "started today at 2:00 PM CST"),
        (
            "2025-03-04 19:00",
            "America/New_York",
            "2025-02-25 19:00",
            "Tuesday, March 4 at 2:00 PM EST",
        ),
        # One instant, three rooms: 2:00 PM Tuesday in Chicago is 8:00 PM in London and
        # 5:00 AM Wednesday in Sydney; "now" is Monday night in Chicago but Tuesday elsewhere.
        ("2026-06-16 19:00", "America/Chicago", "2026-06-16 02:00", "tomorrow at 2:00 PM CDT"),
        ("2026-06-16 19:00", "Europe/London", "2026-06-16 02:00", "today at 8:00 PM BST"),
        ("2026-06-16 19:00", "Australia/Sydney", "2026-06-16 02:00", "tomorrow at 5:00 AM AEST"),
        # DST changes between now and the webinar: the start reads in the zone's time then.
        (
            "2026-03-10 19:00",
            "America/Chicago",
            "2026-03-06 19:00",
            "Tuesday, March 10 at 2:00 PM CDT",
        ),
        ("2026-03-08 19:00", "America/Chicago", "2026-03-08 02:00", "tomorrow at 2:00 PM CDT"),
        (
            "2026-03-30 13:00",
            "Europe/London",
            "2026-03-27 13:00",
            "Monday, March 30 at 2:00 PM BST",
        ),
        (
            "2026-04-07 04:00",
            "Australia/Sydney",
            "2026-04-04 04:00",
            "Tuesday, April 7 at 2:00 PM AEST",
        ),
        ("2026-10-04 03:00", "Australia/Sydney", "2026-10-02 23:00", "tomorrow at 2:00 PM AEDT"),
        ("2026-01-10 12:00", "Europe/London", "2026-01-09 12:00", "tomorrow at 12:00 PM GMT"),
        ("2026-01-10 00:05", "Europe/London", "2026-01-09 12:00", "tomorrow at 12:05 AM GMT"),
    ],
)
def test_format_when(start: str, tz: str, now: str, expected: str) -> None:
    assert format_when(utc(start), tz, utc(now)) == expected


def test_planned_reminders_read_well_when_sent() -> None:
    start = utc("2026-01-20 20:00")
    texts = [
        format_when(start, "America/Chicago", r.due_at)
        for r in plan_reminders(1, start, LEADS, start - 2 * DAY)
    ]
    assert texts == ["tomorrow at 2:00 PM CST", "in 1 hour (2:00 PM CST)"]
    # Sent 10 minutes late, within the grace: the text says how long is really left.
    assert format_when(start, "America/Chicago", start - 50 * MIN) == "in 50 minutes (2:00 PM CST)"


def test_format_when_errors() -> None:
    with pytest.raises(ReminderConfigError, match="unknown time zone 'Mars/Base'"):
        format_when(START, "Mars/Base", NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        format_when(START, "America/Chicago", NOW.replace(tzinfo=None))
