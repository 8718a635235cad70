"""The calendars people subscribe to: ``/calendar.ics`` (every webinar),
``/calendar/cohort/<id>.ics`` and ``/calendar/topic/<topic>.ics``, and the page
``/calendar`` that offers them as ``webcal://`` links (a calendar program subscribes to
those and looks again every hour). The events and their update rule are in
`network.community.calendars`."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from network.community.calendar import calendar_ics, webcal_url
from network.community.calendars import current_events
from network.i18n import gettext
from network.subscriptions.public import Scope
from network.web.context import CONTEXT
from network.web.public import (
    COHORT_PATTERN,
    PUBLIC_CACHE,
    SLUG_PATTERN,
    base_url,
    html_page,
    install,
    not_found,
    public_view,
)

_ = gettext


def calendar_path(scope: Scope) -> str:
    if scope.slug == "all":
        return "/calendar.ics"
    if scope.slug.startswith("cohort-"):
        return f"/calendar/cohort/{scope.slug.removeprefix('cohort-')}.ics"
    return f"/calendar/topic/{scope.slug}.ics"


def subscribe_url(public_url: str, path: str = "/calendar.ics") -> str:
    """The ``webcal://`` address of a calendar (digests and Matrix posts link to it)."""
    return webcal_url(public_url.rstrip("/") + path)


async def _serve(request: web.Request, scope: Scope | None, what: str) -> web.Response:
    if scope is None:
        raise not_found(what)
    service = request.app[CONTEXT]
    now = datetime.now(UTC)
    events = await current_events(service.storage, service.settings, scope.feed_ids, now)
    name = service.settings.digests.network_name or service.settings.network.name
    body = calendar_ics(
        events,
        name=_("{network}: {scope} webinars").format(network=name, scope=scope.title)
        if scope.slug != "all"
        else _("{network}: webinars").format(network=name),
        description=_("Webinars of {network}; updated by itself.").format(network=name),
        now=now,
    )
    return web.Response(
        body=body.encode("utf-8"),
        content_type="text/calendar",
        charset="utf-8",
        headers={"Cache-Control": PUBLIC_CACHE},
    )


async def all_webinars(request: web.Request) -> web.Response:
    return await _serve(request, public_view(request).everything(), _("calendar"))


async def cohort_calendar(request: web.Request) -> web.Response:
    scope = public_view(request).cohort(request.match_info["cohort_id"])
    return await _serve(request, scope, _("cohort"))


async def topic_calendar(request: web.Request) -> web.Response:
    scope = public_view(request).topic(request.match_info["slug"])
    return await _serve(request, scope, _("topic"))


async def calendars_page(request: web.Request) -> web.Response:
    """``GET /calendar``: the calendars, each as a webcal:// subscription and a file."""
    view = public_view(request)
    base = base_url(request)
    scopes = [view.everything()]
    scopes += [s for s in (view.cohort(c.id) for c in view.settings.cohorts) if s is not None]
    scopes += [s for s in view.topics() if not s.slug.startswith("cohort-")]
    rows = [
        {
            "title": _("All webinars") if s.slug == "all" else s.title,
            "webcal": subscribe_url(base, calendar_path(s)),
            "https": base + calendar_path(s),
        }
        for s in scopes
    ]
    return html_page(request, "calendars.html.j2", title=_("Webinar calendars"), calendars=rows)


def setup_routes(app: web.Application) -> None:
    install(app)
    app.router.add_get("/calendar", calendars_page)
    app.router.add_get("/calendar.ics", all_webinars)
    app.router.add_get(f"/calendar/cohort/{{cohort_id:{COHORT_PATTERN}}}.ics", cohort_calendar)
    app.router.add_get(f"/calendar/topic/{{slug:{SLUG_PATTERN}}}.ics", topic_calendar)
