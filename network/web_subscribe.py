"""The public subscription pages: subscribe, confirm, manage and unsubscribe.

Server-rendered (Jinja2, ``config/templates/web/``), no JavaScript. (The "Add to calendar"
files the digests link to, ``/webinars/<id>.ics``, are served by network/webinars.py.)
Rules the routes keep:

* **Nothing changes on GET.** Confirmation and unsubscribe links open a page with a
  button, because mail scanners and link previews open links.
* **One-click unsubscribe (RFC 8058).** A POST to the unsubscribe URL whose body is
  ``List-Unsubscribe=One-Click`` unsubscribes at once, with no cookie and no CSRF token:
  mail providers send it from their servers; the signed token in the URL is the
  authority.
* **Forms are protected against cross-site request forgery** by a signed double-submit
  token: a random cookie (HttpOnly, SameSite=Lax) and, in the form, an HMAC of it under
  the service secret. A forged form has neither.
* **Pages never reveal whether an address is subscribed**: subscribe and "email me a
  link" answer the same way for every address.
* Token URLs must not leak: ``Referrer-Policy: no-referrer`` and ``Cache-Control:
  no-store`` on every page, plus a CSP that allows nothing but inline styles.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from network.digest_render import DEFAULT_TEMPLATES_DIR
from network.digest_schedule import WEEKDAY_NAMES
from network.errors import ConfigError
from network.storage.subscribers import Preferences, Subscriber, TokenAlreadyUsed
from network.tokens import TokenError, TokenExpired
from network.topics import Address, SubscriptionError, describe, time_zones
from network.web import FORM_LIMIT, SERVICE, TRUSTED_PROXIES
from network.web_limits import client_address

if TYPE_CHECKING:
    from network.app import Service
    from network.subscriptions import Subscriptions

log = logging.getLogger(__name__)

CSRF_COOKIE = "libhub_csrf"
ONE_CLICK = "One-Click"
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@functools.lru_cache(maxsize=4)
def _environment(templates_dir: Path) -> jinja2.Environment:
    if not (templates_dir / "web").is_dir():
        raise ConfigError(f"web templates not found: {templates_dir / 'web'} is missing")
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def _service(request: web.Request) -> Service:
    return request.app[SERVICE]


def _subs(request: web.Request) -> Subscriptions:
    return _service(request).subscriptions


def _secret(request: web.Request) -> bytes:
    # The link-signing secret also keys the CSRF tokens; Links checks it is configured.
    return _subs(request).links.secret


def page(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    csrf_cookie: str | None = None,
    **context: Any,
) -> web.Response:
    """Render ``web/<template>`` with the shared context and the security headers."""
    subs = _subs(request)
    env = _environment(DEFAULT_TEMPLATES_DIR.resolve())
    html = env.get_template(f"web/{template}").render(
        {"network_name": subs.network_name, "errors": {}, **context}
    )
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(_SECURITY_HEADERS)
    if csrf_cookie is not None:
        response.set_cookie(
            CSRF_COOKIE,
            csrf_cookie,
            httponly=True,
            samesite="Lax",
            secure=urlsplit(subs.settings.web.public_url).scheme == "https",
            path="/",
        )
    return response


def message_page(
    request: web.Request,
    title: str,
    *paragraphs: str,
    status: int = 200,
    links: tuple[tuple[str, str], ...] = (),
    kind: str = "notice",
) -> web.Response:
    return page(
        request,
        "message.html.j2",
        status=status,
        title=title,
        paragraphs=paragraphs,
        links=[{"url": u, "text": t} for u, t in links],
        kind=kind,
    )


# -- CSRF ------------------------------------------------------------------------------------


def _csrf_token(secret: bytes, cookie: str) -> str:
    return hmac.new(secret, b"libhub-csrf." + cookie.encode(), hashlib.sha256).hexdigest()


def csrf_for(request: web.Request) -> tuple[str, str | None]:
    """(form token, cookie to set or None when the browser already has one)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    fresh = None
    if len(cookie) < 20 or len(cookie) > 64:
        cookie = fresh = secrets.token_urlsafe(24)
    return _csrf_token(_secret(request), cookie), fresh


