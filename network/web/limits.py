"""Who is asking the web server: the client's address behind trusted proxies (counted by
`network.ratelimit`'s per-client limit on the forms that send mail), and the guard on
``/metrics``.

The per-address limit on confirmations (storage) stops mail bombing of one inbox; this
one stops one client from making the service mail thousands of inboxes. Libraries put
many patrons behind one public address, so the default is generous.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from network.settings.checks import IPNetwork, parse_networks

if TYPE_CHECKING:
    from network.settings.model import WebSettings


def _in(address: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


def client_address(request: web.Request, trusted: Sequence[IPNetwork]) -> str:
    """The address of the client: the peer, unless the peer is a trusted proxy; then the
    right-most ``X-Forwarded-For`` entry that is not one (the left ones can be forged)."""
    peer = request.remote or ""
    if not trusted or not _in(peer, trusted):
        return peer
    # All header lines in order: a client may send its own line, the proxy appends another.
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _local(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def metrics_refusal(request: web.Request, settings: WebSettings) -> web.Response | None:
    """None when this request may read /metrics, else the response that says why not.

    With ``metrics_token_env`` set, a scraper sends ``Authorization: Bearer <token>``.
    Without it, only a direct loopback client may read: a peer listed in
    ``web.trusted_proxies`` is refused even on loopback (the proxy may be public and need
    not add forwarding headers), and so is a request that carries forwarding headers."""
    token = os.environ.get(settings.metrics_token_env, "") if settings.metrics_token_env else ""
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if hmac.compare_digest(sent.encode(), token.encode()):
            return None
        return web.Response(
            status=401,
            text="metrics: send 'Authorization: Bearer <token>' (web.metrics_token_env)\n",
            headers={"WWW-Authenticate": 'Bearer realm="libhub metrics"'},
        )
    forwarded = any(h in request.headers for h in ("X-Forwarded-For", "Forwarded", "X-Real-IP"))
    peer = request.remote or ""
    proxy = _in(peer, parse_networks(settings.trusted_proxies))
    if _local(peer) and not proxy and not forwarded:
        return None
    return web.Response(
        status=403,
        text="metrics: only direct loopback clients (not a trusted proxy) may read this; set "
        "web.metrics_token_env to let a scraper elsewhere in with a bearer token\n",
    )
