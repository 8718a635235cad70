"""``POST /hooks/<token>``: inbound webhooks (an events calendar, a form tool).

Checks, in order, each refusal saying what happened and what to do: the token names a
configured hook (404) and is signed with our secret (403); the body is at most the hook's
``max_kib`` (413, read no further); the hook is under its rate limit (429 with
``Retry-After``; counted per hook, not per address, because one calendar server posts for
everyone); the body is a JSON object or form fields (400/415). Then the item is stored and
queued (network/delivery/webhooks.py) and the answer is 202 with the item's key, or 200
when the same post was already stored. Nothing is stored unless everything passed.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from network.delivery.webhooks import HookRefused
from network.i18n import N_
from network.i18n import gettext as _
from network.ratelimit import PerClientLimit
from network.settings.model import previous_secrets, secret
from network.settings.moderation import HookSettings
from network.tokens import MIN_SECRET_BYTES, hook_of_token, hook_token_valid
from network.web.context import context_of

log = logging.getLogger(__name__)

# What a sender is told (one place; translated where it is sent).
NO_HOOK = N_("No webhook has this address. Check the URL that `libhub hooks` printed.")
BAD_TOKEN = N_(
    "This webhook address is not signed by this service (the secret may have changed). "
    "Ask the network's coordinator for the current URL (`libhub hooks`)."
)
NO_SECRET = N_("Webhooks are off: the service has no secret configured (web.secret_env).")
TOO_LARGE = N_(
    "The body is larger than this webhook accepts ({limit} KiB); nothing was stored. "
    "Send less, or ask the coordinator to raise the hook's max_kib."
)
TOO_MANY = N_(
    "Too many posts to this webhook: at most {limit} per {window}; nothing was stored. "
    "Try again later."
)
NOT_JSON = N_("The body is not a JSON object: {error}. Send one object, or form fields.")
BAD_FORM = N_("The form fields could not be read ({error}). Send them as UTF-8.")
BAD_TYPE = N_(
    "Send JSON (application/json) or form fields (application/x-www-form-urlencoded), not {ctype}."
)
ACCEPTED = N_("Accepted: the item is queued for delivery.")
HELD = N_("Accepted: the item waits for a coordinator's approval before public channels.")
ALREADY = N_("Already received: this item was stored before and is not posted again.")
UPDATED = N_("Updated: the item was stored before; recent room posts of it are corrected.")

HOOK_LIMITS: web.AppKey[dict[str, PerClientLimit]] = web.AppKey("hook_limits")


def _text(status: int, text: str, **headers: str) -> web.Response:
    return web.json_response({"ok": status < 300, "message": text}, status=status, headers=headers)


def _window_text(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{int(seconds)} s"


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is longer than ``limit`` bytes (reading stops there)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(min(65536, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None


def _payload(request: web.Request, raw: bytes) -> dict[str, Any]:
    ctype = request.content_type
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise web.HTTPBadRequest(
                text=json.dumps({"ok": False, "message": _(NOT_JSON).format(error=e)}),
                content_type="application/json",
            ) from e
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(
                text=json.dumps(
                    {"ok": False, "message": _(NOT_JSON).format(error=type(data).__name__)}
                ),
                content_type="application/json",
            )
        return data
    if ctype == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError as e:
            raise web.HTTPBadRequest(
                text=json.dumps({"ok": False, "message": _(BAD_FORM).format(error=e.reason)}),
                content_type="application/json",
            ) from e
    raise web.HTTPUnsupportedMediaType(
        text=json.dumps({"ok": False, "message": _(BAD_TYPE).format(ctype=ctype or _("nothing"))}),
        content_type="application/json",
    )


def _hook(request: web.Request) -> HookSettings | web.Response:
    service = context_of(request)
    token = request.match_info["token"]
    hook_id = hook_of_token(token)
    try:
        hook = service.settings.hook(hook_id or "")
    except KeyError:
        return _text(404, _(NO_HOOK))
    value = secret(service.settings.web.secret_env)
    if not value or len(value.encode()) < MIN_SECRET_BYTES:
        return _text(503, _(NO_SECRET))
    if not hook_token_valid(value.encode(), token, previous=previous_secrets(service.settings.web)):
        return _text(403, _(BAD_TOKEN))
    return hook


async def receive_hook(request: web.Request) -> web.StreamResponse:
    found = _hook(request)
    if isinstance(found, web.Response):
        return found
    hook = found
    raw = await _read_bounded(request, hook.max_kib * 1024)
    if raw is None:
        log.info("webhook %s: body over %d KiB refused", hook.id, hook.max_kib)
        return _text(413, _(TOO_LARGE).format(limit=hook.max_kib), Connection="close")
    limit = request.app[HOOK_LIMITS].setdefault(
        hook.id, PerClientLimit(hook.rate_limit, hook.rate_window.total_seconds(), key=str)
    )
    payload = _payload(request, raw)
    if not limit.allow(hook.id):
        window = hook.rate_window.total_seconds()
        log.info("webhook %s: over its rate limit", hook.id)
        return _text(
            429,
            _(TOO_MANY).format(limit=hook.rate_limit, window=_window_text(window)),
            **{"Retry-After": str(max(1, int(window / hook.rate_limit)))},
        )
    try:
        result = await context_of(request).webhooks.receive(hook, payload, raw)
    except HookRefused as e:
        return _text(422, str(e))
    body = {"ok": True, "key": result.item_key, "queued": result.queued, "held": result.held}
    if not result.new:
        message = _(UPDATED) if result.updated else _(ALREADY)
        return web.json_response({**body, "message": message}, status=200)
    message = _(HELD) if result.held else _(ACCEPTED)
    return web.json_response({**body, "message": message}, status=202)


def setup_routes(app: web.Application) -> None:
    app[HOOK_LIMITS] = {}
    app.router.add_post("/hooks/{token}", receive_hook)
