"""The delivery engine's knobs and shared state: `DeliveryPolicy`, retry backoff, and the
outbox bookkeeping (release untried rows, back off, write results) every part uses.

`Delivery` (network/delivery/outbox.py) is built on this in layers: turning rows into messages
(network/delivery/messages.py), then one paced sender per Matrix room
(network/delivery/rooms.py), then the outbox runner and apprise lanes on top.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from network.delivery.channels import ChannelSender
from network.matrix.gateway import MatrixGateway
from network.routing.router import Router
from network.storage import Item, OutboxRow, Storage
from network.storage.outbox import Sent


@dataclass(frozen=True)
class DeliveryPolicy:
    """Knobs of the delivery engine (see ``[delivery]`` in config/example.toml)."""

    room_parallelism: int = 4
    room_pace: float = 0.0  # seconds between two sends into one room
    group_threshold: int = 10  # more new items than this for one room in one poll: grouped
    group_max: int = 50  # items listed in one grouped message (Matrix events are <= 64 KiB)
    base_backoff: float = 5.0
    max_backoff: float = 900.0
    max_attempts_apprise: int = 20
    claim_batch: int = 800
    claim_per_target: int = 200  # a long backlog in one room does not starve the others
    # Several instances (PostgreSQL): one claim takes this many rooms whole, the others
    # are left to the other instances (a round serves room_parallelism rooms at a time).
    claim_rooms: int | None = None
    lease: float = 120.0
    lane_budget: float = 60.0  # a room's turn ends after this; its rest goes to the next round
    flush_every: int = 20  # Matrix results written per transaction
    login_wait: float = 2.0


def backoff(attempts: int, *, base: float, cap: float, rnd: float) -> float:
    """Exponential backoff with jitter: half fixed, half random, so retries spread out."""
    delay: float = min(cap, base * 2.0 ** max(0, attempts - 1))
    return delay / 2 + delay / 2 * rnd


def _now() -> datetime:
    return datetime.now(UTC)


def _no_cohort(item: Item) -> str | None:
    return None


@dataclass
class Round:
    """What one round of claimed rows shares: their items, feed links, results to write
    and content rendered so far."""

    items: dict[int, Item]
    feed_links: dict[str, str | None]
    results: list[Sent] = field(default_factory=list)
    rendered: dict[tuple[int, int, str | None], dict[str, Any]] = field(default_factory=dict)


class DeliveryState:
    """The engine's collaborators, knobs and counters, and the outbox bookkeeping."""

    def __init__(
        self,
        storage: Storage,
        matrix: MatrixGateway | None,
        channels: ChannelSender,
        *,
        feed_titles: Callable[[str], str],
        policy: DeliveryPolicy = DeliveryPolicy(),
        clock: Callable[[], datetime] = _now,
        rnd: Callable[[], float] = random.random,
        router: Router | None = None,
        cohort_of: Callable[[Item], str | None] = _no_cohort,
        zone: ZoneInfo | None = None,
        calendar_links: Callable[[Item], tuple[str, str] | None] | None = None,
    ) -> None:
        self.storage = storage
        # A webinar's post links to its calendar file and to the subscribable calendars.
        self.calendar_links = calendar_links
        self.zone = zone  # webinar times are shown in the network's zone (and UTC)
        self.matrix = matrix
        self.channels = channels
        self.feed_titles = feed_titles
        self.policy = policy
        self.clock = clock
        self.rnd = rnd
        self.router = router
        # Routes can match on cohorts; items do not store theirs, so whoever creates
        # cohort items tells templates which cohort an item belongs to.
        self.cohort_of = cohort_of
        self._wake = asyncio.Event()
        self._paused_until = 0.0  # loop time before which no Matrix send may start
        self._checked_rooms: set[str] = set()  # room ids checked for a tombstone
        self.rate_limit_waits = 0
        self.sent = {"matrix": 0, "apprise": 0}
        self.failed = {"matrix": 0, "apprise": 0}

    # -- bookkeeping -----------------------------------------------------------------

    async def _flush(self, ctx: Round) -> None:
        done, ctx.results = ctx.results, []
        await self.storage.record_sent(done, now=self.clock())

    def _at(self, seconds: float) -> datetime:
        return self.clock() + timedelta(seconds=seconds)

    def _backoff(self, row: OutboxRow) -> float:
        # row.attempts is the count before this round's claim added one.
        p = self.policy
        return backoff(row.attempts + 1, base=p.base_backoff, cap=p.max_backoff, rnd=self.rnd())

    async def _release(self, rows: Sequence[OutboxRow], delay: float) -> None:
        """Rows claimed but not tried: back in the queue without counting an attempt."""
        ids = [r.id for r in rows]
        await self.storage.release(ids, next_attempt=self._at(delay), untried=ids)
