"""The public archive and the feeds out over HTTP (real aiohttp server, SQLite on disk):
paging, full-text search (FTS5) by a word of a summary, members' cohort updates only where
the rule lets them appear (active, public), Atom parsed back with feedparser, JSON Feed
1.1, and the OPML of the source feeds."""

from __future__ import annotations

import json
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TypeAlias

import feedparser
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from network.devtools.mailsink import MailSink
from network.service import Service
from network.web.app import make_web_app
from tests.digestkit import (
    SECRET,
    SECRET_ENV,
    START,
    Clock,
    DigestEnv,
    item,
    make_service,
    publish,
    settings_for,
)

Client: TypeAlias = "TestClient[web.Request, web.Application]"


async def serve(service: Service) -> Client:
    client: Client = TestClient(TestServer(make_web_app(service.web), host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def client(digest_env: DigestEnv) -> AsyncIterator[Client]:
    client = await serve(digest_env.service)
    try:
        yield client
    finally:
        await client.close()


def titles(html: str) -> list[str]:
    return re.findall(r"<h3>(?:<a [^>]*>)?([^<]+)", html)


async def news(service: Service, count: int) -> None:
    items = [
        item(f"n{i}", f"News number {i}", summary=f"<p>Story {i} about libraries.</p>")
        for i in range(count)
    ]
    for i, one in enumerate(items):  # one poll each: first_seen orders them
        await publish(service, "news", [one], START + timedelta(minutes=i))


async def test_archive_pages_newest_first(digest_env: DigestEnv, client: Client) -> None:
    await news(digest_env.service, 25)
    first = await client.get("/archive")
    html = await first.text()
    assert first.status == 200 and '<html lang="en">' in html
    assert len(re.findall(r"<h1[ >]", html)) == 1 and "<main" in html
    assert titles(html)[:2] == ["News number 24", "News number 23"] and len(titles(html)) == 20
    assert "Network news" in html and "Story 24 about libraries." in html
    assert 'href="/archive?page=2" rel="next"' in html and 'rel="prev"' not in html
    second = await (await client.get("/archive?page=2")).text()
    assert titles(second) == [f"News number {i}" for i in range(4, -1, -1)]
    assert 'href="/archive" rel="prev"' in second and 'rel="next"' not in second
    # A page number that cannot be one shows the first page.
    assert titles(await (await client.get("/archive?page=x")).text())[0] == "News number 24"


async def test_search_finds_an_item_by_a_word_of_its_summary(
    digest_env: DigestEnv, client: Client
) -> None:
    svc = digest_env.service
    await news(svc, 3)
    found = item("b1", "Rolling out", summary="<p>Our new <em>bookmobile</em> visits farms.</p>")
    await publish(svc, "news", [found], START + timedelta(hours=1))
    html = await (await client.get("/archive?q=Bookmobile")).text()
    assert titles(html) == ["Rolling out"]
    assert 'value="Bookmobile"' in html and '<label for="q">' in html
    # Every word must match; words already indexed before an edit are found after it.
    assert titles(await (await client.get("/archive?q=bookmobile+farms")).text())
    assert not titles(await (await client.get("/archive?q=bookmobile+city")).text())
    edited = item("b1", "Rolling out", summary="<p>The book bike is here.</p>")
    edited = type(edited)(**{**edited.__dict__, "content_hash": "changed"})
    await publish(svc, "news", [edited], START + timedelta(hours=2))
    assert not titles(await (await client.get("/archive?q=bookmobile")).text())
    assert titles(await (await client.get("/archive?q=bike")).text()) == ["Rolling out"]
    # FTS5 syntax and markup typed into the box are words, never syntax or HTML.
    for q in ['"', "AND (", "NEAR(x*", "<script>alert(1)</script>"]:
        resp = await client.get("/archive", params={"q": q})
        body = await resp.text()
        assert resp.status == 200 and "<script>alert" not in body


async def test_topic_pages_and_feeds_out(digest_env: DigestEnv, client: Client) -> None:
    svc = digest_env.service
    await news(svc, 2)
    talk = item("w1", "Budgets & grants <live>", "webinar", start=START + timedelta(days=3))
    await publish(svc, "webinars", [talk], START + timedelta(hours=1))
    html = await (await client.get("/archive/topic/kind-webinar")).text()
    assert titles(html) == ["Budgets &amp; grants &lt;live&gt;"]
    assert (await client.get("/archive/topic/kind-nothing")).status == 404

    atom = await client.get("/feeds/kind-webinar.xml")
    assert atom.content_type == "application/atom+xml"
    parsed = feedparser.parse(await atom.read())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10" and parsed.feed.title == "Prairie Libraries: Webinars"
    [entry] = parsed.entries
    assert entry.title == "Budgets & grants <live>"
    assert entry.link == "https://libraries.example.org/w1" and entry.id.startswith("urn:uuid:")
    assert "Details inside." in entry.summary
    everything = feedparser.parse(await (await client.get("/feeds/all.xml")).read())
    assert len(everything.entries) == 3 and not everything.bozo

    resp = await client.get("/feeds/feed-news.json")
    assert resp.content_type == "application/feed+json"
    data = json.loads(await resp.text())
    assert data["version"] == "https://jsonfeed.org/version/1.1"
    assert data["title"] == "Prairie Libraries: Network news"
    assert data["feed_url"].endswith("/feeds/feed-news.json")
    assert [i["title"] for i in data["items"]] == ["News number 1", "News number 0"]
    assert all(i["id"] and i["url"].startswith("https://") for i in data["items"])
    assert data["items"][0]["content_html"] == "<p>Story 1 about libraries.</p>"


async def test_sources_opml_lists_the_configured_feeds(
    digest_env: DigestEnv, client: Client
) -> None:
    resp = await client.get("/sources.opml")
    root = ET.fromstring(await resp.read())
    assert root.tag == "opml" and root.get("version") == "2.0"
    outlines = {o.get("xmlUrl"): o.get("text") for o in root.iter("outline")}
    assert outlines == {f.url: f.title for f in digest_env.settings.feeds}


async def member_update(service: Service, event_id: str, text: str) -> None:
    """A member's cohort update, stored and linked as network/community/updates.py does."""
    update = item(event_id, text, "cohort-update", summary=f"<p>{text}</p>")
    await publish(service, "cohort:smart-spaces", [update], START)
    await service.storage.record_cohort_update(
        event_id=event_id, feed_id="cohort:smart-spaces", cohort_id="smart-spaces",
        room_id="!room:example.org", sender="@ana:example.org", library=None, now=START,
    )  # fmt: skip


async def test_member_updates_appear_while_active_on_their_cohort_page(
    digest_env: DigestEnv, client: Client
) -> None:
    svc = digest_env.service
    # The subscribe page offers cohort updates: anyone may read them, so they are public.
    await member_update(svc, "$e1", "We built a seed library")
    await member_update(svc, "$e2", "Our maker night")
    page = await (await client.get("/archive/cohort/smart-spaces")).text()
    assert set(titles(page)) == {"We built a seed library", "Our maker night"}
    assert "Small Libraries Create Smart Spaces" in page
    assert len(titles(await (await client.get("/archive?q=seed")).text())) == 1
    await svc.storage.withdraw_cohort_update("$e1", START)
    assert titles(await (await client.get("/archive/cohort/smart-spaces")).text()) == [
        "Our maker night"
    ]
    # Any state but "active" hides it: a future "held" for moderation included.
    with sqlite3.connect(digest_env.settings.database.path) as conn:
        conn.execute("UPDATE cohort_updates SET status = 'held' WHERE event_id = '$e2'")
    assert titles(await (await client.get("/archive/cohort/smart-spaces")).text()) == []
    assert "maker" not in await (await client.get("/feeds/all.json")).text()


async def test_member_updates_stay_in_their_rooms_when_nothing_public_carries_them(
    tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    # Subscribers can pick only webinars and news, and no route sends updates to a channel.
    settings = settings_for(tmp_path, sink.url, extra='topics = ["kind:webinar", "kind:news"]')
    service = await make_service(settings, Clock(START))
    client = await serve(service)
    try:
        await member_update(service, "$e3", "Private cohort chatter")
        for path in ("/archive", "/archive/cohort/smart-spaces", "/archive?q=chatter"):
            assert "Private cohort chatter" not in await (await client.get(path)).text()
        assert "chatter" not in await (await client.get("/feeds/all.xml")).text()
    finally:
        await client.close()
        await service.close()
