"""A fast path for well-formed plain RSS 2.0: feedparser's result without feedparser's cost.

feedparser spends about 5 ms on a 20-item document, nearly all of it in its generic SAX state
machine. Most feeds a library network polls are plain RSS 2.0, so for those `parse_plain_rss`
reads the document with expat and builds the structure `feedparser.parse` would return,
limited to the keys `feeds.parse` reads (version, encoding, bozo, feed, entries). Every text
transformation reuses feedparser's own helpers (relative URIs, HTML detection, dates, its
UTF-8/cp1252 repairs) on the same bytes feedparser's SAX parser would see, so the result is
the same by construction.

The path accepts only what it can reproduce exactly: UTF-8 under an XML media type, no DTD, no
namespaces, `<rss version="2.x">` with one `<channel>`, and a whitelist of RSS 2.0 elements
and attributes, each a leaf element, not repeated where feedparser's precedence rules would
matter. Anything else returns None and the caller falls back to feedparser. The fast path
relies on feedparser internals (underscore names), so tests/test_feeds_fastparse.py compares
both paths on the corpus and on generated feeds: a feedparser upgrade that changes behaviour
fails there, not in production.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html.entities import name2codepoint
from typing import Any
from xml.parsers import expat

from feedparser.datetimes import _parse_date
from feedparser.encodings import RE_XML_DECLARATION, RE_XML_PI_ENCODING, parse_content_type
from feedparser.html import _BaseHTMLProcessor, _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.sanitizer import RE_DOCTYPE_PATTERN, RE_ENTITY_PATTERN
from feedparser.urls import (
    RelativeURIResolver,
    _urljoin,
    make_safe_absolute_uri,
    resolve_relative_uris,
)

__all__ = ["parse_plain_rss", "resolve_simple_html"]

_CAN_BE_RELATIVE: frozenset[str] = frozenset(_FeedParserMixin.can_be_relative_uri)
_CAN_CONTAIN_RELATIVE: frozenset[str] = frozenset(_FeedParserMixin.can_contain_relative_uris)
_HTML_TYPES: frozenset[str] = frozenset(_FeedParserMixin.html_types)
_XML_MEDIA_TYPES = (
    "application/xml",
    "application/xml-dtd",
    "application/xml-external-parsed-entity",
)
_AMP_REF = re.compile("&([A-Za-z0-9_]+);")
# feedparser's _sync_author_detail pattern, verbatim.
_EMAIL = re.compile(
    r"""(([a-zA-Z0-9\_\-\.\+]+)@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([a-zA-Z0-9\-]+\.)+))"""
    r"""([a-zA-Z]{2,4}|[0-9]{1,3})(\]?))(\?subject=\S+)?"""
)

# element -> attributes allowed on it (lower-case, as feedparser normalizes them)
_CHANNEL_ONCE = {
    "title": (),
    "link": (),
    "description": (),
    "language": (),
    "copyright": (),
    "managingeditor": (),
    "webmaster": (),
    "pubdate": (),
    "lastbuilddate": (),
    "generator": (),
    "docs": (),
    "ttl": (),
}
_IMAGE_ONCE = ("title", "url", "link", "width", "height", "description")
_ITEM_ONCE = {
    "title": (),
    "link": (),
    "description": (),
    "author": (),
    "comments": (),
    "guid": ("ispermalink",),
    "pubdate": (),
}
_ITEM_MANY = {"category": ("domain",), "enclosure": ("url", "length", "type")}


# ---------------------------------------------------------------- relative URIs in HTML

# feedparser's RelativeURIResolver defines no start_* handlers, so its sgmllib base keeps no
# tag stack: it re-serializes token by token. For HTML made only of the tokens below, that
# serialization is reproduced here; anything else (comments, declarations, unquoted or
# valueless attributes, "&#" in attributes, hex or rewritten character references, stray "<")
# returns None and the real resolver runs.
_HTML_TOKEN = re.compile(
    r"""(?P<text>[^<&]+)"""
    r"""|&(?P<entity>[a-zA-Z][a-zA-Z0-9]*|\#[0-9]+);"""
    r"""|<(?P<tag>[a-zA-Z][a-zA-Z0-9]*)"""
    r"""(?P<attrs>(?:\s+[a-zA-Z_][-:.a-zA-Z_0-9]*\s*=\s*(?:"[^"<>]*"|'[^'<>]*'))*)"""
    r"""\s*(?P<slash>/?)>"""
    r"""|</(?P<end>[a-zA-Z][a-zA-Z0-9]*)\s*>"""
)
_HTML_ATTR = re.compile(r"""\s+([a-zA-Z_][-:.a-zA-Z_0-9]*)\s*=\s*(?:"([^"<>]*)"|'([^'<>]*)')""")
_VOID: frozenset[str] = frozenset(_BaseHTMLProcessor.elements_no_end_tag)
_URI_ATTRS: frozenset[tuple[str, str]] = frozenset(RelativeURIResolver.relative_uris)
_BARE_AMPERSAND = _BaseHTMLProcessor.bare_ampersand
_KNOWN_ENTITIES = frozenset(name2codepoint) | {"apos"}


