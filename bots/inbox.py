"""The assistance bot's durable inbox: which synced events it keeps, and the workers that
handle them in order.

Restart safety. The sync hook (`Inbox.on_event`) only stores each relevant event in the
``bot_inbox`` table and queues it; ``next_batch`` is saved after the hook returns, so an
event is either in the inbox or will be synced again. Workers (one per room, so a room's
messages keep their order, several rooms at once) hand it to the bot and then, in one
transaction, delete it from the inbox and record it in ``processed_events``. A crash in
between replays the event; every send uses a transaction id derived from the event id, so
the homeserver hands back the first event instead of posting a second answer. Ignored: the
bot's own events, notices and edits. Events older than the bot's first join of the room
(history shown on join) are left out by the handler, which knows when that was.

Order when the homeserver is unavailable: the worker tries the same event again after a
short backoff (a few times) before the room's later events; if it stays away, all of the
room's events are left in the table, in order, for the periodic check.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import nio

from bots.messages import is_edit
from network.errors import MatrixPermanent, MatrixRateLimited, MatrixUnavailable

if TYPE_CHECKING:
    from bots.rooms import Rooms
    from network.storage import Storage

log = logging.getLogger(__name__)

MAX_PENDING = 500  # events queued in memory before the sync loop is made to wait
ROOM_PARALLELISM = 32  # rooms handled at once (mostly waiting on the homeserver)
MAX_ATTEMPTS = 5  # tries of an event that fails for a reason other than the homeserver
TRANSIENT_TRIES = 5  # tries in a row of an event while the homeserver is unavailable
RETRY_DELAY = 0.5  # seconds before the first of those retries; doubled for each next one
MAX_RETRY_DELAY = 60.0  # even if the homeserver asks to wait longer
_WANTED = frozenset({"m.room.message", "m.reaction", "m.room.encrypted", "m.room.encryption"})

# Handles one event: the room, the event's JSON and the time it is handled.
Handler = Callable[[str, dict[str, Any], datetime], Awaitable[None]]


class Inbox:
    """Events stored before they are handled; ``ready`` lets the workers start."""

    def __init__(self, storage: Storage, rooms: Rooms, handle: Handler) -> None:
        self.storage = storage
        self.rooms = rooms
        self._handle = handle
        self.ready = asyncio.Event()
        self._queues: dict[str, deque[tuple[str, dict[str, Any]]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._queued: set[str] = set()
        self._slots = asyncio.Semaphore(ROOM_PARALLELISM)
        self._pending = asyncio.Semaphore(MAX_PENDING)

    async def on_event(self, room_id: str, event: nio.Event) -> None:
        ev = getattr(event, "source", None)
        if not isinstance(ev, dict):
            return
        etype, sender, event_id = ev.get("type"), ev.get("sender"), ev.get("event_id")
        if not isinstance(event_id, str) or not isinstance(sender, str):
            return
        raw = ev.get("content")
        content: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if etype == "m.room.member":
            # Membership changes who is in the room: a "direct chat" may stop being one.
            self.rooms.forget(room_id)
            if ev.get("state_key") != self.rooms.user_id or content.get("membership") != "join":
                return
        elif sender == self.rooms.user_id or etype not in _WANTED:
            return
        elif etype == "m.room.message" and (
            content.get("msgtype") == "m.notice" or is_edit(content)
        ):
            return
        if event_id in self._queued or await self.storage.event_processed(event_id):
            return
        await self._pending.acquire()
        try:
            await self.storage.inbox_add(event_id, room_id, ev)
        except BaseException:
            self._pending.release()
            raise
        self._enqueue(room_id, event_id, ev)

    async def resume(self) -> None:
        """Queue what the inbox table holds: left by a crash or a failed attempt."""
        for item in await self.storage.inbox_pending(limit=MAX_PENDING):
            if item.event_id in self._queued:
                continue
            await self._pending.acquire()
            self._enqueue(item.room_id, item.event_id, item.event)

    async def close(self) -> None:
        """Stop the workers; what they had not finished stays in the inbox table."""
        for task in list(self._workers.values()):
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)

    def _enqueue(self, room_id: str, event_id: str, ev: dict[str, Any]) -> None:
        """Queue an event whose ``_pending`` slot the caller holds."""
        if event_id in self._queued:
            self._pending.release()
            return
        self._queued.add(event_id)
        self._queues.setdefault(room_id, deque()).append((event_id, ev))
        if room_id not in self._workers:
            self._workers[room_id] = asyncio.create_task(
                self._drain(room_id), name=f"bot {room_id}"
            )

    async def _drain(self, room_id: str) -> None:
        queue = self._queues[room_id]
        try:
            await self.ready.wait()
            while queue:
                event_id, ev = queue[0]
                if not await self._try(room_id, event_id, ev):
                    # The homeserver stays away. Handling a later event first would answer
                    # out of order: all of the room's events wait in the inbox table, and
                    # the periodic check queues them again in order.
                    log.warning("homeserver away: %d event(s) in %s wait", len(queue), room_id)
                    for left, _ in queue:
                        self._queued.discard(left)
                        self._pending.release()
                    queue.clear()
                    return
                queue.popleft()
                self._queued.discard(event_id)
                self._pending.release()
        finally:
            self._workers.pop(room_id, None)
            if not queue:
                self._queues.pop(room_id, None)

    async def _try(self, room_id: str, event_id: str, ev: dict[str, Any]) -> bool:
        """Process one event, again after a short backoff while the homeserver is unavailable
        (at most `TRANSIENT_TRIES` times); False when it still was at the last try."""
        delay = RETRY_DELAY
        for attempt in range(TRANSIENT_TRIES):
            if attempt:
                # Outside the slot: a room waiting for the homeserver holds up no other room.
                await asyncio.sleep(delay)
                delay *= 2
            async with self._slots:
                try:
                    retry_after = await self._process(room_id, event_id, ev)
                except Exception:
                    # Even the database failed: the event stays in the inbox table and
                    # the periodic check queues it again.
                    log.exception("event %s in %s left for later", event_id, room_id)
                    return True
            if retry_after is None:
                return True
            delay = min(max(delay, retry_after), MAX_RETRY_DELAY)
        return False

    async def _process(self, room_id: str, event_id: str, ev: dict[str, Any]) -> float | None:
        """Handle one event; when the homeserver had trouble, the seconds it asked to wait
        before trying again (0 if it did not say), else None."""
        try:
            await self._handle(room_id, ev, datetime.now(UTC))
        except asyncio.CancelledError:
            raise
        except MatrixPermanent as e:
            log.warning("giving up on event %s in %s: %s", event_id, room_id, e)
        except (MatrixUnavailable, MatrixRateLimited) as e:
            # The homeserver's trouble, not the event's: tried again, before the next event.
            log.warning("event %s in %s will be retried: %s", event_id, room_id, e)
            return e.retry_after if isinstance(e, MatrixRateLimited) else 0.0
        except Exception as e:
            attempts = await self.storage.inbox_failed(event_id, f"{type(e).__name__}: {e}")
            log.exception(
                "handling event %s in %s failed (attempt %d)", event_id, room_id, attempts
            )
            if attempts < MAX_ATTEMPTS:
                return None
        await self.storage.inbox_done(event_id, room_id)
        return None
