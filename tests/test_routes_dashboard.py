"""The dashboard's feeds and routes pages over HTTP, with no homeserver: an OPML upload adds
the good feed and skips a page that is not a feed with its reason; a route added on the
routes page sends the next new item of a file feed to an apprise ``json://`` receiver once,
and after its removal nothing more; each step is in the audit log with the coordinator."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from network.devtools.devserver import free_port
from network.service import Service
from network.settings.model import parse_settings
from network.web.dashboard import issue_login_token, login_url
from tests.channelkit import JsonReceiver
from tests.publisher import FeedItem, Publisher, Scripted, rss
from tests.test_delivery_kit import drain

SECRET = "routes-dashboard-secret-0123456789"
OLD = FeedItem("old1", "Old story")
NEW = FeedItem("new1", "Hotspots at every branch")
LATER = FeedItem("new2", "Sent after the route is gone")


@dataclass
class Env:
    service: Service
    pub: Publisher
    got: JsonReceiver
    base: str


@pytest.fixture
async def env(tmp_path: Path, bot_env: dict[str, str]) -> AsyncIterator[Env]:
    bot_env["LIBHUB_SECRET"] = SECRET
    bot_env["ROUTES_BOT_PW"] = "unused"
    got = JsonReceiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", got.handle)
    channel = TestServer(app, host="127.0.0.1")
    await channel.start_server()
    pub = await Publisher().start()
    pub.documents["news.xml"] = rss("Network news", [OLD])
    port = free_port()
    # No Matrix room and no login: the homeserver address is never contacted.
    settings = parse_settings(
        f"""
[database]
path = "{tmp_path / "libhub.db"}"
[matrix]
homeserver = "http://127.0.0.1:{free_port()}"
user_id = "@bot:localhost"
password_env = "ROUTES_BOT_PW"
[web]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[polling]
initial_posts = 0
max_age = "3650d"
[channels.public]
urls = ["json://127.0.0.1:{channel.port}/public"]
[feeds_admin]
allow_private = true
[[feeds]]
id = "news"
title = "Network news"
url = "{pub.url("news.xml")}"
""",
        base_dir=tmp_path,
    )
    service = await Service.create(settings)
    try:
        await service.poller.prepare()
        await service.start_web()
        yield Env(service, pub, got, f"http://127.0.0.1:{port}")
    finally:
        await service.close()
        await pub.close()
        await channel.close()


async def logged_in(env: Env, http: aiohttp.ClientSession) -> None:
    token = issue_login_token(env.service.settings, "dana", now=datetime.now(UTC))
    async with http.get(login_url(env.service.settings, token)) as page:
        assert page.status == 200
    async with http.post(f"{env.base}/dashboard/login", data={"token": token}) as resp:
        assert resp.status == 200


async def csrf(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as page:
        m = re.search(r'name="csrf" value="([0-9a-f]+)"', await page.text())
    assert m is not None
    return m.group(1)


async def actions(env: Env) -> list[tuple[str, str, str]]:
    return [(e.actor, e.action, e.subject) for e in await env.service.storage.audit_entries()]


async def test_opml_upload_adds_the_feed_and_skips_a_page_with_its_reason(env: Env) -> None:
    env.pub.documents["branch.xml"] = rss("Branch news", [OLD])
    env.pub.script["about.html"] = [
        Scripted(body=b"<html><body>No feeds here</body></html>", content_type="text/html")
    ]
    opml = f"""<?xml version="1.0"?>
<opml version="2.0"><head><title>Libraries</title></head><body>
<outline text="Branch news" type="rss" xmlUrl="{env.pub.url("branch.xml")}"/>
<outline text="About us" type="rss" xmlUrl="{env.pub.url("about.html")}"/>
</body></opml>""".encode()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await logged_in(env, http)
        form = aiohttp.FormData()
        form.add_field("csrf", await csrf(http, f"{env.base}/dashboard/feeds"))
        form.add_field("rooms", "#branch:example.org")
        form.add_field("opml", opml, filename="libraries.opml", content_type="text/x-opml")
        async with http.post(f"{env.base}/dashboard/feeds/import", data=form) as resp:
            assert resp.status == 200
            html = await resp.text()
    assert "1 added, 1 skipped." in html
    report = html[html.index('id="import-report"') :]
    assert "added" in report and env.pub.url("branch.xml") in report
    assert f"skipped: Nothing was added: {env.pub.url('about.html')} is not a feed (" in report
    [live] = await env.service.storage.live_feeds()
    assert live.url == env.pub.url("branch.xml") and live.added_by == "dana"
    assert live.rooms == ("#branch:example.org",)
    assert await actions(env) == [("dana", "feed.add", live.id)]


async def test_a_route_added_and_removed_on_the_dashboard(env: Env) -> None:
    service = env.service
    await service.poller.poll_due(force=True)  # the old item is history: no route, no post
    await drain(service)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await logged_in(env, http)
        token = await csrf(http, f"{env.base}/dashboard/routes")

        # A template that does not render is refused, with nothing stored.
        bad = {"csrf": token, "feeds": "news", "channels": "public", "channel_template": "{{ x"}
        async with http.post(f"{env.base}/dashboard/routes/add", data=bad) as resp:
            assert resp.status == 400
            assert "The route was not saved" in await resp.text()
        assert await service.storage.live_routes() == []

        good = {
            "csrf": token,
            "feeds": "news",
            "channels": "public",
            "channel_template": "Library news: {{ title }}",
        }
        async with http.post(f"{env.base}/dashboard/routes/add", data=good) as resp:
            assert resp.status == 200
            html = await resp.text()
        [route] = await service.storage.live_routes()
        assert f"Added route {route.id}" in html
        # The preview: the newest item as the channel would get it.
        assert 'id="route-preview-channel">Library news: Old story<' in html
        assert route.feeds == ("news",) and route.channels == ("public",)
        assert route.added_by == "dana"

        # No restart: the next new item goes to the channel, once.
        env.pub.documents["news.xml"] = rss("Network news", [NEW, OLD])
        await service.poller.poll_due(force=True)
        await drain(service)
        assert env.got.messages == [f"Library news: {NEW.title}"]

        # Without the CSRF token, the route stays.
        async with http.post(f"{env.base}/dashboard/routes/{route.id}/remove") as resp:
            assert resp.status in (400, 403)
        assert len(await service.storage.live_routes()) == 1

        async with http.post(
            f"{env.base}/dashboard/routes/{route.id}/remove", data={"csrf": token}
        ) as resp:
            assert resp.status == 200
            assert f"Removed route {route.id}" in await resp.text()
        assert await service.storage.live_routes() == []

        env.pub.documents["news.xml"] = rss("Network news", [LATER, NEW, OLD])
        await service.poller.poll_due(force=True)
        await drain(service)
    assert env.got.messages == [f"Library news: {NEW.title}"]
    subject = f"route {route.id}"
    assert await actions(env) == [("dana", "route.remove", subject), ("dana", "route.add", subject)]
