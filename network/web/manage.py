"""The subscription pages for people already subscribed: asking for a manage link,
changing the subscription, and unsubscribing (from the page's button or by RFC 8058
one-click). Registered by `network.web.subscribe.setup_subscribe_routes`.

One-click unsubscribe is a POST to the unsubscribe URL whose body is
``List-Unsubscribe=One-Click``: it unsubscribes at once, with no cookie and no CSRF token,
because mail providers send it from their servers; the signed token in the URL is the
authority.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from network.i18n import gettext as _
from network.storage.subscribers import Preferences, Subscriber
from network.subscriptions.topics import Address, describe
from network.tokens import TokenError
from network.web.pages import (
    csrf_failed,
    csrf_for,
    csrf_ok,
    form_allowed,
    form_context,
    link_error,
    message_page,
    page,
    prefs_from,
    subs_of,
    too_many,
    zone_search,
)

ONE_CLICK = "One-Click"


def _address_of(sub: Subscriber) -> str:
    return (
        sub.address
        if sub.channel == "email"
        else Address(sub.address, sub.address_key, sub.channel).display()
    )


# -- manage ----------------------------------------------------------------------------------


async def manage_request_form(request: web.Request) -> web.Response:
    subs = subs_of(request)
    token, cookie = csrf_for(request)
    return page(
        request,
        "manage_request.html.j2",
        csrf_cookie=cookie,
        title=_("Manage your subscription"),
        csrf=token,
        address="",
        schemes=sorted(subs.settings.digests.channel_schemes),
    )


async def manage_request_post(request: web.Request) -> web.Response:
    subs = subs_of(request)
    form = await request.post()
    if not csrf_ok(request, form):
        return csrf_failed(request)
    if not form_allowed(request):
        return too_many(request)
    subs.send_manage_link(str(form.get("address", "")))  # sent in the background
    return message_page(
        request,
        _("Check your inbox"),
        _(
            "If this address is subscribed, a message with a link to manage the subscription "
            "is on its way."
        ),
    )


async def manage_form(request: web.Request) -> web.Response:
    subs = subs_of(request)
    try:
        subscriber = await subs.subscriber_for(request.match_info["token"], "manage")
    except TokenError as e:
        return link_error(request, e, what="manage")
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
    zone_query: str = "",
) -> web.Response:
    subs = subs_of(request)
    token, cookie = csrf_for(request)
    return page(
        request,
        "manage.html.j2",
        status=400 if errors else 200,
        csrf_cookie=cookie,
        title=_("Your subscription"),
        csrf=token,
        action=request.path,
        address=_address_of(subscriber),
        saved=saved,
        description=describe(subscriber.prefs, subs.catalog),
        **{
            **form_context(subs, prefs, zone_query=zone_query),
            "errors": errors or {},
            "sub_status": subscriber.status,
        },
    )


async def manage_post(request: web.Request) -> web.Response:
    subs = subs_of(request)
    form = await request.post()
    if not csrf_ok(request, form):
        return csrf_failed(request)
    try:
        subscriber = await subs.subscriber_for(request.match_info["token"], "manage")
    except TokenError as e:
        return link_error(request, e, what="manage")
    if form.get("action") == "unsubscribe":
        await subs.unsubscribe(subscriber)
        return _unsubscribed_page(request)
    if subscriber.status == "unsubscribed":
        return _unsubscribed_page(request)
    prefs, errors, shown = prefs_from(subs, form)
    if query := zone_search(form):
        return _manage_page(request, subscriber, shown, zone_query=query)
    if prefs is None:
        return _manage_page(request, subscriber, shown, errors=errors)
    updated = await subs.update(subscriber, prefs)
    return _manage_page(request, updated, updated.prefs, saved=True)


# -- unsubscribe -----------------------------------------------------------------------------


def _unsubscribed_page(request: web.Request) -> web.Response:
    return message_page(
        request,
        _("You are unsubscribed"),
        _("You will get no more email from %(network)s.")
        % {"network": subs_of(request).network_name},
        links=(("/subscribe", _("Changed your mind? Subscribe again")),),
    )


async def unsubscribe_page(request: web.Request) -> web.Response:
    subs = subs_of(request)
    try:
        subscriber = await subs.subscriber_for(request.match_info["token"], "unsubscribe")
    except TokenError as e:
        return link_error(request, e, what="unsubscribe")
    if subscriber.status == "unsubscribed":
        return _unsubscribed_page(request)
    token, cookie = csrf_for(request)
    return page(
        request,
        "unsubscribe.html.j2",
        csrf_cookie=cookie,
        title=_("Unsubscribe"),
        csrf=token,
        action=request.path,
        address=_address_of(subscriber),
        manage_url=subs.links.manage(subscriber.id, subs.clock()),
    )


async def unsubscribe_post(request: web.Request) -> web.Response:
    """RFC 8058 one-click (no cookie, no CSRF token) or the page's button (CSRF-checked)."""
    subs = subs_of(request)
    form = await request.post()
    one_click = form.get("List-Unsubscribe") == ONE_CLICK
    if not one_click and not csrf_ok(request, form):
        return csrf_failed(request)
    try:
        subscriber = await subs.subscriber_for(request.match_info["token"], "unsubscribe")
    except TokenError as e:
        return link_error(request, e, what="unsubscribe")
    await subs.unsubscribe(subscriber)
    return _unsubscribed_page(request)
