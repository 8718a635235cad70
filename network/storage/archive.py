"""The public archive: pages of what the network posted, newest first (in the order the
items were stored), with full-text search (the ``items_fts`` FTS5 index of migration 6,
kept in step by triggers).

Which items may be shown is decided by the caller (the feeds of a page); one rule is kept
here, in `VISIBLE`, because it is about rows: a member's cohort update is shown only while
its ``cohort_updates`` row is ``active``. Withdrawn updates are not, and neither will be
any later state such as ``held`` for moderation: the test is "active", not "not withdrawn".
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from network.storage.base import Database, from_iso
from network.storage.dialect import POSTGRESQL

# Feed items have no cohort_updates row; members' updates (feed "cohort:<id>") need an
# active one, so an update stored but not (yet) linked or approved stays out.
VISIBLE = (
    "(items.feed_id NOT LIKE 'cohort:%' OR EXISTS (SELECT 1 FROM cohort_updates u "
    "WHERE u.item_id = items.id AND u.status = 'active'))"
)
MAX_QUERY_WORDS = 8


@dataclass(frozen=True)
class ArchiveEntry:
    id: int
    feed_id: str
    kind: str
    title: str
    link: str | None
    published: datetime | None
    first_seen: datetime
    updated_at: datetime
    summary_html: str
    author: str | None
    categories: tuple[str, ...]


@dataclass(frozen=True)
class ArchivePage:
    entries: list[ArchiveEntry]
    page: int
    has_next: bool


def match_expression(query: str) -> str | None:
    """An FTS5 query finding items with every word of ``query`` (None: no words). Each word
    is quoted, so nothing a visitor types is read as FTS5 syntax (AND, NEAR, "*", ...)."""
    words = re.findall(r"\w+", query)[:MAX_QUERY_WORDS]
    return " ".join(f'"{w}"' for w in words) or None


def _sqlite_where(feed_ids: Sequence[str], kinds: Sequence[str]) -> tuple[str, list[object]]:
    # "+" keeps the planner from sorting what an index on feed_id or kind would return.
    where = f"+items.feed_id IN (SELECT value FROM json_each(?)) AND {VISIBLE}"
    params: list[object] = [json.dumps(list(feed_ids))]
    if kinds:
        where += " AND +items.kind IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(list(kinds)))
    return where, params


def _postgres_ids(
    feed_ids: Sequence[str], kinds: Sequence[str], query: str
) -> tuple[str, list[object]]:
    """The page's ids on PostgreSQL: the GIN index of migration 7 (items_search) instead of
    FTS5, every word required, as on SQLite."""
    where = f"items.feed_id = ANY(?) AND {VISIBLE}"
    params: list[object] = [list(feed_ids)]
    if kinds:
        where += " AND items.kind = ANY(?)"
        params.append(list(kinds))
    words = re.findall(r"\w+", query)[:MAX_QUERY_WORDS]
    if words:
        where += (
            " AND to_tsvector('simple', coalesce(items.title, '') || ' ' || "
            "coalesce(items.summary_html, '')) @@ plainto_tsquery('simple', ?)"
        )
        params.append(" ".join(words))
    return f"SELECT id FROM items WHERE {where} ORDER BY id DESC", params


class ArchiveStore(Database):
    async def archive_page(
        self,
        *,
        feed_ids: Sequence[str],
        kinds: Sequence[str] = (),
        query: str = "",
        page: int = 1,
        per_page: int = 20,
    ) -> ArchivePage:
        """Page ``page`` (from 1) of the visible items of ``feed_ids`` (of ``kinds`` when
        given, matching ``query`` when given), newest first."""
        # The page's ids first (from the items_scope index, or driven by the FTS5 index in
        # rowid order for a search: both stop after the page), then their rows. "+" keeps
        # the planner from sorting what an index on feed_id or kind would return.
        match = match_expression(query)
        if self.dialect == POSTGRESQL:
            ids, params = _postgres_ids(feed_ids, kinds, query)
        elif match is None:
            where, params = _sqlite_where(feed_ids, kinds)
            ids = f"SELECT id FROM items WHERE {where} ORDER BY id DESC"
        else:
            where, params = _sqlite_where(feed_ids, kinds)
            ids = (
                "SELECT items.id FROM items_fts JOIN items ON items.id = items_fts.rowid "
                f"WHERE items_fts MATCH ? AND {where} ORDER BY items_fts.rowid DESC"
            )
            params.insert(0, match)
        page = max(1, page)
        params += [per_page + 1, (page - 1) * per_page]
        sql = (
            "SELECT id, feed_id, kind, title, link, published, first_seen, updated_at, "
            f"summary_html, author, categories FROM items WHERE id IN ({ids} LIMIT ? OFFSET ?) "
            "ORDER BY id DESC"
        )
        rows = await self.fetchall(sql, params)
        entries = [
            ArchiveEntry(
                id=int(r["id"]),
                feed_id=str(r["feed_id"]),
                kind=str(r["kind"]),
                title=str(r["title"]),
                link=r["link"],
                published=from_iso(r["published"]),
                first_seen=_stamp(r["first_seen"]),
                updated_at=_stamp(r["updated_at"]),
                summary_html=str(r["summary_html"]),
                author=r["author"],
                categories=tuple(json.loads(r["categories"])),
            )
            for r in rows[:per_page]
        ]
        return ArchivePage(entries, page, has_next=len(rows) > per_page)


def _stamp(value: str) -> datetime:
    found = from_iso(value)
    assert found is not None
    return found
