"""The events of the subscribable calendars, read from storage and kept in step with it.

`current_events` asks storage for the webinars of some feeds (and the former webinars the
calendars showed before), applies the update rule of `network.community.calendar.revise`
and remembers what changed, so the same webinar keeps its UID and a higher ``SEQUENCE``
whenever its time, title or status changes. Run on every calendar request: calendars are
small, and the sequence only has to move before a subscriber next looks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from feeds.sanitize import html_to_text
from network.community.calendar import CalendarEvent, revise
from network.settings.model import Settings
from network.storage import Storage
from network.storage.calendar import CalendarChange

# Past webinars stay on the calendars this long (people look back at what they attended).
HISTORY = timedelta(days=180)
DESCRIPTION_CHARS = 2000


def calendar_host(settings: Settings) -> str:
    return urlsplit(settings.web.public_url).hostname or "libhub"


async def current_events(
    storage: Storage,
    settings: Settings,
    feed_ids: Sequence[str],
    now: datetime,
    *,
    item_ids: Sequence[int] | None = None,
) -> list[CalendarEvent]:
    """The events to publish for ``feed_ids``, oldest first, with up-to-date sequences."""
    host = calendar_host(settings)
    duration = settings.webinars.duration
    events: list[CalendarEvent] = []
    changes: list[CalendarChange] = []
    for candidate in await storage.calendar_candidates(feed_ids, now - HISTORY, item_ids):
        text = html_to_text(candidate.item.summary_html)[:DESCRIPTION_CHARS]
        revised = revise(candidate, host=host, duration=duration, description=text)
        if revised is None:
            continue
        event, change = revised
        events.append(event)
        if change is not None:
            changes.append(change)
    await storage.save_calendar_changes(changes, now)
    return events
