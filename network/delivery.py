"""Delivery workers: take due outbox rows and send them to Matrix rooms and apprise URLs.

At-least-once, no duplicates: a row is marked sent only with the homeserver's event id (or
the channel's success) and every retry reuses the row's transaction id, so a resend after
a crash returns the event already posted (Synapse keeps them per device for a day; the
device is kept in the database). Matrix results are written in small batches, channel
results one by one (an apprise target does not deduplicate).

One sender per room (order kept, paced), rooms in parallel up to ``room_parallelism``.
A rate limit pauses the whole account and the same message is tried again; a server error
ends the room's turn (the message backs off with jitter, the rest waits as long without
counting a try). A burst (more than ``group_threshold`` posts of one poll for one room)
becomes grouped messages computed from rows that never change, so a retried group is the
same message with the same transaction id. Edits wait for their post, and are skipped
when the post already shows the item's latest version.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import nio

from network.channels import ChannelSender, redact, serve_url
from network.errors import (
    MatrixAuthError,
    MatrixError,
    MatrixPermanent,
    MatrixRateLimited,
)
from network.matrix import MatrixGateway
from network.render import edit_content, grouped_content, matrix_content
from network.routing import Router
from network.storage import Item, OutboxRow, Storage
from network.storage.outbox import Sent

log = logging.getLogger(__name__)

# Answers that mean "this room will not take anything from us": end the room's turn.
_ROOM_LEVEL = frozenset({"M_FORBIDDEN", "M_NOT_FOUND", "M_UNKNOWN"})


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
class _Unit:
    """One message: a post, an edit, or a grouped message covering several rows."""

    action: str  # post | edit | group
    head: OutboxRow  # whose transaction id the message uses
    claimed: list[OutboxRow]  # rows of this round it covers
    members: list[OutboxRow]  # every pending row it delivers


@dataclass(frozen=True)
class _Prepared:
    content: dict[str, Any]
    shown_version: int | None = None
    post_row_id: int | None = None


@dataclass(frozen=True)
class _Step:
    """What a room's turn does after one message."""

    stop_after: float | None = None  # end the turn; the rest waits this long
    moved_to: str | None = None  # the room was upgraded: send the same message there
    fail_rest: str | None = None  # the room refuses us: the rest fails with this error


_NEXT = _Step()


@dataclass
class _Round:
    items: dict[int, Item]
    feed_links: dict[str, str | None]
    results: list[Sent] = field(default_factory=list)
    rendered: dict[tuple[int, int, str | None], dict[str, Any]] = field(default_factory=dict)


