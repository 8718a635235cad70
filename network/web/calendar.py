"""``GET /webinars/<id>.ics``: a webinar as an iCalendar file, the same event (UID,
sequence, status) as in the subscribable calendars (`network.web.calendars`); digests
and reminders link to it (`network.community.webinars.ics_url` builds the link)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from feeds.sanitize import html_to_text
from network.community.calendar import calendar_uri, event_uid, webinar_ics
from network.community.calendars import calendar_host, current_events
from network.web.context import context_of
from network.web.security import ID_PATTERN, path_id

ICS_ROUTE = f"/webinars/{{item_id:{ID_PATTERN}}}.ics"


async def ics_handler(request: web.Request) -> web.Response:
    """``GET /webinars/<id>.ics``: the webinar as a calendar file."""
    service = context_of(request)
    item = await service.storage.item(path_id(request, "item_id"))
    if item is None or item.kind != "webinar" or item.event_start is None:
        raise web.HTTPNotFound(text="No webinar with a start time has this number.")
    settings = service.settings
    now = datetime.now(UTC)
    events = await current_events(
        service.storage, settings, [item.feed_id], now, item_ids=[item.id]
    )
    if events:
        event = events[0]
        body = webinar_ics(
            uid=event.uid,
            title=event.title,
            start=event.start,
            duration=event.end - event.start,
            url=event.url,
            description=event.description,
            now=now,
            sequence=event.sequence,
            cancelled=event.cancelled,
        )
    else:  # older than the calendars' history: as it is, never changed since
        body = webinar_ics(
            uid=event_uid(item.id, calendar_host(settings)),
            title=item.title,
            start=item.event_start,
            duration=settings.webinars.duration,
            # A link that cannot be a calendar URI (not http(s), control characters) is left out.
            url=calendar_uri(item.link) if item.link else None,
            description=html_to_text(item.summary_html),
            now=now,
        )
    return web.Response(
        body=body.encode("utf-8"),
        content_type="text/calendar",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="webinar-{item.id}.ics"'},
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get(ICS_ROUTE, ics_handler)
