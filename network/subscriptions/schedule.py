"""When a subscriber's digest is due: the pure schedule of daily and weekly digests.

Owns `Schedule` (frequency, IANA time zone, local send hour, weekday for weekly digests) and
the functions the digest job asks: the most recent scheduled instant (`period_start`), the
next one (`next_send`) and whether a digest is due now (`due`). Nothing here reads the clock;
every instant given must be timezone-aware and every instant returned is aware UTC.

Local wall times are turned into instants the way a person expects across DST changes:
a local hour that does not exist (spring forward) means the first instant after the gap,
i.e. the moment clocks jump; an hour that happens twice (fall back) means its first
occurrence. So a daily 02:00 digest in New York goes out at 03:00 EDT on the spring-forward
day, and a daily 01:00 digest goes out once, at 01:00 EDT, on the fall-back day.

The instant returned by `due` is the *period key*: storing it as ``last_sent`` (or the real
send time, which is later) makes the digest not due again until the next scheduled instant.
A service that was down through several periods sends one digest, not one per missed period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from network.errors import LibhubError

Frequency = Literal["immediate", "daily", "weekly"]
FREQUENCIES: tuple[str, ...] = ("immediate", "daily", "weekly")


class ScheduleError(LibhubError, ValueError):
    """A digest schedule is invalid, or a function got a naive datetime."""


@dataclass(frozen=True)
class Schedule:
    """Send at ``hour``:00 local time in ``tz``, every day or on ``weekday`` (Monday=0).

    ``immediate`` schedules have no fixed instants: every moment is a send instant.
    """

    frequency: Frequency
    tz: str
    hour: int
    weekday: int = 0

    def __post_init__(self) -> None:
        if self.frequency not in FREQUENCIES:
            raise ScheduleError(
                f"unknown digest frequency {self.frequency!r}: expected one of "
                f"{', '.join(FREQUENCIES)}"
            )
        _zone(self.tz)
        if isinstance(self.hour, bool) or not isinstance(self.hour, int):
            raise ScheduleError(f"digest hour must be a whole number 0-23, got {self.hour!r}")
        if not 0 <= self.hour <= 23:
            raise ScheduleError(f"digest hour must be 0-23 (local time), got {self.hour}")
        if isinstance(self.weekday, bool) or not isinstance(self.weekday, int):
            raise ScheduleError(f"digest weekday must be 0-6 (Monday=0), got {self.weekday!r}")
        if not 0 <= self.weekday <= 6:
            raise ScheduleError(f"digest weekday must be 0-6 (Monday=0), got {self.weekday}")

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.tz)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as e:
        raise ScheduleError(
            f"unknown time zone {name!r}: use an IANA name like 'Europe/Berlin' or "
            "'America/Chicago'"
        ) from e


def _check_aware(now: datetime, what: str = "now") -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ScheduleError(f"{what} must be a timezone-aware datetime (use datetime.now(UTC))")


def local_instant(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """The UTC instant of ``hour``:00 on ``day`` in ``zone``, resolving DST gaps and overlaps.

    Ambiguous wall times (fall back) take the first occurrence (``fold=0``). Wall times in a
    gap (spring forward) take the instant the gap ends: the first instant whose local time
    is later than the missing one.
    """
    wall = datetime(day.year, day.month, day.day, hour)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap, fold=0 applies the offset from before the change and fold=1 the one after,
    # which bracket the transition; a bisection finds it for gaps of any length (whole days
    # were skipped in Pacific/Apia in 2011) without assuming they start on the hour.
    hi = first
    lo = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if lo > hi:
        lo, hi = hi, lo
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def _candidates(schedule: Schedule, now: datetime) -> list[datetime]:
    """Scheduled instants around ``now``: at least one before and one after it, sorted."""
    zone = schedule.zone
    today = now.astimezone(zone).date()
    if schedule.frequency == "weekly":
        days = [today + timedelta(days=k) for k in range(-8, 9)]
        days = [d for d in days if d.weekday() == schedule.weekday]
    else:
        # Two days either side cover any UTC offset (-12..+14) and a skipped local day.
        days = [today + timedelta(days=k) for k in range(-2, 3)]
    return sorted({local_instant(d, schedule.hour, zone) for d in days})


def period_start(schedule: Schedule, now: datetime) -> datetime:
    """The most recent scheduled send instant at or before ``now`` (aware UTC).

    For ``immediate`` schedules this is ``now`` itself.
    """
    _check_aware(now)
    now_utc = now.astimezone(UTC)
    if schedule.frequency == "immediate":
        return now_utc
    return max(c for c in _candidates(schedule, now_utc) if c <= now_utc)


def next_send(schedule: Schedule, now: datetime) -> datetime:
    """The first scheduled send instant strictly after ``now`` (aware UTC).

    For ``immediate`` schedules this is ``now`` itself: the next poll batch goes out at once.
    """
    _check_aware(now)
    now_utc = now.astimezone(UTC)
    if schedule.frequency == "immediate":
        return now_utc
    return min(c for c in _candidates(schedule, now_utc) if c > now_utc)


def due(schedule: Schedule, now: datetime, last_sent: datetime | None) -> datetime | None:
    """The period key when a digest is due at ``now``, else None.

    Due means the last digest (``last_sent``, either the key returned here or the real send
    time) is older than the most recent scheduled instant. Only that most recent instant is
    returned, however many periods were missed. ``None`` for ``last_sent`` means nothing was
    ever sent, so the current period is due; storage that wants a new subscriber to wait for
    the next scheduled instant should pass the confirmation time instead.
    """
    _check_aware(now)
    if last_sent is not None:
        _check_aware(last_sent, "last_sent")
    key = period_start(schedule, now)
    if last_sent is None or last_sent.astimezone(UTC) < key:
        return key
    return None


def retry_delay(attempts: int) -> timedelta:
    """How long a message waits after ``attempts`` failures (digests, confirmations): 1
    minute after the first, doubling, at most an hour."""
    return timedelta(seconds=min(3600, 60 * 2 ** max(0, attempts - 1)))
