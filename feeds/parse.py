"""Turning feed bytes into typed, sanitized records (RSS 0.9x/1.0/2.0 and Atom via feedparser,
JSON Feed 1.0/1.1 via `feeds.jsonfeed`).

Owns the dedupe key of each item, plain-text titles, absolute links, sanitized summaries,
enclosures and the warnings a reader should see. Byte-level repairs (gzip, BOMs, wrapped feeds,
mislabelled encodings) live in `feeds.encoding`, date repairs in `feeds.dates`. Every
document goes through feedparser. Recoverable problems are accepted and described in
`ParsedFeed.warnings`; a document that is not a feed raises `NotAFeedError`.
`parse_feed` is pure and synchronous; `parse_feed_async` runs it in a thread behind a bounded,
module-wide semaphore so the event loop never parses.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import feedparser

from feeds.dates import entry_date
from feeds.encoding import (
    GZIP_MAGIC,
    HTML_ROOT,
    XML_DECL_ENCODING,
    DecompressionError,
    base_url,
    charset_of,
    feedparser_headers,
    gunzip_capped,
    header,
    looks_like_html,
    prepare_bytes,
)
from feeds.errors import NotAFeedError, ParseError
from feeds.jsonfeed import is_json_media_type, read_json_feed
from feeds.sanitize import html_to_text, sanitize_html, strip_tracking_params
from feeds.schedule import KeyEntry, dedupe_keys

if TYPE_CHECKING:  # asyncio only where it runs: parser worker processes never import it
    import asyncio

__all__ = [
    "GZIP_MAGIC",
    "DecompressionError",
    "Enclosure",
    "ParsedFeed",
    "ParsedItem",
    "gunzip_capped",
    "parse_concurrency",
    "parse_feed",
    "parse_feed_async",
    "parsed_feed_to_json",
    "set_parse_concurrency",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enclosure:
    url: str
    type: str | None
    length: int | None


@dataclass(frozen=True)
class ParsedItem:
    """One entry. `key` is unique within its document: `guid` (the item's own key: guid/id,
    else link, else a hash of title+link, see `_item_key`), or one derived from it when
    another item of the document has the same guid (`feeds.schedule.dedupe_keys`; a caller
    that stores items decides again knowing what it stored, from `guid`). `published` falls
    back to the updated date; all datetimes are aware UTC. `summary_html` is already
    sanitized."""

    key: str
    title: str
    link: str | None
    published: datetime | None
    updated: datetime | None
    author: str | None
    categories: tuple[str, ...]
    summary_html: str
    enclosures: tuple[Enclosure, ...]
    content_hash: str
    event_start: datetime | None = None
    guid: str = ""

    def key_entry(self) -> KeyEntry:
        """What `feeds.schedule.dedupe_keys` needs to know of this item."""
        return KeyEntry(self.guid or self.key, self.title, self.link, self.content_hash)


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    link: str | None
    items: tuple[ParsedItem, ...]
    warnings: tuple[str, ...]
    ttl_seconds: int | None
    updated: datetime | None = None
    self_link: str | None = None
    encoding: str | None = None
    image: str | None = None


def _bozo_sentence(exc: BaseException, media_type_given: bool) -> str | None:
    name = type(exc).__name__
    if name == "NonXMLContentType":
        if not media_type_given:
            return None
        return f"the server labels the feed with a non-XML media type ({exc}); read it anyway"
    if name == "CharacterEncodingOverride":
        return f"character encoding: {exc}"
    if name == "CharacterEncodingUnknown":
        return f"could not determine the character encoding ({exc}); text may be garbled"
    get_message = getattr(exc, "getMessage", None)
    if callable(get_message):
        line = getattr(exc, "getLineNumber", lambda: None)()
        where = f" at line {line}" if line else ""
        what = str(get_message())
        hint = " (the document looks truncated)" if what == "no element found" else ""
        return (
            f"the document is not well-formed XML ({what}{where}){hint}; "
            "it was read with a lenient parser"
        )
    return f"{name}: {exc}"


# ---------------------------------------------------------------- items


def _plain(detail: Mapping[str, Any] | None, value: str | None) -> str:
    """A title-like field as one line of plain text (HTML titles decoded and stripped)."""
    if not value:
        return ""
    kind = (detail or {}).get("type", "text/plain")
    text = html_to_text(value) if "html" in str(kind) else value
    return " ".join(text.split())


_URL_BREAKS = re.compile(r"[\s\x00-\x1f\x7f]")


def _http_url(value: object, base: str | None) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    url = urljoin(base, value.strip()) if base else value.strip()
    # Whitespace inside a link would let a feed write its own line next to the library's
    # name ("...\nVerify your account: https://evil.example"): it becomes %20, %0A...
    url = _URL_BREAKS.sub(lambda m: quote(m.group()), url)
    return url if urlsplit(url).scheme in ("http", "https") else None


def _unwrap_redirect(url: str | None) -> str | None:
    """Google Alerts wraps every link in google.com/url?url=...; link to the article itself.

    The target comes out of the query percent-decoded ("%0A" is a line break again), so it
    goes through `_http_url`'s check like any link: a redirect cannot smuggle in lines."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.path == "/url" and re.fullmatch(r"(www\.)?google\.[a-z.]+", parts.netloc):
        query = parse_qs(parts.query)
        for name in ("url", "q"):
            target = _http_url(query.get(name, [""])[0], None)
            if target is not None:
                return target
    return url


