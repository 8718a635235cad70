"""Feed leases in storage, on both backends: which feeds are due and polled, one lease at a
time per feed, a cycle's token that never takes a feed twice, fencing of a poll whose
lease was taken over, and the feeds of a silent instance due again at once. Two Storage
connections on one PostgreSQL stand for two instances leasing at the same moment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from network.errors import LeaseLost
from network.storage import Storage, Target
from network.storage.live_feeds import LiveFeedRecord
from tests.pgkit import PgServer
from tests.test_delivery_grouping import item

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


async def _feeds(s: Storage, n: int) -> list[str]:
    ids = [f"f{i:03d}" for i in range(n)]
    await s.sync_feeds([(i, f"http://example.org/{i}.xml") for i in ids])
    return ids


async def _lease(s: Storage, token: str, now: datetime = T0, **kw: object) -> list[str]:
    states = await s.lease_feeds(now, token=token, limit=100, lease=LEASE, **kw)  # type: ignore[arg-type]
    return [st.id for st in states]


async def test_only_due_polled_unleased_feeds_are_leased(db_location: str | Path) -> None:
    s = await Storage.open(db_location)
    try:
        await _feeds(s, 5)
        await s.update_feed("f001", next_check=T0 + timedelta(minutes=10))  # not due yet
        await s.update_feed("f002", status="gone", next_check=None)  # the publisher said 410
        await s.update_feed("f003", next_check=T0 - timedelta(minutes=1))
        # A live feed (polled while not paused) and a paused one.
        for fid, paused in (("live", False), ("paused", True)):
            await s.add_live_feed(
                LiveFeedRecord(
                    fid, f"http://example.org/{fid}", "news", "", (), (), "", (), paused, "cli", T0
                )
            )
        # f004 is taken out of the config file: its row stays, never leased again.
        await s.sync_feeds([(f"f00{i}", f"http://example.org/f00{i}.xml") for i in range(4)])
        assert (await s.feed_state("f004")) is not None

        assert await _lease(s, "a/1") == ["f000", "live", "f003"]  # never checked first
        # Leased: nobody else takes them while the lease runs.
        assert await _lease(s, "b/1", T0 + timedelta(minutes=4)) == []
        # Another cycle of the same instance after the lease ran out: due again.
        assert await _lease(s, "a/2", T0 + timedelta(minutes=6)) == ["f000", "live", "f003"]
        # By hand (any time): the schedule and the status do not matter, leases and the
        # polled set do.
        later = T0 + timedelta(minutes=12)
        assert set(await _lease(s, "c/1", later, any_time=True)) == {
            "f000", "f001", "f002", "f003", "live"
        }  # fmt: skip
        # One feed by id (a feed just added live), and one left out on purpose.
        even_later = later + LEASE
        assert await _lease(s, "d/1", even_later, any_time=True, ids=["paused"]) == ["paused"]
        assert await _lease(s, "d/2", even_later, skip={"f000"}) == ["live", "f003", "f001"]
    finally:
        await s.close()


async def test_a_cycle_never_takes_a_feed_twice_and_the_next_check_is_reported(
    db_location: str | Path,
) -> None:
    s = await Storage.open(db_location)
    try:
        await _feeds(s, 3)
        assert await s.next_feed_check(T0) == T0  # never checked: due now
        got = await s.lease_feeds(T0, token="a/1", limit=2, lease=LEASE)
        assert [g.id for g in got] == ["f000", "f001"]
        # f000 is polled and due again at once (a zero interval, or a poll by hand): the
        # cycle that polled it does not take it again, the next cycle does.
        await s.update_feed("f000", lease="a/1", next_check=T0, last_check=T0)
        assert await _lease(s, "a/1", any_time=True) == ["f002"]
        assert await _lease(s, "a/2") == ["f000"]
        # Handing a feed back without polling it: others may take it at once.
        await s.release_feeds("a/2", ["f000"])
        assert await _lease(s, "b/1") == ["f000"]
        # Every feed leased: the next one is free when the first lease runs out.
        assert await s.next_feed_check(T0) == T0 + LEASE
        await s.update_feed("f000", lease="b/1", next_check=T0 + timedelta(minutes=2))
        await s.update_feed("f001", lease="a/1", next_check=T0 + timedelta(minutes=30))
        await s.update_feed("f002", lease="a/1", next_check=T0 + timedelta(minutes=1))
        assert await s.next_feed_check(T0) == T0 + timedelta(minutes=1)
        assert await s.next_feed_check(T0, skip={"f002"}) == T0 + timedelta(minutes=2)
        await s.sync_feeds([])  # none configured any more
        assert await s.next_feed_check(T0) is None
    finally:
        await s.close()


async def test_a_poll_whose_lease_was_taken_over_commits_nothing(db_location: str | Path) -> None:
    a = await Storage.open(db_location)
    b = await Storage.open(db_location)
    try:
        await _feeds(a, 1)
        [mine] = await a.lease_feeds(T0, token="a/1", limit=1, lease=LEASE)
        # a stalls past its lease; b takes the feed over and stores what it found.
        later = T0 + LEASE + timedelta(seconds=1)
        [theirs] = await b.lease_feeds(later, token="b/1", limit=1, lease=LEASE)
        assert mine.id == theirs.id == "f000"

        async def store(s: Storage, token: str, keys: list[str]) -> None:
            await s.store_items(
                "f000", [item(k) for k in keys],
                targets=lambda _i: [Target("matrix", "!r:x")], post=lambda _i: True,
                edit_window=timedelta(hours=1), now=later, lease=token,
            )  # fmt: skip

        await store(b, "b/1", ["k1", "k2"])
        await b.update_feed("f000", lease="b/1", etag='"b"', last_check=later)
        # a's late result: neither its items nor its feed state are written.
        with pytest.raises(LeaseLost):
            await store(a, "a/1", ["k1", "k2", "stale"])
        with pytest.raises(LeaseLost):
            await a.update_feed("f000", lease="a/1", etag='"a"', last_check=T0)
        assert await a.item_count() == 2
        assert (await a.outbox_counts())["pending"] == 2
        state = await a.feed_state("f000")
        assert state is not None and (state.etag, state.last_check) == ('"b"', later)
    finally:
        await a.close()
        await b.close()


async def test_the_feeds_of_a_silent_instance_are_due_again_at_once(
    db_location: str | Path,
) -> None:
    s = await Storage.open(db_location)
    try:
        await _feeds(s, 2)
        for who in ("host:1:a", "host:2:b"):
            await s.heartbeat(who, host="host", pid=1, started_at=T0, now=T0)
        assert await _lease(s, "host:1:a/c1") == ["f000", "f001"]
        soon = T0 + timedelta(seconds=10)
        assert await s.release_feeds_of_silent(soon, silent_since=soon - timedelta(seconds=15)) == 0
        later = T0 + timedelta(seconds=20)
        await s.heartbeat("host:2:b", host="host", pid=2, started_at=T0, now=later)
        assert (
            await s.release_feeds_of_silent(later, silent_since=later - timedelta(seconds=15)) == 2
        )
        assert await _lease(s, "host:2:b/c1", later) == ["f000", "f001"]
        # a comes back after the fact: fenced off.
        with pytest.raises(LeaseLost):
            await s.update_feed("f000", lease="host:1:a/c1", last_check=later)
        # b stops cleanly: its leases end at once (and only its own, not host:2:bb's).
        await s.sync_feeds([("f000", "x"), ("f001", "x"), ("f002", "x")])
        assert await _lease(s, "host:2:bb/c1", later) == ["f002"]
        assert await s.release_feeds_of("host:2:b") == 2
        assert await _lease(s, "host:3:c/c1", later) == ["f000", "f001"]
    finally:
        await s.close()


async def test_concurrent_leases_never_share_a_feed(postgres: PgServer) -> None:
    url = await postgres.new_database()
    a, b = await Storage.open(url), await Storage.open(url)
    try:
        ids = await _feeds(a, 200)
        taken: dict[str, list[str]] = {"a": [], "b": []}

        async def cycle(s: Storage, name: str) -> None:
            while got := await s.lease_feeds(T0, token=f"{name}/1", limit=7, lease=LEASE):
                taken[name].extend(g.id for g in got)
                await asyncio.sleep(0)

        await asyncio.gather(cycle(a, "a"), cycle(b, "b"))
        assert taken["a"] and taken["b"]
        assert not set(taken["a"]) & set(taken["b"])
        assert sorted(taken["a"] + taken["b"]) == ids
    finally:
        await a.close()
        await b.close()
