"""Feeds and their items: health records, dedupe and the outbox rows an item creates."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from feeds.schedule import KeyEntry
from network.storage.base import Database, from_iso, now_iso
from network.storage.records import FeedState, Item, ItemInput, StoredText, StoreResult, Target

# Columns the poller may write through update_feed(); anything else is a bug.
_FEED_COLUMNS = frozenset(
    {
        "url",
        "title",
        "link",
        "etag",
        "last_modified",
        "body_hash",
        "status",
        "last_check",
        "last_success",
        "next_check",
        "consecutive_errors",
        "last_error",
        "warning",
        "initial_sync_done",
        "outage_notified",
    }
)


def _iso(value: datetime | None) -> str | None:
    return now_iso(value) if value is not None else None


def new_txn_id() -> str:
    """A Matrix transaction id: created once per outbox row, reused on every retry."""
    return "libhub-" + uuid.uuid4().hex


class FeedStore(Database):
    async def sync_feeds(self, feeds: Sequence[tuple[str, str]]) -> None:
        """Make sure every configured (id, url) has a row; a changed config URL resets it."""
        async with self.transaction() as conn:
            for feed_id, url in feeds:
                await conn.execute(
                    "INSERT INTO feeds (id, config_url, url) VALUES (?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET "
                    "url = CASE WHEN feeds.config_url = excluded.config_url "
                    "THEN feeds.url ELSE excluded.url END, "
                    "config_url = excluded.config_url",
                    (feed_id, url, url),
                )

    async def feed_states(self) -> list[FeedState]:
        rows = await self.fetchall("SELECT * FROM feeds ORDER BY id")
        return [FeedState.from_row(r) for r in rows]

    async def feed_state(self, feed_id: str) -> FeedState | None:
        row = await self.fetchone("SELECT * FROM feeds WHERE id = ?", (feed_id,))
        return FeedState.from_row(row) if row else None

    async def update_feed(self, feed_id: str, **fields: Any) -> None:
        unknown = set(fields) - _FEED_COLUMNS
        if unknown:
            raise ValueError(f"unknown feed columns: {sorted(unknown)}")
        values = [
            _iso(v) if isinstance(v, datetime) else int(v) if isinstance(v, bool) else v
            for v in fields.values()
        ]
        sets = ", ".join(f"{k} = ?" for k in fields)
        await self.execute(f"UPDATE feeds SET {sets} WHERE id = ?", (*values, feed_id))

    async def feed_health_counts(self) -> dict[str, int]:
        rows = await self.fetchall("SELECT status, COUNT(*) AS n FROM feeds GROUP BY status")
        return {str(r["status"]): int(r["n"]) for r in rows}

    async def stored_key_facts(
        self, feed_id: str, keys: Sequence[str], content_hashes: Sequence[str]
    ) -> list[KeyEntry]:
        """The feed's stored items under any of `keys` or with any of `content_hashes`: what
        `feeds.schedule.dedupe_keys` must know to keep every key with the item it names."""
        found: dict[str, KeyEntry] = {}
        for column, values in (("key", keys), ("content_hash", content_hashes)):
            unique = list(dict.fromkeys(values))
            # 500 values stay under any SQLite's host-parameter limit (999 before 3.32).
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                rows = await self.fetchall(
                    "SELECT key, title, link, content_hash FROM items WHERE feed_id = ? "
                    f"AND {column} IN ({','.join('?' * len(chunk))})",
                    (feed_id, *chunk),
                )
                for r in rows:
                    found[r["key"]] = KeyEntry(r["key"], r["title"], r["link"], r["content_hash"])
        return list(found.values())

    async def store_items(
        self,
        feed_id: str,
        items: Sequence[ItemInput],
        *,
        targets: Callable[[ItemInput], Sequence[Target]],
        post: Callable[[ItemInput], bool],
        edit_window: timedelta,
        now: datetime,
        worth_an_edit: Callable[[StoredText, ItemInput], bool] | None = None,
    ) -> StoreResult:
        """Store one poll's items and queue their deliveries in the same transaction.

        A new item gets one outbox row per target when ``post(item)`` says so (initial
        sync and too-old items are stored as seen only). A known item whose content hash
        changed gets a new version and, for Matrix messages sent within ``edit_window``,
        an edit row, unless ``worth_an_edit(what was stored, item)`` says a reader would
        not notice the change. Nothing is queued twice: the outbox's unique key forbids it.
        """
        new = updated = unchanged = queued = 0
        stamp = now_iso(now)
        since = now_iso(now - edit_window)
        insert_item = (
            "INSERT INTO items (kind, title, link, published, author, categories, "
            "summary_html, enclosures, event_start, content_hash, feed_id, key, "
            "first_seen, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        )
        insert_outbox = (
            "INSERT OR IGNORE INTO outbox (item_id, item_version, action, target_type, target, "
            "channel, txn_id, next_attempt, created_at, poll, status) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?)"
        )
        # This call's rows, and only these, form a poll's burst (see migration 0005).
        poll = f"{stamp}/{feed_id}/{uuid.uuid4().hex[:12]}"

        def values(item: ItemInput) -> tuple[Any, ...]:
            return (
                item.kind,
                item.title,
                item.link,
                _iso(item.published),
                item.author,
                json.dumps(list(item.categories)),
                item.summary_html,
                json.dumps(list(item.enclosures)),
                _iso(item.event_start),
                item.content_hash,
            )

        async with self.transaction() as conn:

            async def known_rows(keys: Sequence[str]) -> dict[str, Any]:
                # A few statements per poll instead of one per item: each statement is a
                # hand-off to the database thread. 500 keys stay under any SQLite's
                # host-parameter limit (999 before 3.32).
                found: dict[str, Any] = {}
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]
                    async with conn.execute(
                        "SELECT key, id, content_hash, version, title, link, summary_html, "
                        "event_start FROM items WHERE feed_id = ? "
                        f"AND key IN ({','.join('?' * len(chunk))})",
                        (feed_id, *chunk),
                    ) as cur:
                        found.update((r["key"], r) for r in await cur.fetchall())
                return found

            # key -> (id, content_hash, version) of stored items; new ones are added as they
            # are inserted, so a key listed twice behaves as if stored one by one.
            found = await known_rows(list(dict.fromkeys(i.key for i in items)))
            known = {
                k: (int(r["id"]), str(r["content_hash"]), int(r["version"]))
                for k, r in found.items()
            }
            # key -> what readers were shown, for worth_an_edit (kept current like `known`).
            shown = {
                k: StoredText(r["title"], r["link"], r["summary_html"], from_iso(r["event_start"]))
                for k, r in found.items()
            }
            pending: dict[str, ItemInput] = {}  # new items not inserted yet, by key

            async def flush() -> None:
                nonlocal queued
                if not pending:
                    return
                batch = list(pending.values())
                pending.clear()
                await conn.executemany(
                    insert_item, [(*values(i), feed_id, i.key, stamp, stamp) for i in batch]
                )
                ids = await known_rows([i.key for i in batch])
                rows = []
                for item in batch:
                    item_id = int(ids[item.key]["id"])
                    known[item.key] = (item_id, item.content_hash, 1)
                    shown[item.key] = _text(item)
                    if post(item):
                        for t in targets(item):
                            row = (item_id, 1, "post", t.target_type, t.target, t.channel)
                            status = "held" if t.held else "pending"
                            rows.append((*row, new_txn_id(), stamp, stamp, poll, status))
                if rows:
                    cur = await conn.executemany(insert_outbox, rows)
                    queued += max(0, int(cur.rowcount))

            for item in items:
                first = pending.get(item.key)
                if first is None and item.key not in known:
                    pending[item.key] = item
                    new += 1
                    continue
                stored = first.content_hash if first is not None else known[item.key][1]
                if stored == item.content_hash:
                    unchanged += 1
                    continue
                # Changed: insert what came before it first, so item ids and outbox rows
                # keep the order of the items (and a key listed twice exists to change).
                await flush()
                item_id, _, version = known[item.key]
                version += 1
                await conn.execute(
                    "UPDATE items SET kind=?, title=?, link=?, published=?, author=?, "
                    "categories=?, summary_html=?, enclosures=?, event_start=?, content_hash=?, "
                    "version=?, updated_at=? WHERE id=?",
                    (*values(item), version, stamp, item_id),
                )
                known[item.key] = (item_id, item.content_hash, version)
                before = shown[item.key] if item.key in shown else _text(first)
                shown[item.key] = _text(item)
                updated += 1
                if worth_an_edit is not None and not worth_an_edit(before, item):
                    continue  # stored anew; the posted message stays as it is
                # The window counts from when the post went out. A post still waiting
                # will show the new content anyway; a post folded into a grouped message
                # ('skipped') is never edited.
                async with conn.execute(
                    "SELECT target_type, target, channel FROM outbox WHERE item_id = ? "
                    "AND action = 'post' AND target_type = 'matrix' "
                    "AND COALESCE(sent_at, created_at) >= ? AND status IN ('pending', 'sent')",
                    (item_id, since),
                ) as cur:
                    posted = await cur.fetchall()
                for p in posted:
                    target = Target(p["target_type"], p["target"], p["channel"])
                    queued += await _queue(conn, item_id, version, "edit", target, stamp)
            await flush()
        return StoreResult(new=new, updated=updated, unchanged=unchanged, queued=queued)

    async def item(self, item_id: int) -> Item | None:
        row = await self.fetchone("SELECT * FROM items WHERE id = ?", (item_id,))
        return Item.from_row(row) if row else None

    async def items_by_id(self, ids: Sequence[int]) -> dict[int, Item]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = await self.fetchall(f"SELECT * FROM items WHERE id IN ({marks})", tuple(ids))
        return {int(r["id"]): Item.from_row(r) for r in rows}

    async def item_ids_by_key(self, feed_id: str, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        rows = await self.fetchall(
            f"SELECT id FROM items WHERE feed_id = ? AND key IN ({marks}) ORDER BY id",
            (feed_id, *keys),
        )
        return [int(r[0]) for r in rows]

    async def item_count(self) -> int:
        row = await self.fetchone("SELECT COUNT(*) FROM items")
        return int(row[0]) if row else 0


def _text(item: ItemInput | None) -> StoredText:
    assert item is not None
    return StoredText(item.title, item.link, item.summary_html, item.event_start)


async def _queue(
    conn: Any, item_id: int, version: int, action: str, target: Target, stamp: str
) -> int:
    cur = await conn.execute(
        "INSERT OR IGNORE INTO outbox (item_id, item_version, action, target_type, target, "
        "channel, txn_id, next_attempt, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (
            item_id,
            version,
            action,
            target.target_type,
            target.target,
            target.channel,
            new_txn_id(),
            stamp,
            stamp,
        ),
    )
    return int(cur.rowcount)