def _summary_html(entry: Mapping[str, Any], base: str | None) -> str:
    detail: Mapping[str, Any] | None = None
    if entry.get("summary"):
        detail = entry.get("summary_detail") or {"value": entry["summary"], "type": "text/html"}
    elif entry.get("content"):
        detail = entry["content"][0]
    if not detail or not detail.get("value"):
        return ""
    value = str(detail["value"])
    if "html" not in str(detail.get("type", "text/html")):
        value = html.escape(value).replace("\n", "<br>")
    item_base = detail.get("base") or base
    return sanitize_html(value, base_url=item_base if _http_url(item_base, None) else base)


def _enclosures(entry: Mapping[str, Any], base: str | None) -> tuple[Enclosure, ...]:
    found: list[Enclosure] = []
    seen: set[str] = set()

    def add(url: object, mime: object, length: object) -> None:
        absolute = _http_url(url, base)
        if absolute is None or absolute in seen:
            return
        seen.add(absolute)
        size = int(length) if isinstance(length, str) and length.strip().isdigit() else None
        found.append(Enclosure(absolute, str(mime) if mime else None, size or None))

    for enc in entry.get("enclosures") or []:
        add(enc.get("href"), enc.get("type"), enc.get("length"))
    enc_rdf = entry.get("enc_enclosure")  # RSS 1.0 mod_enclosure: <enc:enclosure resource=...>
    if isinstance(enc_rdf, Mapping):
        add(enc_rdf.get("resource") or enc_rdf.get("url"), enc_rdf.get("type"), None)
    for media in entry.get("media_content") or []:
        add(media.get("url"), media.get("type"), media.get("filesize"))
    return tuple(found)


def _content_hash(title: str, link: str | None, summary_html: str) -> str:
    data = "\x1f".join((title, link or "", summary_html)).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def _item_key(entry: Mapping[str, Any], title: str, link: str | None, summary: str) -> str:
    """guid/atom:id, else link, else a hash of title+link (summary only if both are empty:
    hashing editable text would turn every edit into a "new" item)."""
    ident = entry.get("id")
    if isinstance(ident, str) and ident.strip():
        return ident.strip()
    if link:
        return link
    material = f"{title}\n{link or ''}" if title else summary
    return "sha256:" + hashlib.sha256(material.encode("utf-8")).hexdigest()


def _fallback_title(summary_html: str, link: str | None) -> str:
    """Untitled items (allowed in RSS) get the start of their text, else their link."""
    text = " ".join(html_to_text(summary_html).split())
    if len(text) > 80:
        text = text[:80].rsplit(" ", 1)[0] + "…"
    return text or link or "(untitled)"


def _categories(entry: Mapping[str, Any]) -> tuple[str, ...]:
    result: list[str] = []
    for tag in entry.get("tags") or []:
        term = " ".join(str(tag.get("term") or tag.get("label") or "").split())
        if term and term not in result:
            result.append(term)
    return tuple(result)


