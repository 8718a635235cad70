"""Burst grouping is fixed by the poll that stored the rows: a retried group is the same
message with the same transaction id, even when another feed stored rows in the same
second (the homeserver answers a resent transaction id with the first message, so a
group that grew on retry would lose the rows it gained)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from network.delivery.messages import MessagePlanning
from network.storage import ItemInput, Storage, Target

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ROOM = "!room:example.org"


def item(key: str) -> ItemInput:
    return ItemInput(
        key=key, kind="news", title=key, link=None, published=None, author=None,
        categories=(), summary_html="", enclosures=(), event_start=None, content_hash=key,
    )  # fmt: skip


async def store(storage: Storage, feed: str, keys: list[str]) -> None:
    await storage.store_items(
        feed,
        [item(k) for k in keys],
        targets=lambda _i: [Target("matrix", ROOM)],
        post=lambda _i: True,
        edit_window=timedelta(hours=1),
        now=T0,  # one poll cycle: every feed stores with the cycle's start time
    )


async def test_a_group_retried_after_another_feed_stored_in_the_same_second(
    db_location: str | Path,
) -> None:
    storage = await Storage.open(db_location)
    try:
        await storage.sync_feeds([("a", "http://a.example/"), ("b", "http://b.example/")])
        planner = MessagePlanning(storage, None, None, feed_titles=lambda f: f)  # type: ignore[arg-type]
        await store(storage, "a", [f"a{i}" for i in range(12)])
        [first] = await planner._plan(ROOM, await storage.claim_due(T0 + timedelta(seconds=5)))
        assert first.action == "group" and len(first.members) == 12
        # The send timed out (it may have reached the server): the rows wait for a retry.
        await storage.mark_retry_many(
            [r.id for r in first.members], error="timeout", next_attempt=T0
        )
        # A slower feed of the same cycle stores its own burst, stamped the same second.
        await store(storage, "b", [f"b{i}" for i in range(12)])
        units = await planner._plan(ROOM, await storage.claim_due(T0 + timedelta(seconds=60)))
        again = next(u for u in units if u.head.id == first.head.id)
        assert [r.id for r in again.members] == [r.id for r in first.members]
        assert again.head.txn_id == first.head.txn_id
        others = [u for u in units if u is not again]
        assert len(others) == 1 and others[0].action == "group" and len(others[0].members) == 12
        assert {r.item_id for r in others[0].members}.isdisjoint({r.item_id for r in first.members})
    finally:
        await storage.close()
