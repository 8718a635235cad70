"""Feed autodiscovery: the feeds a web page announces with
``<link rel="alternate" type="application/rss+xml|atom+xml|feed+json" href=...>``.

Pure: give it the page's bytes (or text) and its URL; fetching is the caller's. Links are
resolved against ``<base href>`` (when http(s)) or the page's URL, kept in page order,
without duplicates, and only when they are http(s).
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

__all__ = ["FEED_TYPES", "DiscoveredFeed", "discover_feeds"]

# The media types a page uses to announce a feed, and what a person calls each.
FEED_TYPES: dict[str, str] = {
    "application/rss+xml": "RSS",
    "application/atom+xml": "Atom",
    "application/rdf+xml": "RDF",
    "application/feed+json": "JSON Feed",
}
MAX_PAGE_CHARS = 2_000_000  # the head is near the top; a huge page is cut, not parsed whole


@dataclass(frozen=True)
class DiscoveredFeed:
    url: str
    kind: str  # RSS | Atom | RDF | JSON Feed
    title: str


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.links: list[tuple[str, str, str]] = []  # (href, type, title)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"].strip()
        elif tag == "link":
            rels = values.get("rel", "").lower().split()
            media = values.get("type", "").split(";", 1)[0].strip().lower()
            if "alternate" in rels and media in FEED_TYPES and values.get("href", "").strip():
                self.links.append((values["href"].strip(), media, values.get("title", "")))

    handle_startendtag = handle_starttag


def discover_feeds(page: bytes | str, *, url: str) -> list[DiscoveredFeed]:
    """The feeds ``page`` (found at ``url``) links to, in page order."""
    text = page.decode("utf-8", errors="replace") if isinstance(page, bytes) else page
    parser = _Links()
    parser.feed(text[:MAX_PAGE_CHARS])
    parser.close()
    base = url
    if parser.base and urlsplit(urljoin(url, parser.base)).scheme in ("http", "https"):
        base = urljoin(url, parser.base)
    found: list[DiscoveredFeed] = []
    seen: set[str] = set()
    for href, media, title in parser.links:
        absolute = urljoin(base, href)
        parts = urlsplit(absolute)
        if parts.scheme not in ("http", "https") or not parts.netloc or absolute in seen:
            continue
        seen.add(absolute)
        found.append(DiscoveredFeed(absolute, FEED_TYPES[media], " ".join(title.split())))
    return found
