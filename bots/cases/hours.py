"""Business hours of the Need Assistance team: when the team is open, and how much open time lies
between two instants.

Owns the `BusinessHours` calendar (a time zone, one daily opening window, workdays and holidays)
and the pure functions the SLA reminders are computed with. Nothing here reads the clock: every
instant is a timezone-aware argument, and every instant returned is in UTC.

A day's window is the half-open interval [open_time, close_time) in the team's local time,
converted to real instants. Durations are real elapsed seconds, so on a DST day a window such
as 01:00-04:00 in Europe/Berlin lasts two hours, not three.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from network.settings.checks import WEEKDAY_HINT, weekday_number

DEFAULT_WORKDAYS = ("mon", "tue", "wed", "thu", "fri")
_HOURS_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class BusinessHoursError(ValueError):
    """Business hours are configured wrongly, or a function got a naive datetime."""


@dataclass(frozen=True)
class BusinessHours:
    """One daily opening window [open_time, close_time) on workdays (Mon=0) except holidays,
    in the IANA time zone `tz`."""

    tz: str
    open_time: time
    close_time: time
    workdays: frozenset[int] = frozenset(range(5))
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        _zone(self.tz)
        if self.open_time.tzinfo is not None or self.close_time.tzinfo is not None:
            raise BusinessHoursError("business hours: opening and closing times must be local")
        if self.open_time >= self.close_time:
            raise BusinessHoursError(
                f"business hours: opening time {self.open_time:%H:%M} must be before closing time "
                f"{self.close_time:%H:%M} (windows over midnight are not supported)"
            )
        if not self.workdays:
            raise BusinessHoursError("business hours: at least one workday is needed")
        bad = sorted(d for d in self.workdays if d not in range(7))
        if bad:
            raise BusinessHoursError(f"business hours: workdays must be 0 (Mon) to 6 (Sun): {bad}")

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.tz)

    @classmethod
    def from_config(
        cls,
        tz: str,
        hours: str = "09:00-17:00",
        workdays: Iterable[str] = DEFAULT_WORKDAYS,
        holidays: Iterable[str] = (),
    ) -> BusinessHours:
        """Build from config values: `hours` like "09:00-17:00", `workdays` as day names
        ("mon" or "monday", any case), `holidays` as ISO dates ("2026-12-25")."""
        match = _HOURS_RE.match(hours)
        if match is None:
            raise BusinessHoursError(
                f"business hours: hours must look like '09:00-17:00', got {hours!r}"
            )
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        try:
            open_time, close_time = time(h1, m1), time(h2, m2)
        except ValueError as e:
            raise BusinessHoursError(
                f"business hours: {hours!r} has an impossible time of day ({e})"
            ) from e
        if isinstance(workdays, str):
            # A bare string would be iterated letter by letter; say what is expected instead.
            raise BusinessHoursError(
                f"business hours: workdays must be a list like ['mon', 'fri'], got {workdays!r}"
            )
        days = frozenset(_parse_weekday(name) for name in workdays)
        if isinstance(holidays, str):
            raise BusinessHoursError(
                f"business hours: holidays must be a list of dates like ['2026-12-25'], "
                f"got {holidays!r}"
            )
        return cls(
            tz=tz,
            open_time=open_time,
            close_time=close_time,
            workdays=days,
            holidays=frozenset(_parse_holiday(text) for text in holidays),
        )


def is_open(bh: BusinessHours, at: datetime) -> bool:
    """True when `at` falls inside an opening window of the team."""
    _require_aware(at, "at")
    window = _window(bh, at.astimezone(bh.zone).date())
    return window is not None and window[0] <= at < window[1]


def next_opening(bh: BusinessHours, at: datetime) -> datetime:
    """The earliest instant at or after `at` when the team is open (`at` itself, in UTC, if the
    team is open then)."""
    _require_aware(at, "at")
    start, _ = next(_windows_from(bh, at))
    return max(start, at.astimezone(UTC))


def business_seconds_between(bh: BusinessHours, start: datetime, end: datetime) -> float:
    """Open seconds in [start, end); 0 when end is not after start."""
    _require_aware(start, "start")
    _require_aware(end, "end")
    # In UTC, so a difference is elapsed time (aware datetimes sharing a tzinfo subtract and
    # compare as wall-clock times, which is wrong across a DST change).
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return 0.0
    total = 0.0
    for w_start, w_end in _windows_from(bh, start):
        if w_start >= end:
            break
        total += (min(w_end, end) - max(w_start, start)).total_seconds()
    return total


def add_business_hours(bh: BusinessHours, start: datetime, hours: float) -> datetime:
    """The instant (UTC) when `hours` of open time have passed since `start`. Counting begins at
    the next opening if `start` is outside hours, so 0 hours gives that opening. A sum that runs
    out exactly at closing time gives the closing instant, not the next morning."""
    _require_aware(start, "start")
    if hours < 0:
        raise BusinessHoursError(f"business hours to add must not be negative, got {hours}")
    remaining = timedelta(hours=hours)
    for w_start, w_end in _windows_from(bh, start):
        begin = max(w_start, start.astimezone(UTC))
        available = w_end - begin
        if remaining <= available:
            return begin + remaining
        remaining -= available
    raise AssertionError("unreachable: the window iterator never ends")


def _windows_from(bh: BusinessHours, at: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Opening windows (UTC) that end after `at`, in order; endless."""
    day = at.astimezone(bh.zone).date()
    while True:
        window = _window(bh, day)
        if window is not None and window[1] > at:
            yield window
        day += timedelta(days=1)


def _window(bh: BusinessHours, day: date) -> tuple[datetime, datetime] | None:
    if day.weekday() not in bh.workdays or day in bh.holidays:
        return None
    zone = bh.zone
    # Going through UTC resolves local times that DST skips or repeats to real instants.
    start = datetime.combine(day, bh.open_time, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day, bh.close_time, tzinfo=zone).astimezone(UTC)
    return (start, end) if end > start else None


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise BusinessHoursError(
            f"business hours: unknown time zone {tz!r}; use an IANA name like 'America/Chicago'"
        ) from e


def _parse_weekday(name: str) -> int:
    # The settings check's rule, so check-config and the running bot agree on every day.
    number = weekday_number(name)
    if number is None:
        raise BusinessHoursError(f"business hours: unknown workday {name!r}; {WEEKDAY_HINT}")
    return number


def _parse_holiday(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError as e:
        raise BusinessHoursError(
            f"business hours: holiday {text!r} is not a date like '2026-12-25'"
        ) from e


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise BusinessHoursError(f"{name} must be a timezone-aware datetime, got {value!r}")
