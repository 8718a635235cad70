"""The moderation queue: outbox rows held for a coordinator, and what was decided.

Held rows (status ``held``) were written with their item like any delivery. Approving an
item makes its held rows ``pending`` (the delivery loop then sends each exactly once, with
the transaction id it got when it was queued); rejecting makes them ``rejected``. Approving also
queues the item for subscribers' digests, which held items stay out of. Both are
conditional on the rows still being held, so a second click, or a reaction after a click,
changes nothing and writes no second audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from network.storage.audit import audit_row
from network.storage.base import Database, from_iso, now_iso
from network.storage.records import Item, Target

APPROVE = "approve"
REJECT = "reject"
EDIT = "edit"


@dataclass(frozen=True)
class HeldItem:
    """One item waiting for a decision, and where it would go."""

    item: Item
    targets: tuple[Target, ...]
    held_since: datetime
    notice_event_id: str | None


def subject_of(item_id: int) -> str:
    return f"item:{item_id}"


class ModerationStore(Database):
    async def held_items(self, limit: int = 100) -> list[HeldItem]:
        rows = await self.fetchall(
            "SELECT o.item_id, o.target_type, o.target, o.channel, o.created_at, "
            "n.event_id AS notice FROM outbox o LEFT JOIN moderation_notices n "
            "ON n.item_id = o.item_id WHERE o.status = 'held' ORDER BY o.item_id, o.id"
        )
        by_item: dict[int, list[Target]] = {}
        since: dict[int, str] = {}
        notices: dict[int, str | None] = {}
        for r in rows:
            item_id = int(r["item_id"])
            by_item.setdefault(item_id, []).append(
                Target(r["target_type"], r["target"], r["channel"], held=True)
            )
            since.setdefault(item_id, r["created_at"])
            notices[item_id] = r["notice"]
        ids = list(by_item)[:limit]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        items = {
            int(r["id"]): Item.from_row(r)
            for r in await self.fetchall(f"SELECT * FROM items WHERE id IN ({marks})", ids)
        }
        out = []
        for item_id in ids:
            held_since = from_iso(since[item_id])
            assert held_since is not None
            out.append(
                HeldItem(items[item_id], tuple(by_item[item_id]), held_since, notices[item_id])
            )
        return out

    async def held_count(self) -> int:
        row = await self.fetchone(
            "SELECT COUNT(DISTINCT item_id) FROM outbox WHERE status = 'held'"
        )
        return int(row[0]) if row else 0

    async def decide_held(
        self, item_id: int, *, approve: bool, actor: str, now: datetime, detail: str = ""
    ) -> int:
        """Release (approve) or drop (reject) the item's held rows; the number changed.

        The audit row is written in the same transaction, and only when rows changed."""
        stamp = now_iso(now)
        async with self.transaction() as conn:
            async with conn.execute("SELECT title FROM items WHERE id = ?", (item_id,)) as cur:
                found = await cur.fetchone()
            if found is None:
                return 0
            if approve:
                cur = await conn.execute(
                    "UPDATE outbox SET status = 'pending', next_attempt = ? "
                    "WHERE item_id = ? AND status = 'held'",
                    (stamp, item_id),
                )
            else:
                cur = await conn.execute(
                    "UPDATE outbox SET status = 'rejected', last_error = ? "
                    "WHERE item_id = ? AND status = 'held'",
                    (f"rejected by {actor}", item_id),
                )
            changed = int(cur.rowcount)
            if changed and approve:
                # Kept out of the digest queue while held: subscribers get it from now on.
                await conn.execute(
                    "INSERT OR IGNORE INTO digest_queue (item_id, queued_at) VALUES (?, ?)",
                    (item_id, stamp),
                )
            if changed:
                text = str(found["title"])
                await audit_row(
                    conn,
                    actor=actor,
                    action=APPROVE if approve else REJECT,
                    subject=subject_of(item_id),
                    detail=f"{text}{' | ' + detail if detail else ''}",
                    now=now,
                )
        return changed

    async def edit_held_item(self, item_id: int, *, title: str, actor: str, now: datetime) -> bool:
        """Change the title of an item that is still held (before approving it)."""
        async with self.transaction() as conn:
            async with conn.execute(
                "SELECT i.title FROM items i WHERE i.id = ? AND EXISTS "
                "(SELECT 1 FROM outbox o WHERE o.item_id = i.id AND o.status = 'held')",
                (item_id,),
            ) as cur:
                found = await cur.fetchone()
            if found is None or str(found["title"]) == title:
                return False
            await conn.execute(
                "UPDATE items SET title = ?, updated_at = ? WHERE id = ?",
                (title, now_iso(now), item_id),
            )
            await audit_row(
                conn,
                actor=actor,
                action=EDIT,
                subject=subject_of(item_id),
                detail=f"title: {found['title']} -> {title}",
                now=now,
            )
        return True

    async def held_without_notice(self, limit: int = 20) -> list[Item]:
        rows = await self.fetchall(
            "SELECT * FROM items WHERE id IN (SELECT DISTINCT item_id FROM outbox "
            "WHERE status = 'held' AND item_id NOT IN (SELECT item_id FROM moderation_notices)) "
            "ORDER BY id LIMIT ?",
            (limit,),
        )
        return [Item.from_row(r) for r in rows]

    async def record_notice(
        self, item_id: int, *, room_id: str, event_id: str, now: datetime
    ) -> None:
        await self.execute(
            "INSERT OR IGNORE INTO moderation_notices (item_id, room_id, event_id, posted_at) "
            "VALUES (?,?,?,?)",
            (item_id, room_id, event_id, now_iso(now)),
        )

    async def item_of_notice(self, event_id: str) -> int | None:
        row = await self.fetchone(
            "SELECT item_id FROM moderation_notices WHERE event_id = ?", (event_id,)
        )
        return int(row[0]) if row else None
