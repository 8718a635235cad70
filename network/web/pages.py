"""What every subscription page shares: rendering a page, the CSRF token of its forms, the
per-client limit on forms that send mail, the error pages for bad links, and the guard that
turns a missing setup into a clear page.

The routes themselves are in `network.web.subscribe` (subscribe, confirm) and
`network.web.manage` (manage, unsubscribe); the rules they keep are described there.
Forms are protected against cross-site request forgery by a signed double-submit token: a
random cookie (HttpOnly, SameSite=Lax) and, in the form, an HMAC of it under the service
secret (`network.web.security.csrf_token`). A forged form has neither. The security
headers are added to every answer by `network.web.security`.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from network import i18n
from network.errors import ConfigError
from network.i18n import N_, ngettext
from network.i18n import gettext as _
from network.storage.subscribers import Preferences, TokenAlreadyUsed
from network.subscriptions import zones
from network.subscriptions.lifecycle import Subscriptions
from network.subscriptions.topics import SubscriptionError
from network.templating import environment
from network.tokens import TokenExpired
from network.web.context import FORM_LIMIT, TRUSTED_PROXIES, context_of
from network.web.language import offered_languages
from network.web.limits import client_address
from network.web.security import csrf_matches, csrf_token

log = logging.getLogger(__name__)

CSRF_COOKIE = "libhub_csrf"

Handler = Callable[[web.Request], Awaitable[web.Response]]


def subs_of(request: web.Request) -> Subscriptions:
    return context_of(request).subscriptions


def _secret(request: web.Request) -> bytes:
    # The link-signing secret also keys the CSRF tokens; Links checks it is configured.
    return subs_of(request).links.secret


def page(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    csrf_cookie: str | None = None,
    **context: Any,
) -> web.Response:
    """Render ``web/<template>`` with the shared context, in the request's language."""
    subs = subs_of(request)
    shared = {
        "network_name": subs.network_name,
        "errors": {},
        "languages": offered_languages(),
        "path": request.path,
    }
    html = environment().get_template(f"web/{template}").render({**shared, **context})
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
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


