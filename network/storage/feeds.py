"""Feeds and their items: health records, feed leases, dedupe and the outbox rows an item
creates.

Due feeds are leased like outbox rows (`lease_feeds`): instances on one PostgreSQL poll a
share each, and a poll's result commits only while the feed's lease token is still its
own (`update_feed` and `store_items` with ``lease``), so a poll that outlived its lease
cannot overwrite the one that took the feed over.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from feeds.schedule import KeyEntry
from network.errors import LeaseLost
from network.storage.base import Database, from_iso, now_iso
from network.storage.dialect import POSTGRESQL
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


# The feeds the poller polls: those the config file listed at the last start, and live
# feeds that are not paused. (The file wins: a live feed that shares a file feed's id is
# the file's, polled whatever its live record says, as the catalog has it.)
_POLLED = (
    "(feeds.in_config = 1 OR EXISTS (SELECT 1 FROM live_feeds live "
    "WHERE live.id = feeds.id AND live.paused = 0))"
)


def _iso(value: datetime | None) -> str | None:
    return now_iso(value) if value is not None else None


def new_txn_id() -> str:
    """A Matrix transaction id: created once per outbox row, reused on every retry."""
    return "libhub-" + uuid.uuid4().hex


class FeedStore(Database):
    async def sync_feeds(self, feeds: Sequence[tuple[str, str]]) -> None:
        """Make sure every configured (id, url) has a row; a changed config URL resets it.

        ``feeds`` is the config file's whole list: only these are polled from now on (with
        the live feeds), the rows of feeds taken out of the file stay, never leased again.
        """
        async with self.transaction() as conn:
            await conn.execute(
                "UPDATE feeds SET in_config = 0 WHERE in_config = 1 "
                "AND id NOT IN (SELECT value FROM json_each(?))",
                (json.dumps([feed_id for feed_id, _ in feeds]),),
            )
            for feed_id, url in feeds:
                await conn.execute(
                    "INSERT INTO feeds (id, config_url, url, in_config) VALUES (?, ?, ?, 1) "
                    "ON CONFLICT (id) DO UPDATE SET "
                    "url = CASE WHEN feeds.config_url = excluded.config_url "
                    "THEN feeds.url ELSE excluded.url END, "
                    "config_url = excluded.config_url, in_config = 1",
                    (feed_id, url, url),
                )

    async def feed_states(self) -> list[FeedState]:
        rows = await self.fetchall("SELECT * FROM feeds ORDER BY id")
        return [FeedState.from_row(r) for r in rows]

    async def feed_state(self, feed_id: str) -> FeedState | None:
        row = await self.fetchone("SELECT * FROM feeds WHERE id = ?", (feed_id,))
        return FeedState.from_row(row) if row else None

    async def update_feed(self, feed_id: str, *, lease: str | None = None, **fields: Any) -> None:
        """Write what a poll learned. With ``lease`` (the token `lease_feeds` leased the feed
        with) it ends the lease, and writes only while the token is still the feed's: else
        it raises `LeaseLost` and changes nothing."""
        unknown = set(fields) - _FEED_COLUMNS
        if unknown:
            raise ValueError(f"unknown feed columns: {sorted(unknown)}")
        values = [
            _iso(v) if isinstance(v, datetime) else int(v) if isinstance(v, bool) else v
            for v in fields.values()
        ]
        sets = ", ".join(f"{k} = ?" for k in fields)
        if lease is None:
            await self.execute(f"UPDATE feeds SET {sets} WHERE id = ?", (*values, feed_id))
            return
        # One statement: on PostgreSQL the row lock and its re-check of the token make the
        # compare and the write one step against another instance's lease. The token stays
        # (the last claim's): the cycle that polled the feed does not take it again.
        changed = await self.execute(
            f"UPDATE feeds SET {sets}{', ' if sets else ''}lease_until = NULL "
            "WHERE id = ? AND lease_token = ?",
            (*values, feed_id, lease),
        )
        if not changed:
            raise LeaseLost(f"feed {feed_id}: its lease was taken over by another poll")

    async def lease_feeds(
        self,
        now: datetime,
        *,
        token: str,
        limit: int,
        lease: timedelta,
        any_time: bool = False,
        ids: Sequence[str] | None = None,
        skip: Collection[str] = (),
    ) -> list[FeedState]:
        """Lease up to ``limit`` due feeds until ``now + lease`` under ``token``; returns
        their states, the longest waiting first.

        Due: polled (`_POLLED`), not gone, its next check reached, not leased by a live
        lease, and not already leased under ``token`` (a cycle, one token for all its
        leases, takes each feed once). ``any_time`` ignores the next check and the status
        (a poll by hand of every feed); ``ids`` takes only these feeds, polled or not;
        ``skip`` leaves these out. On PostgreSQL, rows another instance is leasing or
        committing right now are skipped, not waited for, so no feed is leased twice.
        """
        stamp = now_iso(now)
        where = [
            "(feeds.lease_until IS NULL OR feeds.lease_until <= ?)",
            "(feeds.lease_token IS NULL OR feeds.lease_token <> ?)",
        ]
        params: list[object] = [stamp, token]
        if not any_time:
            where += [
                "feeds.status <> 'gone'",
                "(feeds.next_check IS NULL OR feeds.next_check <= ?)",
            ]
            params.append(stamp)
        if ids is None:
            where.append(_POLLED)
        else:
            where.append("feeds.id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(ids)))
        if skip:
            where.append("feeds.id NOT IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(sorted(skip)))
        # Picked once (a CTE), then leased: the pick is what PostgreSQL locks and skips by.
        sql = (
            f"WITH picked AS (SELECT feeds.id FROM feeds WHERE {' AND '.join(where)} "
            f"ORDER BY COALESCE(feeds.next_check, ''), feeds.id LIMIT ?{self.skip_locked()}) "
            "UPDATE feeds SET lease_until = ?, lease_token = ? "
            "WHERE id IN (SELECT id FROM picked) RETURNING *"
        )
        async with self.transaction() as conn:
            async with conn.execute(sql, (*params, limit, now_iso(now + lease), token)) as cur:
                rows = await cur.fetchall()
        states = [FeedState.from_row(r) for r in rows]
        states.sort(key=lambda s: (s.next_check is not None, s.next_check or now, s.id))
        return states

    async def release_feeds(self, token: str, ids: Sequence[str]) -> None:
        """End the leases ``token`` holds on ``ids`` without a poll: other instances may
        take them at once (the token stays, so the cycle that held them does not)."""
        if ids:
            await self.execute(
                "UPDATE feeds SET lease_until = NULL WHERE lease_token = ? "
                "AND id IN (SELECT value FROM json_each(?))",
                (token, json.dumps(list(ids))),
            )

    async def release_feed_leases(self) -> int:
        """Make due again the feeds leased by a process that died (SQLite, at the start of
        `libhub run`: one service per file, so a lease still running is a dead one's; a
        `feeds poll` running beside it keeps its token, and its poll still counts if the
        service has not taken the feed since). On PostgreSQL nothing is released here: see
        `release_feeds_of_silent`."""
        if self.dialect == POSTGRESQL:
            return 0
        return await self.execute(
            "UPDATE feeds SET lease_until = NULL WHERE lease_until IS NOT NULL"
        )

    async def release_feeds_of(self, claimant: str) -> int:
        """End every lease ``claimant`` (an instance) holds: it stops cleanly, and the feeds
        it was polling are due again at once (its tokens stay: nothing of it commits)."""
        if not claimant:
            return 0
        return await self.execute(
            "UPDATE feeds SET lease_until = NULL WHERE lease_until IS NOT NULL "
            "AND substr(lease_token, 1, length(?) + 1) = ? || '/'",
            (claimant, claimant),
        )

    async def release_feeds_of_silent(self, now: datetime, *, silent_since: datetime) -> int:
        """Make due now the feeds leased by instances whose last heartbeat is older than
        ``silent_since``, as `release_claims_of_silent` does for the outbox: a feed does not
        wait for a dead instance's lease to run out. Should it come back, its token is no
        longer the feed's once another instance leased it, and its result is dropped."""
        return await self.execute(
            "UPDATE feeds SET lease_until = NULL WHERE lease_until IS NOT NULL "
            "AND lease_until > ? AND EXISTS (SELECT 1 FROM instances gone "
            "WHERE gone.heartbeat_at < ? "
            "AND substr(feeds.lease_token, 1, length(gone.id) + 1) = gone.id || '/')",
            (now_iso(now), now_iso(silent_since)),
        )

    async def next_feed_check(
        self, now: datetime, *, skip: Collection[str] = ()
    ) -> datetime | None:
        """When the next polled feed may be leased: its next check, or when a lease
        another poll holds on it runs out, whichever is later (``now`` for a feed never
        checked); None when no feed is polled. ``skip`` leaves these feeds out."""
        stamp = now_iso(now)
        sql = (
            "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > ? "
            "AND (next_check IS NULL OR next_check < lease_until) THEN lease_until "
            f"ELSE COALESCE(next_check, ?) END) FROM feeds WHERE status <> 'gone' AND {_POLLED}"
        )
        params: list[object] = [stamp, stamp]
        if skip:
            sql += " AND feeds.id NOT IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(skip)))
        row = await self.fetchone(sql, params)
        return from_iso(row[0]) if row and row[0] else None

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
        lease: str | None = None,
    ) -> StoreResult:
        """Store one poll's items and queue their deliveries in the same transaction.

        A new item gets one outbox row per target when ``post(item)`` says so (initial
        sync and too-old items are stored as seen only). A known item whose content hash
        changed gets a new version and, for Matrix messages sent within ``edit_window``,
        an edit row, unless ``worth_an_edit(what was stored, item)`` says a reader would
        not notice the change. Nothing is queued twice: the outbox's unique key forbids it.

        With ``lease`` (the poll's lease token) nothing is written unless the feed is still
        leased under it: `LeaseLost` otherwise. The check is in this transaction, with the
        feed's row locked on PostgreSQL until it commits.
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
            if lease is not None:
                async with conn.execute(
                    f"SELECT lease_token FROM feeds WHERE id = ?{self.for_update()}", (feed_id,)
                ) as cur:
                    row = await cur.fetchone()
                if row is None or row["lease_token"] != lease:
                    raise LeaseLost(f"feed {feed_id}: its lease was taken over by another poll")

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
