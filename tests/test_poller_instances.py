"""Polling shared by several instances on one PostgreSQL (two Pollers, each with its own
Storage, HTTP session and claimant, stand for two processes) against a real aiohttp
publisher: each due feed is fetched once per cycle by one of them, a lease a dead
instance abandoned is taken once it runs out, and a poll whose lease was taken over
commits nothing. Last, a `libhub run` service that does not lead polls too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from feeds.fetch import Fetcher, make_session
from network.devtools.devserver import free_port
from network.polling.poller import Poller, PollOutcome
from network.routing.router import Router
from network.service import Service
from network.settings.model import Settings, parse_settings
from network.storage import Storage
from tests.pgkit import PgServer
from tests.publisher import FeedItem, Publisher, Scripted, rss
from tests.waiting import eventually

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ROOMS = ("!one:localhost", "!two:localhost")
LEASE = timedelta(minutes=1)


def _settings(tmp: Path, pub: Publisher, n: int, *, concurrency: int = 4) -> Settings:
    feeds = "".join(
        f'[[feeds]]\nid = "f{i:03d}"\nurl = "{pub.url(f"f{i:03d}.xml")}"\n'
        f"rooms = {list(ROOMS)!r}\n".replace("'", '"')
        for i in range(n)
    )
    return parse_settings(
        f"""
