"""Who is asking the web server, and how often: the client's address behind trusted
proxies, a per-client limit on the forms that send mail, and the guard on ``/metrics``.

The per-address limit on confirmations (storage) stops mail bombing of one inbox; this
one stops one client from making the service mail thousands of inboxes. Libraries put
many patrons behind one public address, so the default is generous.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from network.settings.checks import IPNetwork, parse_networks

if TYPE_CHECKING:
    from network.settings.model import WebSettings

MAX_CLIENTS = 10_000  # clients remembered at once; the least recent are forgotten first


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


def limit_key(address: str) -> str:
    """The key a client is counted under: its address, but a whole IPv6 /64 for IPv6.

    One IPv6 host usually holds a /64 and can pick a new address in it for every request;
    counting addresses one by one would let it walk around any limit."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class PerClientLimit:
    """At most ``limit`` events per ``window`` seconds for each client (a sliding window).

    Clients are counted under ``key(client)``: by default `limit_key`, which groups IPv6
    addresses by /64; pass ``key=str`` to count other names (accounts) as they are."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
        key: Callable[[str], str] = limit_key,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        self.key = key
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, client: str) -> bool:
        """Count one event for ``client``; False (and not counted) when over the limit."""
        if self.limit <= 0:
            return True
        client = self.key(client)
        now = self.clock()
        times = self._seen.pop(client, None) or deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        allowed = len(times) < self.limit
        if allowed:
            times.append(now)
        self._seen[client] = times  # most recent last
        while len(self._seen) > self.max_clients:
            self._seen.popitem(last=False)
        return allowed


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
