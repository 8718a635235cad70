"""The digest runner: who gets what now, exactly once per period, and what a bounce costs.

Two steps, both safe to repeat and to run from a second process (`libhub digest send`):

1. **Plan.** Claim a run for every subscriber whose digest (or notice) is due: see
   plan.py.
2. **Send.** Lease due runs, render and send them, and record what happened: see
   send.py and, for bounces and retries, outcomes.py.

This module owns the loop around those steps (`DigestRunner`), the poller hooks that queue
new items, and the by-hand tools (`plan`, `dry_run`, `preview`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from network.errors import ConfigError
from network.storage import Item, ItemInput
from network.storage.subscribers import Subscriber
from network.subscriptions.digests.outcomes import SendReport
from network.subscriptions.digests.plan import PAGE_SIZE, PlannedRun, due_claim_pages, due_claims
from network.subscriptions.digests.send import DigestSender
from network.subscriptions.render import RenderedMessage

log = logging.getLogger(__name__)

CLAIM_CHUNK = 500
ERROR_WAIT = 30.0  # seconds before looking again when the next work cannot be read


class DigestRunner(DigestSender):
    """Plans and sends digests and notices. ``wake()`` after new items were queued."""

    idle_wait = 60.0  # seconds the loop sleeps at most when nothing is due sooner
    page_size = PAGE_SIZE  # subscribers read (and claimed) at a time when planning

    # -- hooks -------------------------------------------------------------------------------

    async def items_stored(self, feed_id: str, items: Sequence[ItemInput], now: datetime) -> None:
        """Poller hook: queue the items of one feed's poll that may be posted."""
        await self.storage.queue_new_items(feed_id, [i.key for i in items], now)

    async def queue_items(self, item_ids: Sequence[int]) -> None:
        """For items stored by other paths (cohort updates): queue them and send notices."""
        if await self.storage.queue_items(item_ids, self.clock()):
            self.wake()

    def wake(self) -> None:
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before the round, not after: a wake-up during it starts another.
            self._wake.clear()
            try:
                await self.run_once()
            except ConfigError as e:
                if str(e) != self._config_problem:  # say it once, not every minute
                    log.error("digests cannot be sent: %s", e)
                    self._config_problem = str(e)
            except Exception:
                log.exception("digest round failed; trying again shortly")
            try:
                timeout = await self._idle_seconds()
            except Exception:  # e.g. the database is locked: this loop must not die of it
                log.exception(
                    "cannot tell when digests are next due; looking again in %g s", ERROR_WAIT
                )
                timeout = ERROR_WAIT
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()

    async def _idle_seconds(self) -> float:
        """How long the loop may sleep: until the next digest or retry, at most a minute."""
        following = await self.storage.next_digest_work()
        if following is None:
            return self.idle_wait
        return max(1.0, min(self.idle_wait, (following - self.clock()).total_seconds()))

    async def run_once(self) -> SendReport:
        now = self.clock()
        try:  # confirmations and manage links that wait for a retry (personal.py)
            await self.subscriptions.send_queued_mail()
        except Exception:  # their trouble must not stop the digests
            log.exception("sending queued confirmations failed; trying again next round")
        await self.plan(now, keep=False)
        report = await self.send_pending()
        if self._last_purge is None or now - self._last_purge > timedelta(hours=1):
            await self.storage.purge_subscription_records(now, keep=timedelta(days=30))
            self._last_purge = now
        return report

    # -- planning ----------------------------------------------------------------------------

    async def plan(
        self,
        now: datetime,
        *,
        frequency: str | None = None,
        force: bool = False,
        keep: bool = True,
    ) -> list[PlannedRun]:
        """Claim the runs that are due at ``now``; returns what was planned (nothing
        without ``keep``: the scheduled round holds no more than one page of subscribers).

        ``force`` (by hand) sends every active subscriber of ``frequency`` what is pending
        for them now, whatever their hour; their next scheduled digest then has only newer
        items.
        """
        planned: list[PlannedRun] = []
        async for claims, page_planned in due_claim_pages(
            self.storage,
            self.catalog,
            now,
            frequency=frequency,
            force=force,
            page_size=self.page_size,
        ):
            for start in range(0, len(claims), CLAIM_CHUNK):
                await self.storage.claim_runs(claims[start : start + CLAIM_CHUNK], now=now)
            if keep:
                planned.extend(page_planned)
        return planned

    async def dry_run(
        self, now: datetime, *, frequency: str | None = None, force: bool = False
    ) -> list[PlannedRun]:
        """What `plan` would claim, without changing anything."""
        _, planned = await due_claims(
            self.storage, self.catalog, now, frequency=frequency, force=force
        )
        return planned

    # -- by hand -----------------------------------------------------------------------------

    async def _pending_items(self, sub: Subscriber, after: int, upto: int) -> list[Item]:
        entries = await self.storage.queue_entries(after, upto)
        ids = [
            e.item_id for e in entries if self.catalog.matches(sub.prefs.topics, e.feed_id, e.kind)
        ]
        found = await self.storage.items_by_id(ids)
        withdrawn = await self.storage.withdrawn_item_ids(ids)
        return [found[i] for i in ids if i in found and i not in withdrawn]

    async def preview(self, sub: Subscriber) -> RenderedMessage | None:
        """What ``sub`` would get if their digest (or notice) went out now; None: nothing."""
        now = self.clock()
        items = await self._pending_items(sub, sub.queue_cursor, await self.storage.queue_max_seq())
        links = self.subscriptions.links
        kind = "immediate" if sub.prefs.frequency == "immediate" else "digest"
        return self.render(
            kind,
            sub.prefs.frequency,
            sub.prefs.tz,
            items,
            now,
            links=links,
            manage_url=links.manage(sub.id, now),
            unsubscribe_url=links.unsubscribe(sub.id, now),
            language=sub.prefs.language,
        )
