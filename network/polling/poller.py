"""The poll cycle: fetch due feeds, parse, classify, store new items and queue deliveries.

The feeds library does the fetching and parsing; this module owns what the service
remembers about each feed (validators, health, next check) and the decisions that need
the database: initial sync (current items are seen, not posted), the age limit, and the
one notice per outage to the ops room. One broken feed never stops the cycle.

Due feeds are leased (storage/feeds.py), a chunk at a time as the cycle's workers free up:
instances on one PostgreSQL each poll a share, and a poll whose lease another instance
took over commits nothing (the other poll counts). SQLite takes the same leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from feeds.classify import DEFAULT_RULES, KindRule, enrich
from feeds.errors import FeedError, FetchError, NotAFeedError
from feeds.fetch import Fetcher, FetchResult
from feeds.parse import ParsedItem
from feeds.parsepool import parse_feed_in_process, shutdown_parse_pool
from feeds.schedule import HINT_CAP_S, backoff_delay, dedupe_keys, next_check
from network.errors import LeaseLost
from network.polling.changes import worth_an_edit
from network.routing.catalog import FeedCatalog
from network.routing.router import Router
from network.settings.model import FeedSettings, Settings
from network.storage import FeedState, ItemInput, Storage, StoreResult

log = logging.getLogger(__name__)

OpsNotifier = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class PollOutcome:
    """What one poll of one feed did: for the CLI's summary table and for tests."""

    feed_id: str
    status: str  # ok | not-modified | unchanged | failing | gone | not-a-feed
    new: int = 0
    updated: int = 0
    queued: int = 0
    error: str | None = None


# Fetched bodies waiting to be parsed and stored, across one poll cycle. Feeds are small
# (typically under 1 MiB); one body larger than the whole budget is let in on its own.
PENDING_BODY_BYTES = 64 * 2**20