def csrf_ok(request: web.Request, form: Mapping[str, Any]) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    given = str(form.get("csrf", ""))
    if not cookie or not given:
        return False
    return hmac.compare_digest(given, _csrf_token(_secret(request), cookie))


def _csrf_failed(request: web.Request) -> web.Response:
    return message_page(
        request,
        "This form has expired",
        "The form was open too long or was sent from another site, so nothing was changed.",
        "Go back, reload the page and try again.",
        status=403,
        kind="warning",
    )


# -- shared pieces ---------------------------------------------------------------------------


def _form_context(subs: Subscriptions, prefs: Preferences | Any) -> dict[str, Any]:
    return {
        "catalog": subs.catalog,
        "prefs": prefs,
        "zones": time_zones(),
        "weekdays": WEEKDAY_NAMES,
        "schemes": sorted(subs.settings.digests.channel_schemes),
    }


def _prefs_from(
    subs: Subscriptions, form: Any
) -> tuple[Preferences | None, dict[str, str], dict[str, Any]]:
    """Preferences from a posted form, or the errors per field and what to show again."""
    defaults = subs.defaults()
    topics = tuple(str(t) for t in form.getall("topics", []))
    frequency = str(form.get("frequency", ""))
    tz = str(form.get("tz", defaults.tz))
    hour = _int_or(form.get("hour"), defaults.hour)
    weekday = _int_or(form.get("weekday"), defaults.weekday)
    # What the form shows again when it comes back with errors (the template reads it
    # like Preferences).
    shown = {"topics": topics, "frequency": frequency, "tz": tz, "hour": hour, "weekday": weekday}
    try:
        prefs = subs.preferences(topics, frequency, tz, hour, weekday)
    except SubscriptionError as e:
        return None, {e.field or "topics": str(e)}, shown
    return prefs, {}, shown


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _link_error(request: web.Request, error: Exception, *, what: str) -> web.Response:
    if isinstance(error, TokenAlreadyUsed):
        return message_page(
            request,
            "This link was already used",
            "You already confirmed this subscription. Your first email arrives at the time "
            "you chose.",
            links=(("/manage", "Get a link to change your subscription"),),
        )
    if isinstance(error, TokenExpired):
        return message_page(
            request,
            "This link has expired",
            f"Links to {what} work for a limited time. Ask for a new one below.",
            status=410,
            links=(("/subscribe", "Subscribe again"), ("/manage", "Get a new manage link")),
            kind="warning",
        )
    return message_page(
        request,
        "This link does not work",
        "It may have been cut off by your mail program: try copying the whole address into "
        "your browser.",
        status=404,
        links=(("/subscribe", "Subscribe"), ("/manage", "Get a new manage link")),
        kind="warning",
    )


def _address_of(sub: Subscriber) -> str:
    return (
        sub.address
        if sub.channel == "email"
        else Address(sub.address, sub.address_key, sub.channel).display()
    )


# -- subscribe -------------------------------------------------------------------------------


async def subscribe_form(request: web.Request) -> web.Response:
    subs = _subs(request)
    token, cookie = csrf_for(request)
    return page(
        request,
        "subscribe.html.j2",
        csrf_cookie=cookie,
        title=f"Subscribe to {subs.network_name}",
        csrf=token,
        address="",
        **_form_context(subs, subs.defaults()),
    )


async def subscribe_post(request: web.Request) -> web.Response:
    subs = _subs(request)
    form = await request.post()
    if not csrf_ok(request, form):
        return _csrf_failed(request)
    address = str(form.get("address", "")).strip()
    prefs, errors, shown = _prefs_from(subs, form)
    if prefs is not None and not _form_allowed(request):
        return _too_many(request)
    if prefs is not None:
        try:
            await subs.request(address, prefs, source="web")
        except SubscriptionError as e:
            errors = {e.field or "address": str(e)}
    if errors:
        token, cookie = csrf_for(request)
        return page(
            request,
            "subscribe.html.j2",
            status=400,
            csrf_cookie=cookie,
            title=f"Subscribe to {subs.network_name}",
            csrf=token,
            address=address,
            **{**_form_context(subs, shown), "errors": errors},
        )
    raise web.HTTPSeeOther("/subscribe/sent")


