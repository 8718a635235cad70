"""What a poll cycle may hold at once: fetch slots for fetching only, and a byte budget for
fetched bodies waiting to be parsed, so a feed answering 304 never waits behind another
feed's parsing while memory stays bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

import network.polling.poller
from feeds.fetch import Fetcher, make_session
from feeds.parse import ParsedFeed, parse_feed
from network.polling.poller import BodyBudget, Poller, PollOutcome
from network.routing.router import Router
from network.settings.model import parse_settings
from network.storage import Storage
from tests.publisher import FeedItem, Publisher, rss

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


async def test_body_budget_admits_what_fits_and_one_oversized_body_alone() -> None:
    budget = BodyBudget(100)
    await budget.acquire(60)
    await budget.acquire(40)  # exactly full
    late = asyncio.create_task(budget.acquire(10))
    await asyncio.sleep(0)
    assert not late.done()
    await budget.release(60)
    await late
    assert budget.used == 50
    await budget.release(40)
    await budget.release(10)
    # A body larger than the whole budget gets in when nothing else is held...
    await budget.acquire(500)
    # ...and then nothing else does until it is released.
    small = asyncio.create_task(budget.acquire(1))
    await asyncio.sleep(0)
    assert not small.done()
    await budget.release(500)
    await small
    assert budget.used == 1


async def test_not_modified_feed_does_not_wait_for_another_feeds_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = await Publisher().start()
    pub.documents["a.xml"] = rss("A", [FeedItem("a1", "One")])
    pub.documents["b.xml"] = rss("B", [FeedItem("b1", "Two")])
    settings = parse_settings(
        f"""
[matrix]
homeserver = "http://127.0.0.1:1"
user_id = "@bot:localhost"
password_env = "X"
[polling]
concurrency = 1
[[feeds]]
id = "a"
url = "{pub.url("a.xml")}"
[[feeds]]
id = "b"
url = "{pub.url("b.xml")}"
""",
        base_dir=tmp_path,
    )
    storage = await Storage.open(tmp_path / "db.sqlite")
    session = make_session()
    poller = Poller(
        settings,
        storage,
        Fetcher(session, user_agent="libhub-test"),
        router=Router(settings),
        clock=lambda: T0,
        rnd=lambda: 0.5,
    )
    try:
        await poller.prepare()
        await poller.poll_due(force=True)  # both feeds known, with validators
        pub.documents["a.xml"] = rss("A", [FeedItem("a1", "One"), FeedItem("a2", "Three")])

        b_done = asyncio.Event()
        parsing_a = asyncio.Event()

        async def slow_parse(
            body: bytes, *, url: str, headers: Mapping[str, str] | None = None
        ) -> ParsedFeed:
            parsing_a.set()
            # Feed "a" (first in line, one fetch slot) is parsed only after "b" finished:
            # before fetch slots were released after fetching, this waited forever.
            await asyncio.wait_for(b_done.wait(), timeout=60)
            return parse_feed(body, url=url, headers=headers)

        monkeypatch.setattr(network.polling.poller, "parse_feed_in_process", slow_parse)

        def progress(outcome: PollOutcome) -> None:
            if outcome.feed_id == "b":
                assert parsing_a.is_set() and outcome.status == "not-modified"
                b_done.set()

        outcomes = await poller.poll_due(force=True, progress=progress)
        assert {o.feed_id: (o.status, o.new) for o in outcomes} == {
            "a": ("ok", 1),
            "b": ("not-modified", 0),
        }
    finally:
        await session.close()
        await storage.close()
        await pub.close()
