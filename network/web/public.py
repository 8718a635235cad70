"""What the public pages (archive, feeds out, calendars) share: the scopes of the network's
public content (`network.subscriptions.public`), built once per app, and the page
renderer. These pages need no subscription setup (no link secret, no SMTP)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from network.i18n import gettext
from network.subscriptions.public import PublicView
from network.subscriptions.topics import TopicCatalog
from network.templating import environment
from network.web.context import CONTEXT
from network.web.language import offered_languages

_ = gettext

PUBLIC: web.AppKey[PublicView] = web.AppKey("public_view")
# Anything a person typed into a URL: ids and topic slugs are short and plain.
SLUG_PATTERN = "[a-z]+-[a-z0-9_.-]{1,80}|all"
COHORT_PATTERN = "[a-z0-9_-]{1,64}"
# Feeds and calendars are the same for everyone: caches may keep them a few minutes.
PUBLIC_CACHE = "public, max-age=300"


def install(app: web.Application) -> None:
    """Build the scopes once, before the app starts (route setup functions call it)."""
    if PUBLIC not in app:
        settings = app[CONTEXT].settings
        app[PUBLIC] = PublicView(settings, TopicCatalog(settings))


def public_view(request: web.Request) -> PublicView:
    return request.app[PUBLIC]


def base_url(request: web.Request) -> str:
    return request.app[CONTEXT].settings.web.public_url.rstrip("/")


def render(request: web.Request, template: str, *, status: int = 200, **context: Any) -> str:
    settings = request.app[CONTEXT].settings
    name = settings.digests.network_name or settings.network.name
    return (
        environment()
        .get_template(f"web/{template}")
        .render(
            {
                "network_name": name,
                "errors": {},
                "languages": offered_languages(),
                "path": request.path,
                **context,
            }
        )
    )


def html_page(request: web.Request, template: str, **context: Any) -> web.Response:
    return web.Response(
        text=render(request, template, **context), content_type="text/html", charset="utf-8"
    )


def not_found(what: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(
        text=_("There is no {what} here. The list of what there is: /archive").format(what=what)
    )
