"""Sending digests: lease due runs, render each distinct content once, send, record.

Due pending runs are leased (a crashed sender's lease runs out and the run is due again),
rendered (one render per distinct content, links filled in per person) and sent over at most
``email.max_connections`` reused SMTP connections or through apprise.

Delivery is **at-least-once with a window of milliseconds**: a run is marked sent right
after the SMTP server accepted the message, in its own transaction. Marking before sending
would make a crash lose digests ("nobody gets none" matters more); the cost is that a hard
crash between the server's "250 OK" and that commit sends that one message again after the
lease (10 minutes). A clean stop (cancelling the runner, closing the service) lets messages
in flight finish and be marked, and gives back leases of runs not yet tried, so restarts
send nothing twice. What a result costs (bounces, retries) is outcomes.py.

One run's trouble stays its own: an error while sending it (a template that fails, say)
costs that run an attempt, with backoff, and the batch goes on. Whether its subscriber is
still active is checked just before their message is sent, against a view of the batch's
subscribers that is re-read as soon as one leaves through this process and at least every
``STATUS_MAX_AGE`` for other processes (re-reading it per message would cost a fifth of
the throughput); a run dropped meanwhile stays dropped even if its message went out. When
the relay cannot be used at all, the batch stops handing email to it and its runs wait,
without losing attempts, for a delay that grows while the relay stays away.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from network.errors import ConfigError
from network.settings.model import Settings
from network.storage import Item, Storage
from network.storage.subscribers import DigestRun, QueueEntry, Subscriber
from network.subscriptions.digests.outcomes import (
    SendReport,
    record_result,
    record_retry,
    retry_delay,
)
from network.subscriptions.digests.render import (
    DigestItem,
    RenderedMessage,
    render_digest,
    render_immediate,
)
from network.subscriptions.lifecycle import Subscriptions
from network.subscriptions.postman import Links, ListMail

# The runner's logger, as before this module was split out of runner.py.
log = logging.getLogger("network.subscriptions.digests.runner")

# Stand-ins for the per-person links while a shared render is cached; URL-safe characters
# only, so HTML escaping leaves them intact and a plain replace fills them in.
_MANAGE = "https://libhub.invalid/__manage_link__"
_UNSUBSCRIBE = "https://libhub.invalid/__unsubscribe_link__"
RENDER_CACHE = 256
STATUS_MAX_AGE = timedelta(seconds=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Subscribers:
    """The subscribers of one batch, as recent as `_stale` asks (see the module docstring)."""

    def __init__(self, storage: Storage, ids: Sequence[int], clock: Callable[[], datetime]) -> None:
        self._storage = storage
        self._ids = ids
        self._clock = clock
        self._subs: dict[int, Subscriber] = {}
        self._left = -1  # storage.subscribers_left when last read
        self._read_at: datetime | None = None
        self._lock = asyncio.Lock()

    def _stale(self) -> bool:
        return (
            self._read_at is None
            or self._left != self._storage.subscribers_left
            or self._clock() - self._read_at >= STATUS_MAX_AGE
        )

    async def get(self, subscriber_id: int) -> Subscriber | None:
        async with self._lock:
            if self._stale():
                self._left, self._read_at = self._storage.subscribers_left, self._clock()
                self._subs = await self._storage.subscribers_by_ids(self._ids)
        return self._subs.get(subscriber_id)


@dataclass(frozen=True)
class _Batch:
    """What one leased batch of runs is sent with."""

    runs: list[DigestRun]
    subs: _Subscribers
    entries: list[QueueEntry]
    items: dict[int, Item]
    renders: OrderedDict[tuple[object, ...], ListMail | None]
    links: Links
    now: datetime
    sent_to: set[int] = field(default_factory=set)  # subscribers whose message went out
    relay_down: list[str] = field(default_factory=list)  # why the relay could not be used


class DigestSender:
    """Sends due digest runs; `DigestRunner` adds planning and the loop around it."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        subscriptions: Subscriptions,
        *,
        clock: Callable[[], datetime] = utcnow,
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
        self._inflight: set[asyncio.Task[None]] = set()
        # The loop's state (runner.py): woken by new items, purges, config trouble.
        self._wake = asyncio.Event()
        self._last_purge: datetime | None = None
        self._config_problem = ""
        self._relay_failures = 0  # batches in a row that found the relay unusable

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
        language: str = "en",
    ) -> RenderedMessage | None:
        common = {
            "language": language,
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
            subs = _Subscribers(self.storage, sorted({r.subscriber_id for r in runs}), self.clock)
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
            if batch.relay_down:
                break  # the rest waits for the relay (the runs' next_attempt says when)
        return report

    def _relay_wait(self) -> timedelta:
        return retry_delay(self._relay_failures)

    def _content(self, b: _Batch, run: DigestRun, sub: Subscriber) -> ListMail | None:
        """The shared render for this run (one per distinct content, time zone, language and
        kind)."""
        chosen = [
            b.items[e.item_id]
            for e in b.entries
            if run.from_seq < e.seq <= run.upto_seq
            and e.item_id in b.items
            and self.catalog.matches(sub.prefs.topics, e.feed_id, e.kind)
        ]
        language = sub.prefs.language
        key = (run.kind, run.frequency, sub.prefs.tz, language, tuple(i.id for i in chosen))
        if key in b.renders:
            b.renders.move_to_end(key)
            return b.renders[key]
        rendered = self.render(
            run.kind, run.frequency, sub.prefs.tz, chosen, b.now, links=b.links, language=language
        )
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
            try:
                await attempt(run)
            except Exception as e:  # this run's trouble only: it costs the run an attempt
                log.exception("digest run %d failed; it is tried again later", run.id)
                handed.add(run.id)  # recorded here, not given back
                error = f"{type(e).__name__}: {e}"
                await record_retry(
                    self.storage, self.settings.digests, run, error, report, now=self.clock()
                )

        async def attempt(run: DigestRun) -> None:
            sub = await b.subs.get(run.subscriber_id)  # they may have left since the lease
            if sub is None or sub.status != "active":
                status = sub.status if sub else "deleted"
                await self.storage.run_finished(run, status="dropped", error=status)
                report.dropped += 1
                return
            if b.relay_down and sub.channel == "email":
                return  # left untried: given back below, due when the relay may be back
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
            # at once, or when the relay may be back; a dropped run caught half-way is
            # simply looked at again.
            untried = [r.id for r in b.runs if r.id not in handed]
            if untried:
                due = self.clock() + (self._relay_wait() if b.relay_down else timedelta(0))
                await asyncio.shield(self.storage.release_runs(untried, now=due))

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
        if result.relay:
            if not b.relay_down:  # once per batch: the wait grows while the relay is away
                self._relay_failures += 1
                log.warning(
                    "mail relay unusable; digests wait %s: %s", self._relay_wait(), result.detail
                )
            b.relay_down.append(result.detail)
        elif sub.channel == "email":
            self._relay_failures = 0  # the relay answered, whatever it said
        await record_result(
            self.storage,
            self.settings.digests,
            run,
            sub,
            result,
            report,
            now=self.clock(),
            relay_wait=self._relay_wait(),
        )
        if result.ok:
            b.sent_to.add(sub.id)
