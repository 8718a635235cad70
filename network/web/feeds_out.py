"""Feeds out: ``/feeds/<topic>.xml`` (Atom, RFC 4287), ``/feeds/<topic>.json`` (JSON Feed
1.1) with the newest posts of a topic (``all`` for everything; the same items as the
archive page), and ``/feeds.opml`` (also at its older name ``/sources.opml``), every feed
the network reads, from the config file and added live, for a feed reader.

XML is built with ElementTree, so every value is escaped by the writer. Entry ids are
``urn:uuid`` values derived from the public URL and the item id: stable across restarts
and edits, different between two networks.
"""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from feeds.opml import OpmlFeed, write_opml
from network.i18n import current, gettext
from network.storage.archive import ArchiveEntry
from network.subscriptions.public import Scope
from network.web.archive import short_summary
from network.web.context import CONTEXT
from network.web.public import PUBLIC_CACHE, SLUG_PATTERN, base_url, install, not_found, public_view

_ = gettext

ATOM_NS = "http://www.w3.org/2005/Atom"
FEED_ITEMS = 50
# A feed's words and language follow the request's (network/web/language.py): a shared
# cache must keep one copy per language.
LANGUAGE_VARY = "Accept-Language, Cookie"


def entry_id(base: str, item_id: int) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{base}/items/{item_id}").urn


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _http_link(link: str | None) -> str | None:
    return link if link and link.startswith(("http://", "https://")) else None


def atom_feed(
    scope: Scope, entries: list[ArchiveEntry], *, base: str, name: str, titles: dict[str, str]
) -> bytes:
    ET.register_namespace("", ATOM_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            element.text = text
        return element

    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    sub(feed, "id", uuid.uuid5(uuid.NAMESPACE_URL, f"{base}/feeds/{scope.slug}").urn)
    sub(feed, "title", name if scope.slug == "all" else f"{name}: {scope.title}")
    newest = max((e.updated_at for e in entries), default=datetime(2000, 1, 1, tzinfo=UTC))
    sub(feed, "updated", _rfc3339(newest))
    sub(feed, "link", rel="self", href=f"{base}/feeds/{scope.slug}.xml")
    archive = "/archive" if scope.slug == "all" else f"/archive/topic/{scope.slug}"
    sub(feed, "link", rel="alternate", type="text/html", href=base + archive)
    author = sub(feed, "author")
    sub(author, "name", name)
    sub(feed, "generator", "libhub")
    for entry in entries:
        element = sub(feed, "entry")
        sub(element, "id", entry_id(base, entry.id))
        sub(element, "title", " ".join(entry.title.split()) or _("(untitled)"))
        sub(element, "updated", _rfc3339(entry.updated_at))
        sub(element, "published", _rfc3339(entry.published or entry.first_seen))
        if link := _http_link(entry.link):
            sub(element, "link", rel="alternate", href=link)
        if entry.author:
            sub(sub(element, "author"), "name", entry.author)
        sub(element, "category", term=entry.kind)
        source = sub(element, "source")
        sub(source, "title", titles.get(entry.feed_id, entry.feed_id))
        # Sanitized when stored (nh3); type="html" carries it escaped, as Atom wants.
        sub(element, "summary", entry.summary_html, type="html")
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True))


def json_feed(
    scope: Scope, entries: list[ArchiveEntry], *, base: str, name: str, titles: dict[str, str]
) -> dict[str, Any]:
    archive = "/archive" if scope.slug == "all" else f"/archive/topic/{scope.slug}"
    items = []
    for entry in entries:
        item: dict[str, Any] = {
            "id": entry_id(base, entry.id),
            "title": " ".join(entry.title.split()) or _("(untitled)"),
            "content_html": entry.summary_html,
            "summary": short_summary(entry.summary_html),
            "date_published": _rfc3339(entry.published or entry.first_seen),
            "date_modified": _rfc3339(entry.updated_at),
            "tags": [entry.kind, titles.get(entry.feed_id, entry.feed_id)],
        }
        if link := _http_link(entry.link):
            item["url"] = link
        if entry.author:
            item["authors"] = [{"name": entry.author}]
        items.append(item)
    return {
        "version": "https://jsonfeed.org/version/1.1",
        "title": name if scope.slug == "all" else f"{name}: {scope.title}",
        "home_page_url": base + archive,
        "feed_url": f"{base}/feeds/{scope.slug}.json",
        # The language of the request (network/web/language.py), as the titles are.
        "language": current(),
        "items": items,
    }


async def _entries(request: web.Request) -> tuple[Scope, list[ArchiveEntry], dict[str, Any]]:
    view = public_view(request)
    scope = view.topic(request.match_info["slug"])
    if scope is None:
        raise not_found(_("feed"))
    found = await request.app[CONTEXT].storage.archive_page(
        feed_ids=scope.feed_ids, kinds=scope.kinds, per_page=FEED_ITEMS
    )
    settings = view.settings
    common = {
        "base": base_url(request),
        "name": settings.digests.network_name or settings.network.name,
        "titles": {f: view.catalog.feed_title(f) for f in {e.feed_id for e in found.entries}},
    }
    return scope, found.entries, common


async def atom(request: web.Request) -> web.Response:
    scope, entries, common = await _entries(request)
    return web.Response(
        body=atom_feed(scope, entries, **common),
        content_type="application/atom+xml",
        charset="utf-8",
        headers={"Cache-Control": PUBLIC_CACHE, "Vary": LANGUAGE_VARY},
    )


async def json_handler(request: web.Request) -> web.Response:
    scope, entries, common = await _entries(request)
    return web.Response(
        text=json.dumps(json_feed(scope, entries, **common), ensure_ascii=False),
        content_type="application/feed+json",
        charset="utf-8",
        headers={"Cache-Control": PUBLIC_CACHE, "Vary": LANGUAGE_VARY},
    )


async def feeds_opml(request: web.Request) -> web.Response:
    """``GET /feeds.opml`` (and ``/sources.opml``, its older name): every feed the network
    reads, those of the config file and those added live, for a feed reader or
    ``libhub feeds import`` on another network."""
    context = request.app[CONTEXT]
    settings = context.settings
    file_ids = {f.id for f in settings.feeds}
    entries = [OpmlFeed(f.url, f.title or f.id) for f in settings.feeds]
    entries += [
        OpmlFeed(f.url, f.title or f.id)
        for f in await context.storage.live_feeds()
        if f.id not in file_ids
    ]
    name = settings.digests.network_name or settings.network.name
    return web.Response(
        body=write_opml(entries, title=_("Sources of {network}").format(network=name)),
        content_type="text/x-opml",
        charset="utf-8",
        headers={"Cache-Control": PUBLIC_CACHE},
    )


def setup_routes(app: web.Application) -> None:
    install(app)
    app.router.add_get(f"/feeds/{{slug:{SLUG_PATTERN}}}.xml", atom)
    app.router.add_get(f"/feeds/{{slug:{SLUG_PATTERN}}}.json", json_handler)
    app.router.add_get("/feeds.opml", feeds_opml)
    app.router.add_get("/sources.opml", feeds_opml)
