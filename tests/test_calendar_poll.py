"""A webinar the publisher takes down from its feed is cancelled on the calendars: the real
poller reading a real feed (aiohttp publisher), the calendar events read back from
SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from feeds.fetch import Fetcher, make_session
from network.community.calendars import current_events
from network.polling.poller import Poller
from network.routing.router import Router
from network.settings.model import parse_settings
from network.storage import Storage
from tests.publisher import FeedItem, Publisher, rss

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
OLD = FeedItem("old", "Last month's webinar", summary="Recording online.")
TALK = FeedItem(
    "talk", "Webinar: Grant writing", summary="Join us on December 10, 2026 at 2:00 PM ET."
)
NEWER = FeedItem("newer", "Webinar: Budgets", summary="Join us on December 12, 2026 at 2:00 PM ET.")


async def test_a_webinar_missing_from_the_next_poll_is_cancelled(tmp_path: Path) -> None:
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
[[feeds]]
id = "w"
url = "{pub.url("w.xml")}"
kind = "webinar"
""",
        base_dir=tmp_path,
    )
    storage = await Storage.open(tmp_path / "db.sqlite")
    session = make_session()
    fetcher = Fetcher(session, user_agent="libhub-test", read_timeout=1.0, max_bytes=2**18)
    now = [NOW]
    poller = Poller(
        settings, storage, fetcher, router=Router(settings), clock=lambda: now[0], rnd=lambda: 0.5
    )
    await poller.prepare()
    try:
        pub.documents["w.xml"] = rss("Webinars", [NEWER, TALK, OLD])
        await poller.poll_due(force=True)
        events = await current_events(storage, settings, ["w"], NOW)
        by_title = {e.title: e for e in events}
        assert {"Webinar: Grant writing", "Webinar: Budgets"} <= set(by_title)
        assert not any(e.cancelled for e in events)
        # The publisher takes the grant-writing webinar down; older entries stay listed.
        now[0] += timedelta(hours=1)
        pub.documents["w.xml"] = rss("Webinars", [NEWER, OLD])
        await poller.poll_due(force=True)
        after = {e.title: e for e in await current_events(storage, settings, ["w"], now[0])}
        gone = after["Webinar: Grant writing"]
        assert gone.cancelled and gone.uid == by_title["Webinar: Grant writing"].uid
        assert gone.sequence == by_title["Webinar: Grant writing"].sequence + 1
        assert not after["Webinar: Budgets"].cancelled
    finally:
        await session.close()
        await storage.close()
        await pub.close()