class Delivery:
    """Runs the outbox. ``wake()`` after queueing rows to send them without waiting."""

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
    ) -> None:
        self.storage = storage
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

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        lease = timedelta(seconds=self.policy.lease)
        if released := await self.storage.release_leases(self.clock(), lease=lease):
            log.info("%d deliveries claimed before the last stop are due again", released)
        while not stop.is_set():
            try:
                worked = await self.run_once()
            except Exception:
                log.exception("delivery round failed; retrying")
                worked = False
            if worked:
                continue
            due = await self.storage.next_due()
            timeout = 5.0
            if due is not None:
                timeout = max(0.05, min(timeout, (due - self.clock()).total_seconds()))
            self._wake.clear()
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
        )
        if not rows:
            return False
        lanes: dict[tuple[str, str], list[OutboxRow]] = defaultdict(list)
        for row in rows:
            lanes[(row.target_type, row.target)].append(row)
        loop = asyncio.get_running_loop()
        ctx = _Round(
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

    # -- Matrix ------------------------------------------------------------------

    async def _serve_room(
        self, ref: str, rows: list[OutboxRow], ctx: _Round, deadline: float
    ) -> None:
        if self.matrix is None or not self.matrix.logged_in:
            # Not connected yet (the sync loop keeps trying): wait without a failed attempt.
            await self._release(rows, self.policy.login_wait)
            return
        try:
            room_id = await self._room_for(ref)
        except MatrixError as e:
            await self._room_unreachable(ref, rows, e)
            return
        units = await self._plan(ref, rows)
        loop = asyncio.get_running_loop()
        i = 0
        while i < len(units):
            if loop.time() > deadline:
                await self._release([r for u in units[i:] for r in u.claimed], 0.0)
                return
            step = await self._send_unit(ref, room_id, units[i], ctx, deadline)
            if step.moved_to is not None:
                room_id = step.moved_to
                continue
            if step.fail_rest is not None:
                rest = [r for u in units[i + 1 :] for r in u.members]
                self.failed["matrix"] += len(rest)
                await self.storage.mark_failed_many([r.id for r in rest], error=step.fail_rest)
                return
            if step.stop_after is not None:
                await self._release([r for u in units[i + 1 :] for r in u.claimed], step.stop_after)
                return
            i += 1

    async def _room_unreachable(self, ref: str, rows: list[OutboxRow], e: MatrixError) -> None:
        if isinstance(e, MatrixRateLimited):
            self._pause(e.retry_after)
            await self._release(rows, e.retry_after)
        elif isinstance(e, MatrixAuthError):
            assert self.matrix is not None
            self.matrix.mark_logged_out(str(e))
            await self._release(rows, self.policy.login_wait)
        elif isinstance(e, MatrixPermanent):
            log.error("giving up on %d message(s) for %s: %s", len(rows), ref, e)
            self.failed["matrix"] += len(rows)
            await self.storage.mark_failed_many(
                [r.id for r in rows], error=f"cannot post to {ref}: {e}"
            )
        else:
            delay = self._backoff(rows[0])
            await self.storage.mark_retry_many(
                [r.id for r in rows], error=str(e), next_attempt=self._at(delay)
            )

    async def _room_for(self, ref: str) -> str:
        assert self.matrix is not None
        room_id = await self.matrix.resolve_room(ref)
        if room_id not in self._checked_rooms:
            # Once per room and process: a room upgraded while libhub was away is followed
            # before anything is posted into the dead one.
            room_id = await self.follow_upgrade(room_id) or room_id
            self._checked_rooms.add(room_id)
        return room_id

    async def follow_upgrade(self, room_id: str) -> str | None:
        """Follow ``m.room.tombstone`` from ``room_id``: join the replacement and move every
        configured reference there. The new room id, or None when the room was not upgraded."""
        assert self.matrix is not None
        current = room_id
        for _ in range(5):  # an upgraded room can be upgraded again
            try:
                state = await self.matrix.room_state(current, "m.room.tombstone")
            except MatrixPermanent:
                state = None  # no longer allowed to read it: nothing to follow
            replacement = (state or {}).get("replacement_room")
            if not isinstance(replacement, str) or not replacement:
                break
            try:
                await self.matrix.join(replacement)
            except MatrixPermanent as e:
                raise MatrixPermanent(
                    f"room {current} was upgraded to {replacement}, but the bot cannot join it "
                    f"({e}); invite the bot to the new room",
                    errcode=e.errcode,
                ) from e
            await self.storage.replace_room(current, replacement)
            log.info("room %s was upgraded; now posting to %s", current, replacement)
            current = replacement
        self._checked_rooms.add(current)
        return current if current != room_id else None

    async def on_room_event(self, room_id: str, event: nio.Event) -> None:
        """Sync hook: a tombstone in a room we post to moves us to the new room at once."""
        if getattr(event, "source", {}).get("type") != "m.room.tombstone":
            return
        try:
            await self.follow_upgrade(room_id)
        except MatrixError as e:
            log.warning("could not follow the upgrade of %s: %s", room_id, e)

    async def _plan(self, ref: str, rows: list[OutboxRow]) -> list[_Unit]:
        """The room's rows as messages, in row order; bursts become grouped messages."""
        chunk_of: dict[int, list[OutboxRow]] = {}
        sizes = await self.storage.poll_sizes(
            "matrix", ref, sorted({r.created_at for r in rows if r.action == "post"})
        )
        for created, count in sorted(sizes.items()):
            if count <= self.policy.group_threshold:
                continue
            poll = await self.storage.poll_rows("matrix", ref, created)
            n = math.ceil(len(poll) / self.policy.group_max)
            size = math.ceil(len(poll) / n)  # even chunks: no lonely "1 new item" message
            for k in range(0, len(poll), size):
                chunk = poll[k : k + size]
                for r in chunk:
                    chunk_of[r.id] = chunk
        units: list[_Unit] = []
        groups: dict[int, _Unit] = {}
        for row in rows:
            burst = chunk_of.get(row.id) if row.action == "post" else None
            if burst is None:
                units.append(_Unit(row.action, row, [row], [row]))
            elif burst[0].id in groups:
                groups[burst[0].id].claimed.append(row)
            else:
                members = [r for r in burst if r.status == "pending"]
                unit = _Unit("group", members[0], [row], members)
                groups[burst[0].id] = unit
                units.append(unit)
        return units

    async def _send_unit(
        self, ref: str, room_id: str, unit: _Unit, ctx: _Round, deadline: float
    ) -> _Step:
        assert self.matrix is not None
        loop = asyncio.get_running_loop()
        paused = self._paused_until - loop.time()
        if paused > 0 and loop.time() + paused > deadline:
            # A long account-wide pause: end the turn instead of holding the whole round.
            await self._release(unit.claimed, paused)
            return _Step(stop_after=paused)
        prepared = await self._prepare(ref, unit, ctx)
        if prepared is None:
            return _NEXT
        while True:
            await self._wait_for_rate_limit()
            try:
                sent = await self.matrix.send(room_id, prepared.content, txn_id=unit.head.txn_id)
                break
            except MatrixRateLimited as e:
                self.rate_limit_waits += 1
                self._pause(e.retry_after)
                if loop.time() + e.retry_after > deadline:
                    await self._retry(unit, str(e), e.retry_after)
                    return _Step(stop_after=e.retry_after)
            except MatrixAuthError as e:
                self.matrix.mark_logged_out(str(e))
                await self._retry(unit, str(e), self.policy.login_wait)
                return _Step(stop_after=self.policy.login_wait)
            except MatrixPermanent as e:
                return await self._refused(ref, room_id, unit, e)
            except MatrixError as e:
                delay = self._backoff(unit.head)
                await self._retry(unit, str(e), delay)
                return _Step(stop_after=delay)
        folded = tuple(r.id for r in unit.members if r.id != unit.head.id)
        ctx.results.append(
            Sent(unit.head.id, sent.event_id, prepared.shown_version, folded, prepared.post_row_id)
        )
        self.sent["matrix"] += len(unit.members)
        if len(ctx.results) >= self.policy.flush_every:
            await self._flush(ctx)
        if self.policy.room_pace > 0:
            await asyncio.sleep(self.policy.room_pace)
        return _NEXT

    async def _refused(self, ref: str, room_id: str, unit: _Unit, e: MatrixPermanent) -> _Step:
        """A permanent answer: follow a room upgrade, or give up on the message (or room)."""
        if e.errcode in _ROOM_LEVEL:
            try:
                moved = await self.follow_upgrade(room_id)
            except MatrixPermanent as e2:
                e, moved = e2, None
            except MatrixError:
                moved = None
            if moved is not None:
                return _Step(moved_to=moved)
        ids = [r.id for r in unit.members]
        error = f"cannot post to {ref}: {e}"
        self.failed["matrix"] += len(ids)
        await self.storage.mark_failed_many(ids, error=error)
        log.error("giving up on messages for %s: %s", ref, e)
        return _Step(fail_rest=error) if e.errcode in _ROOM_LEVEL else _NEXT

    async def _prepare(self, ref: str, unit: _Unit, ctx: _Round) -> _Prepared | None:
        """The message content, or None when the unit needs no message (recorded here)."""
        head = unit.head
        if unit.action == "group":
            missing = [r.item_id for r in unit.members if r.item_id not in ctx.items]
            ctx.items.update(await self.storage.items_by_id(missing))
            burst = [ctx.items[r.item_id] for r in unit.members if r.item_id in ctx.items]
            titles = {i.feed_id: self.feed_titles(i.feed_id) for i in burst}
            return _Prepared(grouped_content(burst, feed_titles=titles))
        item = ctx.items.get(head.item_id)
        if item is None:
            await self.storage.mark_failed(head.id, error="the item no longer exists")
            return None
        template = None
        if self.router is not None:
            template = self.router.matrix_template(
                item.feed_id, item, ref, cohort=self.cohort_of(item)
            )
        # An item usually goes to several rooms: render it once per layout and round.
        key = (item.id, item.version, template.source if template else None)
        content = ctx.rendered.get(key)
        if content is None:
            content = ctx.rendered[key] = matrix_content(
                item,
                feed_title=self.feed_titles(item.feed_id),
                feed_link=ctx.feed_links.get(item.feed_id),
                template=template,
                zone=self.zone,
            )
        # Only a first attempt is known to show what was rendered now: an earlier attempt
        # may have reached the server, which then returns that older event.
        shown = item.version if head.attempts == 0 else None
        if unit.action == "post":
            return _Prepared(content, shown_version=shown)
        await self._flush(ctx)  # the post may have gone out earlier in this turn
        post = await self.storage.original_post(item.id, "matrix", ref)
        if post is not None and post.status == "pending":
            wait = max(self.policy.base_backoff, (post.next_attempt - self.clock()).total_seconds())
            # Not an attempt: the edit simply comes after its post.
            await self._release([head], wait + 1)
            return None
        reason = None
        if post is None or post.status != "sent" or post.event_id is None:
            reason = "the original post was not sent on its own"
        elif post.grouped:
            reason = "the original was part of a grouped message"
        elif post.shown_version >= item.version:
            reason = f"the post already shows version {item.version}"
        if reason is not None:
            await self.storage.mark_skipped([head.id], reason=reason)
            return None
        assert post is not None and post.event_id is not None
        return _Prepared(
            edit_content(content, post.event_id), shown_version=shown, post_row_id=post.row_id
        )

    async def _flush(self, ctx: _Round) -> None:
        done, ctx.results = ctx.results, []
        await self.storage.record_sent(done, now=self.clock())

    def _pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + seconds)

    async def _wait_for_rate_limit(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._paused_until - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)

    # -- bookkeeping -----------------------------------------------------------------

    def _at(self, seconds: float) -> datetime:
        return self.clock() + timedelta(seconds=seconds)

    def _backoff(self, row: OutboxRow) -> float:
        # row.attempts is the count before this round's claim added one.
        p = self.policy
        return backoff(row.attempts + 1, base=p.base_backoff, cap=p.max_backoff, rnd=self.rnd())

    async def _retry(self, unit: _Unit, error: str, delay: float) -> None:
        """The message was tried and failed: all its rows wait ``delay``, together."""
        await self.storage.mark_retry_many(
            [r.id for r in unit.members], error=error, next_attempt=self._at(delay)
        )

    async def _release(self, rows: Sequence[OutboxRow], delay: float) -> None:
        """Rows claimed but not tried: back in the queue without counting an attempt."""
        ids = [r.id for r in rows]
        await self.storage.release(ids, next_attempt=self._at(delay), untried=ids)

    # -- apprise -------------------------------------------------------------------

    async def _serve_channel(
        self, url: str, rows: list[OutboxRow], ctx: _Round, deadline: float
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
