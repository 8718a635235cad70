"""The delivery outbox: claiming due rows, recording results, retrying failures.

Row life: ``pending`` -> ``sent`` (with the event id for Matrix) | ``skipped`` (delivered
inside another row's grouped message, or an edit made pointless) | ``failed`` (will not
succeed without a person: forbidden, unknown room, invalid channel URL). For a sent
Matrix post, ``item_version`` records the item version the room shows, so an edit is
sent only when the item has moved on since.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from network.storage.base import Database, now_iso
from network.storage.dialect import POSTGRESQL
from network.storage.records import OutboxRow


@dataclass(frozen=True)
class Sent:
    """One delivered Matrix message: its row, and the rows it delivered too (a group)."""

    row_id: int
    event_id: str | None
    # The item version the message shows; None keeps the row's own (unknown content).
    shown_version: int | None = None
    folded: tuple[int, ...] = ()
    # Set for an edit: the post row whose shown version becomes ``shown_version``.
    post_row_id: int | None = None


@dataclass(frozen=True)
class Posted:
    """An item's original post in one room, as an edit of it needs to know it."""

    row_id: int
    status: str
    event_id: str | None
    shown_version: int
    grouped: bool
    next_attempt: datetime


def _marks(ids: Sequence[object]) -> str:
    return ",".join("?" * len(ids))


CLAIM_LOCK = 0x4C494249  # advisory lock key: PostgreSQL instances claim one at a time

# PostgreSQL: a room whose rows another claim holds is left to that claim, so each room's
# messages go out from one instance at a time, in order.
_LANE_FREE = (
    " AND NOT EXISTS (SELECT 1 FROM outbox held WHERE held.target_type = outbox.target_type "
    "AND held.target = outbox.target AND held.status = 'pending' "
    "AND held.lease_token IS NOT NULL AND held.next_attempt > ?)"
)

# Both backends: a row waits while an earlier row of its room waits (a retry backoff, or a
# claim still running), so a room's messages never overtake each other.
_IN_ORDER = (
    " AND NOT EXISTS (SELECT 1 FROM outbox earlier WHERE earlier.target_type = outbox.target_type "
    "AND earlier.target = outbox.target AND earlier.status = 'pending' "
    "AND earlier.id < outbox.id AND earlier.next_attempt > ?)"
)

# An instance that cannot encrypt leaves the rows of rooms known encrypted to the leader.
_PLAIN_ONLY = (
    " AND NOT (outbox.target_type = 'matrix' AND EXISTS (SELECT 1 FROM encrypted_rooms e "
    "WHERE e.room_id = outbox.target "
    "OR e.room_id IN (SELECT r.room_id FROM rooms r WHERE r.ref = outbox.target)))"
)


