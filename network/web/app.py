"""The web server: health, and the pages other modules register on it.

aiohttp, server-rendered. The app object carries the running `Service` under a typed
key; route modules (subscriptions, dashboard, calendar files, metrics) add their
routes through `setup_routes`-style functions called by the app factory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from network.web.language import language_middleware
from network.web.limits import IPNetwork, PerClientLimit, parse_networks
from network.web.security import security_middleware

if TYPE_CHECKING:
    from network.service import Service

SERVICE: web.AppKey[Service] = web.AppKey("service")
# Posts of the forms that send mail, per client address (network/web/limits.py).
FORM_LIMIT: web.AppKey[PerClientLimit] = web.AppKey("form_limit")
TRUSTED_PROXIES: web.AppKey[tuple[IPNetwork, ...]] = web.AppKey("trusted_proxies")


async def health_report(service: Service) -> tuple[bool, dict[str, Any]]:
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
    report["ok"] = db_ok
    return db_ok, report


async def healthz(request: web.Request) -> web.Response:
    ok, report = await health_report(request.app[SERVICE])
    return web.json_response(report, status=200 if ok else 503)


def make_web_app(service: Service) -> web.Application:
    # Middleware for every route: security headers, unreadable bodies refused; then the
    # language the page is shown in.
    app = web.Application(
        client_max_size=64 * 1024, middlewares=[security_middleware, language_middleware]
    )
    app[SERVICE] = service
    w = service.settings.web
    app[FORM_LIMIT] = PerClientLimit(w.forms_per_client, w.forms_window.total_seconds())
    app[TRUSTED_PROXIES] = parse_networks(w.trusted_proxies)
    app.router.add_get("/healthz", healthz)
    # Community of practice: staff dashboard, Prometheus metrics, webinar calendar files.
    from network.community import webinars
    from network.web import dashboard, metrics

    dashboard.setup_routes(app, service.settings)
    metrics.setup_routes(app)
    webinars.setup_routes(app)
    # Subscribers: subscribe, confirm, manage, one-click unsubscribe.
    from network.web.subscribe import setup_subscribe_routes

    setup_subscribe_routes(app)
    return app
