"""The poll cycle against a real HTTP publisher that misbehaves in every way a web server can:
validators, rate limits, outages, slow and endless bodies, moves, removal, HTML pages,
edited, vanishing and returning items; health records and one ops notice per outage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feeds.fetch import Fetcher, make_session
from network.polling.poller import Poller
from network.routing.router import Router
from network.settings.loading import Duration
from network.settings.model import Settings, parse_settings
from network.storage import FeedState, ItemInput, Storage
from tests.publisher import FeedItem, Publisher, Scripted, rss

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@dataclass
class Rig:
    pub: Publisher
    storage: Storage
    poller: Poller
    settings: Settings
    notices: list[str] = field(default_factory=list)
    now: list[datetime] = field(default_factory=lambda: [T0])

    def advance(self, **delta: float) -> None:
        self.now[0] += timedelta(**delta)

    async def poll(self) -> str:
        [outcome] = await self.poller.poll_due(force=True)
        return outcome.status

    async def state(self) -> FeedState:
        state = await self.storage.feed_state("f")
        assert state is not None, "the feed has no state yet"
        return state


@pytest.fixture
async def rig(tmp_path: Path, db_location: str | Path) -> AsyncIterator[Rig]:
    pub = await Publisher().start()
    settings = parse_settings(
        f"""
