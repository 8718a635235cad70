"""Dashboard login with a coordinator's Matrix account, checked by the homeserver.

A coordinator (``assistance.coordinators``) whose account lives on the bot's homeserver
types their Matrix user id and password. libhub sends them to that homeserver's
``/login`` once, checks that the homeserver answers for exactly that user, logs the new
Matrix session out again and opens a dashboard session. The password is never stored or
logged. Attempts are limited per client address (IPv6 by /64) and per Matrix account, on
top of the homeserver's own limits.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from network.i18n import gettext as _
from network.ratelimit import PerClientLimit
from network.web.context import TRUSTED_PROXIES
from network.web.dashboard import (
    PREFIX,
    DashboardUnavailable,
    dashboard_secret,
    login_page,
    same_origin,
    service_of,
    start_session,
)
from network.web.limits import client_address

log = logging.getLogger(__name__)

DEVICE_NAME = "libhub dashboard login (signed out at once)"
# Password attempts per client address, and per Matrix account, per quarter hour. The
# account limit stops guessing spread over many addresses.
ATTEMPTS: web.AppKey[PerClientLimit] = web.AppKey("dashboard_matrix_attempts")
ACCOUNT_ATTEMPTS: web.AppKey[PerClientLimit] = web.AppKey("dashboard_matrix_account_attempts")
TIMEOUT = aiohttp.ClientTimeout(total=15)


class HomeserverTrouble(Exception):
    """The homeserver could not be asked (down, rate-limited, or an unexpected answer)."""

    def __init__(self, why: str, status: int | None = None) -> None:
        super().__init__(why)
        self.status = status


def server_name(user_id: str) -> str:
    return user_id.partition(":")[2]


async def _json_object(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The body as a JSON object; {} for an empty or non-JSON body (a proxy's 502 page)."""
    try:
        answer = await resp.json(content_type=None)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


async def check_password(homeserver: str, user_id: str, password: str) -> bool:
    """True when the homeserver accepts the password for ``user_id``; its session is ended."""
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
        "initial_device_display_name": DEVICE_NAME,
    }
    base = homeserver.rstrip("/")
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            async with http.post(f"{base}/_matrix/client/v3/login", json=body) as resp:
                answer = await _json_object(resp)
                if resp.status in (400, 401, 403):
                    return False
                if resp.status != 200:
                    why = f"HTTP {resp.status} {answer.get('errcode', '')}".strip()
                    raise HomeserverTrouble(why, resp.status)
            token = str(answer.get("access_token", ""))
            if token:
                headers = {"Authorization": f"Bearer {token}"}
                async with http.post(f"{base}/_matrix/client/v3/logout", headers=headers):
                    pass
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        raise HomeserverTrouble(str(e) or type(e).__name__) from e
    return bool(token) and answer.get("user_id") == user_id


async def login_with_matrix(request: web.Request) -> web.StreamResponse:
    service = service_of(request)
    settings = service.settings
    try:
        key = dashboard_secret(settings)
    except DashboardUnavailable as e:
        return login_page(request, 503, matrix_error=str(e))
    if not same_origin(request):
        return login_page(request, 403, matrix_error=_("Refused: foreign form."))
    form = await request.post()
    user_id = str(form.get("user_id", "")).strip()
    password = str(form.get("password", ""))

    def refuse(status: int, why: str) -> web.Response:
        return login_page(request, status, matrix_error=why, matrix_user=user_id)

    proxies = request.app[TRUSTED_PROXIES]
    client = client_address(request, proxies)
    if not request.app[ATTEMPTS].allow(client):
        log.warning("dashboard: too many Matrix login attempts from %s", client)
        return refuse(429, _("Too many attempts. Wait a quarter of an hour and try again."))
    bot_server = server_name(settings.matrix.user_id)
    if not user_id.startswith("@") or not server_name(user_id):
        return refuse(
            400, _("Type your full Matrix id, like @ana:%(server)s.") % {"server": bot_server}
        )
    # Only a coordinator, and only on the homeserver libhub can ask about its users.
    if user_id not in settings.assistance.coordinators or server_name(user_id) != bot_server:
        log.warning("dashboard: Matrix login refused for %s (not a coordinator here)", user_id)
        return refuse(
            403,
            _(
                "This account may not use the dashboard. Coordinators are listed in the "
                "configuration (assistance.coordinators); ask one for a login link."
            ),
        )
    if not request.app[ACCOUNT_ATTEMPTS].allow(user_id):
        log.warning("dashboard: too many Matrix login attempts for %s", user_id)
        return refuse(
            429,
            _(
                "Too many attempts for this account. Wait a quarter of an hour, or use a "
                "login link from `libhub admin token`."
            ),
        )
    try:
        accepted = await check_password(settings.matrix.homeserver, user_id, password)
    except HomeserverTrouble as e:
        log.warning("dashboard: could not ask the homeserver about %s: %s", user_id, e)
        if e.status == 429:
            return refuse(
                429, _("The homeserver asks to slow down. Wait a minute, then try again.")
            )
        return refuse(
            503,
            _(
                "The homeserver could not be reached to check the password. Try again later, "
                "or use a login link from `libhub admin token`."
            ),
        )
    if not accepted:
        log.warning("dashboard: wrong Matrix password for %s", user_id)
        return refuse(401, _("The homeserver did not accept this user id and password."))
    return start_session(service, key, user_id, datetime.now(UTC), how="Matrix account")


def setup_matrix_login(app: web.Application) -> None:
    app[ATTEMPTS] = PerClientLimit(10, 15 * 60)
    app[ACCOUNT_ATTEMPTS] = PerClientLimit(10, 15 * 60, key=str)
    app.router.add_post(f"{PREFIX}/login/matrix", login_with_matrix)
