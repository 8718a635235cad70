"""Matrix room lanes: one paced sender per room, account-wide rate-limit pauses, and rooms
that refuse us or were upgraded.

One sender per room (order kept, paced), rooms in parallel up to ``room_parallelism``.
A rate limit pauses the whole account and the same message is tried again; a server error
ends the room's turn (the message backs off with jitter, the rest waits as long without
counting a try). A room that will not take anything from us fails the rest of its rows; an
upgraded room (``m.room.tombstone``) is followed and the same message sent there. An
instance that does not lead cannot encrypt: an encrypted room's rows go back to the leader
at once, untried.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import nio

from network.delivery.messages import MessagePlanning, Unit
from network.delivery.state import Round
from network.errors import (
    MatrixAuthError,
    MatrixEncryptionUnavailable,
    MatrixError,
    MatrixPermanent,
    MatrixRateLimited,
)
from network.storage import OutboxRow
from network.storage.outbox import Sent

# The engine's logger, as before this module was split out of network/delivery/outbox.py.
log = logging.getLogger("network.delivery.outbox")

# Answers that mean "this room will not take anything from us": end the room's turn.
_ROOM_LEVEL = frozenset({"M_FORBIDDEN", "M_NOT_FOUND", "M_UNKNOWN"})


@dataclass(frozen=True)
class _Step:
    """What a room's turn does after one message."""

    stop_after: float | None = None  # end the turn; the rest waits this long
    moved_to: str | None = None  # the room was upgraded: send the same message there
    fail_rest: str | None = None  # the room refuses us: the rest fails with this error


_NEXT = _Step()


class RoomLanes(MessagePlanning):
    """Serves one Matrix room's rows per turn; follows room upgrades."""

    async def _serve_room(
        self, ref: str, rows: list[OutboxRow], ctx: Round, deadline: float
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
            except MatrixAuthError:
                raise
            except MatrixPermanent:
                state = None  # no longer allowed to read it: nothing to follow
            replacement = (state or {}).get("replacement_room")
            if not isinstance(replacement, str) or not replacement:
                break
            try:
                await self.matrix.join(replacement)
            except MatrixAuthError:
                raise
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

    async def _send_unit(
        self, ref: str, room_id: str, unit: Unit, ctx: Round, deadline: float
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
            except MatrixEncryptionUnavailable as e:
                if not self.matrix.may_encrypt:
                    # Not the leader (no crypto store here): the room, now known encrypted,
                    # is left to the leader at once, and this was no failed try.
                    log.info("leaving %s to the leader: %s", ref, e)
                    await self._release(unit.claimed, 0.0)
                    return _Step(stop_after=0.0)
                delay = self._backoff(unit.head)
                await self._retry(unit, str(e), delay)
                return _Step(stop_after=delay)
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

    async def _refused(self, ref: str, room_id: str, unit: Unit, e: MatrixPermanent) -> _Step:
        """A permanent answer: follow a room upgrade, or give up on the message (or room)."""
        if e.errcode in _ROOM_LEVEL:
            try:
                moved = await self.follow_upgrade(room_id)
            except MatrixAuthError as auth:
                assert self.matrix is not None
                self.matrix.mark_logged_out(str(auth))
                await self._retry(unit, str(auth), self.policy.login_wait)
                return _Step(stop_after=self.policy.login_wait)
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

    # -- pacing: a rate limit pauses the whole account -------------------------------

    def _pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + seconds)

    async def _wait_for_rate_limit(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._paused_until - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _retry(self, unit: Unit, error: str, delay: float) -> None:
        """The message was tried and failed: all its rows wait ``delay``, together."""
        await self.storage.mark_retry_many(
            [r.id for r in unit.members], error=error, next_attempt=self._at(delay)
        )
