"""The community of practice's storage: managed rooms, invitations, welcomes, cohort
updates, weekly prompts, webinar reminders and used dashboard login tokens.

Records crossing the boundary are the frozen dataclasses below. Cohort updates are items
like any other (stored with `FeedStore.store_items` under the feed id ``cohort:<id>``);
this module only keeps who posted them and whether they were withdrawn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from network.storage.base import Database, from_iso, now_iso
from network.storage.records import Item, OutboxRow


def _dt(value: str | None) -> datetime:
    parsed = from_iso(value)
    assert parsed is not None
    return parsed


@dataclass(frozen=True)
class CommunityRoom:
    key: str  # "space", "room:#alias:server", "cohort:<id>"
    ref: str
    room_id: str
    resources_hash: str | None
    resources_event_id: str | None

    @classmethod
    def from_row(cls, row: Any) -> CommunityRoom:
        return cls(
            key=row["key"],
            ref=row["ref"],
            room_id=row["room_id"],
            resources_hash=row["resources_hash"],
            resources_event_id=row["resources_event_id"],
        )


@dataclass(frozen=True)
class CohortUpdate:
    event_id: str
    item_id: int
    cohort_id: str
    room_id: str
    sender: str
    library: str | None
    status: str  # active | withdrawn
    posted_at: datetime
    changed_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> CohortUpdate:
        return cls(
            event_id=row["event_id"],
            item_id=row["item_id"],
            cohort_id=row["cohort_id"],
            room_id=row["room_id"],
            sender=row["sender"],
            library=row["library"],
            status=row["status"],
            posted_at=_dt(row["posted_at"]),
            changed_at=_dt(row["changed_at"]),
        )


@dataclass(frozen=True)
class ReminderRow:
    """A stored webinar reminder; satisfies `network.community.reminders.ScheduledReminder`."""

    id: int
    item_id: int
    room: str
    lead: timedelta
    start: datetime
    due_at: datetime
    status: str  # pending | sent | cancelled | dropped | failed
    txn_id: str
    attempts: int
    next_attempt: datetime
    last_error: str | None
    event_id: str | None

    @property
    def sent(self) -> bool:
        return self.status == "sent"

    @classmethod
    def from_row(cls, row: Any) -> ReminderRow:
        return cls(
            id=row["id"],
            item_id=row["item_id"],
            room=row["room"],
            lead=timedelta(seconds=row["lead_seconds"]),
            start=_dt(row["start"]),
            due_at=_dt(row["due_at"]),
            status=row["status"],
            txn_id=row["txn_id"],
            attempts=row["attempts"],
            next_attempt=_dt(row["next_attempt"]),
            last_error=row["last_error"],
            event_id=row["event_id"],
        )


@dataclass(frozen=True)
class NewReminder:
    item_id: int
    room: str
    lead: timedelta
    start: datetime
    due_at: datetime


@dataclass(frozen=True)
class DigestRound:
    day: str  # UTC date the runs were planned
    frequency: str
    sent: int
    pending: int
    failed: int
    last_sent: datetime | None


def reminder_txn_id(item_id: int, room: str, lead: timedelta, start: datetime) -> str:
    """The Matrix transaction id of a reminder: the same identity always gives the same id."""
    digest = hashlib.sha256(
        f"{item_id}|{room}|{int(lead.total_seconds())}|{now_iso(start)}".encode()
    ).hexdigest()[:24]
    return f"libhub-reminder-{item_id}-{digest}"


class CommunityStore(Database):
    # -- rooms, invitations, emails, welcomes --------------------------------------------

    async def community_room(self, key: str) -> CommunityRoom | None:
        row = await self.fetchone("SELECT * FROM community_rooms WHERE key = ?", (key,))
        return CommunityRoom.from_row(row) if row else None

    async def community_rooms(self) -> list[CommunityRoom]:
        rows = await self.fetchall("SELECT * FROM community_rooms ORDER BY key")
        return [CommunityRoom.from_row(r) for r in rows]

    async def save_community_room(self, key: str, ref: str, room_id: str, now: datetime) -> None:
        await self.execute(
            "INSERT INTO community_rooms (key, ref, room_id, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET ref = excluded.ref, room_id = excluded.room_id, "
            "updated_at = excluded.updated_at",
            (key, ref, room_id, now_iso(now)),
        )

    async def set_resources_pin(
        self, key: str, resources_hash: str, event_id: str, now: datetime
    ) -> None:
        await self.execute(
            "UPDATE community_rooms SET resources_hash = ?, resources_event_id = ?, "
            "updated_at = ? WHERE key = ?",
            (resources_hash, event_id, now_iso(now), key),
        )

    async def invited_users(self, room_id: str) -> set[str]:
        rows = await self.fetchall(
            "SELECT user_id FROM community_invites WHERE room_id = ?", (room_id,)
        )
        return {str(r["user_id"]) for r in rows}

    async def record_invite(self, room_id: str, user_id: str, now: datetime) -> None:
        await self.execute(
            "INSERT OR IGNORE INTO community_invites (room_id, user_id, invited_at) "
            "VALUES (?, ?, ?)",
            (room_id, user_id, now_iso(now)),
        )

    async def forget_invite(self, room_id: str, user_id: str) -> None:
        await self.execute(
            "DELETE FROM community_invites WHERE room_id = ? AND user_id = ?", (room_id, user_id)
        )

    async def emailed_members(self, cohort_id: str) -> set[str]:
        rows = await self.fetchall(
            "SELECT email FROM community_emails WHERE cohort_id = ?", (cohort_id,)
        )
        return {str(r["email"]) for r in rows}

    async def record_email_invite(self, cohort_id: str, email: str, now: datetime) -> None:
        await self.execute(
            "INSERT OR IGNORE INTO community_emails (cohort_id, email, sent_at) VALUES (?, ?, ?)",
            (cohort_id, email, now_iso(now)),
        )

    async def welcomed(self, cohort_id: str, user_id: str) -> bool:
        row = await self.fetchone(
            "SELECT 1 FROM cohort_welcomes WHERE cohort_id = ? AND user_id = ?",
            (cohort_id, user_id),
        )
        return row is not None

    async def record_welcome(
        self, cohort_id: str, user_id: str, event_id: str, now: datetime
    ) -> None:
        await self.execute(
            "INSERT OR IGNORE INTO cohort_welcomes (cohort_id, user_id, event_id, welcomed_at) "
            "VALUES (?, ?, ?, ?)",
            (cohort_id, user_id, event_id, now_iso(now)),
        )

    # -- cohort updates --------------------------------------------------------------------

    async def record_cohort_update(
        self,
        *,
        event_id: str,
        feed_id: str,
        cohort_id: str,
        room_id: str,
        sender: str,
        library: str | None,
        now: datetime,
    ) -> CohortUpdate | None:
        """Link the member's message to its stored item (the item key is the event id)."""
        stamp = now_iso(now)
        async with self.transaction() as conn:
            async with conn.execute(
                "SELECT id FROM items WHERE feed_id = ? AND key = ?", (feed_id, event_id)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            await conn.execute(
                "INSERT OR IGNORE INTO cohort_updates (event_id, item_id, cohort_id, room_id, "
                "sender, library, posted_at, changed_at) VALUES (?,?,?,?,?,?,?,?)",
                (event_id, int(row["id"]), cohort_id, room_id, sender, library, stamp, stamp),
            )
            async with conn.execute(
                "SELECT * FROM cohort_updates WHERE event_id = ?", (event_id,)
            ) as cur:
                found = await cur.fetchone()
        return CohortUpdate.from_row(found) if found else None

    async def cohort_update(self, event_id: str) -> CohortUpdate | None:
        row = await self.fetchone("SELECT * FROM cohort_updates WHERE event_id = ?", (event_id,))
        return CohortUpdate.from_row(row) if row else None

    async def latest_cohort_update(
        self, cohort_id: str, sender: str, since: datetime
    ) -> CohortUpdate | None:
        """The sender's newest active update in the cohort posted at or after ``since``."""
        row = await self.fetchone(
            "SELECT * FROM cohort_updates WHERE cohort_id = ? AND sender = ? AND status = "
            "'active' AND posted_at >= ? ORDER BY posted_at DESC, rowid DESC LIMIT 1",
            (cohort_id, sender, now_iso(since)),
        )
        return CohortUpdate.from_row(row) if row else None

    async def touch_cohort_update(self, event_id: str, now: datetime) -> None:
        await self.execute(
            "UPDATE cohort_updates SET changed_at = ? WHERE event_id = ?", (now_iso(now), event_id)
        )

    async def withdraw_cohort_update(self, event_id: str, now: datetime) -> list[OutboxRow]:
        """Withdraw an update: unsent deliveries are skipped; returns the Matrix posts already
        sent (the caller redacts them). Channels and digests already sent cannot be undone."""
        async with self.transaction() as conn:
            async with conn.execute(
                "SELECT item_id FROM cohort_updates WHERE event_id = ?", (event_id,)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                return []
            item_id = int(row["item_id"])
            await conn.execute(
                "UPDATE cohort_updates SET status = 'withdrawn', changed_at = ? WHERE event_id = ?",
                (now_iso(now), event_id),
            )
            await conn.execute(
                "UPDATE outbox SET status = 'skipped', last_error = 'withdrawn by its author' "
                "WHERE item_id = ? AND status IN ('pending', 'failed', 'held')",
                (item_id,),
            )
            await conn.execute(
                "UPDATE webinar_reminders SET status = 'cancelled' "
                "WHERE item_id = ? AND status = 'pending'",
                (item_id,),
            )
            async with conn.execute(
                "SELECT * FROM outbox WHERE item_id = ? AND status = 'sent' AND "
                "target_type = 'matrix' AND event_id IS NOT NULL",
                (item_id,),
            ) as cur:
                return [OutboxRow.from_row(r) for r in await cur.fetchall()]

    async def withdrawn_item_ids(self, item_ids: Iterable[int] | None = None) -> set[int]:
        """Items of withdrawn cohort updates (digests and listings leave them out)."""
        ids = list(item_ids) if item_ids is not None else None
        if ids is not None and not ids:
            return set()
        sql = "SELECT item_id FROM cohort_updates WHERE status = 'withdrawn'"
        params: tuple[int, ...] = ()
        if ids is not None:
            sql += f" AND item_id IN ({','.join('?' * len(ids))})"
            params = tuple(ids)
        return {int(r["item_id"]) for r in await self.fetchall(sql, params)}

    async def cohort_update_counts(self) -> dict[str, int]:
        rows = await self.fetchall(
            "SELECT cohort_id, COUNT(*) AS n FROM cohort_updates WHERE status = 'active' "
            "GROUP BY cohort_id"
        )
        return {str(r["cohort_id"]): int(r["n"]) for r in rows}

    # -- weekly prompts --------------------------------------------------------------------

    async def prompt_posted(self, cohort_id: str, week: str) -> bool:
        row = await self.fetchone(
            "SELECT 1 FROM cohort_prompts WHERE cohort_id = ? AND week = ?", (cohort_id, week)
        )
        return row is not None

    async def record_prompt(
        self, cohort_id: str, week: str, room_id: str, event_id: str, now: datetime
    ) -> None:
        await self.execute(
            "INSERT OR IGNORE INTO cohort_prompts (cohort_id, week, room_id, event_id, posted_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (cohort_id, week, room_id, event_id, now_iso(now)),
        )

    async def prompt_cohort(self, event_id: str) -> str | None:
        """The cohort whose weekly prompt is ``event_id`` (replies to it become updates)."""
        row = await self.fetchone(
            "SELECT cohort_id FROM cohort_prompts WHERE event_id = ?", (event_id,)
        )
        return str(row["cohort_id"]) if row else None

    # -- webinar reminders -----------------------------------------------------------------

    async def webinar_items(self, starting_after: datetime) -> list[Item]:
        """Webinars starting after the given time, and items that still have reminders
        pending (their start may have moved, or they stopped being webinars)."""
        rows = await self.fetchall(
            "SELECT * FROM items WHERE (kind = 'webinar' AND event_start IS NOT NULL "
            "AND event_start > ?) OR id IN "
            "(SELECT item_id FROM webinar_reminders WHERE status = 'pending') ORDER BY id",
            (now_iso(starting_after),),
        )
        return [Item.from_row(r) for r in rows]

    async def item_rooms(self, item_id: int) -> list[str]:
        """The Matrix rooms (as configured) an item was posted to or is queued for."""
        rows = await self.fetchall(
            "SELECT DISTINCT target FROM outbox WHERE item_id = ? AND target_type = 'matrix' "
            "AND action = 'post' AND status IN ('pending', 'sent', 'skipped') ORDER BY target",
            (item_id,),
        )
        return [str(r["target"]) for r in rows]

    async def reminders_for(self, item_id: int) -> list[ReminderRow]:
        rows = await self.fetchall(
            "SELECT * FROM webinar_reminders WHERE item_id = ? ORDER BY id", (item_id,)
        )
        return [ReminderRow.from_row(r) for r in rows]

    async def apply_reminder_changes(
        self, add: Sequence[NewReminder], cancel: Sequence[int], now: datetime
    ) -> None:
        """Cancel and add reminders in one transaction. Re-adding a reminder that was
        cancelled earlier (the webinar moved back) revives its row and transaction id."""
        stamp = now_iso(now)
        async with self.transaction() as conn:
            for row_id in cancel:
                await conn.execute(
                    "UPDATE webinar_reminders SET status = 'cancelled' "
                    "WHERE id = ? AND status = 'pending'",
                    (row_id,),
                )
            for r in add:
                await conn.execute(
                    "INSERT INTO webinar_reminders (item_id, room, lead_seconds, start, due_at, "
                    "txn_id, next_attempt, created_at) VALUES (?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (item_id, room, lead_seconds, start) DO UPDATE SET "
                    "status = 'pending', attempts = 0, next_attempt = excluded.next_attempt, "
                    "last_error = NULL WHERE status IN ('cancelled', 'dropped')",
                    (
                        r.item_id,
                        r.room,
                        int(r.lead.total_seconds()),
                        now_iso(r.start),
                        now_iso(r.due_at),
                        reminder_txn_id(r.item_id, r.room, r.lead, r.start),
                        now_iso(r.due_at),
                        stamp,
                    ),
                )

    async def due_reminders(self, now: datetime, limit: int = 100) -> list[ReminderRow]:
        rows = await self.fetchall(
            "SELECT * FROM webinar_reminders WHERE status = 'pending' AND next_attempt <= ? "
            "ORDER BY due_at, id LIMIT ?",
            (now_iso(now), limit),
        )
        return [ReminderRow.from_row(r) for r in rows]

    async def next_reminder_due(self) -> datetime | None:
        row = await self.fetchone(
            "SELECT MIN(next_attempt) FROM webinar_reminders WHERE status = 'pending'"
        )
        return from_iso(row[0]) if row and row[0] else None

    async def mark_reminder_sent(self, row_id: int, event_id: str, now: datetime) -> None:
        await self.execute(
            "UPDATE webinar_reminders SET status = 'sent', event_id = ?, sent_at = ?, "
            "last_error = NULL WHERE id = ?",
            (event_id, now_iso(now), row_id),
        )

    async def mark_reminder_retry(self, row_id: int, error: str, next_attempt: datetime) -> None:
        await self.execute(
            "UPDATE webinar_reminders SET attempts = attempts + 1, last_error = ?, "
            "next_attempt = ? WHERE id = ? AND status = 'pending'",
            (error, now_iso(next_attempt), row_id),
        )

    async def close_reminder(self, row_id: int, status: str, error: str | None = None) -> None:
        if status not in ("dropped", "failed", "cancelled"):
            raise ValueError(f"unknown final reminder status {status!r}")
        await self.execute(
            "UPDATE webinar_reminders SET status = ?, last_error = ? WHERE id = ?",
            (status, error, row_id),
        )

    async def reminder_counts(self) -> dict[str, int]:
        rows = await self.fetchall(
            "SELECT status, COUNT(*) AS n FROM webinar_reminders GROUP BY status"
        )
        counts = dict.fromkeys(("pending", "sent", "cancelled", "dropped", "failed"), 0)
        counts.update({str(r["status"]): int(r["n"]) for r in rows})
        return counts

    # -- dashboard -------------------------------------------------------------------------

    async def pending_outbox_rows(self, limit: int = 100) -> list[OutboxRow]:
        rows = await self.fetchall(
            "SELECT * FROM outbox WHERE status = 'pending' ORDER BY id LIMIT ?", (limit,)
        )
        return [OutboxRow.from_row(r) for r in rows]

    async def recent_digest_rounds(self, limit: int = 10) -> list[DigestRound] | None:
        """Digests and notices by day and frequency, newest first (None: no digests yet)."""
        if not await self.table_exists("digest_runs"):
            return None
        rows = await self.fetchall(
            "SELECT substr(created_at, 1, 10) AS day, frequency, "
            "SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) AS sent, "
            "SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END) AS pending, "
            "SUM(CASE WHEN status IN ('failed', 'dropped') THEN 1 ELSE 0 END) AS failed, "
            "MAX(sent_at) AS last_sent "
            "FROM digest_runs GROUP BY day, frequency ORDER BY day DESC, frequency LIMIT ?",
            (limit,),
        )
        return [
            DigestRound(
                day=str(r["day"]),
                frequency=str(r["frequency"]),
                sent=int(r["sent"] or 0),
                pending=int(r["pending"] or 0),
                failed=int(r["failed"] or 0),
                last_sent=from_iso(r["last_sent"]),
            )
            for r in rows
        ]

    # -- dashboard logins ------------------------------------------------------------------

    async def use_login_nonce(self, nonce: str, subject: str, now: datetime) -> bool:
        """Record a login token as used; False when it already was (tokens work once)."""
        changed = await self.execute(
            "INSERT OR IGNORE INTO dashboard_logins (nonce, subject, used_at) VALUES (?, ?, ?)",
            (nonce, subject, now_iso(now)),
        )
        return changed > 0

    async def end_session(self, nonce: str, subject: str, now: datetime) -> None:
        """Record a dashboard session as logged out: its cookie is refused from now on.
        Kept with the used login tokens (nonces are random, so they never collide)."""
        await self.use_login_nonce(nonce, f"logout:{subject}", now)

    async def session_ended(self, nonce: str) -> bool:
        row = await self.fetchone("SELECT 1 FROM dashboard_logins WHERE nonce = ?", (nonce,))
        return row is not None