class OutboxStore(Database):
    def _forget_leases(self, row_ids: Sequence[int]) -> None:
        for row_id in row_ids:
            self._lease_tokens.pop(row_id, None)

    async def claim_due(
        self,
        now: datetime,
        *,
        limit: int = 100,
        lease: timedelta = timedelta(minutes=2),
        per_target: int | None = None,
        max_targets: int | None = None,
        may_encrypt: bool = True,
    ) -> list[OutboxRow]:
        """Take up to ``limit`` due rows, leasing them so no other worker takes them too.

        ``per_target`` caps the rows of one room or URL, so a long backlog in one room
        does not starve the others; ``max_targets`` (with ``per_target``) takes whole rooms,
        the ones waiting longest first, up to that many, and leaves the rest to other
        instances (PostgreSQL), so they share the work instead of one claim taking it all.
        A row is not due while an earlier row of its room is waiting (each room in order).
        Without ``may_encrypt`` (an instance that does not lead has no crypto store) rows
        for rooms known encrypted (`remember_encrypted_room`) are left to the leader.
        A worker that dies keeps its lease until it runs out
        (or until the next start calls `release_leases`); the row is then due again and
        is re-sent with the same transaction id, which the homeserver deduplicates.
        """
        stamp = now_iso(now)
        shared = self.dialect == POSTGRESQL
        lanes = _IN_ORDER + (_LANE_FREE if shared else "") + ("" if may_encrypt else _PLAIN_ONLY)
        lane_params: tuple[object, ...] = (stamp, stamp) if shared else (stamp,)
        if per_target is None:
            sql = (
                f"SELECT * FROM outbox WHERE status = 'pending' AND next_attempt <= ?{lanes} "
                "ORDER BY id LIMIT ?"
            )
            params: tuple[object, ...] = (stamp, *lane_params, limit)
        else:
            sql = (
                "SELECT * FROM (SELECT *, ROW_NUMBER() OVER "
                "(PARTITION BY target_type, target ORDER BY id) AS lane_rank "
                f"FROM outbox WHERE status = 'pending' AND next_attempt <= ?{lanes}) AS lanes "
                "WHERE lane_rank <= ? ORDER BY id LIMIT ?"
            )
            params = (stamp, *lane_params, per_target, limit)
            if max_targets is not None:
                # Lanes numbered by their oldest due row: a claim takes the first ones whole.
                sql = (
                    "SELECT * FROM (SELECT *, DENSE_RANK() OVER "
                    "(ORDER BY lane_first, target_type, target) AS lane_no FROM "
                    "(SELECT *, ROW_NUMBER() OVER (PARTITION BY target_type, target ORDER BY id) "
                    "AS lane_rank, MIN(id) OVER (PARTITION BY target_type, target) AS lane_first "
                    f"FROM outbox WHERE status = 'pending' AND next_attempt <= ?{lanes}) AS due) "
                    "AS lanes WHERE lane_rank <= ? AND lane_no <= ? ORDER BY id LIMIT ?"
                )
                params = (stamp, *lane_params, per_target, max_targets, limit)
        token = self.new_lease_token()
        async with self.transaction() as conn:
            if shared:
                # Claims take turns (the lane check above needs the last claim's leases),
                # and rows being written by anyone else are skipped, not waited for.
                await conn.execute("SELECT pg_advisory_xact_lock(?)", (CLAIM_LOCK,))
            async with conn.execute(sql, params) as cur:
                rows = [OutboxRow.from_row(r) for r in await cur.fetchall()]
            if rows and shared:
                async with conn.execute(
                    f"SELECT id FROM outbox WHERE id IN ({_marks(rows)}) AND status = 'pending'"
                    f"{self.skip_locked()}",
                    tuple(r.id for r in rows),
                ) as cur:
                    locked = {int(r[0]) for r in await cur.fetchall()}
                rows = [r for r in rows if r.id in locked]
            if rows:
                await conn.execute(
                    f"UPDATE outbox SET next_attempt = ?, attempts = attempts + 1, "
                    f"lease_token = ? WHERE id IN ({_marks(rows)})",
                    (now_iso(now + lease), token, *(r.id for r in rows)),
                )
        for r in rows:
            self._lease_tokens[r.id] = token
        return rows

    async def remember_encrypted_room(self, room_id: str, now: datetime) -> None:
        """The room is end-to-end encrypted (for good): instances that cannot encrypt leave
        its rows to the leader."""
        await self.execute(
            "INSERT INTO encrypted_rooms (room_id, seen_at) VALUES (?, ?) "
            "ON CONFLICT (room_id) DO NOTHING",
            (room_id, now_iso(now)),
        )

    async def release_leases(self, now: datetime, *, lease: timedelta) -> int:
        """Make rows leased by a process that died due now (call once at start).

        On SQLite one delivery process runs per database, so every lease still running at
        start is a dead one. A row waiting out a shorter backoff is retried early, harmlessly.
        On PostgreSQL other instances may hold live leases: nothing is released, a dead
        instance's leases simply run out.
        """
        if self.dialect == POSTGRESQL:
            return 0
        return await self.execute(
            "UPDATE outbox SET next_attempt = ? WHERE status = 'pending' "
            "AND next_attempt > ? AND next_attempt <= ?",
            (now_iso(now), now_iso(now), now_iso(now + lease)),
        )

    async def release_claims_of_silent(self, now: datetime, *, silent_since: datetime) -> int:
        """Make due now the rows claimed by instances whose last heartbeat is older than
        ``silent_since`` (killed, or cut off): their rooms go on without waiting for the
        leases to run out. A silent instance that comes back is fenced off (its token is
        gone) and a message it sends again carries the same transaction id."""
        return await self.execute(
            "UPDATE outbox SET next_attempt = ?, lease_token = NULL WHERE status = 'pending' "
            "AND lease_token IS NOT NULL AND EXISTS (SELECT 1 FROM instances gone "
            "WHERE gone.heartbeat_at < ? "
            "AND substr(outbox.lease_token, 1, length(gone.id) + 1) = gone.id || '/')",
            (now_iso(now), now_iso(silent_since)),
        )

    async def release(
        self, row_ids: Sequence[int], *, next_attempt: datetime, untried: Sequence[int] = ()
    ) -> None:
        """Reschedule rows; ``untried`` ones were claimed but not sent: no attempt counted."""
        if not row_ids:
            return
        stamp = now_iso(next_attempt)
        self._forget_leases(row_ids)
        async with self.transaction() as conn:
            await conn.execute(
                f"UPDATE outbox SET next_attempt = ?, lease_token = NULL WHERE status = 'pending' "
                f"AND id IN ({_marks(row_ids)})",
                (stamp, *row_ids),
            )
            if untried:
                await conn.execute(
                    "UPDATE outbox SET attempts = "
                    "CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END WHERE status = 'pending' "
                    f"AND id IN ({_marks(untried)})",
                    tuple(untried),
                )

    async def mark_sent(
        self,
        row_id: int,
        *,
        event_id: str | None,
        now: datetime,
        shown_version: int | None = None,
    ) -> None:
        await self.record_sent([Sent(row_id, event_id, shown_version)], now=now)

    async def record_sent(self, done: Sequence[Sent], *, now: datetime) -> None:
        """Record several delivered messages in one transaction (one disk sync, not many)."""
        if not done:
            return
        stamp = now_iso(now)
        # Fencing: a row this process claimed is marked sent only while its lease is still
        # this claim's (another instance may have taken it over after the lease ran out).
        tokens = {d.row_id: self._lease_tokens.get(d.row_id) for d in done}
        self._forget_leases(list(tokens))
        async with self.transaction() as conn:
            await conn.executemany(
                "UPDATE outbox SET status = 'sent', event_id = ?, sent_at = ?, last_error = NULL, "
                "item_version = COALESCE(?, item_version), lease_token = NULL WHERE id = ? "
                "AND (CAST(? AS TEXT) IS NULL OR lease_token = ?)",
                [
                    (
                        d.event_id,
                        stamp,
                        None if d.post_row_id else d.shown_version,
                        d.row_id,
                        tokens[d.row_id],
                        tokens[d.row_id],
                    )
                    for d in done
                ],
            )
            folded = [
                (d.event_id, f"delivered in grouped message {d.event_id}", stamp, f)
                for d in done
                for f in d.folded
            ]
            if folded:
                await conn.executemany(
                    "UPDATE outbox SET status = 'skipped', event_id = ?, last_error = ?, "
                    "sent_at = ? WHERE id = ? AND status = 'pending'",
                    folded,
                )
            edits = [(d.shown_version, d.post_row_id) for d in done if d.post_row_id]
            edits = [(v, p) for v, p in edits if v is not None]
            if edits:
                await conn.executemany(
                    "UPDATE outbox SET item_version = CASE WHEN item_version > ? THEN item_version "
                    "ELSE ? END WHERE id = ?",
                    [(v, v, p) for v, p in edits],
                )

    async def mark_retry(self, row_id: int, *, error: str, next_attempt: datetime) -> None:
        await self.mark_retry_many([row_id], error=error, next_attempt=next_attempt)

    async def mark_retry_many(
        self, row_ids: Sequence[int], *, error: str, next_attempt: datetime
    ) -> None:
        if not row_ids:
            return
        self._forget_leases(row_ids)
        await self.execute(
            f"UPDATE outbox SET last_error = ?, next_attempt = ?, lease_token = NULL "
            f"WHERE status = 'pending' AND id IN ({_marks(row_ids)})",
            (error, now_iso(next_attempt), *row_ids),
        )

    async def mark_failed(self, row_id: int, *, error: str) -> None:
        await self.mark_failed_many([row_id], error=error)

    async def mark_failed_many(self, row_ids: Sequence[int], *, error: str) -> None:
        if not row_ids:
            return
        self._forget_leases(row_ids)
        await self.execute(
            f"UPDATE outbox SET status = 'failed', last_error = ? "
            f"WHERE status = 'pending' AND id IN ({_marks(row_ids)})",
            (error, *row_ids),
        )

    async def mark_skipped(
        self, row_ids: Sequence[int], *, reason: str, event_id: str | None = None
    ) -> None:
        """Rows that need no message of their own (folded into a group, pointless edits)."""
        if not row_ids:
            return
        await self.execute(
            f"UPDATE outbox SET status = 'skipped', last_error = ?, "
            f"event_id = COALESCE(?, event_id) WHERE id IN ({_marks(row_ids)})",
            (reason, event_id, *row_ids),
        )

    async def poll_sizes(
        self, target_type: str, target: str, polls: Sequence[str]
    ) -> dict[str, int]:
        """How many post rows each of these polls created for one target."""
        if not polls:
            return {}
        rows = await self.fetchall(
            f"SELECT poll, COUNT(*) AS n FROM outbox WHERE target_type = ? AND target = ? "
            f"AND action = 'post' AND poll IN ({_marks(polls)}) GROUP BY poll",
            (target_type, target, *polls),
        )
        return {str(r["poll"]): int(r["n"]) for r in rows}

    async def poll_rows(self, target_type: str, target: str, poll: str) -> list[OutboxRow]:
        """Every post row one poll created for one target, in id order, whatever its status.

        A burst is grouped by this set, which one store transaction wrote and nothing ever
        adds to: the grouping of a retry is the grouping of the first attempt, with the same
        transaction id.
        """
        rows = await self.fetchall(
            "SELECT * FROM outbox WHERE target_type = ? AND target = ? AND poll = ? "
            "AND action = 'post' ORDER BY id",
            (target_type, target, poll),
        )
        return [OutboxRow.from_row(r) for r in rows]

    async def original_post(self, item_id: int, target_type: str, target: str) -> Posted | None:
        """The post row of an item in one room (what an edit of it replaces)."""
        row = await self.fetchone(
            "SELECT id, status, event_id, item_version, next_attempt FROM outbox "
            "WHERE item_id = ? AND target_type = ? AND target = ? AND action = 'post'",
            (item_id, target_type, target),
        )
        if row is None:
            return None
        event_id = str(row["event_id"]) if row["event_id"] else None
        grouped = row["status"] == "skipped"
        if event_id and not grouped:
            # The head of a grouped message shares its event with the rows it folded in.
            other = await self.fetchone(
                "SELECT 1 FROM outbox WHERE status = 'skipped' AND event_id = ? LIMIT 1",
                (event_id,),
            )
            grouped = other is not None
        return Posted(
            row_id=int(row["id"]),
            status=str(row["status"]),
            event_id=event_id,
            shown_version=int(row["item_version"]),
            grouped=grouped,
            next_attempt=datetime.fromisoformat(row["next_attempt"]),
        )

    async def retry_failed(self, now: datetime, row_id: int | None = None) -> int:
        """Put failed rows back in the queue (a coordinator fixed the cause)."""
        if row_id is None:
            return await self.execute(
                "UPDATE outbox SET status = 'pending', next_attempt = ?, attempts = 0 "
                "WHERE status = 'failed'",
                (now_iso(now),),
            )
        return await self.execute(
            "UPDATE outbox SET status = 'pending', next_attempt = ?, attempts = 0 "
            "WHERE status = 'failed' AND id = ?",
            (now_iso(now), row_id),
        )

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self.fetchall("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
        counts = {"pending": 0, "sent": 0, "failed": 0, "skipped": 0}
        counts.update({str(r["status"]): int(r["n"]) for r in rows})
        return counts

    async def failed_rows(self, limit: int = 50) -> list[OutboxRow]:
        rows = await self.fetchall(
            "SELECT * FROM outbox WHERE status = 'failed' ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [OutboxRow.from_row(r) for r in rows]

    async def next_due(self) -> datetime | None:
        row = await self.fetchone("SELECT MIN(next_attempt) FROM outbox WHERE status = 'pending'")
        return datetime.fromisoformat(row[0]) if row and row[0] else None