[matrix]
homeserver = "http://127.0.0.1:1"
user_id = "@bot:localhost"
password_env = "X"
[polling]
initial_posts = 100
max_age = "3650d"
timeout = "5s"
concurrency = {concurrency}
{feeds}""",
        base_dir=tmp,
    )


def _doc(feed: int, generation: int) -> bytes:
    """Generation n lists items g<n> … g0, newest first."""
    items = [FeedItem(f"g{g}", f"Feed {feed} item {g}") for g in range(generation, -1, -1)]
    return rss(f"Feed {feed}", items)


@dataclass
class Pair:
    pub: Publisher
    url: str
    a: Poller
    b: Poller
    now: list[datetime]

    def advance(self, delta: timedelta) -> None:
        self.now[0] += delta


async def _poller(
    stack: AsyncExitStack,
    url: str,
    settings: Settings,
    claimant: str,
    clock: Callable[[], datetime],
) -> Poller:
    storage = await Storage.open(url)
    stack.push_async_callback(storage.close)
    storage.claimant = claimant
    session = make_session()
    stack.push_async_callback(session.close)
    fetcher = Fetcher(session, user_agent="libhub-test", read_timeout=5.0)
    poller = Poller(
        settings, storage, fetcher, router=Router(settings), clock=clock,
        rnd=lambda: 0.5, lease=LEASE,
    )  # fmt: skip
    await poller.prepare()
    return poller


@pytest.fixture
async def pair(postgres: PgServer, tmp_path: Path) -> AsyncIterator[Pair]:
    async with AsyncExitStack() as stack:
        pub = await Publisher().start()
        stack.push_async_callback(pub.close)
        url = await postgres.new_database()
        now = [T0]
        settings = _settings(tmp_path, pub, 150)
        a = await _poller(stack, url, settings, "host:1:a", lambda: now[0])
        b = await _poller(stack, url, settings, "host:2:b", lambda: now[0])
        yield Pair(pub, url, a, b, now)


async def _outbox_per_item_and_room(s: Storage) -> list[int]:
    rows = await s.fetchall(
        "SELECT COUNT(*) AS n FROM outbox WHERE action = 'post' GROUP BY item_id, target"
    )
    return [int(r["n"]) for r in rows]


async def test_two_instances_share_each_cycle_and_fetch_every_feed_once(pair: Pair) -> None:
    paths = [f"f{i:03d}.xml" for i in range(150)]
    for generation in (0, 1):
        for i, path in enumerate(paths):
            pair.pub.documents[path] = _doc(i, generation)
        got_a, got_b = await asyncio.gather(pair.a.poll_due(), pair.b.poll_due())
        # Every feed fetched once in the cycle, by one instance or the other; both worked.
        assert {pair.pub.hits[p] for p in paths} == {generation + 1}
        ids_a, ids_b = {o.feed_id for o in got_a}, {o.feed_id for o in got_b}
        assert ids_a and ids_b and not ids_a & ids_b
        assert ids_a | ids_b == {p.removesuffix(".xml") for p in paths}
        assert {o.status for o in got_a + got_b} == {"ok"}
        assert sum(o.new for o in got_a + got_b) == 150
        # Nothing is due before the next checks (30 minutes, half jittered).
        assert await pair.a.poll_due() == [] and await pair.b.poll_due() == []
        assert await pair.a._seconds_to_next_due() == 60.0
        pair.advance(timedelta(hours=1))
    storage = pair.a.storage
    assert await storage.item_count() == 150 * 2
    keys = await storage.fetchall("SELECT COUNT(DISTINCT feed_id || '/' || key) FROM items")
    assert int(keys[0][0]) == 150 * 2
    per = await _outbox_per_item_and_room(storage)
    assert len(per) == 150 * 2 * len(ROOMS) and set(per) == {1}


async def test_a_lease_abandoned_by_a_dead_instance_is_taken_when_it_runs_out(
    pair: Pair,
) -> None:
    for i in range(150):
        pair.pub.documents[f"f{i:03d}.xml"] = _doc(i, 0)
    # Another instance leased three feeds and died before polling them.
    dead = await Storage.open(pair.url)
    try:
        dead.claimant = "host:9:dead"
        abandoned = await dead.lease_feeds(
            T0, token=dead.new_lease_token(), limit=3, lease=timedelta(seconds=30)
        )
    finally:
        await dead.close()
    left = {s.id for s in abandoned}
    assert len(left) == 3
    first = await pair.b.poll_due()
    assert {o.feed_id for o in first}.isdisjoint(left) and len(first) == 147
    assert all(pair.pub.hits.get(f"{f}.xml") is None for f in left)
    # Not every half second: b looks again when the dead instance's lease runs out.
    assert await pair.b._seconds_to_next_due() == 30.0
    pair.advance(timedelta(seconds=31))
    second = await pair.b.poll_due()
    assert {o.feed_id for o in second} == left and {o.status for o in second} == {"ok"}
    assert all(pair.pub.hits[f"{f}.xml"] == 1 for f in left)
    assert await pair.b.storage.item_count() == 150


async def test_a_poll_that_outlived_its_lease_is_fenced_off(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="network.polling.poller")
    for i in range(150):
        pair.pub.documents[f"f{i:03d}.xml"] = _doc(i, 0)
    await asyncio.gather(pair.a.poll_due(), pair.b.poll_due())
    pair.advance(timedelta(hours=1))
    # f000 has news. a's fetch of it stalls (a slow answer: a stale copy, with an item the
    # feed no longer lists) while a's lease runs out and b polls the feed.
    pair.pub.documents["f000.xml"] = _doc(0, 1)
    stale = rss(
        "Feed 0", [FeedItem("stale", "Only in a stale copy"), FeedItem("g0", "Feed 0 item 0")]
    )
    pair.pub.script["f000.xml"] = [Scripted(200, stale, delay=2.0)]
    # Only f000 is due: the others' next checks move on.
    await pair.a.storage.execute(
        "UPDATE feeds SET next_check = ? WHERE id <> 'f000'",
        ((T0 + timedelta(days=1)).isoformat(),),
    )
    a_cycle = asyncio.create_task(pair.a.poll_due())
    await eventually(lambda: pair.pub.hits["f000.xml"] == 2, within=10, what="a's fetch")
    pair.advance(LEASE + timedelta(seconds=1))
    b_at = pair.now[0]
    [b_outcome] = await pair.b.poll_due()
    assert (b_outcome.feed_id, b_outcome.status, b_outcome.new) == ("f000", "ok", 1)
    a_outcomes: list[PollOutcome] = await a_cycle
    assert a_outcomes == []
    assert "another instance took it over" in caplog.text
    storage = pair.a.storage
    keys = await storage.fetchall("SELECT key FROM items WHERE feed_id = 'f000' ORDER BY key")
    assert [r["key"] for r in keys] == ["g0", "g1"]  # b's: no stale item, nothing twice
    per = await _outbox_per_item_and_room(storage)
    assert len(per) == 151 * len(ROOMS) and set(per) == {1}
    state = await storage.feed_state("f000")
    assert state is not None and state.last_check == b_at
    row = await storage.fetchone("SELECT lease_token, lease_until FROM feeds WHERE id = 'f000'")
    assert row is not None and row["lease_token"].startswith("host:2:b/")
    assert row["lease_until"] is None


async def test_a_service_that_does_not_lead_polls_its_share(
    postgres: PgServer, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    bot_env["FOLLOWER_PW"] = "unused"
    url = await postgres.new_database()
    pub = await Publisher().start()
    port = free_port()
    feeds = "".join(f'[[feeds]]\nid = "s{i}"\nurl = "{pub.url(f"s{i}.xml")}"\n' for i in range(5))
    for i in range(5):
        pub.documents[f"s{i}.xml"] = _doc(i, 0)
    settings = parse_settings(
        f"""
[database]
url = "{url}"
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@bot:example.org"
password_env = "FOLLOWER_PW"
[web]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
{feeds}""",
        base_dir=tmp_path,
    )
    # Another instance leads (and keeps leading for the whole test).
    holder = await Storage.open(url)
    await holder.try_lead("host:7:leader", now=datetime.now(UTC), ttl=timedelta(hours=1))
    service = await Service.create(settings)

    async def never(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the Matrix sync runs on the leader only")

    service.matrix.sync_forever = never  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()
    running = asyncio.create_task(service.run(stop))
    try:

        async def all_polled() -> bool:
            states = await holder.feed_states()
            return len(states) == 5 and all(s.last_success is not None for s in states)

        await eventually(all_polled, within=60, what="the follower to poll every feed")
        assert not service.leadership.leading.is_set()
        assert {pub.hits[f"s{i}.xml"] for i in range(5)} == {1}
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
        await service.close()
        await holder.close()
        await pub.close()
