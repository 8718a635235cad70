"""A sliding-window limit per client (an address, an account, a server), with a bounded
memory: the web forms that send mail, Matrix logins and ``!subscribe`` all count with it."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_CLIENTS = 10_000  # clients remembered at once; the least recent are forgotten first


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
