"""Business-hours arithmetic of the Need Assistance team (bots/cases/hours.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from bots.cases.hours import (
    BusinessHours,
    BusinessHoursError,
    add_business_hours,
    business_seconds_between,
    is_open,
    next_opening,
)
from network.errors import ConfigError
from network.settings.model import parse_settings

SETTINGS = """
[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@libhub:localhost"
password_env = "PW"
"""
CHICAGO = BusinessHours.from_config("America/Chicago")
CHICAGO_XMAS = BusinessHours.from_config("America/Chicago", holidays=("2026-12-25",))
BERLIN = BusinessHours.from_config("Europe/Berlin")
LOS_ANGELES = BusinessHours.from_config("America/Los_Angeles")
# A team open every night 01:00-04:00, to see DST nights that are 2 or 4 hours long.
BERLIN_NIGHTS = BusinessHours.from_config(
    "Europe/Berlin", "01:00-04:00", ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
)


def local(bh: BusinessHours, text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(bh.tz))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("bh", "start", "hours", "expected"),
    [
        pytest.param(CHICAGO, "2026-06-12 16:00", 2, "2026-06-15 10:00", id="fri-16h+2h=mon-10h"),
        pytest.param(CHICAGO, "2026-06-12 16:00", 1, "2026-06-12 17:00", id="ends-at-closing"),
        pytest.param(CHICAGO_XMAS, "2026-12-24 16:00", 2, "2026-12-28 10:00", id="holiday-skipped"),
        pytest.param(CHICAGO, "2026-12-24 16:00", 2, "2026-12-25 10:00", id="no-holiday-set"),
        pytest.param(CHICAGO, "2026-06-09 23:30", 1, "2026-06-10 10:00", id="start-at-night"),
        pytest.param(CHICAGO, "2026-06-09 06:00", 0.5, "2026-06-09 09:30", id="start-before-open"),
        pytest.param(CHICAGO, "2026-06-09 11:15", 0, "2026-06-09 11:15", id="zero-hours-open"),
        pytest.param(CHICAGO, "2026-06-13 12:00", 0, "2026-06-15 09:00", id="zero-hours-weekend"),
        pytest.param(CHICAGO, "2026-06-08 16:45", 0.5, "2026-06-09 09:15", id="fraction-overnight"),
        pytest.param(CHICAGO, "2026-06-08 09:00", 40, "2026-06-12 17:00", id="whole-week"),
        pytest.param(CHICAGO, "2026-06-08 09:00", 41, "2026-06-15 10:00", id="week-and-hour"),
        pytest.param(
            LOS_ANGELES, "2026-03-06 16:00", 2, "2026-03-09 10:00", id="dst-starts-weekend"
        ),
        pytest.param(LOS_ANGELES, "2026-10-30 16:00", 2, "2026-11-02 10:00", id="dst-ends-weekend"),
        pytest.param(BERLIN, "2026-03-27 16:00", 2, "2026-03-30 10:00", id="berlin-dst-weekend"),
    ],
)
def test_add_business_hours(bh: BusinessHours, start: str, hours: float, expected: str) -> None:
    begin = local(bh, start)
    result = add_business_hours(bh, begin, hours)
    assert result.tzinfo is UTC
    assert result == local(bh, expected)
    # The two functions agree: exactly `hours` of open time lie between start and the result.
    assert business_seconds_between(bh, begin, result) == pytest.approx(hours * 3600)


def test_dst_weekend_result_is_the_right_utc_instant() -> None:
    # PST (UTC-8) on Friday, PDT (UTC-7) on Monday: 10:00 local is 17:00 UTC, not 18:00.
    result = add_business_hours(LOS_ANGELES, local(LOS_ANGELES, "2026-03-06 16:00"), 2)
    assert result == utc("2026-03-09 17:00")
    fall = add_business_hours(LOS_ANGELES, local(LOS_ANGELES, "2026-10-30 16:00"), 2)
    assert fall == utc("2026-11-02 18:00")


@pytest.mark.parametrize(
    ("bh", "start", "hours", "expected_utc"),
    [
        # Wed 15:00 UTC is 17:00 in Berlin (just closed) and 08:00 in Los Angeles (not yet open).
        pytest.param(BERLIN, "2026-06-10 15:00", 1, "2026-06-11 08:00", id="berlin-next-morning"),
        pytest.param(LOS_ANGELES, "2026-06-10 15:00", 1, "2026-06-10 17:00", id="la-same-day"),
        pytest.param(BERLIN, "2026-06-10 07:00", 8, "2026-06-10 15:00", id="berlin-full-day"),
        pytest.param(LOS_ANGELES, "2026-06-10 07:00", 8, "2026-06-11 00:00", id="la-full-day"),
    ],
)
def test_same_instant_in_two_team_time_zones(
    bh: BusinessHours, start: str, hours: float, expected_utc: str
) -> None:
    assert add_business_hours(bh, utc(start), hours) == utc(expected_utc)


@pytest.mark.parametrize(
    ("bh", "start", "end", "hours"),
    [
        pytest.param(CHICAGO, "2026-06-12 16:00", "2026-06-15 10:00", 2, id="over-weekend"),
        pytest.param(CHICAGO, "2026-06-09 10:00", "2026-06-09 11:30", 1.5, id="same-window"),
        pytest.param(CHICAGO, "2026-06-09 18:00", "2026-06-10 08:00", 0, id="all-night"),
        pytest.param(CHICAGO, "2026-06-13 00:00", "2026-06-14 23:59", 0, id="all-weekend"),
        pytest.param(CHICAGO, "2026-06-15 00:00", "2026-06-22 00:00", 40, id="whole-week"),
        pytest.param(CHICAGO_XMAS, "2026-12-21 00:00", "2026-12-28 00:00", 32, id="holiday-week"),
        pytest.param(CHICAGO, "2026-06-10 12:00", "2026-06-09 12:00", 0, id="end-before-start"),
        pytest.param(CHICAGO, "2026-06-10 12:00", "2026-06-10 12:00", 0, id="empty-interval"),
        pytest.param(LOS_ANGELES, "2026-03-06 16:00", "2026-03-09 10:00", 2, id="dst-weekend-la"),
        # The spring-forward night loses 02:00-03:00; the fall-back night repeats it.
        pytest.param(BERLIN_NIGHTS, "2026-03-29 00:00", "2026-03-30 00:00", 2, id="short-night"),
        pytest.param(BERLIN_NIGHTS, "2026-10-25 00:00", "2026-10-26 00:00", 4, id="long-night"),
        pytest.param(BERLIN_NIGHTS, "2026-03-29 01:30", "2026-03-29 03:30", 1, id="in-short-night"),
        pytest.param(BERLIN_NIGHTS, "2026-10-26 00:00", "2026-10-27 00:00", 3, id="plain-night"),
    ],
)
def test_business_seconds_between(bh: BusinessHours, start: str, end: str, hours: float) -> None:
    assert business_seconds_between(bh, local(bh, start), local(bh, end)) == hours * 3600


def test_business_seconds_ignore_the_hour_dst_removes_from_the_weekend() -> None:
    start = local(LOS_ANGELES, "2026-03-06 16:00")
    end = local(LOS_ANGELES, "2026-03-09 10:00")
    # Python subtracts datetimes sharing a tzinfo as wall-clock times (66 h); really 65 h passed.
    assert (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() == 65 * 3600
    assert business_seconds_between(LOS_ANGELES, start, end) == 2 * 3600


@pytest.mark.parametrize(
    ("bh", "at", "expected"),
    [
        pytest.param(CHICAGO, "2026-06-08 09:00", True, id="at-opening"),
        pytest.param(CHICAGO, "2026-06-08 08:59", False, id="before-opening"),
        pytest.param(CHICAGO, "2026-06-08 16:59", True, id="before-closing"),
        pytest.param(CHICAGO, "2026-06-08 17:00", False, id="at-closing"),
        pytest.param(CHICAGO, "2026-06-13 12:00", False, id="saturday"),
        pytest.param(CHICAGO_XMAS, "2026-12-25 12:00", False, id="holiday"),
        pytest.param(CHICAGO, "2026-12-25 12:00", True, id="not-a-holiday-here"),
    ],
)
def test_is_open(bh: BusinessHours, at: str, expected: bool) -> None:
    assert is_open(bh, local(bh, at)) is expected


def test_is_open_depends_on_the_team_time_zone() -> None:
    at = utc("2026-06-10 16:30")  # 18:30 in Berlin, 09:30 in Los Angeles
    assert not is_open(BERLIN, at)
    assert is_open(LOS_ANGELES, at)


@pytest.mark.parametrize(
    ("bh", "at", "expected"),
    [
        pytest.param(CHICAGO, "2026-06-12 17:00", "2026-06-15 09:00", id="friday-close"),
        pytest.param(CHICAGO, "2026-06-10 10:00", "2026-06-10 10:00", id="open-now"),
        pytest.param(CHICAGO, "2026-06-14 23:00", "2026-06-15 09:00", id="sunday-night"),
        pytest.param(CHICAGO_XMAS, "2026-12-24 20:00", "2026-12-28 09:00", id="over-holiday"),
    ],
)
def test_next_opening(bh: BusinessHours, at: str, expected: str) -> None:
    result = next_opening(bh, local(bh, at))
    assert result == local(bh, expected)
    assert result.tzinfo is UTC


def test_from_config_reads_names_dates_and_hours() -> None:
    bh = BusinessHours.from_config(
        "Europe/Berlin", " 08:30 - 16:00 ", ("Monday", "TUE", "wed"), ("2026-12-25",)
    )
    assert bh == BusinessHours(
        "Europe/Berlin",
        time(8, 30),
        time(16),
        frozenset({0, 1, 2}),
        frozenset({date(2026, 12, 25)}),
    )
    assert CHICAGO.workdays == frozenset(range(5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tz": "Mars/Olympus_Mons"}, "unknown time zone 'Mars/Olympus_Mons'"),
        ({"hours": "9-5"}, "hours must look like '09:00-17:00'"),
        ({"hours": "17:00-09:00"}, "must be before closing time"),
        ({"hours": "10:00-10:00"}, "must be before closing time"),
        ({"hours": "09:00-25:00"}, "impossible time of day"),
        ({"workdays": ("mon", "funday")}, "unknown workday 'funday'"),
        ({"workdays": ("mo",)}, "unknown workday 'mo'"),
        ({"workdays": "mon"}, "workdays must be a list"),
        ({"workdays": ()}, "at least one workday"),
        ({"holidays": ("2026-13-01",)}, "holiday '2026-13-01' is not a date"),
        ({"holidays": "2026-12-25"}, "holidays must be a list"),
    ],
)
def test_from_config_errors_say_what_to_fix(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"tz": "America/Chicago", **kwargs}
    with pytest.raises(BusinessHoursError, match=message.replace("(", r"\(")):
        BusinessHours.from_config(**args)  # type: ignore[arg-type]


DAY_NAMES = ("mon", "Monday", "TUES", "wedn", "thursday", "sun", "monkey", "mo", "sundays", "")


@pytest.mark.parametrize("name", DAY_NAMES)
def test_check_config_and_the_bot_agree_on_every_workday(name: str) -> None:
    """A day ``check-config`` accepts is one the running bot accepts, and the other way round."""
    config = f'[assistance]\ntimezone = "UTC"\nworkdays = ["{name}"]\n'
    try:
        parse_settings(SETTINGS + config, env={})
    except ConfigError as e:
        settings_error: str | None = str(e)
    else:
        settings_error = None
    try:
        BusinessHours.from_config("UTC", workdays=(name,))
    except BusinessHoursError as e:
        bot_error: str | None = str(e)
    else:
        bot_error = None
    assert (settings_error is None) == (bot_error is None), (settings_error, bot_error)
    if settings_error is not None:
        assert settings_error.startswith(f"assistance.workdays[0]: unknown day {name!r}: use mon")


def test_naive_datetimes_and_negative_hours_are_refused() -> None:
    naive = datetime(2026, 6, 10, 12, 0)
    with pytest.raises(BusinessHoursError, match="timezone-aware"):
        is_open(CHICAGO, naive)
    with pytest.raises(BusinessHoursError, match="timezone-aware"):
        business_seconds_between(CHICAGO, naive, utc("2026-06-11 12:00"))
    with pytest.raises(BusinessHoursError, match="must not be negative"):
        add_business_hours(CHICAGO, utc("2026-06-10 12:00"), -1)
    assert issubclass(BusinessHoursError, ValueError)
