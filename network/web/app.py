"""The web server: health, and the pages other modules register on it.

aiohttp, server-rendered. The app object carries the parts of the running service the
pages need (a `WebContext`, network/web/context.py) under a typed key; route modules
(subscriptions, dashboard, calendar files, metrics) add their routes through
`setup_routes`-style functions called by the app factory.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from network.ratelimit import PerClientLimit
from network.settings.checks import parse_networks
from network.web import (
    archive,
    calendar,
    calendars,
    dashboard,
    dashboard_feeds,
    dashboard_login,
    dashboard_review,
    dashboard_routes,
    dashboard_trends,
    feeds_out,
    hooks,
    metrics,
)
from network.web.context import CONTEXT, FORM_LIMIT, TRUSTED_PROXIES, WebContext
from network.web.language import language_middleware
from network.web.security import security_middleware
from network.web.subscribe import setup_subscribe_routes


async def health_report(service: WebContext) -> tuple[bool, dict[str, Any]]:
    """What /healthz and `libhub status` show: can a coordinator trust the service now?"""
    report: dict[str, Any] = {}
    db_ok = True
    try:
        report["feeds"] = await service.storage.feed_health_counts()
        report["outbox"] = await service.storage.outbox_counts()
        report["items"] = await service.storage.item_count()
    except Exception as e:  # any database failure makes the service unhealthy
        db_ok = False
        report["database_error"] = str(e)
    report["database"] = db_ok
    gateway = service.matrix
    report["matrix"] = {
        "homeserver": service.settings.matrix.homeserver,
        "logged_in": bool(gateway and gateway.logged_in),
        "seconds_since_sync": (
            round(s, 1) if gateway and (s := gateway.seconds_since_sync()) is not None else None
        ),
        "last_error": gateway.last_error if gateway else None,
        # The homeserver limits the bot (told once; cleared by `libhub matrix lift-ratelimit`).
        "rate_limited": (
            gateway.ratelimits.notice.as_dict() if gateway and gateway.ratelimits.notice else None
        ),
    }
    if db_ok:
        report["failed_deliveries"] = [
            {
                "id": r.id,
                "target": service.display_target(r.target_type, r.target),
                "error": r.last_error,
            }
            for r in await service.storage.failed_rows(limit=20)
        ]
    if db_ok:
        # Every libhub instance on this database and which one leads (leadership.py).
        report["instances"] = [
            {
                "id": i.id,
                "host": i.host,
                "pid": i.pid,
                "leader": i.leader,
                "heartbeat": i.heartbeat_at.isoformat(),
            }
            for i in await service.storage.instances(datetime.now(UTC))
        ]
    # Digests wait while the mail relay cannot be used or refuses everyone (digests/send.py).
    report["mail_relay_problem"] = service.digests.relay_problem or None
    report["ok"] = db_ok
    return db_ok, report


async def healthz(request: web.Request) -> web.Response:
    ok, report = await health_report(request.app[CONTEXT])
    return web.json_response(report, status=200 if ok else 503)


def make_web_app(service: WebContext) -> web.Application:
    # Middleware for every route: security headers, unreadable bodies refused; then the
    # language the page is shown in.
    app = web.Application(
        client_max_size=64 * 1024, middlewares=[security_middleware, language_middleware]
    )
    app[CONTEXT] = service
    w = service.settings.web
    app[FORM_LIMIT] = PerClientLimit(w.forms_per_client, w.forms_window.total_seconds())
    app[TRUSTED_PROXIES] = parse_networks(w.trusted_proxies)
    app.router.add_get("/healthz", healthz)
    # Community of practice: staff dashboard, Prometheus metrics, webinar calendar files.
    dashboard.setup_routes(app, service.settings)
    if service.settings.dashboard.enabled:
        dashboard_review.setup_routes(app)
        dashboard_trends.setup_routes(app)
        dashboard_feeds.setup_routes(app)
        dashboard_routes.setup_routes(app)
    if service.settings.dashboard.enabled and dashboard.matrix_login_enabled(service.settings):
        dashboard_login.setup_matrix_login(app)
    metrics.setup_routes(app)
    calendar.setup_routes(app)
    # Subscribers: subscribe, confirm, manage, one-click unsubscribe.
    setup_subscribe_routes(app)
    # The public face: subscribable calendars, the archive and the feeds out.
    calendars.setup_routes(app)
    archive.setup_routes(app)
    feeds_out.setup_routes(app)
    # Inbound webhooks: events calendars and form tools post items.
    hooks.setup_routes(app)
    return app
