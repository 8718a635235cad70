"""Which language a web page is shown in, chosen once per request.

In order: ``?lang=es`` (the language links in every page's footer; remembered in a
cookie), that cookie, then the browser's ``Accept-Language``, else English. The choice is
the language in use (network/i18n.py) while the handler runs, so templates, flash
messages and form errors all follow it. A subscriber's mail follows the language they
chose on the form, not this one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from network import i18n

COOKIE = "libhub_lang"
YEAR = 365 * 24 * 3600

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def offered_languages() -> list[tuple[str, str]]:
    """(code, name in itself) of every language a person can read the pages and mail in."""
    return [(code, i18n.language_name(code)) for code in i18n.languages()]


def request_language(request: web.Request) -> tuple[str, bool]:
    """(language, whether the page asked for it by ``?lang=``)."""
    asked = request.query.get("lang", "")
    if asked in i18n.languages():
        return asked, True
    cookie = request.cookies.get(COOKIE, "")
    if cookie in i18n.languages():
        return cookie, False
    return i18n.negotiate(request.headers.get("Accept-Language")), False


@web.middleware
async def language_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    lang, asked = request_language(request)
    with i18n.use(lang):
        response = await handler(request)
    response.headers.setdefault("Content-Language", lang)
    if asked and response.prepared is False:
        secure = urlsplit(str(request.url)).scheme == "https"
        response.set_cookie(
            COOKIE, lang, max_age=YEAR, httponly=True, samesite="Lax", secure=secure, path="/"
        )
    return response
