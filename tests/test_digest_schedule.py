"""Digest schedules: period keys, next sends and dueness across DST changes and time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from network.errors import LibhubError
from network.subscriptions.schedule import (
    Schedule,
    ScheduleError,
    due,
    local_instant,
    next_send,
    period_start,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


NY = "America/New_York"
BERLIN = "Europe/Berlin"
AUCKLAND = "Pacific/Auckland"
KOLKATA = "Asia/Kolkata"

# (schedule, now, expected period_start, expected next_send)
CASES = [
    # Ordinary day, New York EST (UTC-5).
    (Schedule("daily", NY, 8), utc(2025, 1, 15, 12), utc(2025, 1, 14, 13), utc(2025, 1, 15, 13)),
    # US spring forward 2025-03-09: 02:00 EST -> 03:00 EDT. 02:00 does not exist: the
    # digest goes at the instant the clocks jump (07:00 UTC = 03:00 EDT).
    (Schedule("daily", NY, 2), utc(2025, 3, 9, 12), utc(2025, 3, 9, 7), utc(2025, 3, 10, 6)),
    (Schedule("daily", NY, 2), utc(2025, 3, 9, 6, 59), utc(2025, 3, 8, 7), utc(2025, 3, 9, 7)),
    # An hour after the change moves from 13:00 UTC to 12:00 UTC.
    (Schedule("daily", NY, 8), utc(2025, 3, 9, 12, 30), utc(2025, 3, 9, 12), utc(2025, 3, 10, 12)),
    (Schedule("daily", NY, 8), utc(2025, 3, 9, 11, 59), utc(2025, 3, 8, 13), utc(2025, 3, 9, 12)),
    # US fall back 2025-11-02: 01:00 happens twice; the first (EDT, 05:00 UTC) counts,
    # so the second 01:00 (EST, 06:00 UTC) is not another send instant.
    (Schedule("daily", NY, 1), utc(2025, 11, 2, 5, 30), utc(2025, 11, 2, 5), utc(2025, 11, 3, 6)),
    (Schedule("daily", NY, 1), utc(2025, 11, 2, 6, 30), utc(2025, 11, 2, 5), utc(2025, 11, 3, 6)),
    # EU spring forward 2025-03-30: 02:00 CET -> 03:00 CEST (01:00 UTC).
    (Schedule("daily", BERLIN, 2), utc(2025, 3, 30, 9), utc(2025, 3, 30, 1), utc(2025, 3, 31, 0)),
    (Schedule("daily", BERLIN, 8), utc(2025, 3, 30, 6), utc(2025, 3, 30, 6), utc(2025, 3, 31, 6)),
    (Schedule("daily", BERLIN, 8), utc(2025, 3, 30, 5), utc(2025, 3, 29, 7), utc(2025, 3, 30, 6)),
    # EU fall back 2025-10-26: 03:00 CEST -> 02:00 CET; 02:00 is ambiguous, first = 00:00 UTC.
    (
        Schedule("daily", BERLIN, 2),
        utc(2025, 10, 26, 1),
        utc(2025, 10, 26, 0),
        utc(2025, 10, 27, 1),
    ),
    # Weekly, Monday 09:00 New York, across the spring change (EST -> EDT).
    (
        Schedule("weekly", NY, 9, weekday=0),
        utc(2025, 3, 5, 12),
        utc(2025, 3, 3, 14),
        utc(2025, 3, 10, 13),
    ),
    (
        Schedule("weekly", NY, 9, weekday=0),
        utc(2025, 3, 12, 12),
        utc(2025, 3, 10, 13),
        utc(2025, 3, 17, 13),
    ),
    # Weekly Sunday 02:00 Berlin on the fall-back Sunday: first occurrence.
    (
        Schedule("weekly", BERLIN, 2, weekday=6),
        utc(2025, 10, 28),
        utc(2025, 10, 26, 0),
        utc(2025, 11, 2, 1),
    ),
    # Auckland is ahead of UTC: local 07:00 on 2 June (NZST, +12) is 19:00 UTC on 1 June.
    (
        Schedule("daily", AUCKLAND, 7),
        utc(2025, 6, 1, 12),
        utc(2025, 5, 31, 19),
        utc(2025, 6, 1, 19),
    ),
    # NZ spring forward 2025-09-28: 02:00 NZST -> 03:00 NZDT (14:00 UTC on the 27th).
    (
        Schedule("daily", AUCKLAND, 2),
        utc(2025, 9, 28),
        utc(2025, 9, 27, 14),
        utc(2025, 9, 28, 13),
    ),
    # NZ fall back 2025-04-06: 03:00 NZDT -> 02:00 NZST; 02:00 first = 13:00 UTC on the 5th.
    (
        Schedule("daily", AUCKLAND, 2),
        utc(2025, 4, 5, 15),
        utc(2025, 4, 5, 13),
        utc(2025, 4, 6, 14),
    ),
    # Kolkata is UTC+05:30 with no DST: 09:00 local is 03:30 UTC every day of the year.
    (
        Schedule("daily", KOLKATA, 9),
        utc(2025, 1, 15, 3, 29),
        utc(2025, 1, 14, 3, 30),
        utc(2025, 1, 15, 3, 30),
    ),
    (
        Schedule("daily", KOLKATA, 9),
        utc(2025, 7, 15, 3, 30),
        utc(2025, 7, 15, 3, 30),
        utc(2025, 7, 16, 3, 30),
    ),
    # Weekly Friday 00:00 in Kolkata is Thursday 18:30 UTC.
    (
        Schedule("weekly", KOLKATA, 0, weekday=4),
        utc(2025, 5, 14),
        utc(2025, 5, 8, 18, 30),
        utc(2025, 5, 15, 18, 30),
    ),
]


@pytest.mark.parametrize(("schedule", "now", "start", "following"), CASES)
def test_period_start_and_next_send(
    schedule: Schedule, now: datetime, start: datetime, following: datetime
) -> None:
    assert period_start(schedule, now) == start
    assert next_send(schedule, now) == following
    assert period_start(schedule, now).tzinfo is UTC


def test_exactly_at_the_instant_the_period_starts_now() -> None:
    schedule = Schedule("daily", BERLIN, 8)
    at = utc(2025, 6, 2, 6)
    assert period_start(schedule, at) == at
    assert next_send(schedule, at) == at + timedelta(days=1)
    assert due(schedule, at, last_sent=at - timedelta(seconds=1)) == at


def test_now_in_another_zone_means_the_same_instant() -> None:
    schedule = Schedule("daily", KOLKATA, 9)
    now = utc(2025, 1, 15, 4).astimezone(ZoneInfo("America/Los_Angeles"))
    assert period_start(schedule, now) == utc(2025, 1, 15, 3, 30)


def test_due_returns_the_period_key_once() -> None:
    schedule = Schedule("daily", BERLIN, 8)
    now = utc(2025, 6, 2, 6, 5)
    key = due(schedule, now, last_sent=utc(2025, 6, 1, 6, 1))
    assert key == utc(2025, 6, 2, 6)
    # Storing the key, or the real send time, makes it not due until the next instant.
    assert due(schedule, now + timedelta(minutes=1), last_sent=key) is None
    assert due(schedule, now + timedelta(minutes=1), last_sent=now) is None
    assert due(schedule, utc(2025, 6, 3, 5, 59), last_sent=key) is None
    assert due(schedule, utc(2025, 6, 3, 6), last_sent=key) == utc(2025, 6, 3, 6)


def test_catch_up_after_downtime_sends_once() -> None:
    schedule = Schedule("daily", NY, 7)
    last = utc(2025, 3, 1, 12)  # sent on 1 March, then the service was down for a week
    now = utc(2025, 3, 8, 18)
    key = due(schedule, now, last_sent=last)
    assert key == utc(2025, 3, 8, 12)  # the most recent period only
    assert due(schedule, now, last_sent=key) is None
    # Walking forward hour by hour after the catch-up: one digest per day, never two.
    sent = [key]
    moment = now
    for _ in range(24 * 5):
        moment += timedelta(hours=1)
        k = due(schedule, moment, last_sent=sent[-1])
        if k is not None:
            sent.append(k)
    assert len(sent) == 6
    assert len(set(sent)) == len(sent)


def test_weekly_catch_up_after_weeks_down_sends_once() -> None:
    schedule = Schedule("weekly", AUCKLAND, 9, weekday=2)
    key = due(schedule, utc(2025, 8, 1), last_sent=utc(2025, 6, 1))
    assert key == period_start(schedule, utc(2025, 8, 1))
    assert due(schedule, utc(2025, 8, 1, 1), last_sent=key) is None


def test_never_sent_is_due_for_the_current_period() -> None:
    schedule = Schedule("weekly", NY, 9, weekday=0)
    assert due(schedule, utc(2025, 3, 12), last_sent=None) == utc(2025, 3, 10, 13)


def test_immediate_is_always_now() -> None:
    schedule = Schedule("immediate", KOLKATA, 0)
    now = datetime(2025, 1, 1, 10, 17, 3, tzinfo=UTC)
    assert period_start(schedule, now) == now == next_send(schedule, now)
    assert due(schedule, now, last_sent=now - timedelta(minutes=1)) == now
    assert due(schedule, now, last_sent=now) is None


@pytest.mark.parametrize("tz", [NY, BERLIN, AUCKLAND, KOLKATA, "Australia/Lord_Howe"])
def test_a_year_of_instants_is_regular(tz: str) -> None:
    """Every day has exactly one send instant, at the local hour (or just after a gap)."""
    schedule = Schedule("daily", tz, 2)
    zone = ZoneInfo(tz)
    moment = utc(2025, 1, 1)
    keys = set()
    while moment < utc(2026, 1, 1):
        start, following = period_start(schedule, moment), next_send(schedule, moment)
        assert start <= moment < following
        assert timedelta(hours=22) <= following - start <= timedelta(hours=26)
        keys.add(start)
        moment += timedelta(hours=7)
    for key in keys:
        local = key.astimezone(zone)
        assert local.hour == 2 or (local.hour == 3 and local.minute in (0, 30)), local
    assert 364 <= len(keys) <= 366


def test_gap_that_is_not_one_hour_maps_to_the_end_of_the_gap() -> None:
    # Lord Howe Island springs forward 30 minutes: 02:00 -> 02:30 on 2025-10-05.
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    instant = local_instant(datetime(2025, 10, 5).date(), 2, lord_howe)
    assert instant.astimezone(lord_howe).strftime("%H:%M") == "02:30"
    assert instant == utc(2025, 10, 4, 15, 30)


def test_a_skipped_day_maps_to_when_the_clock_resumes() -> None:
    # Samoa skipped 30 December 2011 entirely.
    apia = ZoneInfo("Pacific/Apia")
    instant = local_instant(datetime(2011, 12, 30).date(), 9, apia)
    assert instant.astimezone(apia) == datetime(2011, 12, 31, 0, 0, tzinfo=apia)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("daily", "Mars/Olympus_Mons", 8), "unknown time zone 'Mars/Olympus_Mons'"),
        (("daily", "../../etc/passwd", 8), "unknown time zone"),
        (("daily", NY, 24), "hour must be 0-23"),
        (("daily", NY, -1), "hour must be 0-23"),
        (("weekly", NY, 8, 7), "weekday must be 0-6"),
        (("hourly", NY, 8), "unknown digest frequency 'hourly'"),
    ],
)
def test_invalid_schedules_are_refused_clearly(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        Schedule(*args)  # type: ignore[arg-type]


def test_naive_datetimes_are_refused() -> None:
    schedule = Schedule("daily", NY, 8)
    with pytest.raises(ScheduleError, match="timezone-aware"):
        period_start(schedule, datetime(2025, 1, 1))
    with pytest.raises(ScheduleError, match="last_sent"):
        due(schedule, utc(2025, 1, 1), last_sent=datetime(2025, 1, 1))
    assert issubclass(ScheduleError, LibhubError) and issubclass(ScheduleError, ValueError)
