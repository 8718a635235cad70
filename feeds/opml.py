"""OPML 1.0/2.0 subscription lists: reading the feeds of one (nested outlines, with the
folder each sits in) and writing one.

Pure: bytes in, records out, and back. A document type declaration is refused before
parsing, so entity tricks (the "billion laughs") never reach the XML parser.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlsplit

from feeds.errors import NotAFeedError

__all__ = ["OpmlFeed", "read_opml", "write_opml"]

MAX_OPML_BYTES = 5 * 2**20
MAX_DEPTH = 20


@dataclass(frozen=True)
class OpmlFeed:
    url: str
    title: str
    html_url: str | None = None
    folder: str = ""  # the enclosing outlines' titles, "Member libraries/Riverside"


def _title(outline: ET.Element) -> str:
    return " ".join((outline.get("title") or outline.get("text") or "").split())


def read_opml(data: bytes, *, source: str = "the OPML file") -> list[OpmlFeed]:
    """Every outline with an http(s) ``xmlUrl``, depth first, each address once.
    Raises `NotAFeedError` (with `source` in the message) for what is not OPML."""
    if len(data) > MAX_OPML_BYTES:
        raise NotAFeedError(f"{source} is larger than {MAX_OPML_BYTES // 2**20} MiB", url=source)
    if re.search(rb"<!DOCTYPE|<!ENTITY", data[:4096], re.IGNORECASE):
        raise NotAFeedError(
            f"{source} has a document type declaration; OPML needs none", url=source
        )
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise NotAFeedError(f"{source} is not well-formed XML ({e})", url=source) from e
    if root.tag.lower() != "opml" or root.find("body") is None:
        raise NotAFeedError(f"{source} is not OPML (no <opml><body>)", url=source)
    found: list[OpmlFeed] = []
    seen: set[str] = set()

    def walk(node: ET.Element, folder: tuple[str, ...]) -> None:
        for outline in node.findall("outline"):
            url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
            if url:
                if urlsplit(url).scheme in ("http", "https") and url not in seen:
                    seen.add(url)
                    html_url = (outline.get("htmlUrl") or "").strip() or None
                    found.append(OpmlFeed(url, _title(outline), html_url, "/".join(folder)))
            elif len(folder) < MAX_DEPTH:
                walk(outline, (*folder, _title(outline)))

    body = root.find("body")
    assert body is not None
    walk(body, ())
    return found


def write_opml(feeds: Sequence[OpmlFeed], *, title: str, now: datetime | None = None) -> bytes:
    """An OPML 2.0 document of ``feeds``, grouped in outlines by their ``folder``."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(now or datetime.now(UTC), usegmt=True)
    body = ET.SubElement(root, "body")
    folders: dict[str, ET.Element] = {}
    for feed in feeds:
        parent = body
        path: list[str] = []
        for part in (p for p in feed.folder.split("/") if p):
            path.append(part)
            key = "/".join(path)
            if key not in folders:
                folders[key] = ET.SubElement(parent, "outline", text=part, title=part)
            parent = folders[key]
        attrs = {"type": "rss", "text": feed.title or feed.url, "title": feed.title or feed.url}
        attrs["xmlUrl"] = feed.url
        if feed.html_url:
            attrs["htmlUrl"] = feed.html_url
        ET.SubElement(parent, "outline", attrs)
    ET.indent(root)
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + text