def _author(entry: Mapping[str, Any]) -> str | None:
    detail = entry.get("author_detail") or {}
    name = detail.get("name") or entry.get("author")
    text = " ".join(html_to_text(str(name)).split()) if name else ""
    return text or None


# ---------------------------------------------------------------- the parser


def parse_feed(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str] | None = None,
) -> ParsedFeed:
    """Parse one fetched document. Pure and synchronous (CPU-bound: call `parse_feed_async`
    from the event loop). Raises `NotAFeedError` for HTML pages, JSON and other non-feeds."""
    warnings: list[str] = []
    data, had_bom = prepare_bytes(body, warnings)
    if not data.strip():
        raise NotAFeedError("the response body is empty", url=url)
    if HTML_ROOT.match(data[:4096]):
        raise NotAFeedError("the server returned an HTML page", url=url)
    parsed: Any
    first = data.lstrip()[:1]
    if first in (b"{", b"[") or (
        first != b"<" and is_json_media_type(header(headers, "content-type"))
    ):
        # JSON Feed 1.0/1.1 (by its media type or its body); other JSON is refused there.
        parsed = read_json_feed(data, url=url)
        base: str | None = url
    else:
        base = base_url(url, data)
        fp_headers = feedparser_headers(data, base, headers, had_bom, warnings)
        try:
            parsed = feedparser.parse(
                data, response_headers=fp_headers, sanitize_html=False, resolve_relative_uris=True
            )
        except Exception as e:  # feedparser has no error root; anything here is a parser bug
            raise ParseError(f"could not read the feed {url}: {type(e).__name__}: {e}") from e

    entries = parsed.get("entries") or []
    if not parsed.get("version") and not entries:
        if looks_like_html(data):
            raise NotAFeedError("the server returned an HTML page", url=url)
        raise NotAFeedError("the document is neither RSS, Atom nor RDF", url=url)
    encoding = parsed.get("encoding")
    undeclared = (
        not had_bom
        and not XML_DECL_ENCODING.match(data[:512])
        and not charset_of(header(headers, "content-type"))
        and not data.isascii()
        and encoding not in (None, "utf-8")
    )
    if undeclared:
        warnings.append(f"the document declares no character encoding; read as {encoding}")
    if parsed.get("bozo"):
        exc = parsed.get("bozo_exception")
        if not (undeclared and type(exc).__name__ == "CharacterEncodingOverride"):
            sentence = _bozo_sentence(exc, header(headers, "content-type") is not None)
            if sentence:
                warnings.append(sentence)

    feed = parsed.get("feed") or {}
    language = str(feed.get("language") or header(headers, "content-language") or "")
    month_first = language.strip().lower() in ("en-us", "en_us")
    notes: dict[str, str] = {}  # one warning per kind of date repair, not per item
    self_link = next(
        (
            _http_url(link.get("href"), None)
            for link in feed.get("links") or []
            if link.get("rel") == "self"
        ),
        None,
    )
    feed_link = _http_url(feed.get("link"), base)
    title = _plain(feed.get("title_detail"), feed.get("title"))
    if not title:
        host = urlsplit(feed_link or self_link or url).netloc
        title = host or url
        warnings.append(f"the feed has no title; using {title!r}")
    ttl_raw = str(feed.get("ttl") or "").strip()
    ttl_seconds = int(ttl_raw) * 60 if ttl_raw.isdigit() and int(ttl_raw) > 0 else None
    feed_updated = entry_date(feed, "updated", month_first, notes) or entry_date(
        feed, "published", month_first, notes
    )

    drafts: list[ParsedItem] = []
    empty = 0
    for entry in entries:
        item_title = _plain(entry.get("title_detail"), entry.get("title"))
        raw_link = _unwrap_redirect(_http_url(entry.get("link"), base))
        # Readers get the link without trackers; identity and hash keep the link as
        # published, so an item stored before tracker clean-up is not new or edited.
        link = strip_tracking_params(raw_link) if raw_link else None
        summary = _summary_html(entry, base)
        enclosures = _enclosures(entry, base)
        if not (item_title or link or summary or enclosures or entry.get("id")):
            # e.g. the <item /> PCMag nests inside every item: not an item of its own.
            empty += 1
            continue
        updated = entry_date(entry, "updated", month_first, notes)
        published = entry_date(entry, "published", month_first, notes) or updated
        published = published or entry_date(entry, "created", month_first, notes)
        content_hash = _content_hash(item_title, raw_link, summary)
        key = _item_key(entry, item_title, raw_link, summary)
        drafts.append(
            ParsedItem(
                key=key,
                guid=key,
                title=item_title or _fallback_title(summary, link),
                link=link,
                published=published,
                updated=updated,
                author=_author(entry),
                categories=_categories(entry),
                summary_html=summary,
                enclosures=enclosures,
                content_hash=content_hash,
            )
        )

    if empty:
        warnings.append(f"{empty} empty item(s) (no title, link, id or content) were skipped")
    keys = dedupe_keys([d.key_entry() for d in drafts])
    items: list[ParsedItem] = []
    renamed = 0
    for draft, unique in zip(drafts, keys, strict=True):
        if unique is None:
            continue
        if unique != draft.key:
            renamed += 1
            draft = ParsedItem(**{**draft.__dict__, "key": unique})
        items.append(draft)
    if renamed:
        warnings.append(
            f"{renamed} item(s) reuse another item's guid; they were given distinct keys"
        )
    if len(items) < len(drafts):
        warnings.append(f"{len(drafts) - len(items)} item(s) appear twice and were skipped")
    warnings.extend(notes[kind] for kind in sorted(notes))
    return ParsedFeed(
        title=title,
        link=feed_link,
        items=tuple(items),
        warnings=tuple(warnings),
        ttl_seconds=ttl_seconds,
        updated=feed_updated,
        self_link=self_link,
        image=_http_url((feed.get("image") or {}).get("href"), base),
        encoding=encoding,
    )


