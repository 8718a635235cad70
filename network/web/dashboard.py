"""The staff dashboard: server-rendered pages for coordinators, behind a login.

Login: ``libhub admin token`` prints a link with a signed token (purpose ``dashboard``,
valid ``dashboard.token_ttl``, usable once: its nonce is recorded when exchanged). The
link opens a page with a button; only the POST exchanges the token, because mail and
chat link scanners prefetch GET links. The exchange sets a session cookie that is itself
a signed token (purpose ``dashboard-session``): HttpOnly, SameSite=Strict, Secure on
https, scoped to ``/dashboard``; logging out records its nonce, so a copy of the cookie is
refused afterwards. Coordinators may instead log in with their Matrix account
(network/web/dashboard_login.py); both end in the same session cookie. Every form
carries a CSRF token bound to the session (HMAC of the session's nonce) and POSTs with a
foreign ``Origin`` are refused.

Pages: overview (feed health, outbox counts, open assistance cases and their age,
subscribers by topic and frequency, recent digest rounds, cohorts and their members) and
the outbox (pending and failed deliveries, each failed one with a retry button). Plain
HTML, no JavaScript. Unauthenticated GETs are sent to the login page; POSTs get 401.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from network.errors import LibhubError
from network.i18n import gettext as _
from network.settings.model import Settings, secret
from network.templating import environment
from network.tokens import (
    MIN_SECRET_BYTES,
    PURPOSE_DASHBOARD,
    TokenError,
    sign_token,
    verify_token,
)
from network.web.context import WebContext, context_of
from network.web.language import offered_languages
from network.web.security import ID_PATTERN, csrf_matches, csrf_token, path_id

log = logging.getLogger(__name__)

COOKIE = "libhub_dashboard"
SESSION_PURPOSE = "dashboard-session"
PREFIX = "/dashboard"


class DashboardUnavailable(LibhubError):
    """The dashboard cannot sign anything: the secret is not configured."""


def dashboard_secret(settings: Settings) -> bytes:
    value = secret(settings.web.secret_env)
    if not value:
        raise DashboardUnavailable(
            f"the dashboard needs a secret: set the environment variable {settings.web.secret_env} "
            "to a long random value (see web.secret_env)"
        )
    key = value.encode("utf-8")
    if len(key) < MIN_SECRET_BYTES:
        # The token code refuses short keys with ValueError; say so here, not as a 500.
        raise DashboardUnavailable(
            f"the secret in {settings.web.secret_env} is {len(key)} bytes; use at least "
            f"{MIN_SECRET_BYTES} random bytes (see web.secret_env)"
        )
    return key


def issue_login_token(settings: Settings, name: str, *, now: datetime) -> str:
    """A one-time login token for ``name`` (``libhub admin token``)."""
    return sign_token(
        dashboard_secret(settings),
        purpose=PURPOSE_DASHBOARD,
        subject=name,
        now=now,
        ttl=settings.dashboard.token_ttl,
    )


def login_url(settings: Settings, token: str) -> str:
    return f"{settings.web.public_url.rstrip('/')}{PREFIX}/login?token={token}"


@dataclass(frozen=True)
class Session:
    name: str
    nonce: str
    csrf: str


def age_text(since: datetime | None, now: datetime) -> str:
    """ "3 h", "2 d", "12 min": how long ago, for tables."""
    if since is None:
        return _("never")
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 3600:
        return _("{n} min").format(n=seconds // 60)
    if seconds < 2 * 86400:
        return _("{n} h").format(n=seconds // 3600)
    return _("{n} d").format(n=seconds // 86400)


def _render(name: str, status: int = 200, **context: Any) -> web.Response:
    languages = offered_languages()
    text = environment().get_template(f"web/{name}").render(languages=languages, **context)
    # No caching, no framing, same-origin referrers: network/web/security.py adds them.
    return web.Response(text=text, content_type="text/html", charset="utf-8", status=status)


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def service_of(request: web.Request) -> WebContext:
    return context_of(request)


def _session(request: web.Request, key: bytes) -> Session | None:
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        claims = verify_token(key, cookie, purpose=SESSION_PURPOSE, now=datetime.now(UTC))
    except TokenError:
        return None
    return Session(claims.subject, claims.nonce, csrf_token(key, f"session.{claims.nonce}"))


def same_origin(request: web.Request) -> bool:
    """True unless the browser says the form came from another origin.

    The Origin may match web.public_url (behind a proxy that rewrites Host) or, for direct
    access, the request's own Host."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin is None
    public = urlsplit(service_of(request).settings.web.public_url)
    sent = urlsplit(origin)
    if (sent.scheme, sent.netloc.lower()) == (public.scheme, public.netloc.lower()):
        return True
    return sent.netloc.lower() == request.host.lower()


Page = Callable[[web.Request, "WebContext", Session], Awaitable[web.StreamResponse]]