async def subscribe_sent(request: web.Request) -> web.Response:
    hours = round(_subs(request).settings.digests.confirm_ttl.total_seconds() / 3600)
    return message_page(
        request,
        "Check your inbox",
        "If the address can receive our messages, a confirmation is on its way. Open the "
        f"link in it within {hours} hours to start your subscription.",
        "Nothing arrives? Look in the spam folder, or subscribe again later.",
    )


# -- confirm ---------------------------------------------------------------------------------


async def confirm_page(request: web.Request) -> web.Response:
    subs = _subs(request)
    try:
        pending = await subs.pending_request(request.match_info["token"])
    except (TokenError, TokenAlreadyUsed) as e:
        return _link_error(request, e, what="confirm a subscription")
    token, cookie = csrf_for(request)
    shown = (
        pending.address
        if pending.channel == "email"
        else Address(pending.address, pending.address_key, pending.channel).display()
    )
    return page(
        request,
        "confirm.html.j2",
        csrf_cookie=cookie,
        title="Confirm your subscription",
        csrf=token,
        action=request.path,
        address=shown,
        description=describe(pending.prefs, subs.catalog),
    )


async def confirm_post(request: web.Request) -> web.Response:
    subs = _subs(request)
    form = await request.post()
    if not csrf_ok(request, form):
        return _csrf_failed(request)
    try:
        subscriber = await subs.confirm(request.match_info["token"])
    except (TokenError, TokenAlreadyUsed) as e:
        return _link_error(request, e, what="confirm a subscription")
    except SubscriptionError as e:
        return message_page(request, "Subscription not started", str(e), status=409)
    manage = subs.links.manage(subscriber.id, subs.clock())
    return message_page(
        request,
        "You are subscribed",
        f"You will get {describe(subscriber.prefs, subs.catalog)}.",
        "Every email has links to change or stop your subscription.",
        links=((manage, "Change your subscription"),),
    )


# -- manage ----------------------------------------------------------------------------------


async def manage_request_form(request: web.Request) -> web.Response:
    subs = _subs(request)
    token, cookie = csrf_for(request)
    return page(
        request,
        "manage_request.html.j2",
        csrf_cookie=cookie,
        title="Manage your subscription",
        csrf=token,
        address="",
        schemes=sorted(subs.settings.digests.channel_schemes),
    )


async def manage_request_post(request: web.Request) -> web.Response:
    subs = _subs(request)
    form = await request.post()
    if not csrf_ok(request, form):
        return _csrf_failed(request)
    if not _form_allowed(request):
        return _too_many(request)
    await subs.send_manage_link(str(form.get("address", "")))
    return message_page(
        request,
        "Check your inbox",
        "If this address is subscribed, a message with a link to manage the subscription is "
        "on its way.",
    )


async def manage_form(request: web.Request) -> web.Response:
    subs = _subs(request)
    try:
        subscriber = await subs.subscriber_for(request.match_info["token"], "manage")
    except TokenError as e:
        return _link_error(request, e, what="manage a subscription")
    if subscriber.status == "unsubscribed":
        return _unsubscribed_page(request)
    return _manage_page(request, subscriber, subscriber.prefs)


def _manage_page(
    request: web.Request,
    subscriber: Subscriber,
    prefs: Preferences | Any,
    *,
    errors: dict[str, str] | None = None,
    saved: bool = False,
) -> web.Response:
    subs = _subs(request)
    token, cookie = csrf_for(request)
    return page(
        request,
        "manage.html.j2",
        status=400 if errors else 200,
        csrf_cookie=cookie,
        title="Your subscription",
        csrf=token,
        action=request.path,
        address=_address_of(subscriber),
        saved=saved,
        description=describe(subscriber.prefs, subs.catalog),
        **{**_form_context(subs, prefs), "errors": errors or {}, "sub_status": subscriber.status},
    )


