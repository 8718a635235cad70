"""Synapse's admin API for the one thing libhub asks of it: exempting the bot account
from rate limits (``override_ratelimit``), as the rate-limit notice recommends.

Needs a server admin's access token; libhub never stores it (it is read from the
environment by ``libhub matrix lift-ratelimit`` and used for this one request).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp

from network.errors import MatrixAuthError, MatrixError, MatrixUnavailable

_TIMEOUT = aiohttp.ClientTimeout(total=30)


def override_path(user_id: str) -> str:
    return f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/override_ratelimit"


async def lift_ratelimit(homeserver: str, user_id: str, admin_token: str) -> dict[str, Any]:
    """Exempt ``user_id`` from every rate limit (messages_per_second 0, burst_count 0, which
    Synapse reads as "not limited" for all its limiters); the override as read back."""
    url = homeserver.rstrip("/") + override_path(user_id)
    headers = {"Authorization": f"Bearer {admin_token}"}
    try:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            async with session.post(
                url, json={"messages_per_second": 0, "burst_count": 0}, headers=headers
            ) as resp:
                body = await _json(resp)
                _check(resp.status, body, user_id)
            async with session.get(url, headers=headers) as resp:
                body = await _json(resp)
                _check(resp.status, body, user_id)
                return body
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise MatrixUnavailable(f"cannot reach {homeserver} ({e}); is it running?") from e


async def _json(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        data = await resp.json(content_type=None)
    except (json.JSONDecodeError, aiohttp.ContentTypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _check(status: int, body: dict[str, Any], user_id: str) -> None:
    if status < 400:
        return
    errcode = str(body.get("errcode", ""))
    message = str(body.get("error", "")) or f"HTTP {status}"
    if status in (401, 403):
        raise MatrixAuthError(
            f"the homeserver refused the admin token ({message}); use the access token of a "
            "server admin (Synapse: register_new_matrix_user -a, or the users admin API)",
            errcode=errcode,
        )
    if status == 404:
        raise MatrixError(
            f"no admin API answer for {user_id} ({message}): check that the bot account exists "
            "and that a reverse proxy does not hide /_synapse/admin",
            errcode=errcode,
        )
    raise MatrixError(f"override_ratelimit for {user_id} failed: {message}", errcode=errcode)