def _page(handler: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a page: secret configured, a valid session, and for POST a same-origin CSRF."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        service = service_of(request)
        try:
            key = dashboard_secret(service.settings)
        except DashboardUnavailable as e:
            return _render("dashboard_message.html.j2", 503, title=_("Dashboard off"), text=str(e))
        session = _session(request, key)
        if session is not None and await service.storage.session_ended(session.nonce):
            session = None  # logged out: the cookie is still signed, but no longer good
        if request.method == "POST":
            if session is None:
                return _render(
                    "dashboard_message.html.j2", 401, title=_("Not logged in"),
                    text=_("Log in again: your session is missing or has expired."),
                )  # fmt: skip
            form = await request.post()
            given = str(form.get("csrf", ""))
            bound = f"session.{session.nonce}"
            if not same_origin(request) or not csrf_matches(key, bound, given):
                return _render(
                    "dashboard_message.html.j2", 403, title=_("Refused"),
                    text=_(
                        "The form was not sent from this dashboard. Reload the page and "
                        "try again."
                    ),
                )  # fmt: skip
        elif session is None:
            return _redirect(f"{PREFIX}/login")
        return await handler(request, service, session)

    return wrapped


# -- login -----------------------------------------------------------------------------------


def login_page(request: web.Request, status: int = 200, **context: Any) -> web.Response:
    """The login page: a token form, and a Matrix account form when that is on."""
    settings = service_of(request).settings
    context.setdefault("token", "")
    context.setdefault("error", "")
    context.setdefault("matrix_error", "")
    context.setdefault("matrix_user", "")
    return _render(
        "dashboard_login.html.j2",
        status,
        matrix_login=matrix_login_enabled(settings),
        homeserver=settings.matrix.homeserver,
        **context,
    )


def matrix_login_enabled(settings: Settings) -> bool:
    return settings.dashboard.matrix_login and bool(settings.assistance.coordinators)


async def login_form(request: web.Request) -> web.Response:
    return login_page(request, token=request.query.get("token", ""))


async def login_submit(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    try:
        key = dashboard_secret(service.settings)
    except DashboardUnavailable as e:
        return _render("dashboard_message.html.j2", 503, title=_("Dashboard off"), text=str(e))
    if not same_origin(request):
        return login_page(request, 403, error=_("Refused: foreign form."))
    form = await request.post()
    token = str(form.get("token", "")).strip()
    now = datetime.now(UTC)
    try:
        claims = verify_token(key, token, purpose=PURPOSE_DASHBOARD, now=now)
    except TokenError as e:
        return login_page(request, 401, error=str(e))
    if not await service.storage.use_login_nonce(claims.nonce, claims.subject, now):
        return login_page(
            request, 401,
            error=_("This login link was already used. Ask for a new one (libhub admin token)."),
        )  # fmt: skip
    return start_session(service, key, claims.subject, now, how="login token")


def start_session(
    service: WebContext, key: bytes, subject: str, now: datetime, *, how: str
) -> web.Response:
    """Send the browser to the overview with a fresh session cookie for ``subject``."""
    ttl: timedelta = service.settings.dashboard.session_ttl
    session = sign_token(key, purpose=SESSION_PURPOSE, subject=subject, now=now, ttl=ttl)
    resp = _redirect(PREFIX)
    resp.set_cookie(
        COOKIE,
        session,
        max_age=int(ttl.total_seconds()),
        path=PREFIX,
        httponly=True,
        samesite="Strict",
        secure=service.settings.web.public_url.startswith("https://"),
    )
    log.info("dashboard login by %s (%s)", subject, how)
    return resp


async def _logout(
    request: web.Request, service: WebContext, session: Session
) -> web.StreamResponse:
    # Deleting the cookie is not enough: a copy of it would stay valid for the session's
    # lifetime, so the session itself is ended.
    await service.storage.end_session(session.nonce, session.name, datetime.now(UTC))
    resp = _redirect(f"{PREFIX}/login")
    resp.del_cookie(COOKIE, path=PREFIX)
    return resp


# -- pages -----------------------------------------------------------------------------------


async def _optional(storage: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call a storage method other parts add (cases, subscribers); None when absent/broken."""
    method = getattr(storage, name, None)
    if method is None:
        return None
    try:
        return await method(*args, **kwargs)
    except Exception:
        log.exception("dashboard: %s failed", name)
        return None


async def overview_data(service: WebContext, now: datetime) -> dict[str, Any]:
    """Everything the overview page shows (also used by tests)."""
    storage = service.storage
    feeds = [
        {
            "id": f.id,
            "title": service.feed_title(f.id),
            "status": f.status,
            "last_success": age_text(f.last_success, now),
            "errors": f.consecutive_errors,
            "last_error": f.last_error or f.warning or "",
        }
        for f in await storage.feed_states()
    ]
    cases = await _optional(storage, "active_cases")
    open_cases = None
    if cases is not None:
        open_cases = [
            {
                "id": c.id,
                "state": c.state,
                "asker": c.asker,
                "question": c.question[:140],
                "age": age_text(c.progress.opened_at, now),
                "claimed_by": c.progress.claimed_by or "",
            }
            for c in cases
        ]
    subscribers = await _optional(storage, "list_subscribers", statuses=("active",))
    by_topic: Counter[str] = Counter()
    by_frequency: Counter[str] = Counter()
    for sub in subscribers or ():
        by_frequency[sub.prefs.frequency] += 1
        by_topic.update(sub.prefs.topics)
    rounds = await _optional(storage, "recent_digest_rounds")
    # Every libhub on this database and which one leads (network/leadership.py).
    instances = [
        {
            "id": i.id,
            "host": i.host,
            "pid": i.pid,
            "leader": i.leader,
            "started": age_text(i.started_at, now),
            "heartbeat": age_text(i.heartbeat_at, now),
        }
        for i in await storage.instances(now)
    ]
    return {
        "instances": instances,
        "feeds": feeds,
        "outbox": await storage.outbox_counts(),
        "cases": open_cases,
        "subscribers": None
        if subscribers is None
        else {
            "total": len(subscribers),
            "by_topic": sorted(by_topic.items()),
            "by_frequency": sorted(by_frequency.items()),
        },
        "rounds": rounds,
        "cohorts": await _cohorts(service),
        "reminders": await storage.reminder_counts(),
    }


async def _cohorts(service: WebContext) -> list[dict[str, Any]]:
    out = []
    counts = await service.storage.cohort_update_counts()
    for cohort in service.settings.cohorts:
        room = await service.storage.community_room(f"cohort:{cohort.id}")
        invited = await service.storage.invited_users(room.room_id) if room else set()
        emailed = await service.storage.emailed_members(cohort.id)
        live = await service.community.membership(cohort)
        members = []
        for member in cohort.all_members:
            if member.startswith("@"):
                state = (live or {}).get(member) or ("invited" if member in invited else "")
            else:
                state = "emailed" if member in emailed else ""
            members.append(
                {
                    "id": member,
                    "library": cohort.library_of(member) or "",
                    "state": {"join": "joined", "invite": "invited"}.get(state, state)
                    or "not yet invited",
                }
            )
        out.append(
            {
                "id": cohort.id,
                "name": cohort.name,
                "room": cohort.room,
                "updates": counts.get(cohort.id, 0),
                "members": members,
            }
        )
    return out


async def _overview(request: web.Request, service: WebContext, session: Session) -> web.Response:
    now = datetime.now(UTC)
    data = await overview_data(service, now)
    return _render(
        "dashboard.html.j2", session=session, network=service.settings.network.name, **data
    )


async def _outbox(request: web.Request, service: WebContext, session: Session) -> web.Response:
    now = datetime.now(UTC)
    storage = service.storage
    failed = await storage.failed_rows(limit=100)
    pending = await storage.pending_outbox_rows(limit=100)
    items = await storage.items_by_id(sorted({r.item_id for r in [*failed, *pending]}))

    def view(row: Any) -> dict[str, Any]:
        item = items.get(row.item_id)
        return {
            "id": row.id,
            "item": item.title if item else f"item {row.item_id}",
            "target": service.display_target(row.target_type, row.target),
            "type": row.target_type,
            "action": row.action,
            "attempts": row.attempts,
            "error": row.last_error or "",
            "age": age_text(row.created_at, now),
        }

    retried = request.query.get("retried", "")
    return _render(
        "dashboard_outbox.html.j2",
        session=session,
        network=service.settings.network.name,
        counts=await storage.outbox_counts(),
        failed=[view(r) for r in failed],
        pending=[view(r) for r in pending],
        retried=retried if retried.isdigit() else "",
    )


async def _retry(request: web.Request, service: WebContext, session: Session) -> web.StreamResponse:
    row_id = path_id(request, "row_id")
    changed = await service.storage.retry_failed(datetime.now(UTC), row_id)
    if changed:
        log.info("dashboard: %s retried delivery %d", session.name, row_id)
        service.delivery.wake()
    return _redirect(f"{PREFIX}/outbox?retried={row_id if changed else ''}")


def setup_routes(app: web.Application, settings: Settings) -> None:
    if not settings.dashboard.enabled:
        return
    app.router.add_get(f"{PREFIX}/login", login_form)
    app.router.add_post(f"{PREFIX}/login", login_submit)
    app.router.add_post(f"{PREFIX}/logout", _page(_logout))
    app.router.add_get(PREFIX, _page(_overview))
    app.router.add_get(f"{PREFIX}/outbox", _page(_outbox))
    app.router.add_post(f"{PREFIX}/outbox/{{row_id:{ID_PATTERN}}}/retry", _page(_retry))
