"""``GET /webinars/<id>.ics``: a webinar as an iCalendar file (digests and reminders link to
it; `network.community.webinars.ics_url` builds the link)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from aiohttp import web

from feeds.sanitize import html_to_text
from network.community.calendar import calendar_uri, webinar_ics
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
    host = urlsplit(settings.web.public_url).hostname or "libhub"
    body = webinar_ics(
        uid=f"item-{item.id}@{host}",
        title=item.title,
        start=item.event_start,
        duration=settings.webinars.duration,
        # A link that cannot be a calendar URI (not http(s), control characters) is left out.
        url=calendar_uri(item.link) if item.link else None,
        description=html_to_text(item.summary_html),
        now=datetime.now(UTC),
    )
    return web.Response(
        body=body.encode("utf-8"),
        content_type="text/calendar",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="webinar-{item.id}.ics"'},
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get(ICS_ROUTE, ics_handler)
