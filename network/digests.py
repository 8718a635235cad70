"""The digest runner: who gets what now, exactly once per period, and what a bounce costs.

Two steps, both safe to repeat and to run from a second process (`libhub digest send`):

1. **Plan.** For every active subscriber whose digest is due (their hour, in their time
   zone; see network/digest_schedule.py) or who gets immediate notices and has unseen
   queue entries, *claim* a run: one ``digest_runs`` row per (subscriber, period key)
   holding the queue range it covers, written in the same transaction that moves the
   subscriber's cursor past that range. The unique key makes a period's digest one row
   however often this runs; a subscriber with nothing new for their topics only has the
   cursor moved (no empty digests). After downtime the schedule gives one period key,
   the latest, so a missed week is one digest, not seven.
2. **Send.** Due pending runs are leased (a crashed sender's lease runs out and the run is
   due again), rendered (one render per distinct content, links filled in per person) and
   sent over at most ``email.max_connections`` reused SMTP connections or through apprise.

Delivery is **at-least-once with a window of milliseconds**: a run is marked sent right
after the SMTP server accepted the message, in its own transaction. Marking before sending
would make a crash lose digests ("nobody gets none" matters more); the cost is that a hard
crash between the server's "250 OK" and that commit sends that one message again after the
lease (10 minutes). A clean stop (cancelling the runner, closing the service) lets messages
in flight finish and be marked, and gives back leases of runs not yet tried, so restarts
send nothing twice.

A permanent refusal (5xx) adds to the address's bounce score (once a day at most);
reaching ``digests.bounce_threshold`` suspends the subscription. Temporary failures are
retried with backoff up to ``digests.retry_limit`` attempts.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from network.digest_render import DigestItem, RenderedMessage, render_digest, render_immediate
from network.digest_schedule import due, next_send
from network.errors import ConfigError
from network.mail import SendResult
from network.postman import Links, ListMail
from network.settings import Settings
from network.storage import Item, ItemInput, Storage, from_iso, now_iso
from network.storage.subscribers import Claim, DigestRun, QueueEntry, Subscriber
from network.subscriptions import Subscriptions
from network.topics import schedule_of

log = logging.getLogger(__name__)

# Stand-ins for the per-person links while a shared render is cached; URL-safe characters
# only, so HTML escaping leaves them intact and a plain replace fills them in.
_MANAGE = "https://libhub.invalid/__manage_link__"
_UNSUBSCRIBE = "https://libhub.invalid/__unsubscribe_link__"
RENDER_CACHE = 256
CLAIM_CHUNK = 500


def _utcnow() -> datetime:
    return datetime.now(UTC)


def bounce_score(
    score: float, last_bounce: datetime | None, now: datetime, stale_after: timedelta
) -> float:
    """The score after one more permanent failure: +1, at most once per UTC day, and
    starting again from 0 when the last bounce is older than ``stale_after``."""
    if last_bounce is not None and now - last_bounce > stale_after:
        return 1.0
    if last_bounce is not None and last_bounce.date() == now.astimezone(UTC).date() and score:
        return score
    return score + 1.0


def retry_delay(attempts: int) -> timedelta:
    """1 minute after the first failure, doubling, at most an hour."""
    return timedelta(seconds=min(3600, 60 * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class _Batch:
    """What one leased batch of runs is sent with."""

    runs: list[DigestRun]
    subs: dict[int, Subscriber]
    entries: list[QueueEntry]
    items: dict[int, Item]
    renders: OrderedDict[tuple[object, ...], ListMail | None]
    links: Links
    now: datetime
    sent_to: set[int] = field(default_factory=set)  # subscribers whose message went out


@dataclass(frozen=True)
class PlannedRun:
    """What planning found for one subscriber (also what a dry run prints)."""

    subscriber: Subscriber
    period: str
    items: int


@dataclass
class SendReport:
    sent: int = 0
    permanent: int = 0
    temporary: int = 0
    dropped: int = 0
    suspended: int = 0

    @property
    def done(self) -> int:
        return self.sent + self.permanent + self.temporary + self.dropped


class DigestRunner:
    """Plans and sends digests and notices. ``wake()`` after new items were queued."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        subscriptions: Subscriptions,
        *,
        clock: Callable[[], datetime] = _utcnow,
        lease: timedelta = timedelta(minutes=10),
        batch: int = 500,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.subscriptions = subscriptions
        self.postman = subscriptions.postman
        self.catalog = subscriptions.catalog
        self.clock = clock
        self.lease = lease
        self.batch = batch
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._last_purge: datetime | None = None
        self._config_problem = ""

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
            try:
                await self.run_once()
            except ConfigError as e:
                if str(e) != self._config_problem:  # say it once, not every minute
                    log.error("digests cannot be sent: %s", e)
                    self._config_problem = str(e)
            except Exception:
                log.exception("digest round failed; trying again shortly")
            now = self.clock()
            following = await self.storage.next_digest_work()
            timeout = 60.0
            if following is not None:
                timeout = max(1.0, min(timeout, (following - now).total_seconds()))
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()

    async def run_once(self) -> SendReport:
        now = self.clock()
        await self.plan(now)
        report = await self.send_pending()
        if self._last_purge is None or now - self._last_purge > timedelta(hours=1):
            await self.storage.purge_subscription_records(now, keep=timedelta(days=30))
            self._last_purge = now
        return report

    # -- planning ----------------------------------------------------------------------------

    async def _claims(
        self, now: datetime, *, frequency: str | None, force: bool
    ) -> tuple[list[Claim], list[PlannedRun]]:
        max_seq = await self.storage.queue_max_seq()
        if force:
            candidates = await self.storage.list_subscribers(
                statuses=("active",), frequency=frequency
            )
        else:
            candidates = await self.storage.digest_candidates(now, max_seq)
            if frequency:
                candidates = [c for c in candidates if c.prefs.frequency == frequency]
        if not candidates:
            return [], []
        entries = await self.storage.queue_entries(min(c.queue_cursor for c in candidates), max_seq)
        matching: dict[tuple[tuple[str, ...], int], list[QueueEntry]] = {}
        claims: list[Claim] = []
        planned: list[PlannedRun] = []
        stamp = now_iso(now)
        for sub in candidates:
            key = (sub.prefs.topics, sub.queue_cursor)
            if key not in matching:
                matching[key] = [
                    e
                    for e in entries
                    if e.seq > sub.queue_cursor
                    and self.catalog.matches(sub.prefs.topics, e.feed_id, e.kind)
                ]
            pending = matching[key]
            freq = sub.prefs.frequency
            if freq == "immediate":
                claims.extend(self._immediate_claims(sub, pending, max_seq))
                if pending:
                    planned.append(PlannedRun(sub, f"immediate:{max_seq}", len(pending)))
                continue
            schedule = schedule_of(sub.prefs)
            if force:
                period, last_period, following = f"manual:{stamp}", None, None
            else:
                key_at = due(schedule, now, from_iso(sub.last_period))
                following = next_send(schedule, now)
                if key_at is None:
                    # The prefilter was stale (e.g. an old next_due): only fix it.
                    claims.append(
                        Claim(sub.id, sub.queue_cursor, sub.queue_cursor, None, "digest", freq,
                              None, following)
                    )  # fmt: skip
                    continue
                period = last_period = now_iso(key_at)
            claims.append(
                Claim(sub.id, sub.queue_cursor, max_seq, period if pending else None, "digest",
                      freq, last_period, following)
            )  # fmt: skip
            if pending:
                planned.append(PlannedRun(sub, period, len(pending)))
        return claims, planned

    @staticmethod
    def _immediate_claims(sub: Subscriber, pending: list[QueueEntry], max_seq: int) -> list[Claim]:
        """Email gets one notice per poll batch; other channels one message per item."""
        if sub.channel == "email" or not pending:
            period = f"immediate:{max_seq}" if pending else None
            return [Claim(sub.id, sub.queue_cursor, max_seq, period, "immediate", "immediate",
                          None, None)]  # fmt: skip
        claims, cursor = [], sub.queue_cursor
        for entry in pending:
            claims.append(Claim(sub.id, cursor, entry.seq, f"immediate:{entry.seq}", "immediate",
                                "immediate", None, None))  # fmt: skip
            cursor = entry.seq
        if cursor < max_seq:
            claims.append(
                Claim(sub.id, cursor, max_seq, None, "immediate", "immediate", None, None)
            )
        return claims

    async def plan(
        self, now: datetime, *, frequency: str | None = None, force: bool = False
    ) -> list[PlannedRun]:
        """Claim the runs that are due at ``now``; returns what was planned.

        ``force`` (by hand) sends every active subscriber of ``frequency`` what is pending
        for them now, whatever their hour; their next scheduled digest then has only newer
        items.
        """
        claims, planned = await self._claims(now, frequency=frequency, force=force)
        for start in range(0, len(claims), CLAIM_CHUNK):
            await self.storage.claim_runs(claims[start : start + CLAIM_CHUNK], now=now)
        return planned

    async def dry_run(
        self, now: datetime, *, frequency: str | None = None, force: bool = False
    ) -> list[PlannedRun]:
        """What `plan` would claim, without changing anything."""
        return (await self._claims(now, frequency=frequency, force=force))[1]

    # -- rendering ---------------------------------------------------------------------------

    def _digest_items(self, items: Sequence[Item]) -> list[DigestItem]:
        return [
            DigestItem(
                item_id=i.id,
                kind=i.kind,
                title=i.title,
                link=i.link,
                summary_html=i.summary_html,
                published=i.published,
                feed_title=self.catalog.feed_title(i.feed_id),
                event_start=i.event_start,
                author=i.author,
            )
            for i in items
        ]

    def render(
        self,
        kind: str,
        frequency: str,
        tz: str,
        items: Sequence[Item],
        now: datetime,
        *,
        links: Links,
        manage_url: str = _MANAGE,
        unsubscribe_url: str = _UNSUBSCRIBE,
    ) -> RenderedMessage | None:
        common = {
            "subscriber_tz": tz,
            "network_name": self.subscriptions.network_name,
            "manage_url": manage_url,
            "unsubscribe_url": unsubscribe_url,
            "ics_url": lambda item: links.ics(item.item_id),
            "now": now,
        }
        digest_items = self._digest_items(items)
        if kind == "immediate":
            return render_immediate(digest_items, **common)  # type: ignore[arg-type]
        return render_digest(digest_items, frequency=frequency, **common)  # type: ignore[arg-type]

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
        )

    # -- sending -----------------------------------------------------------------------------

    async def send_pending(
        self,
        *,
        progress: Callable[[SendReport], None] | None = None,
        limit: int | None = None,
    ) -> SendReport:
        """Send every due pending run (at most ``limit``); returns the counts."""
        report = SendReport()
        links: Links | None = None
        renders: OrderedDict[tuple[object, ...], ListMail | None] = OrderedDict()
        items: dict[int, Item] = {}
        while limit is None or report.done < limit:
            now = self.clock()
            take = self.batch if limit is None else min(self.batch, limit - report.done)
            runs = await self.storage.lease_runs(now, limit=take, lease=self.lease)
            if not runs:
                break
            if links is None:
                try:
                    links = self.subscriptions.links
                except ConfigError:
                    await self.storage.release_runs([r.id for r in runs], now=now)
                    raise
            subs = await self.storage.subscribers_by_ids(sorted({r.subscriber_id for r in runs}))
            entries = await self.storage.queue_entries(
                min(r.from_seq for r in runs), max(r.upto_seq for r in runs)
            )
            missing = [e.item_id for e in entries if e.item_id not in items]
            items.update(await self.storage.items_by_id(missing))
            # A cohort update its author withdrew never reaches a digest.
            for item_id in await self.storage.withdrawn_item_ids([e.item_id for e in entries]):
                items.pop(item_id, None)
            batch = _Batch(runs, subs, entries, items, renders, links, now)
            await self._send_batch(batch, report, progress)
            if len(items) > 5000:
                items.clear()
        return report

    def _content(self, b: _Batch, run: DigestRun, sub: Subscriber) -> ListMail | None:
        """The shared render for this run (one per distinct content, time zone and kind)."""
        chosen = [
            b.items[e.item_id]
            for e in b.entries
            if run.from_seq < e.seq <= run.upto_seq
            and e.item_id in b.items
            and self.catalog.matches(sub.prefs.topics, e.feed_id, e.kind)
        ]
        key = (run.kind, run.frequency, sub.prefs.tz, tuple(i.id for i in chosen))
        if key in b.renders:
            b.renders.move_to_end(key)
            return b.renders[key]
        rendered = self.render(run.kind, run.frequency, sub.prefs.tz, chosen, b.now, links=b.links)
        mail = ListMail.prepare(rendered, (_MANAGE, _UNSUBSCRIBE)) if rendered else None
        b.renders[key] = mail
        if len(b.renders) > RENDER_CACHE:
            b.renders.popitem(last=False)
        return mail

    async def _send_batch(
        self, b: _Batch, report: SendReport, progress: Callable[[SendReport], None] | None
    ) -> None:
        # One subscriber's runs stay with one worker, in order: someone who takes every
        # item at once reads them in the order they were published.
        per_subscriber: dict[int, list[DigestRun]] = {}
        for run in b.runs:
            per_subscriber.setdefault(run.subscriber_id, []).append(run)
        queue: asyncio.Queue[list[DigestRun]] = asyncio.Queue()
        for runs in per_subscriber.values():
            queue.put_nowait(runs)
        handed: set[int] = set()  # runs whose message went to a delivery task

        async def worker() -> None:
            while not queue.empty():
                for run in queue.get_nowait():
                    await one(run)

        async def one(run: DigestRun) -> None:
            sub = b.subs.get(run.subscriber_id)
            if sub is None or sub.status != "active":
                status = sub.status if sub else "deleted"
                await self.storage.run_finished(run, status="dropped", error=status)
                report.dropped += 1
                return
            shared = self._content(b, run, sub)
            if shared is None:
                await self.storage.run_finished(
                    run, status="dropped", error="nothing left for the current topics"
                )
                report.dropped += 1
                return
            # Shielded: once a message is handed to the server, a cancelled runner
            # still waits for the answer and records it, so a restart does not resend.
            task = asyncio.create_task(self._deliver(run, sub, shared, b, report))
            handed.add(run.id)
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            await asyncio.shield(task)
            if progress is not None:
                progress(report)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.postman.parallelism, len(per_subscriber))):
                    group.create_task(worker())
        finally:
            if self._inflight:
                await asyncio.wait(set(self._inflight), timeout=60)
            await asyncio.shield(self.storage.note_sent(sorted(b.sent_to)))
            # Runs leased but never handed to a delivery task (a clean stop) are due again
            # at once; a dropped run caught half-way is simply looked at again.
            untried = [r.id for r in b.runs if r.id not in handed]
            if untried:
                await asyncio.shield(self.storage.release_runs(untried, now=self.clock()))

    async def _deliver(
        self, run: DigestRun, sub: Subscriber, mail: ListMail, b: _Batch, report: SendReport
    ) -> None:
        manage_url = b.links.manage(sub.id, b.now)
        unsubscribe_url = b.links.unsubscribe(sub.id, b.now)

        def fill(text: str) -> str:
            return text.replace(_MANAGE, manage_url).replace(_UNSUBSCRIBE, unsubscribe_url)

        result = await self.postman.send_list(
            sub.address, sub.channel, mail, fill, unsubscribe_url=unsubscribe_url, now=self.clock()
        )
        await self._record(run, sub, result, report)
        if result.ok:
            b.sent_to.add(sub.id)

    async def _record(
        self, run: DigestRun, sub: Subscriber, result: SendResult, report: SendReport
    ) -> None:
        now = self.clock()
        if result.ok:
            await self.storage.run_sent(run, now=now)
            report.sent += 1
            return
        d = self.settings.digests
        if result.permanent:
            score = bounce_score(sub.bounce_score, sub.last_bounce_at, now, d.bounce_stale_after)
            suspend = score >= d.bounce_threshold
            await self.storage.record_bounce(
                sub.id, score=score, now=now, suspend=suspend, error=result.detail
            )
            await self.storage.run_finished(run, status="failed", error=result.detail)
            report.permanent += 1
            if suspend:
                report.suspended += 1
                log.warning(
                    "subscriber %d suspended after bounces (score %.1f): %s",
                    sub.id,
                    score,
                    result.detail,
                )
            return
        report.temporary += 1
        attempts = run.attempts + 1
        if attempts >= d.retry_limit:
            await self.storage.run_finished(
                run, status="failed", error=f"gave up after {attempts} attempts: {result.detail}"
            )
        else:
            await self.storage.run_retry(
                run, error=result.detail, next_attempt=now + retry_delay(attempts)
            )
