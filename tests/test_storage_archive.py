"""The archive's queries on both backends: paging newest first and full-text search
(SQLite's FTS5 index, PostgreSQL's GIN index over the same words)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from network.storage import ItemInput, Storage


def item(key: str, title: str, summary: str) -> ItemInput:
    return ItemInput(
        key=key, kind="news", title=title, link=None, published=None, author=None,
        categories=(), summary_html=summary, enclosures=(), event_start=None, content_hash=key,
    )  # fmt: skip


@pytest.fixture
async def storage(db_location: str | Path) -> AsyncIterator[Storage]:
    s = await Storage.open(db_location)
    try:
        yield s
    finally:
        await s.close()


async def test_archive_pages_and_search_on_both_backends(storage: Storage) -> None:
    items = [item(f"k{n}", f"News {n}", f"<p>Ordinary update number {n}.</p>") for n in range(25)]
    items.append(item("kiosk", "Book kiosk opens", "<p>A vending <b>kiosk</b> at the depot.</p>"))
    await storage.store_items(
        "news",
        items,
        targets=lambda _i: [],
        post=lambda _i: False,
        edit_window=timedelta(hours=1),
        now=datetime(2026, 12, 1, tzinfo=UTC),
    )
    first = await storage.archive_page(feed_ids=["news"], page=1, per_page=20)
    second = await storage.archive_page(feed_ids=["news"], page=2, per_page=20)
    assert [e.title for e in first.entries][:2] == ["Book kiosk opens", "News 24"]
    assert len(first.entries) == 20 and len(second.entries) == 6
    found = await storage.archive_page(feed_ids=["news"], query="vending kiosk")
    assert [e.title for e in found.entries] == ["Book kiosk opens"]
    # Every word must match; a word no item has finds nothing; other feeds are not searched.
    assert (await storage.archive_page(feed_ids=["news"], query="kiosk unicorn")).entries == []
    assert (await storage.archive_page(feed_ids=["other"], query="kiosk")).entries == []