[matrix]
homeserver = "http://127.0.0.1:1"
user_id = "@bot:localhost"
password_env = "X"
[polling]
initial_posts = 100
max_age = "3650d"
timeout = "1s"
max_body_mib = 0.25
[[kind_rules]]
kind = "cohort-update"
title_keywords = ["cohort update"]
[[feeds]]
id = "f"
url = "{pub.url("f.xml")}"
rooms = ["!room:localhost"]
""",
        base_dir=tmp_path,
    )
    storage = await Storage.open(db_location)
    session = make_session()
    fetcher = Fetcher(
        session,
        user_agent="libhub-test (+http://example.org)",
        read_timeout=1.0,
        max_bytes=int(0.25 * 2**20),
    )
    r = Rig(pub, storage, None, settings)  # type: ignore[arg-type]

    async def notify(text: str) -> None:
        r.notices.append(text)

    r.poller = Poller(
        settings,
        storage,
        fetcher,
        router=Router(settings),
        notify_ops=notify,
        clock=lambda: r.now[0],
        rnd=lambda: 0.5,
    )
    await r.poller.prepare()
    try:
        yield r
    finally:
        await session.close()
        await storage.close()
        await pub.close()


def doc(*items: FeedItem) -> bytes:
    return rss("Test feed", list(items))


A = FeedItem("a", "First item", summary="one")
B = FeedItem("b", "Second item", summary="two")


async def test_conditional_get_costs_no_parsing(rig: Rig) -> None:
    rig.pub.documents["f.xml"] = doc(A)
    assert await rig.poll() == "ok"
    rig.advance(hours=1)
    assert await rig.poll() == "not-modified"
    assert rig.pub.requests[-1].get("If-None-Match", "").startswith('"')
    assert "libhub-test" in rig.pub.requests[-1]["User-Agent"]
    state = await rig.state()
    assert state.status == "ok" and state.last_success == rig.now[0]


async def test_rate_limit_and_outage_give_one_notice_each_way(rig: Rig) -> None:
    rig.pub.documents["f.xml"] = doc(A)
    rig.pub.script["f.xml"] = [
        Scripted(429, b"slow down", {"Retry-After": "7200"}),
        Scripted(503, b"down"),
        Scripted(500, b"still down"),
    ]
    assert await rig.poll() == "failing"
    state = await rig.state()
    assert state.next_check is not None and state.next_check >= T0 + timedelta(seconds=7200)
    assert state.consecutive_errors == 1 and "429" in (state.last_error or "")
    assert await rig.poll() == "failing"
    assert await rig.poll() == "failing"
    assert (await rig.state()).consecutive_errors == 3
    assert len(rig.notices) == 1 and "failing" in rig.notices[0]
    assert await rig.poll() == "ok"
    assert len(rig.notices) == 2 and "working again" in rig.notices[1]
    state = await rig.state()
    assert state.consecutive_errors == 0 and state.last_error is None


async def test_backoff_grows_and_is_capped(rig: Rig) -> None:
    rig.pub.script["f.xml"] = [Scripted(503) for _ in range(12)]
    delays = []
    for _ in range(12):
        await rig.poll()
        state = await rig.state()
        assert state.next_check is not None
        delays.append((state.next_check - rig.now[0]).total_seconds())
    assert delays[0] < delays[3] < delays[6]
    assert max(delays) <= 6 * 3600
    assert (await rig.state()).status == "failing"  # never given up


async def test_slow_response_past_the_read_timeout(rig: Rig) -> None:
    rig.pub.script["f.xml"] = [Scripted(200, doc(A), delay=3.0)]
    assert await rig.poll() == "failing"
    assert "time" in ((await rig.state()).last_error or "").lower()


async def test_endless_body_is_cut_at_the_cap(rig: Rig) -> None:
    rig.pub.script["f.xml"] = [Scripted(200, endless=True)]
    assert await rig.poll() == "failing"
    assert "larger than" in ((await rig.state()).last_error or "")


async def test_permanent_redirect_updates_the_url(rig: Rig) -> None:
    rig.pub.documents["new.xml"] = doc(A)
    rig.pub.script["f.xml"] = [Scripted(301, headers={"Location": rig.pub.url("new.xml")})]
    assert await rig.poll() == "ok"
    assert (await rig.state()).url == rig.pub.url("new.xml")
    rig.pub.documents["new.xml"] = doc(B, A)
    await rig.poll()
    assert rig.pub.hits.get("f.xml") == 1 and rig.pub.hits["new.xml"] == 2


async def test_gone_feed_is_disabled_and_reported(rig: Rig) -> None:
    rig.pub.script["f.xml"] = [Scripted(410, b"gone")]
    assert await rig.poll() == "gone"
    state = await rig.state()
    assert state.status == "gone" and state.next_check is None
    assert "410" in (state.last_error or "") and len(rig.notices) == 1
    # Never due again: a month later, a scheduled cycle polls nothing.
    rig.advance(days=30)
    assert await rig.poller.poll_due() == []


async def test_not_found_is_reported_and_retried(rig: Rig) -> None:
    assert await rig.poll() == "failing"  # documents has no f.xml: 404
    assert "404" in ((await rig.state()).last_error or "")


async def test_html_page_is_not_a_feed(rig: Rig) -> None:
    rig.pub.script["f.xml"] = [
        Scripted(
            200,
            b"<!DOCTYPE html><html><head><title>Error</title></head><body>Oops</body></html>",
            content_type="text/html",
        )
    ]
    assert await rig.poll() == "not-a-feed"
    state = await rig.state()
    assert state.status == "not-a-feed" and (state.last_error or "").startswith("not a feed")


async def test_changed_item_is_flagged_updated_and_vanishing_items_are_not_reposted(
    rig: Rig,
) -> None:
    rig.pub.documents["f.xml"] = doc(A, B)
    await rig.poller.poll_due(force=True)
    assert (await rig.storage.outbox_counts())["pending"] == 2
    rig.pub.documents["f.xml"] = doc(FeedItem("a", "First item", summary="one, corrected"), B)
    [o] = await rig.poller.poll_due(force=True)
    assert (o.new, o.updated) == (0, 1)
    # Items vanish from the feed and come back: nothing new, nothing re-queued.
    rig.pub.documents["f.xml"] = doc(B)
    [o] = await rig.poller.poll_due(force=True)
    rig.pub.documents["f.xml"] = doc(FeedItem("a", "First item", summary="one, corrected"), B)
    [o] = await rig.poller.poll_due(force=True)
    assert (o.new, o.updated, o.queued) == (0, 0, 0)
    assert await rig.storage.item_count() == 2


async def test_old_items_are_never_posted(rig: Rig, tmp_path: Path) -> None:
    from dataclasses import replace

    rig.poller.settings = replace(
        rig.settings, polling=replace(rig.settings.polling, max_age=Duration(days=7))
    )
    old = FeedItem("old", "Old news", published=T0 - timedelta(days=30))
    fresh = FeedItem("new", "Fresh news", published=T0 - timedelta(days=1))
    rig.pub.documents["f.xml"] = doc(fresh, old)
    [o] = await rig.poller.poll_due(force=True)
    assert (o.new, o.queued) == (2, 1)


async def test_configured_kind_rules_and_webinar_times(rig: Rig) -> None:
    rig.pub.documents["f.xml"] = doc(
        FeedItem(
            "w",
            "Webinar: Wi-Fi after hours",
            summary="Join us Tuesday, December 8, 2026 at 2:00 PM ET.",
        ),
        FeedItem("c", "Cohort update from Ignacio"),
        FeedItem("n", "Board meeting minutes"),
    )
    await rig.poll()
    items = await rig.storage.items_by_id([1, 2, 3])
    kinds = {i.key: (i.kind, i.event_start) for i in items.values()}
    assert kinds["w"] == ("webinar", datetime(2026, 12, 8, 19, 0, tzinfo=UTC))
    assert kinds["c"][0] == "cohort-update"
    assert kinds["n"] == ("news", None)


async def test_a_date_at_the_end_of_time_is_no_start_and_harms_nothing(rig: Rig) -> None:
    rig.pub.documents["f.xml"] = doc(
        FeedItem("w", "Webinar: end of time", summary="Join us December 31, 9999 at 11 PM PT."),
        FeedItem("x", "Webinar: ISO", summary="Starts 9999-12-31T23:00-05:00."),
    )
    assert await rig.poll() == "ok"
    items = await rig.storage.items_by_id([1, 2])
    assert {i.key: i.event_start for i in items.values()} == {"w": None, "x": None}


async def test_a_feed_that_trips_a_bug_backs_off_and_the_others_go_on(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import network.polling.poller as poller_module

    real_enrich = poller_module.enrich  # type: ignore[attr-defined]

    def enrich(item, *args, **kwargs):  # type: ignore[no-untyped-def]
        if item.title == "Poison":
            raise RuntimeError("a bug this item happens to trip")
        return real_enrich(item, *args, **kwargs)

    monkeypatch.setattr(poller_module, "enrich", enrich)
    rig.pub.documents["f.xml"] = doc(FeedItem("p", "Poison"))
    rig.pub.documents["g.xml"] = doc(A)
    settings = parse_settings(
        f"""
