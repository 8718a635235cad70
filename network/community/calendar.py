"""iCalendar (RFC 5545) for webinars: one event's file and the calendars people subscribe to.

Written with the maintained ``icalendar`` library (line folding, escaping, CRLF). All
times are UTC. Each webinar's event has a stable UID (``item-<id>@<host>``), the same in
the one-event file and in every calendar, so a calendar program updates one entry.

The update rule (`revise`, pure): what an event shows is summed up in a fingerprint
(title, start, end, link, description, status); when it differs from what the calendars
last published, ``SEQUENCE`` goes up by one, so subscribed programs replace their copy.
An event is ``CANCELLED`` when its item was withdrawn (or is not active, e.g. held), left
its feed while upcoming, stopped being a webinar, or says so in its title ("Cancelled:",
"Canceled", "Cancelado"). ``DTSTAMP`` is ``now``, passed in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import icalendar

from network.storage.calendar import CalendarCandidate, CalendarChange

PRODID = "-//libhub//Library network webinars//EN"
# How often subscribed programs should look again (RFC 7986 and the older X- property).
REFRESH = timedelta(hours=1)
_CANCELLED = re.compile(r"\b(cancell?ed|cancelad[oa]|annul[ée]e?)\b", re.IGNORECASE)


def calendar_uri(url: str) -> str | None:
    """``url`` as a URI value, or None when it cannot be one (leave the URL field out).

    A URI value is not TEXT and is not escaped, so anything that could break the line
    structure is refused rather than written. Feeds do publish links with spaces; a space
    is percent-encoded, which names the same page."""
    uri = url.strip().replace(" ", "%20")
    if any(ord(c) < 0x20 or c == "\x7f" for c in uri):
        return None
    return uri if uri.startswith(("http://", "https://")) else None


def webcal_url(https_url: str) -> str:
    """The ``webcal://`` form of a calendar's URL: calendar programs subscribe to it."""
    return re.sub(r"^https?://", "webcal://", https_url)


def event_uid(item_id: int, host: str) -> str:
    return f"item-{item_id}@{host}"


def says_cancelled(title: str) -> bool:
    return bool(_CANCELLED.search(title))


@dataclass(frozen=True)
class CalendarEvent:
    """One webinar as the calendars show it."""

    uid: str
    title: str
    start: datetime
    end: datetime
    url: str | None
    description: str
    cancelled: bool
    sequence: int = 0

    def fingerprint(self) -> str:
        parts = [
            self.title,
            self.start.astimezone(UTC).isoformat(),
            self.end.astimezone(UTC).isoformat(),
            self.url or "",
            self.description,
            "cancelled" if self.cancelled else "confirmed",
        ]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _check(uid: str, start: datetime, end: datetime) -> None:
    if not uid.strip():
        raise ValueError("webinar uid must not be empty")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be a timezone-aware datetime")
    if end <= start:
        raise ValueError(f"webinar duration must be positive, got {end - start}")


def _vevent(event: CalendarEvent, now: datetime) -> icalendar.Event:
    _check(event.uid, event.start, event.end)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    vevent = icalendar.Event()
    vevent.add("uid", event.uid)
    vevent.add("dtstamp", now.astimezone(UTC))
    vevent.add("dtstart", event.start.astimezone(UTC))
    vevent.add("dtend", event.end.astimezone(UTC))
    vevent.add("sequence", event.sequence)
    vevent.add("summary", event.title.strip() or "Webinar")
    if event.description.strip():
        vevent.add("description", event.description.strip())
    if event.url:
        uri = calendar_uri(event.url)
        if uri is None:
            raise ValueError(
                f"webinar URL must be an http(s) URL without line breaks, got {event.url!r}"
            )
        vevent.add("url", uri)
    vevent.add("status", "CANCELLED" if event.cancelled else "CONFIRMED")
    vevent.add("transp", "TRANSPARENT" if event.cancelled else "OPAQUE")
    return vevent


def calendar_ics(
    events: Sequence[CalendarEvent], *, name: str, description: str, now: datetime
) -> str:
    """A calendar of ``events`` to subscribe to, as text with CRLF line endings."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("name", name)
    cal.add("x-wr-calname", name)
    if description:
        cal.add("description", description)
        cal.add("x-wr-caldesc", description)
    cal.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", REFRESH)
    for event in events:
        cal.add_component(_vevent(event, now))
    return str(cal.to_ical().decode("utf-8"))


def webinar_ics(
    uid: str,
    title: str,
    start: datetime,
    duration: timedelta,
    url: str | None,
    description: str,
    now: datetime,
    *,
    sequence: int = 0,
    cancelled: bool = False,
) -> str:
    """A calendar file with one event for a webinar, as text with CRLF line endings.

    ``uid`` must be stable for the webinar (e.g. ``item-42@libhub.example.org``) so a second
    download updates the same calendar entry instead of adding another.
    """
    if duration <= timedelta(0):
        raise ValueError(f"webinar duration must be positive, got {duration}")
    event = CalendarEvent(
        uid, title, start, start + duration, url, description, cancelled, sequence
    )
    _check(uid, start, event.end)
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add_component(_vevent(event, now))
    return str(cal.to_ical().decode("utf-8"))


def revise(
    candidate: CalendarCandidate, *, host: str, duration: timedelta, description: str
) -> tuple[CalendarEvent, CalendarChange | None] | None:
    """The event to publish for ``candidate`` and, when it differs from what the calendars
    last showed, the change to remember (a higher sequence). None: nothing to show (a
    webinar that never had a start)."""
    item, published = candidate.item, candidate.published
    start = item.event_start or (published.start if published else None)
    if start is None:
        return None
    removed = published is not None and published.removed
    cancelled = (
        candidate.withdrawn
        or removed
        or item.kind != "webinar"
        or item.event_start is None
        or says_cancelled(item.title)
    )
    event = CalendarEvent(
        uid=event_uid(item.id, host),
        title=item.title,
        start=start,
        end=start + duration,
        url=calendar_uri(item.link) if item.link else None,
        description=description,
        cancelled=cancelled,
    )
    fingerprint = event.fingerprint()
    status = "cancelled" if cancelled else "confirmed"
    if published is None:
        change = CalendarChange(item.id, 0, fingerprint, start, status)
        return event, change
    if published.fingerprint == fingerprint:
        return _with_sequence(event, published.sequence), None
    # A row noted before anything was published (fingerprint "") starts at 0 as well.
    sequence = published.sequence + 1 if published.fingerprint else published.sequence
    change = CalendarChange(item.id, sequence, fingerprint, start, status)
    return _with_sequence(event, sequence), change


def _with_sequence(event: CalendarEvent, sequence: int) -> CalendarEvent:
    return CalendarEvent(
        event.uid,
        event.title,
        event.start,
        event.end,
        event.url,
        event.description,
        event.cancelled,
        sequence,
    )
