"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1): recognising one and reading it
into the same shape feedparser gives, so `feeds.parse` treats its items like any other
feed's (keys, sanitizing, dates, warnings).

Only the fields a reader sees are read: title, links, content (HTML, else text), summary,
dates, authors (1.1's ``authors`` and 1.0's ``author``), tags and attachments (enclosures).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from feeds.errors import NotAFeedError

__all__ = ["JSON_FEED_VERSIONS", "is_json_media_type", "read_json_feed"]

JSON_FEED_VERSIONS = {
    "https://jsonfeed.org/version/1": "json1",
    "https://jsonfeed.org/version/1.1": "json11",
}


def is_json_media_type(content_type: str | None) -> bool:
    """``application/feed+json``, ``application/json`` and other ``+json`` types."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in ("application/feed+json", "application/json") or media.endswith("+json")


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _date(value: object) -> time.struct_time | None:
    """RFC 3339 (``2026-11-20T08:00:00-05:00``) as the UTC struct_time feedparser would give."""
    text = _text(value)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).timetuple()


def _authors(obj: Mapping[str, Any]) -> list[str]:
    found = obj.get("authors")
    if not isinstance(found, list):
        single = obj.get("author")  # JSON Feed 1.0
        found = [single] if isinstance(single, Mapping) else []
    return [_text(a.get("name")) for a in found if isinstance(a, Mapping) and _text(a.get("name"))]


def _entry(item: Mapping[str, Any], feed_authors: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    ident = item.get("id")
    # 1.0 allowed numbers; 1.1 says strings. Either way the id is the item's key.
    if isinstance(ident, (str, int)) and not isinstance(ident, bool) and str(ident).strip():
        entry["id"] = str(ident).strip()
    title = _text(item.get("title"))
    if title:
        entry["title"] = title
        entry["title_detail"] = {"type": "text/plain", "value": title}
    link = _text(item.get("url")) or _text(item.get("external_url"))
    if link:
        entry["link"] = link
    html_body = _text(item.get("content_html"))
    text_body = _text(item.get("content_text")) or _text(item.get("summary"))
    if html_body:
        entry["summary"] = html_body
        entry["summary_detail"] = {"type": "text/html", "value": html_body}
    elif text_body:
        entry["summary"] = text_body
        entry["summary_detail"] = {"type": "text/plain", "value": text_body}
    for field, key in (("published", "date_published"), ("updated", "date_modified")):
        parsed = _date(item.get(key))
        if parsed is not None:
            entry[f"{field}_parsed"] = parsed
            entry[field] = _text(item.get(key))
    authors = _authors(item) or feed_authors
    if authors:
        entry["author"] = ", ".join(authors)
        entry["author_detail"] = {"name": entry["author"]}
    tags = item.get("tags")
    if isinstance(tags, list):
        entry["tags"] = [{"term": t} for t in tags if isinstance(t, str) and t.strip()]
    enclosures = []
    for attachment in item.get("attachments") or []:
        if not isinstance(attachment, Mapping) or not _text(attachment.get("url")):
            continue
        size = attachment.get("size_in_bytes")
        enclosures.append(
            {
                "href": _text(attachment.get("url")),
                "type": _text(attachment.get("mime_type")) or None,
                "length": str(size) if isinstance(size, int) and size > 0 else None,
            }
        )
    if enclosures:
        entry["enclosures"] = enclosures
    return entry


def read_json_feed(data: bytes, *, url: str) -> dict[str, Any]:
    """The JSON Feed in ``data`` as a feedparser-shaped dict (``version``, ``feed``,
    ``entries``). Raises `NotAFeedError` saying why when it is not a JSON Feed."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NotAFeedError(
            f"the document looks like JSON but cannot be read ({e})", url=url
        ) from e
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, str) or version.rstrip("/") not in JSON_FEED_VERSIONS:
        raise NotAFeedError(
            'the document is JSON but not a JSON Feed (it needs "version": '
            '"https://jsonfeed.org/version/1.1")',
            url=url,
        )
    items = doc.get("items")
    if not isinstance(items, list):
        raise NotAFeedError('the JSON Feed has no "items" list', url=url)
    feed: dict[str, Any] = {}
    title = _text(doc.get("title"))
    if title:
        feed["title"] = title
        feed["title_detail"] = {"type": "text/plain", "value": title}
    if _text(doc.get("home_page_url")):
        feed["link"] = _text(doc.get("home_page_url"))
    if _text(doc.get("feed_url")):
        feed["links"] = [{"rel": "self", "href": _text(doc.get("feed_url"))}]
    if _text(doc.get("icon")):
        feed["image"] = {"href": _text(doc.get("icon"))}
    if _text(doc.get("language")):
        feed["language"] = _text(doc.get("language"))
    feed_authors = _authors(doc)
    return {
        "version": JSON_FEED_VERSIONS[version.rstrip("/")],
        "feed": feed,
        "entries": [_entry(i, feed_authors) for i in items if isinstance(i, Mapping)],
        "bozo": False,
    }
