"""The demo's feed server: the sample feeds in ``config/demo-feeds/`` and a page per item.

Feeds are served with the content type a real site sends (Atom as ``application/atom+xml``,
RSS as ``application/rss+xml``), so the service's fetcher sees nothing to complain about.
Every link in the feeds (each item's and each feed's own) opens a small HTML page made from
the item itself, so a person who clicks a link in a room or an email lands somewhere.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from feeds.parse import parse_feed

CONTENT_TYPES = {
    ".atom": "application/atom+xml",
    ".rss": "application/rss+xml",
    ".xml": "application/rss+xml",
}
# What the pages say (one place, for translation).
TEXT = {
    "index_title": "libhub demo: sample feeds",
    "feeds": "Feeds",
    "items": "Items",
    "back": "All sample feeds",
    "note": "A page of the libhub demo, served on this machine for a sample item.",
}
_BASE = "http://demo.invalid/"  # parse with a base URL; only the path is kept


@dataclass(frozen=True)
class Page:
    title: str
    body_html: str  # already sanitized by the feed parser


def feed_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in CONTENT_TYPES)


def item_pages(folder: Path) -> dict[str, Page]:
    """URL path -> page, for every item link and feed link in the sample feeds."""
    pages: dict[str, Page] = {}
    for path in feed_files(folder):
        parsed = parse_feed(path.read_bytes(), url=_BASE + path.name)
        listing = "".join(
            f'<li><a href="{html.escape(_path(i.link))}">{html.escape(i.title)}</a></li>'
            for i in parsed.items
            if i.link
        )
        if parsed.link:
            pages[_path(parsed.link)] = Page(parsed.title, f"<ul>{listing}</ul>")
        for item in parsed.items:
            if item.link:
                pages[_path(item.link)] = Page(item.title, item.summary_html)
    return pages


def _path(link: str | None) -> str:
    return urlsplit(link or "/").path or "/"


def _html(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}"
        f"<p><small>{html.escape(TEXT['note'])}</small></p>"
        f'<p><a href="/">{html.escape(TEXT["back"])}</a></p></body></html>'
    )


def feed_site(folder: Path) -> web.Application:
    """The aiohttp application serving ``folder``'s feeds and their item pages."""
    files = {p.name: p for p in feed_files(folder)}
    pages = item_pages(folder)

    async def index(request: web.Request) -> web.Response:
        feeds = "".join(f'<li><a href="/{html.escape(n)}">{html.escape(n)}</a></li>' for n in files)
        items = "".join(
            f'<li><a href="{html.escape(p)}">{html.escape(page.title)}</a></li>'
            for p, page in sorted(pages.items())
        )
        body = f"<h2>{TEXT['feeds']}</h2><ul>{feeds}</ul><h2>{TEXT['items']}</h2><ul>{items}</ul>"
        return web.Response(text=_html(TEXT["index_title"], body), content_type="text/html")

    async def serve(request: web.Request) -> web.StreamResponse:
        path = request.path
        name = path.lstrip("/")
        if name in files:
            feed = files[name]
            return web.Response(
                body=feed.read_bytes(),
                content_type=CONTENT_TYPES[feed.suffix],
                charset="utf-8",
            )
        page = pages.get(path) or pages.get(path.rstrip("/") + "/") or pages.get(path.rstrip("/"))
        if page is None:
            raise web.HTTPNotFound()
        return web.Response(text=_html(page.title, page.body_html), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/{tail:.+}", serve)
    return app
