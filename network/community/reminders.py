"""Webinar reminders: which reminders to schedule for a start time, how to move them when the
start time changes, how leads are written in config, and how a start time reads in a room.

Pure: `now` is always an argument; nothing is sent or stored here.

Rules
- A reminder with lead L for a webinar starting at S is due at S - L, in elapsed time: across
  a DST change "1d" before 2:00 PM is 1:00 PM or 3:00 PM local the day before.
- Lateness: a reminder may go out up to `grace` (15 minutes by default) after it was due, so a
  poll that runs a little late loses nothing; later than that, or once the webinar has
  started, it is dropped. Planning skips such reminders, and `send_decision` applies the same
  rule when the sender finds a reminder it missed (e.g. after a restart).
- When the start moves (`reconcile`):
  * unsent reminders follow it: any whose start or lead no longer matches is cancelled and a
    new one is planned in its place;
  * sent reminders stay sent. A lead that was already sent is not sent again unless the start
    moved by more than `resend_after` (1 hour by default): then the earlier message announced
    a wrong time, so the lead is planned again for the new start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from network.settings.checks import WEEKDAY_NAMES
from network.settings.community import ReminderConfigError, parse_lead

DEFAULT_GRACE = timedelta(minutes=15)
DEFAULT_RESEND_AFTER = timedelta(hours=1)

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@dataclass(frozen=True)
class Reminder:
    item_id: int
    lead: timedelta
    due_at: datetime
    start: datetime


class ScheduledReminder(Protocol):
    """A reminder as stored by the caller: a `Reminder` plus whether it went out."""

    @property
    def item_id(self) -> int: ...
    @property
    def lead(self) -> timedelta: ...
    @property
    def start(self) -> datetime: ...
    @property
    def sent(self) -> bool: ...


R = TypeVar("R", bound=ScheduledReminder)


@dataclass(frozen=True)
class ReminderPlan(Generic[R]):
    to_add: tuple[Reminder, ...]
    to_cancel: tuple[R, ...]
    to_keep: tuple[R, ...]


def plan_reminders(
    item_id: int,
    start: datetime,
    leads: Sequence[timedelta],
    now: datetime,
    *,
    grace: timedelta = DEFAULT_GRACE,
) -> list[Reminder]:
    """Reminders still worth sending for a webinar at `start`, earliest due first."""
    start = _utc(start, "start")
    now = _utc(now, "now")
    planned = []
    for lead in sorted(set(leads), reverse=True):
        if lead <= timedelta(0):
            raise ReminderConfigError(f"reminder lead must be more than zero, got {lead}")
        reminder = Reminder(item_id, lead, start - lead, start)
        if not _too_late(reminder.due_at, start, now, grace):
            planned.append(reminder)
    return planned


def send_decision(
    reminder: Reminder, now: datetime, *, grace: timedelta = DEFAULT_GRACE
) -> Literal["wait", "send", "drop"]:
    """What the sender should do with an unsent reminder at `now`."""
    now = _utc(now, "now")
    if now < reminder.due_at:
        return "wait"
    return "drop" if _too_late(reminder.due_at, reminder.start, now, grace) else "send"


def reconcile(
    existing: Sequence[R],
    new_start: datetime,
    leads: Sequence[timedelta],
    now: datetime,
    *,
    item_id: int | None = None,
    grace: timedelta = DEFAULT_GRACE,
    resend_after: timedelta = DEFAULT_RESEND_AFTER,
) -> ReminderPlan[R]:
    """Bring one webinar's stored reminders in line with its (possibly moved) start time.
    `item_id` is taken from `existing` unless given (it must be when there are none)."""
    ids = {r.item_id for r in existing} | ({item_id} if item_id is not None else set())
    if len(ids) != 1:
        raise ValueError(f"reconcile needs the reminders of exactly one item, got ids {ids}")
    (the_id,) = ids
    new_start = _utc(new_start, "new_start")
    wanted = {r.lead: r for r in plan_reminders(the_id, new_start, leads, now, grace=grace)}
    keep: list[R] = []
    cancel: list[R] = []
    for old in existing:
        if old.sent:
            keep.append(old)
            if abs(new_start - old.start.astimezone(UTC)) <= resend_after:
                wanted.pop(old.lead, None)
    for old in existing:
        if old.sent:
            continue
        if old.lead in wanted and old.start == new_start:
            keep.append(old)
            del wanted[old.lead]
        else:
            cancel.append(old)
    return ReminderPlan(tuple(wanted.values()), tuple(cancel), tuple(keep))


def parse_leads(texts: Iterable[str]) -> list[timedelta]:
    return [parse_lead(text) for text in texts]


def format_when(start: datetime, tz: str, now: datetime) -> str:
    """When the webinar starts, as people in a room in time zone `tz` say it: "in 45 minutes
    (2:00 PM EST)", "today at 5:00 PM BST", "tomorrow at 2:00 PM EST",
    "Tuesday, March 4 at 2:00 PM EST" (with the year when it is not this year)."""
    start = _utc(start, "start")
    now = _utc(now, "now")
    zone = _zone(tz)
    local = start.astimezone(zone)
    clock = _clock(local)
    minutes = round((start - now).total_seconds() / 60)
    if minutes <= 0:
        return f"now ({clock})" if minutes > -5 else f"started {_day(local, now, zone)}{clock}"
    if minutes < 120:
        return f"in {_duration(minutes)} ({clock})"
    return f"{_day(local, now, zone)}{clock}"


def _day(local: datetime, now: datetime, zone: ZoneInfo) -> str:
    today = now.astimezone(zone).date()
    day = local.date()
    if day == today:
        return "today at "
    if day == today + timedelta(days=1):
        return "tomorrow at "
    if day == today - timedelta(days=1):
        return "yesterday at "
    text = f"{WEEKDAY_NAMES[day.weekday()]}, {_MONTHS[day.month - 1]} {day.day}"
    if day.year != today.year:
        text += f", {day.year}"
    return text + " at "


def _clock(local: datetime) -> str:
    hour = local.hour % 12 or 12
    return f"{hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'} {local.tzname()}"


def _duration(minutes: int) -> str:
    hours, mins = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if mins:
        parts.append(f"{mins} minute{'s' if mins != 1 else ''}")
    return " ".join(parts)


def _too_late(due_at: datetime, start: datetime, now: datetime, grace: timedelta) -> bool:
    return now >= start or now - due_at > grace


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ReminderConfigError(
            f"unknown time zone {tz!r}; use an IANA name like 'America/Chicago'"
        ) from e


def _utc(value: datetime, name: str) -> datetime:
    # Arithmetic happens in UTC: aware datetimes sharing a tzinfo subtract as wall-clock times,
    # which is wrong across a DST change.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)
