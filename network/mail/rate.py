"""A global messages-per-second limit for the mail relay, separate from connections.

Relays meter messages, not connections (a provider's "14 messages a second", a campus
relay's hourly quota): `SendRate` spaces message starts ``1 / per_second`` apart across every
connection of a pool, so a 100,000-subscriber round stays inside the quota however many
connections carry it. A slot is reserved without awaiting (so concurrent senders never
take the same one), then slept to; no burst beyond one message.
"""

from __future__ import annotations

import asyncio


class SendRate:
    """At most ``per_second`` message starts a second; 0 means no limit."""

    def __init__(self, per_second: float) -> None:
        if per_second < 0:
            raise ValueError(f"per_second must be 0 (no limit) or more, got {per_second}")
        self.per_second = per_second
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0  # loop time of the next free slot

    async def wait(self) -> None:
        """Return when the next message may start."""
        if not self._interval:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)
