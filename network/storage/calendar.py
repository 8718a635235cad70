"""What the subscribable calendars published of each webinar (table ``calendar_events``).

A calendar program keeps, per UID, the event with the highest ``SEQUENCE``; so what was
last published (its fingerprint, start and status) is remembered here, and a change raises
the sequence. The rules deciding *what* changed live in `network.community.calendar`; this
module only reads the candidates and writes the outcome. It also notes webinars that left
their feed while still upcoming (the publisher took them down: they become cancelled).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from network.storage.base import Database, from_iso, now_iso
from network.storage.records import Item


@dataclass(frozen=True)
class Published:
    """The state of a webinar's event as the calendars last showed it."""

    sequence: int
    fingerprint: str
    start: datetime | None
    status: str  # confirmed | cancelled
    removed: bool  # gone from its feed while upcoming


@dataclass(frozen=True)
class CalendarCandidate:
    """A webinar (or a former one) that belongs on the calendars."""

    item: Item
    published: Published | None
    withdrawn: bool  # a member's update no longer active (withdrawn, held)


@dataclass(frozen=True)
class CalendarChange:
    """What to remember after publishing an event: its new sequence and fingerprint."""

    item_id: int
    sequence: int
    fingerprint: str
    start: datetime | None
    status: str


class CalendarStore(Database):
    async def calendar_candidates(
        self, feed_ids: Sequence[str], since: datetime, item_ids: Sequence[int] | None = None
    ) -> list[CalendarCandidate]:
        """Webinars of ``feed_ids`` starting at or after ``since``, and every item the
        calendars published before whose start is that recent (it may have stopped being a
        webinar, or been taken down: it is shown cancelled). ``item_ids`` narrows it."""
        stamp = now_iso(since)
        sql = (
            "SELECT i.*, c.sequence AS c_sequence, c.fingerprint AS c_fingerprint, "
            "c.start AS c_start, c.status AS c_status, c.removed_at AS c_removed, "
            "c.item_id AS c_item, EXISTS (SELECT 1 FROM cohort_updates u WHERE "
            "u.item_id = i.id AND u.status <> 'active') AS withdrawn "
            "FROM items i LEFT JOIN calendar_events c ON c.item_id = i.id "
            "WHERE i.id IN (SELECT id FROM items WHERE kind = 'webinar' AND event_start >= ? "
            "UNION SELECT item_id FROM calendar_events WHERE start >= ?) "
            "AND i.feed_id IN (SELECT value FROM json_each(?))"
        )
        params: list[object] = [stamp, stamp, json.dumps(list(feed_ids))]
        if item_ids is not None:
            sql += " AND i.id IN (SELECT CAST(value AS INTEGER) FROM json_each(?))"
            params.append(json.dumps(list(item_ids)))
        sql += " ORDER BY COALESCE(i.event_start, c.start), i.id"
        found = []
        for row in await self.fetchall(sql, params):
            published = None
            if row["c_item"] is not None:
                published = Published(
                    sequence=int(row["c_sequence"]),
                    fingerprint=str(row["c_fingerprint"]),
                    start=from_iso(row["c_start"]),
                    status=str(row["c_status"]),
                    removed=row["c_removed"] is not None,
                )
            found.append(CalendarCandidate(Item.from_row(row), published, bool(row["withdrawn"])))
        return found

    async def save_calendar_changes(self, changes: Sequence[CalendarChange], now: datetime) -> None:
        """Remember what was published. A row already at that sequence or higher (another
        request published the same change) is left alone."""
        if not changes:
            return
        stamp = now_iso(now)
        async with self.transaction() as conn:
            await conn.executemany(
                "INSERT INTO calendar_events (item_id, sequence, fingerprint, start, status, "
                "changed_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (item_id) DO UPDATE SET "
                "sequence = excluded.sequence, fingerprint = excluded.fingerprint, "
                "start = excluded.start, status = excluded.status, "
                "changed_at = excluded.changed_at "
                "WHERE calendar_events.sequence < excluded.sequence "
                "OR calendar_events.fingerprint = ''",
                [
                    (
                        c.item_id,
                        c.sequence,
                        c.fingerprint,
                        now_iso(c.start) if c.start else None,
                        c.status,
                        stamp,
                    )
                    for c in changes
                ],
            )

    async def note_feed_listing(self, feed_id: str, keys: Sequence[str], now: datetime) -> int:
        """After a successful poll of ``feed_id`` listing ``keys``: upcoming webinars of the
        feed missing from it are marked removed, those listed again are restored.

        A webinar counts as removed only when an item stored before it is still listed:
        a feed that keeps its newest N entries drops the oldest first, so an upcoming
        webinar missing *behind* an older entry was taken down, not rolled off. Returns
        how many webinars were newly marked removed."""
        if not keys:
            return 0
        listed = json.dumps(list(dict.fromkeys(keys)))
        stamp = now_iso(now)
        async with self.transaction() as conn:
            await conn.execute(
                "UPDATE calendar_events SET removed_at = NULL WHERE removed_at IS NOT NULL AND "
                "item_id IN (SELECT id FROM items WHERE feed_id = ? AND key IN "
                "(SELECT value FROM json_each(?)))",
                (feed_id, listed),
            )
            cur = await conn.execute(
                "INSERT INTO calendar_events (item_id, start, removed_at, changed_at) "
                "SELECT id, event_start, ?, ? FROM items WHERE feed_id = ? AND kind = 'webinar' "
                "AND event_start > ? AND key NOT IN (SELECT value FROM json_each(?)) "
                "AND id > (SELECT MIN(id) FROM items WHERE feed_id = ? AND key IN "
                "(SELECT value FROM json_each(?))) "
                "ON CONFLICT (item_id) DO UPDATE SET removed_at = excluded.removed_at "
                "WHERE calendar_events.removed_at IS NULL",
                (stamp, stamp, feed_id, stamp, listed, feed_id, listed),
            )
            return max(0, int(cur.rowcount))
