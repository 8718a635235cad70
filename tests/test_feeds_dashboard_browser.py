"""The dashboard's feeds page in headless Chromium, with a real Synapse (the bot's account)
and the public channel an apprise ``json://`` receiver: a coordinator gives a library's
homepage, chooses the feed it links to, routes it to the channel and pauses it; a bad
address and a catastrophic filter are refused with nothing stored; the next new item
reaches the channel once, nothing while paused; the audit log shows each step with the
coordinator as actor."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright, expect

from network.devtools.devserver import DevHomeserver, DevUser, free_port
from network.service import Service
from network.settings.model import parse_settings
from network.web.dashboard import issue_login_token, login_url
from tests.channelkit import JsonReceiver
from tests.conftest import new_user
from tests.publisher import FeedItem, Publisher, Scripted, rss
from tests.test_dashboard_browser import CHROMIUM_ARGS
from tests.test_delivery_kit import drain
from tests.waiting import eventually

pytestmark = [
    pytest.mark.synapse,
    pytest.mark.browser,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium"),
]

SECRET = "feeds-browser-secret-0123456789abcdef"
OLD = [FeedItem(f"old{i}", f"Old story {i}") for i in range(2)]
NEW = FeedItem("new1", "Hotspots at every branch")
LATER = FeedItem("new2", "Posted only after resuming")


def homepage(feed_url: str) -> bytes:
    return (
        "<!doctype html><html><head><title>Riverside Library</title>"
        f'<link rel="alternate" type="application/rss+xml" title="Riverside news" '
        f'href="{feed_url}"></head><body><h1>Welcome</h1></body></html>'
    ).encode()


async def test_a_coordinator_adds_routes_and_pauses_a_feed(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    bot = await new_user(synapse, "fbot", admin)
    bot_env["FEEDS_BOT_PW"] = bot.password
    bot_env["LIBHUB_SECRET"] = SECRET
    got = JsonReceiver()
    channel_app = web.Application()
    channel_app.router.add_post("/{tail:.*}", got.handle)
    channel = TestServer(channel_app, host="127.0.0.1")
    await channel.start_server()
    pub = await Publisher().start()
    pub.documents["news.xml"] = rss("Riverside news", OLD)
    pub.script["index.html"] = [
        Scripted(body=homepage(pub.url("news.xml")), content_type="text/html")
    ]
    pub.script["about.html"] = [
        Scripted(body=b"<html><body>No feeds here</body></html>", content_type="text/html")
    ]
    port = free_port()
    settings = parse_settings(
        f"""
[network]
name = "Test Library Network"
[database]
path = "{tmp_path / "libhub.db"}"
[matrix]
homeserver = "{synapse.url}"
user_id = "{bot.user_id}"
password_env = "FEEDS_BOT_PW"
[web]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[channels.public]
urls = ["json://127.0.0.1:{channel.port}/public"]
[feeds_admin]
allow_private = true
""",
        base_dir=tmp_path,
    )
    service = await Service.create(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await asyncio.wait_for(service.started.wait(), 10)
        token = issue_login_token(settings, "dana", now=datetime.now(UTC))
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page()
                await page.goto(login_url(settings, token))
                await page.get_by_role("button", name="Log in", exact=True).click()
                await page.get_by_role("link", name="Feeds", exact=True).click()
                await expect(page.get_by_role("heading", level=1)).to_have_text("Feeds")

                # A page that is not a feed and links to none: refused, nothing stored.
                await page.get_by_label("Address of the feed").fill(pub.url("about.html"))
                await page.get_by_role("button", name="Add feed").click()
                await expect(page.get_by_role("alert")).to_contain_text("is not a feed")
                assert await service.storage.live_feeds() == []

                # The library's homepage: a choice of the feeds it links to.
                await page.get_by_label("Address of the feed").fill(pub.url("index.html"))
                await page.get_by_role("button", name="Add feed").click()
                await expect(page.get_by_label("Riverside news (RSS")).to_be_checked()
                await page.get_by_role("button", name="Add the chosen feed").click()
                status = page.get_by_role("status")
                await expect(status).to_contain_text("Added feed 127-0-0-1: Riverside news")
                await expect(status).to_contain_text("2 current items are marked as seen")
                await expect(page.locator("#preview")).to_contain_text("Old story 0")
                [live] = await service.storage.live_feeds()
                assert live.added_by == "dana" and live.channels == ()

                # Its route: the public channel.
                feed = page.locator("#feed-127-0-0-1")
                await feed.get_by_label("channel public").check()
                await page.get_by_role("button", name="Save where 127-0-0-1 posts").click()
                await expect(page.get_by_role("status")).to_contain_text("now posts to")
                await expect(feed.locator(".targets")).to_have_text("public")

                # A catastrophic filter: refused at once, nothing stored.
                await feed.get_by_label("Regular expression").fill("(a+)+$")
                await page.get_by_role("button", name="Add the filter to 127-0-0-1").click()
                await expect(page.get_by_role("alert")).to_contain_text("filter was not saved")
                assert (await service.storage.live_feeds())[0].filters == ()

                # The next new item reaches the channel, and the old ones never do.
                pub.documents["news.xml"] = rss("Riverside news", [NEW, *OLD])
                await service.poller.poll_due(force=True)
                await drain(service)
                await eventually(
                    lambda: any(NEW.title in m for m in got.messages), what="the new item"
                )

                # Paused: not fetched, nothing posted.
                await page.get_by_role("button", name="Pause 127-0-0-1").click()
                await expect(page.get_by_role("status")).to_contain_text("Paused feed 127-0-0-1")
                await expect(feed.locator(".state")).to_have_text("paused")
                pub.documents["news.xml"] = rss("Riverside news", [LATER, NEW, *OLD])
                hits = pub.hits.get("news.xml", 0)
                await service.poller.poll_due(force=True)
                await drain(service)
                assert pub.hits.get("news.xml", 0) == hits

                await page.get_by_role("link", name="Audit log", exact=True).click()
                rows = page.locator("#audit tbody tr")
                await expect(rows).to_have_count(3)
                for n, action in enumerate(["feed.pause", "feed.route", "feed.add"]):
                    cells = rows.nth(n).locator("td")
                    await expect(cells.nth(1)).to_have_text("dana")
                    await expect(cells.nth(2)).to_have_text(action)
                    await expect(cells.nth(3)).to_have_text("127-0-0-1")
            finally:
                await browser.close()
        assert [m for m in got.messages if "Old story" in m or LATER.title in m] == []
        assert sum(NEW.title in m for m in got.messages) == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await service.close()
        await channel.close()
        await pub.close()