class BodyBudget:
    """A byte budget for fetched bodies: `acquire(n)` waits until `n` more bytes fit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = asyncio.Condition()

    async def acquire(self, size: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.used == 0 or self.used + size <= self.limit)
            self.used += size

    async def release(self, size: int) -> None:
        async with self._changed:
            self.used -= size
            self._changed.notify_all()


@dataclass(frozen=True)
class CycleLimits:
    """What one poll cycle may use at once: fetch slots (``polling.concurrency``, "feeds
    fetched at once") and bytes of fetched bodies waiting for parsing and storing."""

    fetching: asyncio.Semaphore
    bodies: BodyBudget


# How long a leased feed stays this instance's at least: well past one poll's worst case
# (a fetch slot, the read timeout, parsing, storing). A poll that outlives it anyway is
# fenced off if another instance took the feed meanwhile; a dead instance's leases are
# taken back sooner, when its heartbeat stops (network/leadership.py).
FEED_LEASE = timedelta(minutes=5)


class _LeasedFeeds:
    """The feeds one poll cycle takes: leased from storage a chunk at a time, as workers
    ask for them, under the cycle's one token (so the cycle never takes a feed twice)."""

    def __init__(
        self,
        poller: Poller,
        polled: dict[str, FeedSettings],
        *,
        token: str,
        chunk: int,
        any_time: bool,
    ) -> None:
        self.poller = poller
        self.polled = polled
        self.token = token
        self.chunk = chunk
        self.any_time = any_time
        self.ready: deque[tuple[FeedSettings, FeedState]] = deque()
        self.exhausted = False
        self.error: Exception | None = None
        self._leasing = asyncio.Lock()

    async def take(self) -> tuple[FeedSettings, FeedState] | None:
        """The next feed to poll, or None when nothing more is due for this cycle."""
        while not self.ready:
            if self.exhausted:
                return None
            async with self._leasing:
                if self.ready or self.exhausted:
                    continue
                try:
                    await self.lease()
                except Exception as e:
                    # The database failed: feeds already taken are finished, then the cycle
                    # reports the failure (the run loop tries again later).
                    self.error, self.exhausted = e, True
        return self.ready.popleft()

    async def lease(self) -> None:
        p = self.poller
        states = await p.storage.lease_feeds(
            p.clock(),
            token=self.token,
            limit=self.chunk,
            lease=p.lease,
            any_time=self.any_time,
            skip=p.foreign,
        )
        # Fewer than asked: the rest are due later, or leased right now by another instance.
        self.exhausted = len(states) < self.chunk
        unknown = [s.id for s in states if s.id not in self.polled]
        if unknown:
            # Polled by the database's account but not this instance's (a live feed added or
            # resumed since its last catalog reload, or another configuration): handed back
            # at once to the instances that know it, and left alone until this one does.
            log.info("feeds %s are not in this instance's catalog yet; left to others", unknown)
            p.foreign.update(unknown)
            await p.storage.release_feeds(self.token, unknown)
        self.ready.extend((self.polled[s.id], s) for s in states if s.id in self.polled)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def to_input(item: ParsedItem, kind: str) -> ItemInput:
    return ItemInput(
        key=item.key,
        kind=kind,
        title=item.title,
        link=item.link,
        published=item.published,
        author=item.author,
        categories=tuple(item.categories),
        summary_html=item.summary_html,
        enclosures=tuple(
            {"url": e.url, "type": e.type, "length": e.length} for e in item.enclosures
        ),
        event_start=item.event_start,
        content_hash=item.content_hash,
    )


# Called with the feed id, the items seen for the first time that may be posted, and the
# store time.
ItemHook = Callable[[str, Sequence[ItemInput], datetime], Awaitable[None]]


class Poller:
    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        fetcher: Fetcher,
        *,
        router: Router,
        on_queued: Callable[[], None] = lambda: None,
        notify_ops: OpsNotifier | None = None,
        item_hooks: Sequence[ItemHook] = (),
        cycle_hooks: Sequence[Callable[[], None]] = (),
        clock: Callable[[], datetime] = _utcnow,
        rnd: Callable[[], float] = random.random,
        lease: timedelta | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.fetcher = fetcher
        self.router = router
        self.on_queued = on_queued
        # Called after each feed's items are stored, with the feed id, the items seen for
        # the first time that may be posted, and the store time (digests queue them); and
        # after a poll cycle that stored new items (immediate notices go out per cycle).
        self.item_hooks: list[ItemHook] = list(item_hooks)
        self.cycle_hooks: list[Callable[[], None]] = list(cycle_hooks)
        self.notify_ops = notify_ops
        self.clock = clock
        self.rnd = rnd
        self.items_ingested = 0
        self.lease = lease or max(FEED_LEASE, 4 * settings.polling.timeout)
        # Feeds the database counts as polled that this instance's catalog does not know:
        # not leased again until it does (see _LeasedFeeds.lease).
        self.foreign: set[str] = set()
        # Configured rules first: a coordinator's rule overrides the built-in guesses.
        self.kind_rules = tuple(
            KindRule(r.kind, categories=r.categories, title_keywords=r.title_keywords)
            for r in settings.kind_rules
        ) + tuple(DEFAULT_RULES)

    @property
    def catalog(self) -> FeedCatalog:
        """The feeds in force (the file's and the live ones): the router's view."""
        return self.router.catalog

    def polled_feeds(self) -> tuple[FeedSettings, ...]:
        """The file's feeds, then the live ones that are not paused."""
        return self.settings.feeds + tuple(
            f.settings for f in self.catalog.live_feeds() if not f.paused
        )

    async def prepare(self) -> None:
        await self.storage.sync_feeds([(f.id, f.url) for f in self.settings.feeds])
        await self.catalog.reload(self.storage)

    def interval(self, feed: FeedSettings) -> float:
        return (feed.interval or self.settings.polling.default_interval).total_seconds()

    async def poll_due(
        self, *, force: bool = False, progress: Callable[[PollOutcome], None] | None = None
    ) -> list[PollOutcome]:
        """Poll every due feed (every polled feed with ``force``), at most ``concurrency``
        at once. Each is leased first: a feed another instance is polling is left to it
        (also with ``force``, so a poll by hand never writes over a running instance's)."""
        polled = {f.id: f for f in self.polled_feeds()}
        self.foreign -= polled.keys()
        concurrency = self.settings.polling.concurrency
        # One token for the cycle: each feed is taken once, ``force`` included.
        pending = _LeasedFeeds(
            self,
            polled,
            token=self.storage.new_lease_token(),
            chunk=concurrency,
            any_time=force,
        )
        await pending.lease()  # the first chunk: also how many workers are worth starting
        limits = CycleLimits(
            fetching=asyncio.Semaphore(concurrency),
            bodies=BodyBudget(PENDING_BODY_BYTES),
        )

        # A fixed set of workers takes feeds from one queue: at 5,000 feeds, one task (and
        # coroutine frame) per feed made at once stalled the loop and held memory for all.
        results: list[PollOutcome | None] = []

        async def worker() -> None:
            while (taken := await pending.take()) is not None:
                feed, state = taken
                index = len(results)
                results.append(None)
                try:
                    outcome = await self.poll_feed(feed, state, limits=limits, lease=pending.token)
                except LeaseLost:
                    log.info(
                        "feed %s: another instance took it over; this poll's result is dropped",
                        feed.id,
                    )
                    continue
                except Exception as e:
                    # The feed keeps its lease until it runs out: not retried at once.
                    log.error("feed %s: poll failed", feed.id, exc_info=e)
                    continue
                if progress is not None:
                    progress(outcome)
                results[index] = outcome

        # Twice the fetch slots: a feed being parsed (or stored) does not hold a fetch slot,
        # so a 304 is not kept waiting behind another feed's parsing; beyond that, feeds
        # wait for a worker (bodies and parse results stay bounded).
        workers = 2 * concurrency
        if pending.exhausted:
            workers = min(workers, len(pending.ready))
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())
        outcomes = [o for o in results if o is not None]
        if any(o.queued for o in outcomes):
            self.on_queued()
        if any(o.new for o in outcomes):
            for cycle_hook in self.cycle_hooks:
                cycle_hook()
        if pending.error is not None:
            raise pending.error
        return outcomes

    async def poll_now(self, feed_id: str) -> PollOutcome | None:
        """Poll one feed now, whatever its schedule (a feed just added live), under a lease
        of its own. None when another poll holds the feed: that poll counts."""
        feed = self.catalog.feed(feed_id)
        token = self.storage.new_lease_token()
        leased = await self.storage.lease_feeds(
            self.clock(), token=token, limit=1, lease=self.lease, any_time=True, ids=[feed_id]
        )
        if not leased:
            return None
        try:
            return await self.poll_feed(feed, leased[0], lease=token)
        except LeaseLost:
            log.info(
                "feed %s: another instance took it over; this poll's result is dropped", feed_id
            )
            return None

    async def run(self, stop: asyncio.Event) -> None:
        await self.prepare()
        # SQLite (one service per file): a lease still held now is a dead process's.
        if released := await self.storage.release_feed_leases():
            log.info("%d feeds leased by a process that stopped are due again", released)
        try:
            while not stop.is_set():
                wait = 30.0  # after a failed cycle (the database, say): not at once
                try:
                    # Feeds imported by another process (libhub feeds import) come in here.
                    await self.catalog.reload(self.storage)
                    await self.poll_due()
                    wait = await self._seconds_to_next_due()
                except Exception:
                    log.exception("poll cycle failed; trying again in %g s", wait)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                except TimeoutError:
                    pass
        finally:
            # The service is stopping: the feeds it was polling are due again at once for
            # the other instances (not when the leases run out), and its parser processes
            # go with it (a later poll in this process would start new ones).
            try:
                await self.storage.release_feeds_of(self.storage.claimant)
            except Exception:
                log.warning("could not hand back this instance's feed leases; they run out")
            shutdown_parse_pool(wait=False)

    async def _seconds_to_next_due(self) -> float:
        now = self.clock()
        # Only polled feeds: a feed taken out of the config keeps its row (its items and
        # history) but is never due again. A feed another instance holds is due, at the
        # latest, when its lease runs out.
        following = await self.storage.next_feed_check(now, skip=self.foreign)
        if following is None:
            return 60.0
        return max(0.5, min(60.0, (following - now).total_seconds()))

    async def poll_feed(
        self,
        feed: FeedSettings,
        state: FeedState,
        *,
        limits: CycleLimits | None = None,
        lease: str | None = None,
    ) -> PollOutcome:
        """Fetch, parse and store one feed. With `limits` (a poll cycle's), the fetch takes
        one of the cycle's fetch slots and a fetched body waits for parsing within the
        cycle's byte budget, not in a fetch slot: a feed that answers 304 need not wait for
        another feed's parsing. With ``lease`` (the token the feed was leased with) every
        write commits only while the feed is still leased under it: `LeaseLost` if not."""
        now = self.clock()
        budget = limits.bodies if limits is not None else None
        held = 0
        failure: FetchError | None = None
        result: FetchResult | None = None
        async with limits.fetching if limits is not None else contextlib.nullcontext():
            try:
                result = await self.fetcher.fetch(
                    state.url,
                    etag=state.etag,
                    last_modified=state.last_modified,
                    previous_hash=state.body_hash,
                    now=now,
                    # A feed added live may not use private addresses unless allowed.
                    allow_private=self.catalog.live(feed.id) is None
                    or self.settings.feeds_admin.allow_private,
                )
            except FetchError as e:
                failure = e
            else:
                if budget is not None and result.body is not None:
                    # Taken before the fetch slot is given back: bodies in memory stay bounded.
                    held = len(result.body)
                    await budget.acquire(held)
        if result is None:
            assert failure is not None
            return await self._failed(feed, state, failure, now, lease)
        try:
            return await self._fetched(feed, state, result, now, lease)
        except LeaseLost:
            raise
        except Exception as e:
            # A bug met by one feed's content must not stop the cycle or make this feed
            # be fetched again at once: it backs off like any failing feed, and says why.
            if isinstance(e, FeedError):
                problem = e
            else:
                log.exception("feed %s: processing failed", feed.id)
                problem = FeedError(
                    f"{state.url}: libhub could not process this feed ({type(e).__name__}: "
                    f"{e}); it will try again later. Please report this with the feed's address."
                )
            return await self._failed(feed, state, problem, now, lease)
        finally:
            if budget is not None and held:
                await budget.release(held)

    async def _fetched(
        self,
        feed: FeedSettings,
        state: FeedState,
        result: FetchResult,
        now: datetime,
        lease: str | None,
    ) -> PollOutcome:
        next_at = next_check(
            now,
            interval_s=self.interval(feed),
            rnd=self.rnd(),
            retry_after_s=result.retry_after_s,
            cache_max_age_s=result.cache_max_age_s,
            expires=result.expires,
        )
        url = result.permanent_redirect or state.url
        if result.permanent_redirect:
            log.info("feed %s moved permanently to %s", feed.id, result.permanent_redirect)
        if result.status != "ok" or result.body is None:
            await self.storage.update_feed(
                feed.id,
                lease=lease,
                url=url,
                last_check=now,
                last_success=now,
                next_check=next_at,
                etag=result.etag or state.etag,
                last_modified=result.last_modified or state.last_modified,
                **self._recovered(state),
            )
            await self._announce_recovery(feed, state)
            status = "not-modified" if result.status == "not_modified" else "unchanged"
            return PollOutcome(feed.id, status)
        try:
            # Worker processes, not threads: a parsing thread would hold the GIL the loop
            # needs for every other feed's socket calls.
            parsed = await parse_feed_in_process(
                result.body, url=result.url, headers=result.headers
            )
        except FeedError as e:
            return await self._failed(feed, state, e, now, lease)
        if parsed.ttl_seconds:
            next_at = max(next_at, now + timedelta(seconds=min(parsed.ttl_seconds, HINT_CAP_S)))
        items = await self._rekey(feed, parsed.items)
        stored = await self._store(feed, state, items, now, lease)
        await self.storage.update_feed(
            feed.id,
            lease=lease,
            url=url,
            title=parsed.title or state.title,
            link=parsed.link,
            etag=result.etag,
            last_modified=result.last_modified,
            body_hash=result.body_hash,
            last_check=now,
            last_success=now,
            next_check=next_at,
            warning="; ".join(parsed.warnings)[:500] or None,
            initial_sync_done=True,
            **self._recovered(state),
        )
        await self._announce_recovery(feed, state)
        self.items_ingested += stored.new
        return PollOutcome(
            feed.id, "ok", new=stored.new, updated=stored.updated, queued=stored.queued
        )

    async def _rekey(self, feed: FeedSettings, items: Sequence[ParsedItem]) -> list[ParsedItem]:
        """The parser chose keys knowing only the document; choose again knowing what is
        stored, so a guid the publisher gives to a new item stays with the item it named
        (its post is not edited into the newcomer, which is posted under a key of its own)."""
        entries = [i.key_entry() for i in items]
        stored = await self.storage.stored_key_facts(
            feed.id, [e.key for e in entries], [e.content_hash for e in entries]
        )
        keys = dedupe_keys(entries, stored)
        return [
            item if key == item.key else replace(item, key=key)
            for item, key in zip(items, keys, strict=True)
            if key is not None
        ]

    async def _store(
        self,
        feed: FeedSettings,
        state: FeedState,
        items: Sequence[ParsedItem],
        now: datetime,
        lease: str | None,
    ) -> StoreResult:
        inputs = []
        for done, parsed in enumerate(items, 1):
            kind, enriched = enrich(
                parsed,
                feed.kind,
                self.kind_rules,
                default_tz=self.settings.network.timezone,
                now=now,
            )
            inputs.append(to_input(enriched, kind))
            if done % 16 == 0:
                # Classifying and finding webinar times is regex work (up to half a
                # millisecond an item): a feed of hundreds lets the loop run between.
                # (A thread would not help: `re` holds the GIL, and threads add switches.)
                await asyncio.sleep(0)
        # Initial sync: what a feed holds when it is added is history, not news; only the
        # newest N (configurable) are posted. Items older than max_age are never posted.
        allowed: set[str] | None = None
        if not state.initial_sync_done:
            n = feed.initial_posts
            n = self.settings.polling.initial_posts if n is None else n
            newest = sorted(
                inputs,
                key=lambda i: i.published or datetime.min.replace(tzinfo=UTC),
                reverse=True,
            )
            allowed = {i.key for i in newest[:n]}
        oldest = now - self.settings.polling.max_age

        def post(item: ItemInput) -> bool:
            if allowed is not None and item.key not in allowed:
                return False
            return item.published is None or item.published >= oldest

        # Which items this poll sees for the first time: the item hooks get only those.
        unseen = (
            await self.storage.unknown_item_keys(feed.id, [i.key for i in inputs])
            if self.item_hooks
            else set()
        )
        stored = await self.storage.store_items(
            feed.id,
            inputs,
            targets=lambda item: self.router.targets(feed.id, item),
            post=post,
            edit_window=self.settings.delivery.edit_window,
            now=now,
            worth_an_edit=worth_an_edit,
            lease=lease,
        )
        # An upcoming webinar the publisher took down becomes cancelled on the calendars.
        await self.storage.note_feed_listing(feed.id, [i.key for i in inputs], now)
        if stored.new and self.item_hooks:
            postable = [i for i in inputs if i.key in unseen and post(i)]
            for hook in self.item_hooks:
                try:
                    await hook(feed.id, postable, now)
                except Exception:  # the items are stored; a hook must not fail the poll
                    log.exception("item hook failed for feed %s", feed.id)
        return stored

    @staticmethod
    def _recovered(state: FeedState) -> dict[str, object]:
        return {
            "status": "ok",
            "consecutive_errors": 0,
            "last_error": None,
            "outage_notified": False,
        }

    async def _announce_recovery(self, feed: FeedSettings, state: FeedState) -> None:
        if state.outage_notified and self.notify_ops is not None:
            await self._ops(f"Feed {feed.id} is working again ({state.url}).")

    async def _failed(
        self,
        feed: FeedSettings,
        state: FeedState,
        error: FeedError,
        now: datetime,
        lease: str | None = None,
    ) -> PollOutcome:
        errors = state.consecutive_errors + 1
        message = str(error)
        if isinstance(error, FetchError) and error.gone:
            status = "gone"
            next_at: datetime | None = None
            message = (
                f"the publisher removed this feed (410 Gone); it is no longer polled: {message}"
            )
        else:
            status = "not-a-feed" if isinstance(error, NotAFeedError) else "failing"
            delay = backoff_delay(errors, base_s=60, cap_s=6 * 3600, rnd=self.rnd())
            if isinstance(error, FetchError) and error.retry_after:
                delay = max(delay, min(error.retry_after, HINT_CAP_S))
            next_at = now + timedelta(seconds=delay)
        log.warning("feed %s (%s): %s", feed.id, state.url, message)
        notify = not state.outage_notified and self.notify_ops is not None
        await self.storage.update_feed(
            feed.id,
            lease=lease,
            status=status,
            last_check=now,
            next_check=next_at,
            consecutive_errors=errors,
            last_error=message[:500],
            outage_notified=state.outage_notified or notify,
        )
        if notify:
            await self._ops(f"Feed {feed.id} is failing: {message}")
        return PollOutcome(feed.id, status, error=message)

    async def _ops(self, text: str) -> None:
        if self.notify_ops is None:
            return
        try:
            await self.notify_ops(text)
        except Exception as e:
            log.warning("could not notify the ops room: %s", e)