async def manage_post(request: web.Request) -> web.Response:
    subs = _subs(request)
    form = await request.post()
    if not csrf_ok(request, form):
        return _csrf_failed(request)
    try:
        subscriber = await subs.subscriber_for(request.match_info["token"], "manage")
    except TokenError as e:
        return _link_error(request, e, what="manage a subscription")
    if form.get("action") == "unsubscribe":
        await subs.unsubscribe(subscriber)
        return _unsubscribed_page(request)
    if subscriber.status == "unsubscribed":
        return _unsubscribed_page(request)
    prefs, errors, shown = _prefs_from(subs, form)
    if prefs is None:
        return _manage_page(request, subscriber, shown, errors=errors)
    updated = await subs.update(subscriber, prefs)
    return _manage_page(request, updated, updated.prefs, saved=True)


# -- unsubscribe -----------------------------------------------------------------------------


def _unsubscribed_page(request: web.Request) -> web.Response:
    return message_page(
        request,
        "You are unsubscribed",
        f"You will get no more email from {_subs(request).network_name}.",
        links=(("/subscribe", "Changed your mind? Subscribe again"),),
    )


async def unsubscribe_page(request: web.Request) -> web.Response:
    subs = _subs(request)
    try:
        subscriber = await subs.subscriber_for(request.match_info["token"], "unsubscribe")
    except TokenError as e:
        return _link_error(request, e, what="unsubscribe")
    if subscriber.status == "unsubscribed":
        return _unsubscribed_page(request)
    token, cookie = csrf_for(request)
    return page(
        request,
        "unsubscribe.html.j2",
        csrf_cookie=cookie,
        title="Unsubscribe",
        csrf=token,
        action=request.path,
        address=_address_of(subscriber),
        manage_url=subs.links.manage(subscriber.id, subs.clock()),
    )


async def unsubscribe_post(request: web.Request) -> web.Response:
    """RFC 8058 one-click (no cookie, no CSRF token) or the page's button (CSRF-checked)."""
    subs = _subs(request)
    form = await request.post()
    one_click = form.get("List-Unsubscribe") == ONE_CLICK
    if not one_click and not csrf_ok(request, form):
        return _csrf_failed(request)
    try:
        subscriber = await subs.subscriber_for(request.match_info["token"], "unsubscribe")
    except TokenError as e:
        return _link_error(request, e, what="unsubscribe")
    await subs.unsubscribe(subscriber)
    return _unsubscribed_page(request)


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _form_allowed(request: web.Request) -> bool:
    """Count one mail-sending post for this client; False when it is over its limit."""
    proxies = request.app[TRUSTED_PROXIES]
    client = client_address(request, proxies)
    if request.app[FORM_LIMIT].allow(client):
        return True
    log.warning("form posts from %s over the per-client limit; refused", client)
    return False


def _too_many(request: web.Request) -> web.Response:
    minutes = round(request.app[FORM_LIMIT].window / 60)
    response = message_page(
        request,
        "Please try again later",
        "Many requests came from your network in a short time, so this one was not sent. "
        f"Please try again in {minutes} minutes.",
        "If you share a connection with many others (a library or school), that is why.",
        status=429,
        kind="warning",
    )
    response.headers["Retry-After"] = str(round(request.app[FORM_LIMIT].window))
    return response


def _guard(handler: Handler) -> Handler:
    """A deployment without a link secret (or SMTP) shows a clear page, not a 500."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ConfigError as e:
            log.error("subscription page %s unavailable: %s", request.path, e)
            return message_page(
                request,
                "Subscriptions are not available",
                "Subscribing is not set up on this server yet. Please tell the network's "
                "coordinators.",
                status=503,
                kind="warning",
            )

    return guarded


def setup_subscribe_routes(app: web.Application) -> None:
    """Add the subscription pages to the service's web app."""
    r = app.router
    for path, get, post in (
        ("/subscribe", subscribe_form, subscribe_post),
        ("/subscribe/sent", subscribe_sent, None),
        ("/confirm/{token}", confirm_page, confirm_post),
        ("/manage", manage_request_form, manage_request_post),
        ("/manage/{token}", manage_form, manage_post),
        ("/unsubscribe/{token}", unsubscribe_page, unsubscribe_post),
    ):
        r.add_get(path, _guard(get))
        if post is not None:
            r.add_post(path, _guard(post))