def resolve_simple_html(html: str, base: str) -> str | None:
    """`resolve_relative_uris(html, base, "utf-8", "text/html")` for simple HTML, else None."""
    out: list[str] = []
    pos, end = 0, len(html)
    while pos < end:
        m = _HTML_TOKEN.match(html, pos)
        if m is None:
            return None
        pos = m.end()
        kind = m.lastgroup
        if kind == "text" or kind == "entity":
            entity = m.group("entity")
            if entity is not None:
                if entity[0] == "#":
                    # sgmllib rewrites &#39;, &#34; and the cp1252 range; keep those away.
                    number = int(entity[1:])
                    if number in (34, 39) or 128 <= number <= 159:
                        return None
                elif entity not in _KNOWN_ENTITIES:
                    return None
            out.append(m.group(0))
        elif kind == "end":
            tag = m.group("end").lower()
            if tag not in _VOID:
                out.append(f"</{tag}>")
        else:
            tag = m.group("tag").lower()
            raw_attrs = m.group("attrs")
            if not raw_attrs:
                if m.group("slash") and tag not in _VOID:
                    out.append(f"<{tag}></{tag}>")  # feedparser expands <x/> to <x></x>
                else:
                    out.append(f"<{tag} />" if tag in _VOID else f"<{tag}>")
                continue
            attrs: dict[str, str] = {}
            for a in _HTML_ATTR.finditer(raw_attrs):
                value = a.group(2) if a.group(2) is not None else a.group(3)
                if "&#" in value:
                    return None
                key = a.group(1).lower()
                attrs[key] = value.lower() if key in ("rel", "type") else value
            parts = []
            for key, value in sorted(attrs.items()):
                if (tag, key) in _URI_ATTRS:
                    value = make_safe_absolute_uri(base, value.strip()) or value
                value = value.replace(">", "&gt;").replace("<", "&lt;").replace('"', "&quot;")
                parts.append(f' {key}="{_BARE_AMPERSAND.sub("&amp;", value)}"')
            joined = "".join(parts)
            out.append(f"<{tag}{joined} />" if tag in _VOID else f"<{tag}{joined}>")
    return "".join(out)


class _Decline(Exception):
    """The document is outside the subset this module reproduces exactly."""


class _Node:
    __slots__ = ("attrs", "children", "name", "text")

    def __init__(self, name: str, attrs: dict[str, str]) -> None:
        self.name = name
        self.attrs = attrs
        self.text: list[str] = []
        self.children: list[_Node] = []


