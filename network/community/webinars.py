"""Webinar reminders in the rooms a webinar was posted to.

The pure rules (which reminders, how they move with the start time, when one is too late)
live in `network.community.reminders`; this module applies them to what storage holds. Each round:

1. *schedule*: for every upcoming webinar item (and every item that still has reminders
   pending) and each Matrix room the item was posted to, `reconcile` the stored reminders
   with the item's current start: a moved webinar gets its unsent reminders cancelled and
   new ones planned; sent ones are never repeated unless the time moved a lot.
2. *send*: due reminders go out through the Matrix gateway with a transaction id derived
   from (item, room, lead, start), so a resend after a crash or restart returns the event
   already posted: never doubled. Late ones beyond the grace period are dropped.

Reminders link to the webinar's calendar file (`ics_url`), served by `network.web.calendar`.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from network.community.reminders import Reminder, format_when, parse_leads, reconcile, send_decision
from network.errors import MatrixError, MatrixPermanent, MatrixRateLimited
from network.matrix.gateway import MatrixGateway
from network.settings.model import Settings
from network.storage import Item, Storage
from network.storage.cohorts import NewReminder, ReminderRow

log = logging.getLogger(__name__)

MAX_IDLE = 60.0  # seconds between two rounds when nothing is due sooner
MIN_WAIT = 0.5  # seconds between two rounds at least
FIRST_BACKOFF = 1.0  # seconds before the round after a failed or blocked one; then doubled


def ics_url(public_url: str, item_id: int) -> str:
    return f"{public_url.rstrip('/')}/webinars/{item_id}.ics"


def webinar_calendar_links(public_url: str, item: Item) -> tuple[str, str] | None:
    """A webinar post's calendar links: its own file, and the page of the calendars to
    subscribe to (``/calendar``); None for anything else."""
    if item.kind != "webinar" or item.event_start is None:
        return None
    return ics_url(public_url, item.id), f"{public_url.rstrip('/')}/calendar"


def _lead_text(lead: timedelta) -> str:
    minutes = int(lead.total_seconds() // 60)
    for size, unit in ((7 * 24 * 60, "week"), (24 * 60, "day"), (60, "hour"), (1, "minute")):
        if minutes % size == 0:
            n = minutes // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{minutes} minutes"  # pragma: no cover - every lead is whole minutes


def reminder_content(
    *, title: str, link: str | None, start: datetime, tz: str, now: datetime, ics: str
) -> dict[str, Any]:
    """The notice reminding a room of a webinar at ``start``, worded for time zone ``tz``."""
    when = format_when(start, tz, now)
    name = title.strip() or "Webinar"
    lines = [f"Reminder: the webinar “{name}” starts {when}."]
    head = html.escape(name)
    if link:
        lines.append(f"Join or read more: {link}")
        head = f'<a href="{html.escape(link, quote=True)}">{head}</a>'
    lines.append(f"Add it to your calendar: {ics}")
    formatted = (
        f"<p><strong>Reminder:</strong> the webinar {head} starts {html.escape(when)}.</p>"
        f'<p><a href="{html.escape(ics, quote=True)}">Add it to your calendar</a></p>'
    )
    return {
        "msgtype": "m.notice",
        "body": "\n".join(lines),
        "format": "org.matrix.custom.html",
        "formatted_body": formatted,
    }


@dataclass(frozen=True)
class RoundResult:
    added: int = 0
    cancelled: int = 0
    sent: int = 0
    dropped: int = 0
    failed: int = 0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WebinarReminders:
    """Schedules and sends webinar reminders (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        matrix: MatrixGateway | None,
        storage: Storage,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.matrix = matrix
        self.storage = storage
        self.clock = clock
        self.leads = parse_leads(settings.webinars.reminder_leads)
        self.grace = settings.webinars.grace
        self.sent = 0
        self.failed = 0

    async def schedule(self, now: datetime) -> RoundResult:
        """Bring stored reminders in line with the webinars' current start times."""
        added = cancelled = 0
        for item in await self.storage.webinar_items(now):
            is_webinar = item.kind == "webinar" and item.event_start is not None
            rooms = set(await self.storage.item_rooms(item.id)) if is_webinar else set()
            live: dict[str, list[ReminderRow]] = defaultdict(list)
            for row in await self.storage.reminders_for(item.id):
                if row.status in ("pending", "sent"):
                    live[row.room].append(row)
            add: list[NewReminder] = []
            cancel: list[int] = []
            for room in sorted(rooms | set(live)):
                existing = live.get(room, [])
                if room not in rooms or item.event_start is None or not self.leads:
                    cancel += [r.id for r in existing if r.status == "pending"]
                    continue
                plan = reconcile(
                    existing, item.event_start, self.leads, now, item_id=item.id, grace=self.grace
                )
                cancel += [r.id for r in plan.to_cancel]
                add += [NewReminder(item.id, room, r.lead, r.start, r.due_at) for r in plan.to_add]
            if add or cancel:
                await self.storage.apply_reminder_changes(add, cancel, now)
                added += len(add)
                cancelled += len(cancel)
        return RoundResult(added=added, cancelled=cancelled)

    async def send_due(self, now: datetime) -> RoundResult:
        """Send the reminders due at ``now``; drop the ones that are too late."""
        rows = await self.storage.due_reminders(now)
        if not rows:
            return RoundResult()
        items = await self.storage.items_by_id(sorted({r.item_id for r in rows}))
        sent = dropped = failed = 0
        for row in rows:
            item = items.get(row.item_id)
            if item is None or item.event_start != row.start:
                continue  # moved since scheduling: the next schedule() cancels it
            decision = send_decision(
                Reminder(row.item_id, row.lead, row.due_at, row.start), now, grace=self.grace
            )
            if decision == "wait":
                continue
            if decision == "drop":
                late = f"not sent: {_lead_text(row.lead)} reminder was due at {row.due_at:%c} UTC"
                await self.storage.close_reminder(row.id, "dropped", late)
                dropped += 1
                continue
            if self.matrix is None or not self.matrix.logged_in:
                break  # the sync loop is logging in; try again next round
            content = reminder_content(
                title=item.title,
                link=item.link,
                start=row.start,
                tz=self.settings.network.timezone,
                now=now,
                ics=ics_url(self.settings.web.public_url, item.id),
            )
            try:
                room_id = await self.matrix.resolve_room(row.room)
                event = await self.matrix.send(room_id, content, txn_id=row.txn_id)
            except MatrixRateLimited as e:
                await self.storage.mark_reminder_retry(
                    row.id, str(e), now + timedelta(seconds=e.retry_after)
                )
                break
            except MatrixPermanent as e:
                await self.storage.close_reminder(row.id, "failed", str(e))
                self.failed += 1
                failed += 1
                continue
            except MatrixError as e:
                delay = min(300.0, 15.0 * 2**row.attempts)
                await self.storage.mark_reminder_retry(
                    row.id, str(e), now + timedelta(seconds=delay)
                )
                continue
            await self.storage.mark_reminder_sent(row.id, event.event_id, self.clock())
            self.sent += 1
            sent += 1
        return RoundResult(sent=sent, dropped=dropped, failed=failed)

    async def run_once(self) -> RoundResult:
        now = self.clock()
        planned = await self.schedule(now)
        done = await self.send_due(now)
        return RoundResult(planned.added, planned.cancelled, done.sent, done.dropped, done.failed)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = FIRST_BACKOFF
        while not stop.is_set():
            try:
                result = await self.run_once()
                due = await self.storage.next_reminder_due()
                timeout = MAX_IDLE
                if due is not None:
                    timeout = max(MIN_WAIT, min(MAX_IDLE, (due - self.clock()).total_seconds()))
                stuck = not (result.sent or result.dropped or result.failed)
                if due is not None and due <= self.clock() and stuck:
                    # Overdue reminders none of which could go (not logged in yet, rate
                    # limited): without a backoff the loop would spin on them.
                    timeout, backoff = max(timeout, backoff), min(backoff * 2, MAX_IDLE)
                else:
                    backoff = FIRST_BACKOFF
            except Exception:
                log.exception("webinar reminder round failed; retrying in %.0f s", backoff)
                timeout, backoff = backoff, min(backoff * 2, MAX_IDLE)
            await self._pause(stop, timeout)

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        """Wait ``seconds`` or until ``stop`` is set."""
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            pass
