"""The public subscription pages: subscribe, confirm, manage and unsubscribe. This module
has the subscribe and confirm routes and registers all of them; manage and unsubscribe are
in `network.web.manage`, what the pages share (rendering, CSRF, limits) in
`network.web.pages`.


Server-rendered (Jinja2, ``config/templates/web/``), no JavaScript. (The "Add to calendar"
files the digests link to, ``/webinars/<id>.ics``, are served by network/community/webinars.py.)
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

from aiohttp import web

from network.i18n import gettext as _
from network.i18n import ngettext
from network.storage.subscribers import TokenAlreadyUsed
from network.subscriptions.topics import Address, SubscriptionError, describe
from network.tokens import TokenError
from network.web.manage import (
    manage_form,
    manage_post,
    manage_request_form,
    manage_request_post,
    unsubscribe_page,
    unsubscribe_post,
)
from network.web.pages import (
    csrf_failed,
    csrf_for,
    csrf_ok,
    form_allowed,
    form_context,
    guard,
    link_error,
    message_page,
    page,
    prefs_from,
    subs_of,
    too_many,
    zone_search,
)

# -- subscribe -------------------------------------------------------------------------------


async def subscribe_form(request: web.Request) -> web.Response:
    subs = subs_of(request)
    token, cookie = csrf_for(request)
    return page(
        request,
        "subscribe.html.j2",
        csrf_cookie=cookie,
        title=_("Subscribe to %(network)s") % {"network": subs.network_name},
        csrf=token,
        address="",
        **form_context(subs, subs.defaults()),
    )


async def subscribe_post(request: web.Request) -> web.Response:
    subs = subs_of(request)
    form = await request.post()
    if not csrf_ok(request, form):
        return csrf_failed(request)
    address = str(form.get("address", "")).strip()
    prefs, errors, shown = prefs_from(subs, form)
    if query := zone_search(form):
        # The time zone search button: the same form again, with what the search found.
        token, cookie = csrf_for(request)
        return page(
            request,
            "subscribe.html.j2",
            csrf_cookie=cookie,
            title=_("Subscribe to %(network)s") % {"network": subs.network_name},
            csrf=token,
            address=address,
            **form_context(subs, shown, zone_query=query),
        )
    if prefs is not None and not form_allowed(request):
        return too_many(request)
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
            title=_("Subscribe to %(network)s") % {"network": subs.network_name},
            csrf=token,
            address=address,
            **{**form_context(subs, shown), "errors": errors},
        )
    raise web.HTTPSeeOther("/subscribe/sent")


async def subscribe_sent(request: web.Request) -> web.Response:
    hours = round(subs_of(request).settings.digests.confirm_ttl.total_seconds() / 3600)
    return message_page(
        request,
        _("Check your inbox"),
        ngettext(
            "If the address can receive our messages, a confirmation is on its way. Open the "
            "link in it within %(num)d hour to start your subscription.",
            "If the address can receive our messages, a confirmation is on its way. Open the "
            "link in it within %(num)d hours to start your subscription.",
            hours,
        )
        % {"num": hours},
        _("Nothing arrives? Look in the spam folder, or subscribe again later."),
    )


# -- confirm ---------------------------------------------------------------------------------


async def confirm_page(request: web.Request) -> web.Response:
    subs = subs_of(request)
    try:
        pending = await subs.pending_request(request.match_info["token"])
    except (TokenError, TokenAlreadyUsed) as e:
        return link_error(request, e, what="confirm")
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
        title=_("Confirm your subscription"),
        csrf=token,
        action=request.path,
        address=shown,
        description=describe(pending.prefs, subs.catalog),
    )


async def confirm_post(request: web.Request) -> web.Response:
    subs = subs_of(request)
    form = await request.post()
    if not csrf_ok(request, form):
        return csrf_failed(request)
    try:
        subscriber = await subs.confirm(request.match_info["token"])
    except (TokenError, TokenAlreadyUsed) as e:
        return link_error(request, e, what="confirm")
    except SubscriptionError as e:
        return message_page(request, _("Subscription not started"), str(e), status=409)
    manage = subs.links.manage(subscriber.id, subs.clock())
    return message_page(
        request,
        _("You are subscribed"),
        _("You will get %(what)s.") % {"what": describe(subscriber.prefs, subs.catalog)},
        _("Every email has links to change or stop your subscription."),
        links=((manage, _("Change your subscription")),),
    )


# -- accessibility statement -----------------------------------------------------------------


async def accessibility_page(request: web.Request) -> web.Response:
    subs = subs_of(request)
    return page(
        request,
        "accessibility.html.j2",
        title=_("Accessibility"),
        contact=subs.settings.network.contact_url,
    )


# -- routes ----------------------------------------------------------------------------------


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
        ("/accessibility", accessibility_page, None),
    ):
        r.add_get(path, guard(get))
        if post is not None:
            r.add_post(path, guard(post))
