"""Delivery workers: take due outbox rows and send them to Matrix rooms and apprise URLs.

At-least-once, no duplicates: a row is marked sent only with the homeserver's event id (or
the channel's success) and every retry reuses the row's transaction id, so a resend after
a crash returns the event already posted (Synapse keeps them per device for a day; the
device is kept in the database). Matrix results are written in small batches, channel
results one by one (an apprise target does not deduplicate).

This module owns the outbox runner (claim a round, split it into lanes per target, run the
lanes) and the apprise lanes. The parts under it, each built on the one before:

* network/delivery/state.py: `DeliveryPolicy`, backoff and the outbox bookkeeping;
* network/delivery/messages.py: rows into messages (bursts grouped, edits checked);
* network/delivery/rooms.py: one paced sender per Matrix room, rate limits, room upgrades.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import timedelta

from network.delivery.channels import redact, serve_url
from network.delivery.rooms import RoomLanes
from network.delivery.state import Round
from network.storage import OutboxRow

log = logging.getLogger(__name__)


class Delivery(RoomLanes):
    """Runs the outbox. ``wake()`` after queueing rows to send them without waiting."""

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        lease = timedelta(seconds=self.policy.lease)
        if released := await self.storage.release_leases(self.clock(), lease=lease):
            log.info("%d deliveries claimed before the last stop are due again", released)
        while not stop.is_set():
            # Cleared before the round: a wake() during it (rows queued meanwhile) is kept.
            self._wake.clear()
            timeout = 5.0
            try:
                if await self.run_once():
                    continue
                due = await self.storage.next_due()
                if due is not None:
                    timeout = max(0.05, min(timeout, (due - self.clock()).total_seconds()))
            except Exception:
                log.exception("delivery round failed; retrying in %g s", timeout)
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            _, pending = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for w in pending:
                w.cancel()

    async def run_once(self) -> bool:
        """Claim and send one batch of due rows; False when nothing was due."""
        p = self.policy
        rows = await self.storage.claim_due(
            self.clock(),
            limit=p.claim_batch,
            lease=timedelta(seconds=p.lease),
            per_target=p.claim_per_target,
            max_targets=p.claim_rooms,
            may_encrypt=self.matrix is None or self.matrix.may_encrypt,
        )
        if not rows:
            return False
        lanes: dict[tuple[str, str], list[OutboxRow]] = defaultdict(list)
        for row in rows:
            lanes[(row.target_type, row.target)].append(row)
        loop = asyncio.get_running_loop()
        ctx = Round(
            items=await self.storage.items_by_id(sorted({r.item_id for r in rows})),
            feed_links={s.id: s.link for s in await self.storage.feed_states()},
        )
        gate = asyncio.Semaphore(p.room_parallelism)

        async def serve(key: tuple[str, str], lane: list[OutboxRow]) -> None:
            if key[0] != "matrix":
                await self._serve_channel(key[1], lane, ctx, loop.time() + p.lane_budget)
                return
            async with gate:
                try:
                    await self._serve_room(key[1], lane, ctx, loop.time() + p.lane_budget)
                finally:
                    await self._flush(ctx)

        # Every lane ends before the next round claims again: a failed lane must not leave
        # others running alongside the next round's senders for the same rooms.
        results = await asyncio.gather(
            *(serve(k, lane) for k, lane in lanes.items()), return_exceptions=True
        )
        for key, result in zip(lanes, results, strict=True):
            if isinstance(result, Exception):
                where = redact(key[1]) if key[0] == "apprise" else key[1]  # URLs hold tokens
                log.error("delivery to %s failed", where, exc_info=result)
            elif isinstance(result, BaseException):
                raise result
        return True

    # -- apprise -------------------------------------------------------------------

    async def _serve_channel(
        self, url: str, rows: list[OutboxRow], ctx: Round, deadline: float
    ) -> None:
        async def send(row: OutboxRow) -> bool:
            item = ctx.items.get(row.item_id)
            if item is None:
                return False
            template = None
            if self.router is not None:
                template = self.router.channel_template(
                    item.feed_id, item, url, row.channel, cohort=self.cohort_of(item)
                )
            await self.channels.send_item(
                url,
                item,
                feed_title=self.feed_titles(item.feed_id),
                feed_link=ctx.feed_links.get(item.feed_id),
                template=template,
                zone=self.zone,
            )
            return True

        sent, failed = await serve_url(
            self.storage,
            rows,
            send,
            retry_in=self._backoff,
            clock=self.clock,
            deadline=deadline,
            max_attempts=self.policy.max_attempts_apprise,
        )
        self.sent["apprise"] += sent
        self.failed["apprise"] += failed
