"""The demo's feed server: feeds with the media types a real site sends, and every link in
them opens a page (nothing a person clicks in the demo is dead)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from feeds.parse import parse_feed
from network.devtools.demo import FEEDS_DIR
from network.devtools.demofeeds import feed_site


@pytest.fixture
async def site() -> AsyncIterator[str]:
    server = TestServer(feed_site(FEEDS_DIR), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


FEEDS = sorted(p.name for p in Path(FEEDS_DIR).iterdir() if p.suffix in (".xml", ".atom"))


@pytest.mark.parametrize("name", FEEDS)
async def test_each_feed_is_served_as_a_feed_and_reads_without_warnings(
    site: str, name: str
) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{site}/{name}") as resp:
        assert resp.status == 200
        media_type = resp.content_type
        body = await resp.read()
        headers = {k.lower(): v for k, v in resp.headers.items()}
    expected = "application/atom+xml" if name.endswith(".atom") else "application/rss+xml"
    assert media_type == expected
    parsed = parse_feed(body, url=f"{site}/{name}", headers=headers)
    assert parsed.items
    assert parsed.warnings == ()


@pytest.mark.parametrize("name", FEEDS)
async def test_every_link_in_the_feeds_opens_a_page_about_it(site: str, name: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{site}/{name}") as resp:
            parsed = parse_feed(await resp.read(), url=f"{site}/{name}")
        for item in parsed.items:
            assert item.link and item.link.startswith(site + "/"), item.link
            async with http.get(item.link) as page:
                assert page.status == 200, item.link
                assert page.content_type == "text/html"
                assert item.title in await page.text()
        assert parsed.link
        async with http.get(parsed.link) as listing:
            assert listing.status == 200, parsed.link
            text = await listing.text()
        assert all(i.title in text for i in parsed.items)
