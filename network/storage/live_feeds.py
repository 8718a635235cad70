"""Feeds and routes managed live (from a room or the dashboard) and the audit log.

A live feed is written together with its `feeds` row and the audit entry, in one
transaction: a change is there completely or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from network.storage.audit import audit_row
from network.storage.base import Database, from_iso, now_iso
from network.storage.engine import Conn, Row


@dataclass(frozen=True)
class FeedFilterRecord:
    mode: str  # keep | block
    pattern: str


@dataclass(frozen=True)
class LiveFeedRecord:
    id: str
    url: str
    kind: str
    title: str
    rooms: tuple[str, ...]
    channels: tuple[str, ...]
    template: str
    filters: tuple[FeedFilterRecord, ...]
    paused: bool
    added_by: str
    added_at: datetime

    @classmethod
    def from_row(cls, r: Row) -> LiveFeedRecord:
        added = from_iso(r["added_at"])
        assert added is not None
        return cls(
            id=r["id"],
            url=r["url"],
            kind=r["kind"],
            title=r["title"],
            rooms=tuple(json.loads(r["rooms"])),
            channels=tuple(json.loads(r["channels"])),
            template=r["template"],
            filters=tuple(
                FeedFilterRecord(f["mode"], f["pattern"]) for f in json.loads(r["filters"])
            ),
            paused=bool(r["paused"]),
            added_by=r["added_by"],
            added_at=added,
        )


@dataclass(frozen=True)
class LiveRouteRecord:
    id: int
    feeds: tuple[str, ...]
    kinds: tuple[str, ...]
    rooms: tuple[str, ...]
    channels: tuple[str, ...]
    matrix_template: str
    channel_template: str
    added_by: str
    added_at: datetime

    @classmethod
    def from_row(cls, r: Row) -> LiveRouteRecord:
        added = from_iso(r["added_at"])
        assert added is not None
        return cls(
            id=int(r["id"]),
            feeds=tuple(json.loads(r["feeds"])),
            kinds=tuple(json.loads(r["kinds"])),
            rooms=tuple(json.loads(r["rooms"])),
            channels=tuple(json.loads(r["channels"])),
            matrix_template=r["matrix_template"],
            channel_template=r["channel_template"],
            added_by=r["added_by"],
            added_at=added,
        )


async def _audit(
    conn: Conn, now: datetime, actor: str, action: str, subject: str, detail: str
) -> None:
    await audit_row(conn, actor=actor, action=action, subject=subject, detail=detail, now=now)


def _route_values(route: LiveRouteRecord) -> tuple[str, ...]:
    """feeds, kinds, rooms, channels, matrix_template, channel_template, as stored."""
    return (
        json.dumps(list(route.feeds)),
        json.dumps(list(route.kinds)),
        json.dumps(list(route.rooms)),
        json.dumps(list(route.channels)),
        route.matrix_template,
        route.channel_template,
    )


# Columns a live-feed change may write; anything else is a bug.
_LIVE_COLUMNS = frozenset({"rooms", "channels", "template", "filters", "paused", "title", "kind"})


class LiveFeedStore(Database):
    async def live_feeds(self) -> list[LiveFeedRecord]:
        rows = await self.fetchall("SELECT * FROM live_feeds ORDER BY added_at, id")
        return [LiveFeedRecord.from_row(r) for r in rows]

    async def live_routes(self) -> list[LiveRouteRecord]:
        rows = await self.fetchall("SELECT * FROM live_routes ORDER BY id")
        return [LiveRouteRecord.from_row(r) for r in rows]

    async def feed_ids_in_use(self) -> set[str]:
        """Every feed id with history (a feed removed later keeps its items)."""
        rows = await self.fetchall("SELECT id FROM feeds UNION SELECT id FROM live_feeds")
        return {r["id"] for r in rows}

    async def add_live_feed(self, feed: LiveFeedRecord, *, detail: str = "") -> None:
        """Store ``feed``, its polling row (new, not synced: its current items will be
        marked seen) and the audit entry, all or nothing."""
        async with self.transaction() as conn:
            await conn.execute(
                "INSERT INTO live_feeds (id, url, kind, title, rooms, channels, template, "
                "filters, paused, added_by, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    feed.id,
                    feed.url,
                    feed.kind,
                    feed.title,
                    json.dumps(list(feed.rooms)),
                    json.dumps(list(feed.channels)),
                    feed.template,
                    json.dumps([f.__dict__ for f in feed.filters]),
                    int(feed.paused),
                    feed.added_by,
                    now_iso(feed.added_at),
                ),
            )
            await conn.execute(
                "INSERT INTO feeds (id, config_url, url) VALUES (?, ?, ?) ON CONFLICT (id) DO "
                "UPDATE SET config_url = excluded.config_url, url = excluded.url, "
                "status = 'new', next_check = NULL, consecutive_errors = 0, last_error = NULL, "
                "etag = NULL, last_modified = NULL, body_hash = NULL, initial_sync_done = 0",
                (feed.id, feed.url, feed.url),
            )
            await _audit(
                conn, feed.added_at, feed.added_by, "feed.add", feed.id, detail or feed.url
            )

    async def change_live_feed(
        self, feed_id: str, *, actor: str, action: str, detail: str, now: datetime, **fields: Any
    ) -> bool:
        """Change a live feed's ``fields`` and log it; False when there is no such feed."""
        unknown = set(fields) - _LIVE_COLUMNS
        if unknown:
            raise ValueError(f"unknown live feed columns: {sorted(unknown)}")
        values = [
            json.dumps([f.__dict__ for f in v] if k == "filters" else list(v))
            if isinstance(v, tuple)
            else int(v)
            if isinstance(v, bool)
            else v
            for k, v in fields.items()
        ]
        sets = ", ".join(f"{k} = ?" for k in fields)
        async with self.transaction() as conn:
            cur = await conn.execute(
                f"UPDATE live_feeds SET {sets} WHERE id = ?", (*values, feed_id)
            )
            if cur.rowcount == 0:
                return False
            await _audit(conn, now, actor, action, feed_id, detail)
        return True

    async def remove_live_feed(self, feed_id: str, *, actor: str, now: datetime) -> bool:
        """Forget a live feed (its items and history stay) and drop what it still had
        waiting in the outbox: removal stops posting at once."""
        async with self.transaction() as conn:
            cur = await conn.execute("DELETE FROM live_feeds WHERE id = ?", (feed_id,))
            if cur.rowcount == 0:
                return False
            await conn.execute(
                "UPDATE outbox SET status = 'skipped', last_error = 'the feed was removed' "
                "WHERE status = 'pending' AND item_id IN (SELECT id FROM items WHERE feed_id = ?)",
                (feed_id,),
            )
            await _audit(conn, now, actor, "feed.remove", feed_id, "")
        return True

    async def add_live_route(self, route: LiveRouteRecord, *, detail: str = "") -> int:
        async with self.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO live_routes (feeds, kinds, rooms, channels, matrix_template, "
                "channel_template, added_by, added_at) VALUES (?,?,?,?,?,?,?,?) RETURNING id",
                (*_route_values(route), route.added_by, now_iso(route.added_at)),
            )
            route_id = int((await cur.fetchone())[0])
            await _audit(
                conn, route.added_at, route.added_by, "route.add", f"route {route_id}", detail
            )
        return route_id

    async def update_live_route(
        self, route: LiveRouteRecord, *, actor: str, now: datetime, detail: str = ""
    ) -> bool:
        async with self.transaction() as conn:
            cur = await conn.execute(
                "UPDATE live_routes SET feeds = ?, kinds = ?, rooms = ?, channels = ?, "
                "matrix_template = ?, channel_template = ? WHERE id = ?",
                (*_route_values(route), route.id),
            )
            if cur.rowcount == 0:
                return False
            await _audit(conn, now, actor, "route.edit", f"route {route.id}", detail)
        return True

    async def remove_live_route(self, route_id: int, *, actor: str, now: datetime) -> bool:
        async with self.transaction() as conn:
            cur = await conn.execute("DELETE FROM live_routes WHERE id = ?", (route_id,))
            if cur.rowcount == 0:
                return False
            await _audit(conn, now, actor, "route.remove", f"route {route_id}", "")
        return True