# ---------------------------------------------------------------- off the event loop

_parse_limit = 2
# One semaphore per running loop: asyncio primitives must not be shared across loops.
_semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def set_parse_concurrency(n: int) -> None:
    """How many documents may be parsed at once: threads for `parse_feed_async`, worker
    processes for `feeds.parsepool`. Parsing is CPU- and memory-bound, so a small number
    (default 2) is the right order."""
    global _parse_limit
    if n < 1:
        raise ValueError(f"parse concurrency must be at least 1, got {n}")
    _parse_limit = n
    _semaphores.clear()


def parse_concurrency() -> int:
    """The current `set_parse_concurrency` value."""
    return _parse_limit


async def parse_feed_async(
    body: bytes, *, url: str, headers: Mapping[str, str] | None = None
) -> ParsedFeed:
    """`parse_feed` in a worker thread, at most `set_parse_concurrency(n)` at a time."""
    import asyncio

    loop = asyncio.get_running_loop()
    semaphore = _semaphores.get(loop)
    if semaphore is None:
        semaphore = _semaphores[loop] = asyncio.Semaphore(_parse_limit)
    async with semaphore:
        return await asyncio.to_thread(parse_feed, body, url=url, headers=headers)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def parsed_feed_to_json(feed: ParsedFeed, kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """A JSON-ready dict of the feed; `kinds[i]` is the kind of `feed.items[i]` (or null)."""
    if kinds is not None and len(kinds) != len(feed.items):
        raise ValueError(f"got {len(kinds)} kinds for {len(feed.items)} items")
    return {
        "title": feed.title,
        "link": feed.link,
        "items": [
            {
                "key": item.key,
                "title": item.title,
                "link": item.link,
                "published": _iso(item.published),
                "kind": kinds[i] if kinds is not None else None,
                "summary_html": item.summary_html,
                "categories": list(item.categories),
                "enclosures": [
                    {"url": e.url, "type": e.type, "length": e.length} for e in item.enclosures
                ],
                "event_start": _iso(item.event_start),
            }
            for i, item in enumerate(feed.items)
        ],
        "warnings": list(feed.warnings),
    }
