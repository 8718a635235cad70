"""What every page of the web server shares for safety: the security headers, refusing
request bodies that cannot be decoded, the one CSRF token scheme, and reading numeric ids
from paths.

One middleware (`security_middleware`) does the first two for every route, so no page can
forget them: a form body that is not valid in its charset, names an unknown charset, or is
broken multipart is a 400 before any handler (or CSRF check) runs, instead of a 500 with a
traceback. The headers keep token URLs from leaking (no caching, no referrer to other
sites) and allow nothing but inline styles; the dashboard sends ``same-origin`` referrers
so that browsers put a real ``Origin`` on its own forms (it refuses foreign ones).

CSRF: a form carries ``csrf_token(key, binding)``, an HMAC of something the attacker's page
cannot read or set: the subscription pages bind it to a random HttpOnly cookie (signed
double submit, `network.web.pages`), the dashboard to its session (`network.web.dashboard`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)

# A path segment that is an id: ASCII digits only (``\d`` also matches other scripts'
# digits, which int() accepts too), and at most 19 of them; `path_id` checks the value.
ID_PATTERN = "[0-9]{1,19}"
MAX_ID = 2**63 - 1  # SQLite's INTEGER

DASHBOARD_PREFIX = "/dashboard"
HOOKS_PREFIX = "/hooks/"
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

BAD_BODY_TEXT = (
    "The form could not be read (its text encoding or layout is broken), so nothing was "
    "changed. Reload the page and send it again."
)

# What aiohttp raises while decoding a form body it was sent: invalid bytes for the charset
# (UnicodeDecodeError is a ValueError), an unknown charset (LookupError), broken multipart
# (ValueError, RuntimeError for an unknown transfer encoding, HttpProcessingError for a
# malformed part header).
_BODY_ERRORS = (ValueError, LookupError, RuntimeError, HttpProcessingError)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def csrf_token(key: bytes, binding: str) -> str:
    """The form token for ``binding`` (a cookie's value or a session's nonce)."""
    return hmac.new(key, b"libhub-csrf." + binding.encode(), hashlib.sha256).hexdigest()


def csrf_matches(key: bytes, binding: str, given: str) -> bool:
    """True when ``given`` is the form token for ``binding``; compared in constant time."""
    if not binding or not given:
        return False
    return hmac.compare_digest(given, csrf_token(key, binding))


def path_id(request: web.Request, name: str) -> int:
    """The id in the path (a route using `ID_PATTERN`); 404 when it cannot be one of ours."""
    text = request.match_info[name]
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_ID:
        raise web.HTTPNotFound(text="Nothing has this number.")
    return int(text)


def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    if response.prepared:
        return
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    dashboard = request.path == DASHBOARD_PREFIX or request.path.startswith(DASHBOARD_PREFIX + "/")
    response.headers.setdefault("Referrer-Policy", "same-origin" if dashboard else "no-referrer")


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every answer; a body that cannot be decoded is a 400."""
    try:
        # Webhooks read (and bound, and explain) their own bodies: network/web/hooks.py.
        if request.method == "POST" and not request.path.startswith(HOOKS_PREFIX):
            try:
                await request.post()  # parsed once here; handlers get the cached form
            except _BODY_ERRORS as e:
                # The route's pattern, not the path: paths hold tokens.
                resource = request.match_info.route.resource
                where = resource.canonical if resource is not None else "?"
                log.info("POST %s: unreadable body refused (%s)", where, type(e).__name__)
                response: web.StreamResponse = web.Response(status=400, text=BAD_BODY_TEXT)
                _add_headers(request, response)
                return response
        response = await handler(request)
    except web.HTTPException as e:  # redirects and 404s raised by handlers
        _add_headers(request, e)
        raise
    _add_headers(request, response)
    return response
