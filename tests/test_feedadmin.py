"""Live feed management without Matrix: bad input is refused with why and nothing is stored
half-way; autodiscovery offers a homepage's feeds; templates and filters are checked; a
JSON Feed can be added; the router and poller see changes without a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from feeds.fetch import Fetcher, make_session
from network.feedadmin.manage import Added, Discovered, FeedAdmin, Refused
from network.polling.poller import Poller
from network.routing.catalog import FeedCatalog
from network.routing.router import Router
from network.settings.model import parse_settings
from network.storage import Storage
from tests.publisher import FeedItem, Publisher, Scripted, rss

DATA = Path(__file__).parent / "data"
ROOM = "!cohort:localhost"


@dataclass
class Rig:
    pub: Publisher
    storage: Storage
    admin: FeedAdmin
    poller: Poller
    router: Router


async def _rig(tmp_path: Path, *, allow_private: bool) -> AsyncIterator[Rig]:
    pub = await Publisher().start()
    settings = parse_settings(
        f"""
[matrix]
homeserver = "http://127.0.0.1:1"
user_id = "@bot:localhost"
password_env = "X"
[[feeds]]
id = "file"
url = "{pub.url("file.xml")}"
rooms = ["{ROOM}"]
[feeds_admin]
allow_private = {str(allow_private).lower()}
""",
        base_dir=tmp_path,
    )
    storage = await Storage.open(tmp_path / "db.sqlite")
    session = make_session()
    fetcher = Fetcher(session, user_agent="libhub-test", read_timeout=2.0)
    catalog = FeedCatalog(settings)
    router = Router(settings, catalog)
    poller = Poller(settings, storage, fetcher, router=router)
    await poller.prepare()

    async def first_poll(feed_id: str) -> None:
        state = await storage.feed_state(feed_id)
        assert state is not None
        await poller.poll_feed(catalog.feed(feed_id), state)

    admin = FeedAdmin(settings, storage, fetcher, catalog, first_poll=first_poll)
    try:
        yield Rig(pub, storage, admin, poller, router)
    finally:
        await session.close()
        await storage.close()
        await pub.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in _rig(tmp_path, allow_private=True):
        yield r


async def _nothing_stored(rig: Rig) -> None:
    assert await rig.storage.live_feeds() == []
    assert await rig.storage.audit_entries() == []


async def test_private_address_refused_unless_allowed(tmp_path: Path) -> None:
    async for r in _rig(tmp_path, allow_private=False):
        r.pub.documents["n.xml"] = rss("N", [FeedItem("a", "A")])
        with pytest.raises(Refused, match="private or local address"):
            await r.admin.add("@m:x", r.pub.url("n.xml"), rooms=(ROOM,))
        await _nothing_stored(r)


@pytest.mark.parametrize(
    ("url", "why"),
    [("ftp://example.org/feed", "Only http:// and https://"), ("file:///etc/passwd", "Only http")],
)
async def test_non_http_refused(rig: Rig, url: str, why: str) -> None:
    with pytest.raises(Refused, match=why):
        await rig.admin.add("@m:x", url, rooms=(ROOM,))
    await _nothing_stored(rig)


async def test_not_a_feed_and_redirect_loop_refused(rig: Rig) -> None:
    rig.pub.documents["page.html"] = b"<html><head><title>x</title></head><body>hi</body></html>"
    with pytest.raises(Refused, match="is not a feed"):
        await rig.admin.add("@m:x", rig.pub.url("page.html"), rooms=(ROOM,))
    loop = rig.pub.url("loop")
    rig.pub.script["loop"] = [Scripted(302, headers={"Location": loop}) for _ in range(20)]
    with pytest.raises(Refused, match="redirect loop"):
        await rig.admin.add("@m:x", loop, rooms=(ROOM,))
    await _nothing_stored(rig)


async def test_homepage_offers_its_feeds_then_a_json_feed_is_added(rig: Rig) -> None:
    page = (DATA / "homepage_library_several-alternate-links.html").read_bytes()
    rig.pub.documents["home"] = page.replace(
        b'<base href="https://riversidelibrary.example.org/">', b""
    )
    found = await rig.admin.add("@m:x", rig.pub.url("home"), rooms=(ROOM,))
    assert isinstance(found, Discovered)
    assert [f.kind for f in found.feeds] == ["RSS", "RSS", "Atom", "JSON Feed", "Atom"]
    await _nothing_stored(rig)
    rig.pub.documents["feed.json"] = (
        DATA / "jsonfeed-1.1_library-news_attachments-authors.json"
    ).read_bytes()
    added = await rig.admin.add("@m:x", found.feeds[3].url, rooms=(ROOM,))
    assert isinstance(added, Added)
    assert added.count == 3 and added.preview[0].title == "Hotspot lending expands to all branches"
    # History is stored as seen: nothing queued.
    state = await rig.storage.feed_state(added.feed.id)
    assert state is not None and state.initial_sync_done
    assert (await rig.storage.outbox_counts()).get("pending", 0) == 0


async def test_file_feed_is_read_only_and_templates_and_filters_checked(rig: Rig) -> None:
    with pytest.raises(Refused, match="config file"):
        await rig.admin.remove("@m:x", "file")
    rig.pub.documents["n.xml"] = rss("N", [FeedItem("a", "Webinar: maps"), FeedItem("b", "Budget")])
    added = await rig.admin.add("@m:x", rig.pub.url("n.xml"), rooms=(ROOM,))
    assert isinstance(added, Added)
    fid = added.feed.id
    with pytest.raises(Refused, match="unknown template variable"):
        await rig.admin.set_template("@m:x", fid, "{{ nonsense }}")
    with pytest.raises(Refused, match="syntax error"):
        await rig.admin.set_template("@m:x", fid, "{% for %}")
    with pytest.raises(Refused, match="backreferences"):
        await rig.admin.add_filter("@m:x", fid, "keep", r"(\w+) \1")
    [live] = await rig.storage.live_feeds()
    assert live.template == "" and live.filters == ()
    rendered = await rig.admin.set_template("@m:x", fid, "<b>{{ title }}</b> {{ link }}")
    assert rendered is not None and "<b>" in rendered[1]
    shown, n = await rig.admin.add_filter("@m:x", fid, "keep", "webinar")
    assert (shown, n) == (1, 2)

    # The router sees the live feed, its filter and its template at once.
    class It:
        kind = "news"
        title = "Budget news"
        summary_html = ""
        categories: tuple[str, ...] = ()

    assert rig.router.targets(fid, It()) == []
    It.title = "Webinar on budgets"
    assert [t.target for t in rig.router.targets(fid, It())] == [ROOM]
    assert rig.router.matrix_template(fid, It(), ROOM) is not None
    # Paused: not polled.
    await rig.admin.set_paused("@m:x", fid, True)
    assert fid not in {f.id for f in rig.poller.polled_feeds()}
    actions = [e.action for e in reversed(await rig.storage.audit_entries())]
    assert actions == ["feed.add", "feed.template", "feed.filter", "feed.pause"]
