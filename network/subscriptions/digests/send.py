"""Sending digests: lease due runs, render each distinct content once, send, record.

Due pending runs are leased for a short ``LEASE``, renewed by a heartbeat every third of it
while the batch is being sent (a killed sender stops renewing, so its runs are due again
within ``LEASE``), rendered (one render per distinct content, links filled in per person)
and sent over at most ``email.max_connections`` reused SMTP connections or through apprise.

Delivery is **at-least-once with a window of milliseconds**: a run is marked sent right
after the SMTP server accepted the message, in its own transaction. Marking before sending
would make a crash lose digests ("nobody gets none" matters more); the cost is that a hard
crash between the server's "250 OK" and that commit sends that one message again after the
lease (``LEASE``). A clean stop (cancelling the runner, closing the service) lets messages
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

A relay that refuses *everyone* (5xx for ``RELAY_REFUSAL_STREAK`` different recipients in a
row, and none accepted in between) is treated the same way: it is the relay's problem (a
blocklisted IP, an expired account), not hundreds of bounces. Refusals are therefore held
back until the relay accepts a message (then they are the recipients' bounces after all)
or the batch ends; at the streak, the held runs and the rest wait for the relay, the round
pauses, and coordinators are told (log, ops room, ``mail_relay_problem`` in /healthz).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from network.errors import ConfigError
from network.mail.pool import SendResult
from network.settings.model import Settings
from network.storage import Item, Storage
from network.storage.subscribers import DigestRun, QueueEntry, Subscriber
from network.subscriptions.digests.outcomes import (
    SendReport,
    record_result,
    record_retry,
)
from network.subscriptions.lifecycle import Subscriptions
from network.subscriptions.postman import Links, ListMail
from network.subscriptions.render import (
    DigestItem,
    RenderedMessage,
    render_digest,
    render_immediate,
)
from network.subscriptions.schedule import retry_delay

# The runner's logger, as before this module was split out of runner.py.
log = logging.getLogger("network.subscriptions.digests.runner")

# Stand-ins for the per-person links while a shared render is cached; URL-safe characters
# only, so HTML escaping leaves them intact and a plain replace fills them in.
_MANAGE = "https://libhub.invalid/__manage_link__"
_UNSUBSCRIBE = "https://libhub.invalid/__unsubscribe_link__"
RENDER_CACHE = 256
STATUS_MAX_AGE = timedelta(seconds=1)
# Short, so a killed sender's runs wait little; the heartbeat keeps a live sender's (the
# lease must outlast one heartbeat interval plus a slow database write).
LEASE = timedelta(minutes=2)
# Different recipients refused in a row before the relay, not they, is taken to be at fault.
RELAY_REFUSAL_STREAK = 20


def _refused(result: SendResult) -> bool:
    """A 5xx from the relay for this recipient or message (what a blocked relay answers)."""
    code = result.code or 0
    return not result.ok and result.permanent and not result.own and 500 <= code < 600


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
    settled: set[int] = field(default_factory=set)  # runs whose outcome is being recorded
    # Refusals not recorded yet (see the module docstring), and why the relay was found to
    # refuse everyone, once it was.
    held: list[tuple[DigestRun, Subscriber, SendResult]] = field(default_factory=list)
    refusing: list[str] = field(default_factory=list)
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
        lease: timedelta = LEASE,
        batch: int = 500,
        notify_ops: Callable[[str], Awaitable[None]] | None = None,
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
        # What is wrong with the relay right now, for /healthz ("" when nothing is known).
        self.relay_problem = ""
        # Tells coordinators (the service's ops room) when the relay refuses everyone.
        self.notify_ops = notify_ops
        self._alerts: set[asyncio.Task[None]] = set()

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
            "calendar_url": links.calendar(),
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
                b.settled.add(run.id)
                error = f"{type(e).__name__}: {e}"
                await record_retry(
                    self.storage, self.settings.digests, run, error, report, now=self.clock()
                )

        async def attempt(run: DigestRun) -> None:
            sub = await b.subs.get(run.subscriber_id)  # they may have left since the lease
            if sub is None or sub.status != "active":
                status = sub.status if sub else "deleted"
                b.settled.add(run.id)
                await self.storage.run_finished(run, status="dropped", error=status)
                report.dropped += 1
                return
            if b.relay_down and sub.channel == "email":
                return  # left untried: given back below, due when the relay may be back
            shared = self._content(b, run, sub)
            if shared is None:
                b.settled.add(run.id)
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

        heartbeat = asyncio.create_task(self._heartbeat(b), name="digest-lease-heartbeat")
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.postman.parallelism, len(per_subscriber))):
                    group.create_task(worker())
        finally:
            if self._inflight:
                await asyncio.wait(set(self._inflight), timeout=60)
            await asyncio.shield(self._record_held(b, report))  # no streak: their bounces
            heartbeat.cancel()
            await asyncio.wait([heartbeat])
            await asyncio.shield(self.storage.note_sent(sorted(b.sent_to)))
            # Runs leased but never handed to a delivery task (a clean stop) are due again
            # at once, or when the relay may be back; a dropped run caught half-way is
            # simply looked at again.
            untried = [r.id for r in b.runs if r.id not in handed]
            if untried:
                due = self.clock() + (self._relay_wait() if b.relay_down else timedelta(0))
                await asyncio.shield(self.storage.release_runs(untried, now=due))

    async def _record_held(self, b: _Batch, report: SendReport) -> None:
        """Record the held refusals as what they are: each recipient's own."""
        held = list(b.held)
        b.held.clear()
        for run, sub, result in held:
            b.settled.add(run.id)
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

    async def _relay_refuses(self, b: _Batch, report: SendReport) -> None:
        """The relay refuses everyone: the held runs and the rest of the batch wait for it
        (without using attempts), and coordinators are told once per batch."""
        held = list(b.held)
        b.held.clear()
        if not b.refusing:
            detail = held[-1][2].detail
            b.refusing.append(detail)
            if not b.relay_down:
                self._relay_failures += 1
            b.relay_down.append(detail)
            self.relay_problem = (
                f"the mail relay refused {len(held)} different recipients in a row; digests "
                f"are paused and tried again in {self._relay_wait()} (last answer: {detail})"
            )
            log.error("%s; no bounces are counted for them", self.relay_problem)
            self._alert(
                f"libhub: {self.relay_problem}. Check the relay (blocklist, account, quota); "
                "digests go out once it accepts mail again."
            )
        due = self.clock() + self._relay_wait()
        for run, _, result in held:
            b.settled.add(run.id)
            report.temporary += 1
            await self.storage.run_postponed(
                run, error=f"the relay refused every recipient: {result.detail}", next_attempt=due
            )

    def _alert(self, text: str) -> None:
        if self.notify_ops is None:
            return

        async def send() -> None:
            try:
                assert self.notify_ops is not None
                await self.notify_ops(text)
            except Exception:
                log.exception("cannot tell the ops room about the mail relay")

        task = asyncio.create_task(send(), name="digest-relay-alert")
        self._alerts.add(task)
        task.add_done_callback(self._alerts.discard)

    async def _heartbeat(self, b: _Batch) -> None:
        """Renew the lease of the batch's runs whose outcome is not being recorded yet."""
        every = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            # Settled runs are left alone: their next attempt is what their outcome set.
            open_ids = [r.id for r in b.runs if r.id not in b.settled]
            if not open_ids:
                continue
            try:
                await self.storage.renew_leases(open_ids, until=self.clock() + self.lease)
            except Exception:  # the next beat tries again; the lease leaves some room
                log.exception("cannot renew the lease of %d digest runs", len(open_ids))

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
            self.relay_problem = result.detail
        elif sub.channel == "email" and _refused(result):
            b.held.append((run, sub, result))
            if b.refusing or len({s.id for _, s, _ in b.held}) >= RELAY_REFUSAL_STREAK:
                await self._relay_refuses(b, report)
            return  # recorded when the streak is decided
        elif sub.channel == "email":
            self._relay_failures = 0  # the relay answered, and not with a refusal
            if result.ok:
                self.relay_problem = ""
                await self._record_held(b, report)  # it takes mail: those were bounces
        b.settled.add(run.id)
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
