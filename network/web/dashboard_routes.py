"""The dashboard's routes page, ``/dashboard/routes``: which feeds and kinds go where.

Routes from the config file are listed read-only (the file wins). Live routes (feeds and/or
kinds to rooms and/or channels, with optional templates) are added and removed here through
`FeedAdmin.save_route` / `remove_route` (network/feedadmin/manage.py), which check the route
and its templates before storing, write the audit entry with the coordinator as actor and
reload the catalog the router reads, so a change applies without a restart. After adding,
the page shows the newest item of the route's first feed as the route would post it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from network.feedadmin.manage import Refused
from network.i18n import gettext as _
from network.settings.model import KINDS
from network.storage.live_feeds import LiveRouteRecord
from network.web.context import WebContext
from network.web.dashboard import PREFIX, Session, _page, _redirect, _render
from network.web.dashboard_feeds import _split

ROUTES = f"{PREFIX}/routes"


def _any(values: tuple[str, ...]) -> str:
    return ", ".join(values) if values else _("any")


def _none(values: tuple[str, ...]) -> str:
    return ", ".join(values) if values else "-"


async def _routes_page(
    service: WebContext, session: Session, status: int = 200, **extra: Any
) -> web.Response:
    catalog = service.feed_admin.catalog
    await catalog.reload(service.storage)  # what another process added, too
    file_routes = [
        {
            "feeds": _any(r.feeds),
            "kinds": _any(tuple(r.kinds)),
            "rooms": _none(r.rooms),
            "channels": _none(r.channels),
            "templated": bool(r.matrix_template or r.channel_template),
        }
        for r in service.settings.routes
    ]
    live_routes = [
        {
            "id": r.id,
            "feeds": _any(r.feeds),
            "kinds": _any(r.kinds),
            "rooms": _none(r.rooms),
            "channels": _none(r.channels),
            "matrix_template": r.matrix_template,
            "channel_template": r.channel_template,
            "added_by": r.added_by,
        }
        for r in catalog.live_routes()
    ]
    defaults: dict[str, Any] = {"error": "", "done_text": "", "form": {}, "preview": None}
    return _render(
        "dashboard_routes.html.j2",
        status,
        session=session,
        network=service.settings.network.name,
        file_routes=file_routes,
        live_routes=live_routes,
        feeds=[(f.id, f.title or f.id) for f in catalog.feeds()],
        kinds=KINDS,
        channels=sorted(service.settings.channels),
        **{**defaults, **extra},
    )


async def routes_page(request: web.Request, service: WebContext, session: Session) -> web.Response:
    text = ""
    if request.query.get("done") == "removed" and request.query.get("route", "").isdigit():
        text = _("Removed route {route_id}; nothing more is sent by it.").format(
            route_id=request.query["route"]
        )
    return await _routes_page(service, session, done_text=text)


async def add_route(request: web.Request, service: WebContext, session: Session) -> web.Response:
    form = await request.post()

    def picked(name: str) -> tuple[str, ...]:
        return tuple(str(v) for v in form.getall(name, []) if str(v))

    route = LiveRouteRecord(
        id=0,
        feeds=picked("feeds"),
        kinds=picked("kinds"),
        rooms=_split(str(form.get("rooms", ""))),
        channels=picked("channels"),
        matrix_template=str(form.get("matrix_template", "")).strip(),
        channel_template=str(form.get("channel_template", "")).strip(),
        added_by=session.name,
        added_at=datetime.now(UTC),
    )
    # What was typed comes back on a refusal, so nothing has to be typed again.
    fields: dict[str, Any] = {**vars(route), "rooms": str(form.get("rooms", ""))}
    try:
        route_id = await service.feed_admin.save_route(session.name, route)
    except Refused as e:
        return await _routes_page(service, session, 400, error=str(e), form=fields)
    preview = await service.feed_admin.route_preview(route)
    text = _("Added route {route_id}; it applies to the next new items.").format(route_id=route_id)
    shown = {"room": preview[0], "channel": preview[1]} if preview else None
    return await _routes_page(service, session, done_text=text, preview=shown)


async def remove_route(
    request: web.Request, service: WebContext, session: Session
) -> web.StreamResponse:
    route_id = int(request.match_info["route_id"])
    try:
        await service.feed_admin.remove_route(session.name, route_id)
    except Refused as e:
        return await _routes_page(service, session, 400, error=str(e))
    return _redirect(f"{ROUTES}?done=removed&route={route_id}")


def setup_routes(app: web.Application) -> None:
    app.router.add_get(ROUTES, _page(routes_page))
    app.router.add_post(f"{ROUTES}/add", _page(add_route))
    app.router.add_post(f"{ROUTES}/{{route_id:[0-9]{{1,9}}}}/remove", _page(remove_route))
