"""Where a feed fetch may connect: a feed on the internet may not lead libhub, by redirects,
to this machine or its private network (its loopback-only /metrics, a router's admin page).

The check is made on the address each connection actually reached (its peer), new or
reused, whatever the URL said: a host name that resolves to a private address, an IP
literal, a DNS answer that changed since the last look, all meet the same test. The first
connection of a fetch is to the feed's own host: when that one is private (a feed on the
local network, as in tests and the demo), the whole fetch may stay there.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp

__all__ = [
    "GuardedConnector",
    "IPAddress",
    "PrivateAddressRefused",
    "guarded_fetch",
    "is_private_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_private_address(ip: IPAddress) -> bool:
    """Loopback, private, link-local, shared (CGNAT), reserved, unspecified or multicast:
    anything that is not an ordinary address on the internet."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return not ip.is_global or ip.is_multicast


class PrivateAddressRefused(aiohttp.ClientConnectionError):
    """A connection of a fetch reached a private address the fetch may not use."""

    def __init__(self, url: str, ip: IPAddress) -> None:
        super().__init__(f"{url} is at {ip}, a private or local address")
        self.url = url
        self.ip = ip


@dataclass
class _Fetch:
    private_ok: bool | None = None  # decided by the fetch's first connection


_current: ContextVar[_Fetch | None] = ContextVar("libhub_feed_fetch", default=None)


@contextlib.contextmanager
def guarded_fetch(*, allow_private: bool = True) -> Iterator[None]:
    """Requests made inside (one fetch and its redirects) are held to the rule above. With
    ``allow_private=False`` not even the feed's own host may be private (a feed a room
    member added: nobody chose to trust the local network for it)."""
    token = _current.set(_Fetch(private_ok=None if allow_private else False))
    try:
        yield
    finally:
        _current.reset(token)


class GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector that checks the peer of every connection made inside `guarded_fetch`.

    `is_private` says which addresses count as private (tests use it to play a public
    host on a loopback address)."""

    def __init__(
        self, *, is_private: Callable[[IPAddress], bool] = is_private_address, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._is_private = is_private

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> aiohttp.connector.Connection:
        conn = await super().connect(req, traces, timeout)
        fetch = _current.get()
        if fetch is None or fetch.private_ok:
            return conn
        peer = conn.transport.get_extra_info("peername") if conn.transport else None
        try:
            ip = ipaddress.ip_address(str(peer[0]).split("%", 1)[0]) if peer else None
        except ValueError:  # a Unix socket or something else without an IP
            ip = None
        private = ip is not None and self._is_private(ip)
        if fetch.private_ok is None:
            # The feed's own host: where the coordinator pointed libhub.
            fetch.private_ok = private
            return conn
        if private:
            conn.close()
            assert ip is not None
            raise PrivateAddressRefused(str(req.url), ip)
        return conn