[matrix]
homeserver = "http://127.0.0.1:1"
user_id = "@bot:localhost"
password_env = "X"
[[feeds]]
id = "f"
url = "{rig.pub.url("f.xml")}"
rooms = ["!room:localhost"]
[[feeds]]
id = "g"
url = "{rig.pub.url("g.xml")}"
rooms = ["!room:localhost"]
""",
        base_dir=tmp_path,
    )
    rig.poller.settings = settings
    await rig.poller.prepare()
    outcomes = {o.feed_id: o for o in await rig.poller.poll_due(force=True)}
    assert outcomes["g"].status == "ok" and outcomes["g"].new == 1
    assert outcomes["f"].status == "failing"
    assert "could not process this feed (RuntimeError" in str(outcomes["f"].error)
    state = await rig.storage.feed_state("f")
    assert state is not None and state.next_check is not None
    assert state.next_check >= T0 + timedelta(seconds=30)  # backs off, not at once
    assert await rig.poller._seconds_to_next_due() > 1


async def test_a_feed_taken_out_of_the_config_is_never_due_again(rig: Rig, tmp_path: Path) -> None:
    rig.pub.documents["f.xml"] = doc(A)
    await rig.poll()
    await rig.storage.update_feed("f", next_check=None)  # as an old row may hold
    rig.poller.settings = parse_settings(
        """
[matrix]
homeserver = "http://127.0.0.1:1"
user_id = "@bot:localhost"
password_env = "X"
""",
        base_dir=tmp_path,
    )
    await rig.poller.prepare()  # the next start, with the new configuration
    assert await rig.poller._seconds_to_next_due() == 60.0
    hits = rig.pub.hits.get("f.xml")
    assert await rig.poller.poll_due() == [] and await rig.poller.poll_due(force=True) == []
    assert rig.pub.hits.get("f.xml") == hits
    assert (await rig.state()).title == "Test feed"  # its row and history stay


async def test_a_reused_guid_stays_with_its_item_and_the_newcomer_is_new(rig: Rig) -> None:
    # Publishers list newest first; this one gives an old item's guid to a new item.
    old = FeedItem("a", "Budget approved", link="http://example.org/budget", summary="Yes.")
    new = FeedItem("a", "Branch closes for repairs", link="http://example.org/repairs")
    delivered: list[str] = []

    async def hook(feed_id: str, items: Sequence[ItemInput], now: datetime) -> None:
        delivered.extend(i.title for i in items)  # what the mail digests receive

    rig.poller.item_hooks.append(hook)
    rig.pub.documents["f.xml"] = doc(old)
    await rig.poll()
    rig.pub.documents["f.xml"] = doc(new, old)
    [o] = await rig.poller.poll_due(force=True)
    assert (o.new, o.updated, o.queued) == (1, 0, 1)
    assert delivered == ["Budget approved", "Branch closes for repairs"]
    rows = await rig.storage.fetchall("SELECT key, title FROM items ORDER BY id")
    assert [r["title"] for r in rows] == ["Budget approved", "Branch closes for repairs"]
    assert rows[0]["key"] == "a" and rows[1]["key"].startswith("a#")
    outbox = await rig.storage.fetchall("SELECT action, item_id FROM outbox ORDER BY id")
    assert [r["action"] for r in outbox] == ["post", "post"]
    # The next polls change nothing, whichever of the two the feed still lists.
    for listing in ((new, old), (new,), (old, new)):
        rig.pub.documents["f.xml"] = doc(*listing)
        [o] = await rig.poller.poll_due(force=True)
        assert (o.new, o.updated, o.queued) == (0, 0, 0), listing