def _tree(data: bytes) -> _Node:
    """The element tree of `data` (element names lower-cased), or _Decline."""
    stack: list[_Node] = []
    roots: list[_Node] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if ":" in name:
            raise _Decline
        node = _Node(name.lower(), attrs)
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)

    def end(name: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text.append(data)

    def doctype(*args: object) -> None:
        raise _Decline

    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise _Decline from e
    if len(roots) != 1:
        raise _Decline
    return roots[0]


def _attrs(node: _Node, allowed: tuple[str, ...]) -> dict[str, str]:
    """The attributes as feedparser normalizes them; _Decline on any it would interpret."""
    result: dict[str, str] = {}
    for key, value in node.attrs.items():
        k = key.lower()
        if k not in allowed or k in result:
            raise _Decline
        result[k] = value.lower() if k in ("rel", "type") else value
    return result


def _leaf(node: _Node, allowed: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    if node.children:
        raise _Decline
    return "".join(node.text), _attrs(node, allowed)


def _finish(
    raw: str, element: str, base: str, content_type: str | None = None, resolve: bool = True
) -> tuple[str, str | None]:
    """What feedparser's `pop()` does to an element's text, in its order: strip, resolve a
    URI-valued element, guess HTML in plain text, resolve URIs inside HTML, undo UTF-8 read
    as Latin-1, map cp1252 code points. Returns the text and the (possibly guessed) type."""
    out = raw.strip()
    if out and resolve and element in _CAN_BE_RELATIVE:
        out = _urljoin(base, out)
    if content_type == "text/plain" and _FeedParserMixin.looks_like_html(out):
        content_type = "text/html"
    effective = content_type or "text/html"
    if element in _CAN_CONTAIN_RELATIVE and _FeedParserMixin.map_content_type(effective) in (
        _HTML_TYPES
    ):
        fast = resolve_simple_html(out, base) if effective == "text/html" else None
        out = fast if fast is not None else resolve_relative_uris(out, base, "utf-8", effective)
    try:
        out = out.encode("iso-8859-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return out.translate(_cp1252), content_type


def _add_tag(tags: list[dict[str, Any]], term: str | None, scheme: str | None) -> None:
    if not term and not scheme:
        return
    value = {"term": term, "scheme": scheme, "label": None}
    if value not in tags:
        tags.append(value)


def _author(entry: dict[str, Any], text: str, base: str) -> None:
    """feedparser's `_start_author`/`_end_author`/`_sync_author_detail` for an RSS author."""
    detail: dict[str, Any] = {}
    entry.setdefault("authors", []).append(detail)
    entry["author"] = author = _finish(text, "author", base)[0]
    if not author:
        return
    email = None
    match = _EMAIL.search(author)
    if match:
        email = match.group(0)
        author = author.replace(email, "").replace("()", "").replace("<>", "")
        author = author.replace("&lt;&gt;", "").strip()
        if author and author[0] == "(":
            author = author[1:]
        if author and author[-1] == ")":
            author = author[:-1]
        author = author.strip()
    if author or email:
        entry.setdefault("author_detail", detail)
    if author:
        detail["name"] = author
    if email:
        detail["email"] = email


def _item(node: _Node, base: str) -> dict[str, Any]:
    if node.attrs:
        raise _Decline
    entry: dict[str, Any] = {}
    links: list[dict[str, str]] = []
    seen: set[str] = set()
    for child in node.children:
        name = child.name
        if name in _ITEM_ONCE:
            if name in seen:
                raise _Decline
            seen.add(name)
            text, attrs = _leaf(child, _ITEM_ONCE[name])
        elif name in _ITEM_MANY:
            text, attrs = _leaf(child, _ITEM_MANY[name])
        else:
            raise _Decline
        if name == "title":
            value, kind = _finish(text, "title", base, "text/plain")
            entry["title"] = value
            entry["title_detail"] = {"type": kind, "base": base, "value": value}
        elif name == "description":
            value, kind = _finish(text, "description", base, "text/html")
            entry["summary"] = value
            entry["summary_detail"] = {"type": kind, "base": base, "value": value}
        elif name == "link":
            value = _finish(text, "link", base)[0].replace("&amp;", "&")
            value = _AMP_REF.sub(r"&\g<1>", value)
            entry["link"] = value
            link = {"rel": "alternate", "type": "text/html"}
            if value:
                link["href"] = value
            links.append(link)
        elif name == "guid":
            is_link = attrs.get("ispermalink", "true") == "true"
            value = _finish(text, "id", base, resolve=is_link)[0]
            entry["id"] = value
            entry.setdefault("guidislink", is_link and "link" not in entry)
            if is_link:
                entry.setdefault("link", value)
        elif name == "pubdate":
            value = _finish(text, "published", base)[0]
            entry["published"] = value
            entry["published_parsed"] = _parse_date(value)
        elif name == "author":
            _author(entry, text, base)
        elif name == "category":
            tags = entry.setdefault("tags", [])
            _add_tag(tags, None, attrs.get("domain"))
            value = _finish(text, "category", base)[0]
            if value and tags and not tags[-1]["term"]:
                tags[-1]["term"] = value
            elif value:
                _add_tag(tags, value, None)
        elif name == "enclosure":
            href = attrs.pop("url", None)
            if href:
                attrs["href"] = href
            elif href is not None:
                attrs["url"] = href
            attrs["rel"] = "enclosure"
            links.append(attrs)
        elif name == "comments":
            _finish(text, "comments", base)  # stored by feedparser, read by nobody here
    if links:
        entry["links"] = links
        entry["enclosures"] = [
            {k: v for k, v in link.items() if k != "rel"}
            for link in links
            if link["rel"] == "enclosure"
        ]
    return entry


def _channel(node: _Node, base: str, feed: dict[str, Any]) -> list[dict[str, Any]]:
    if node.attrs:
        raise _Decline
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for child in node.children:
        name = child.name
        if name == "item":
            entries.append(_item(child, base))
            continue
        if name == "category":
            _leaf(child, ("domain",))  # feed categories are not read
            continue
        if name in seen:
            raise _Decline
        seen.add(name)
        if name == "image":
            _image(child, base, feed)
            continue
        if name not in _CHANNEL_ONCE:
            raise _Decline
        text, _ = _leaf(child, _CHANNEL_ONCE[name])
        if name == "title":
            value, kind = _finish(text, "title", base, "text/plain")
            feed["title"] = value
            feed["title_detail"] = {"type": kind, "base": base, "value": value}
        elif name == "link":
            value = _AMP_REF.sub(r"&\g<1>", _finish(text, "link", base)[0])
            feed["link"] = value
            feed.setdefault("links", []).append(
                {"rel": "alternate", "type": "text/html", "href": value}
            )
        elif name in ("language", "ttl"):
            feed[name] = _finish(text, name, base)[0]
        elif name in ("pubdate", "lastbuilddate"):
            key = "published" if name == "pubdate" else "updated"
            value = _finish(text, key, base)[0]
            feed[key] = value
            feed[f"{key}_parsed"] = _parse_date(value)
        elif name in ("description", "copyright"):
            # Stored under keys nobody here reads, but feedparser runs its HTML resolver on
            # them; do the same so a document that breaks it fails (and falls back) here too.
            _finish(text, name, base, "text/html" if name == "description" else "text/plain")
        # managingEditor, webMaster, generator and docs: stored by feedparser under keys
        # nobody here reads, with no state that other elements use.
    return entries


def _image(node: _Node, base: str, feed: dict[str, Any]) -> None:
    if node.attrs:
        raise _Decline
    image: dict[str, Any] = {}
    seen: set[str] = set()
    for child in node.children:
        if child.name not in _IMAGE_ONCE or child.name in seen:
            raise _Decline
        seen.add(child.name)
        text, _ = _leaf(child, ())
        if child.name == "url":
            image["href"] = _finish(text, "href", base)[0]
        elif child.name in ("title", "description"):
            # Not read, but run through the same HTML resolver feedparser uses (see _channel).
            _finish(text, child.name, base, "text/plain" if child.name == "title" else "text/html")
    feed["image"] = image


def _descend(base: str) -> str:
    """The base URI feedparser computes for a child element without xml:base."""
    if base:
        return str(make_safe_absolute_uri(base, base) or base)
    return str(_urljoin(base, base))


def parse_plain_rss(data: bytes, headers: Mapping[str, str]) -> dict[str, Any] | None:
    """`feedparser.parse(data, response_headers=headers, sanitize_html=False,
    resolve_relative_uris=True)` for plain RSS 2.0, as plain dicts; None for anything else.

    `headers` are the lower-case response headers handed to feedparser (content-type,
    content-location, content-language)."""
    if data[:1] != b"<" or b"\x00" in data[:4]:
        return None
    media_type, http_charset = parse_content_type(headers.get("content-type") or "")
    if not (
        media_type in _XML_MEDIA_TYPES
        or (media_type.startswith("application/") and media_type.endswith("+xml"))
    ):
        return None
    declared = RE_XML_PI_ENCODING.match(data)
    try:
        xml_charset = declared.group(1).decode("utf-8").lower() if declared else ""
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if (http_charset or xml_charset or "utf-8") != "utf-8":
        return None
    # The bytes feedparser's SAX parser sees: its own declaration, and no DTD.
    declaration = "<?xml version='1.0' encoding='utf-8'?>"
    if RE_XML_DECLARATION.search(text):
        text = RE_XML_DECLARATION.sub(declaration, text)
    else:
        text = declaration + "\n" + text
    xml = text.encode("utf-8")
    first = re.search(rb"<\w", xml)
    head = xml[: first.start() + 1] if first and first.start() > 0 else b""
    if RE_DOCTYPE_PATTERN.search(head) or RE_ENTITY_PATTERN.search(head):
        return None
    # feedparser's base: Content-Location as given; each element then re-joins it to itself.
    inner = _descend(str(headers.get("content-location") or ""))
    if _descend(inner) != inner:
        return None
    try:
        root = _tree(xml)
        if root.name != "rss" or not _attrs(root, ("version",)).get("version", "").startswith("2."):
            return None
        if len(root.children) != 1 or root.children[0].name != "channel":
            return None
        feed: dict[str, Any] = {}
        language = headers.get("content-language")
        if language:
            feed["language"] = language.replace("_", "-")
        entries = _channel(root.children[0], inner, feed)
    except _Decline:
        return None
    return {
        "version": "rss20",
        "encoding": "utf-8",
        "bozo": False,
        "feed": feed,
        "entries": entries,
    }