def csrf_for(request: web.Request) -> tuple[str, str | None]:
    """(form token, cookie to set or None when the browser already has one)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    fresh = None
    if len(cookie) < 20 or len(cookie) > 64:
        cookie = fresh = secrets.token_urlsafe(24)
    return csrf_token(_secret(request), f"cookie.{cookie}"), fresh


def csrf_ok(request: web.Request, form: Mapping[str, Any]) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie:
        return False
    return csrf_matches(_secret(request), f"cookie.{cookie}", str(form.get("csrf", "")))


def csrf_failed(request: web.Request) -> web.Response:
    return message_page(
        request,
        _("This form has expired"),
        _("The form was open too long or was sent from another site, so nothing was changed."),
        _("Go back, reload the page and try again."),
        status=403,
        kind="warning",
    )


# -- forms -----------------------------------------------------------------------------------


def zone_choices(subs: Subscriptions, chosen: str, query: str = "") -> dict[str, Any]:
    """The time zone list of a form: the network's likely zones, the one already chosen,
    and what a search by city found (the first match selected)."""
    likely = zones.likely(subs.settings.network.timezone)
    found = zones.search(query) if query else ()
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    if found:
        groups.append(
            (_("Found for “%(query)s”") % {"query": query}, [(z, zones.label(z)) for z in found])
        )
    if chosen and chosen not in likely and chosen not in found:
        groups.append((_("Your time zone"), [(chosen, zones.label(chosen))]))
    groups.append((_("Time zones of the network"), [(z, zones.label(z)) for z in likely]))
    if "UTC" not in likely and "UTC" not in found and chosen != "UTC":
        groups.append((_("Other"), [("UTC", "UTC")]))
    if found:
        found_text = ngettext(
            "%(num)d time zone matches “%(query)s”; the first is selected in the list.",
            "%(num)d time zones match “%(query)s”; the first is selected in the list.",
            len(found),
        ) % {"num": len(found), "query": query}
    else:
        found_text = _(
            "No time zone matches “%(query)s”. Try a larger city nearby, or the name of the "
            "country's capital."
        ) % {"query": query}
    return {
        "groups": groups,
        "selected": found[0] if found else chosen,
        "query": query,
        "found_text": found_text,
        "hours": [(h, i18n.format_hour(h)) for h in range(24)],
    }


def form_context(
    subs: Subscriptions, prefs: Preferences | Any, *, zone_query: str = ""
) -> dict[str, Any]:
    return {
        "catalog": subs.catalog,
        "prefs": prefs,
        "zones": zone_choices(subs, prefs.tz, zone_query),
        "weekdays": i18n.weekday_names(),
        "schemes": sorted(subs.settings.digests.channel_schemes),
    }


def zone_search(form: Any) -> str:
    """The city a person asked for with the time zone search button ("" when they did not:
    pressing Enter in another field sends the form with that first button too)."""
    if not form.get("find_zone"):
        return ""
    return " ".join(str(form.get("tz_search", "")).split())[:80]


def prefs_from(
    subs: Subscriptions, form: Any
) -> tuple[Preferences | None, dict[str, str], Preferences]:
    """Preferences from a posted form, or the errors per field and what to show again."""
    defaults = subs.defaults()
    topics = tuple(str(t) for t in form.getall("topics", []))
    frequency = str(form.get("frequency", ""))
    tz = str(form.get("tz", defaults.tz))
    hour = _int_or(form.get("hour"), defaults.hour)
    weekday = _int_or(form.get("weekday"), defaults.weekday)
    language = i18n.known(str(form.get("language", i18n.current())))
    # What the form shows again when it comes back with errors or a time zone search.
    shown = Preferences(topics, frequency, tz, hour, weekday, language)
    try:
        prefs = subs.preferences(topics, frequency, tz, hour, weekday, language)
    except SubscriptionError as e:
        return None, {e.field or "topics": str(e)}, shown
    return prefs, {}, shown


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# -- refusals ---------------------------------------------------------------------------------

# What an expired link was for, by the purpose its routes pass as ``what``.
LINK_EXPIRED = {
    "confirm": N_("Links to confirm a subscription work for a limited time."),
    "manage": N_("Links to manage a subscription work for a limited time."),
    "unsubscribe": N_("Links to unsubscribe work for a limited time."),
}


def link_error(request: web.Request, error: Exception, *, what: str) -> web.Response:
    if isinstance(error, TokenAlreadyUsed):
        return message_page(
            request,
            _("This link was already used"),
            _(
                "You already confirmed this subscription. Your first email arrives at the "
                "time you chose."
            ),
            links=(("/manage", _("Get a link to change your subscription")),),
        )
    if isinstance(error, TokenExpired):
        return message_page(
            request,
            _("This link has expired"),
            _(LINK_EXPIRED[what]) + " " + _("Ask for a new one below."),
            status=410,
            links=(("/subscribe", _("Subscribe again")), ("/manage", _("Get a new manage link"))),
            kind="warning",
        )
    return message_page(
        request,
        _("This link does not work"),
        _(
            "It may have been cut off by your mail program: try copying the whole address "
            "into your browser."
        ),
        status=404,
        links=(("/subscribe", _("Subscribe")), ("/manage", _("Get a new manage link"))),
        kind="warning",
    )


def form_allowed(request: web.Request) -> bool:
    """Count one mail-sending post for this client; False when it is over its limit."""
    proxies = request.app[TRUSTED_PROXIES]
    client = client_address(request, proxies)
    if request.app[FORM_LIMIT].allow(client):
        return True
    log.warning("form posts from %s over the per-client limit; refused", client)
    return False


def too_many(request: web.Request) -> web.Response:
    minutes = round(request.app[FORM_LIMIT].window / 60)
    response = message_page(
        request,
        _("Please try again later"),
        ngettext(
            "Many requests came from your network in a short time, so this one was not sent. "
            "Please try again in %(num)d minute.",
            "Many requests came from your network in a short time, so this one was not sent. "
            "Please try again in %(num)d minutes.",
            minutes,
        )
        % {"num": minutes},
        _("If you share a connection with many others (a library or school), that is why."),
        status=429,
        kind="warning",
    )
    response.headers["Retry-After"] = str(round(request.app[FORM_LIMIT].window))
    return response


def guard(handler: Handler) -> Handler:
    """A deployment without a link secret (or SMTP) shows a clear page, not a 500."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ConfigError as e:
            # The route's pattern, not the path: paths hold confirm/manage/unsubscribe tokens.
            resource = request.match_info.route.resource
            where = resource.canonical if resource is not None else "?"
            log.error("subscription page %s unavailable: %s", where, e)
            return message_page(
                request,
                _("Subscriptions are not available"),
                _(
                    "Subscribing is not set up on this server yet. Please tell the network's "
                    "coordinators."
                ),
                status=503,
                kind="warning",
            )

    return guarded
