"""HTML hygiene for feed content: sanitizing, plain-text conversion and truncation.

Feed HTML is untrusted. `sanitize_html` reduces it to the tag set the Matrix specification
suggests for `org.matrix.custom.html` (so the same string is safe for Matrix, email and the web
UI), `html_to_text` gives the readable plain text used for `body` fields and titles, and
`truncate_html` shortens sanitized HTML by visible length without breaking its structure.
Trackers go on the way: 1x1 (or 0x0) images and ``utm_*``, ``fbclid`` and ``gclid`` query
parameters of links and images (`strip_tracking_params`), so a reader is not followed.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import nh3

__all__ = [
    "MATRIX_ALLOWED_TAGS",
    "html_to_text",
    "sanitize_html",
    "strip_tracking_params",
    "truncate_html",
]

# Client-Server API, "m.room.message msgtypes" (v1.10+: `font` deprecated, `strike` became `s`).
MATRIX_ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "del",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "p",
        "a",
        "ul",
        "ol",
        "sup",
        "sub",
        "li",
        "b",
        "i",
        "u",
        "strong",
        "em",
        "s",
        "code",
        "hr",
        "br",
        "div",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "caption",
        "pre",
        "span",
        "img",
        "details",
        "summary",
    }
)

# The spec's per-tag attribute list, minus `target` (a feed has no business opening windows).
_ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href"},
    "img": {"src", "alt", "title", "width", "height"},
    "ol": {"start"},
    "code": {"class"},
    "span": {"data-mx-bg-color", "data-mx-color", "data-mx-spoiler"},
}
# Dropped together with their content: text inside them was never meant to be read.
_CLEAN_CONTENT_TAGS = {"script", "style", "mx-reply", "noscript", "template", "title", "head"}
_URL_SCHEMES = {"http", "https", "mailto"}


_TRACKING_PARAM = re.compile(r"(?:utm_[a-z0-9_]*|fbclid|gclid)", re.IGNORECASE)
# nh3 writes every attribute as name="value": a pixel is an image no wider or taller than 1.
_IMG_TAG = re.compile(r"<img\b[^>]*>")
_PIXEL_SIDE = re.compile(r'\b(width|height)="\s*([01])(?:px)?\s*"')


def strip_tracking_params(url: str) -> str:
    """``url`` without ``utm_*``, ``fbclid`` and ``gclid`` query parameters (the others, and
    their order and spelling, are kept)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    kept = [
        p for p in parts.query.split("&")
        if p and not _TRACKING_PARAM.fullmatch(p.split("=", 1)[0])
    ]  # fmt: skip
    query = "&".join(kept)
    if query == parts.query:
        return url
    return urlunsplit(parts._replace(query=query))


def _drop_pixels(html: str) -> str:
    def check(m: re.Match[str]) -> str:
        sides = {name for name, _ in _PIXEL_SIDE.findall(m.group())}
        return "" if sides == {"width", "height"} else m.group()

    return _IMG_TAG.sub(check, html) if "<img" in html else html


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if tag == "code" and attr == "class":
        # Only syntax-highlighting hints survive, as the spec allows.
        kept = [c for c in value.split() if c.startswith("language-")]
        return " ".join(kept) or None
    if (tag, attr) in (("a", "href"), ("img", "src")):
        return strip_tracking_params(value)
    return value


def sanitize_html(html: str, *, base_url: str | None = None, keep_images: bool = True) -> str:
    """Return `html` reduced to the Matrix tag set, safe to embed anywhere.

    Script/style content, event-handler attributes and non-http(s)/mailto URLs are removed;
    relative `href`/`src` values are resolved against `base_url` (or dropped when there is no
    absolute http(s) base). The output is balanced (html5ever re-serializes the tree).
    Images keep their http(s) `src` for email and web use; Matrix clients only load `mxc://`
    images, so callers building a Matrix message may pass `keep_images=False`.
    """
    if not html:
        return ""
    tags = set(MATRIX_ALLOWED_TAGS)
    if not keep_images:
        tags.discard("img")
    url_relative: Literal["deny"] | tuple[Literal["rewrite_with_base"], str] = "deny"
    if base_url is not None and urlsplit(base_url).scheme in ("http", "https"):
        url_relative = ("rewrite_with_base", base_url)
    cleaned: str = nh3.clean(
        html,
        tags=tags,
        clean_content_tags=_CLEAN_CONTENT_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        attribute_filter=_attribute_filter,
        url_schemes=_URL_SCHEMES,
        url_relative=url_relative,
        link_rel=None,
        strip_comments=True,
    )
    return _drop_pixels(cleaned).strip()


_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "pre",
        "ul",
        "ol",
        "table",
        "hr",
        "section",
        "article",
        "header",
        "footer",
        "details",
        "summary",
        "figure",
        "figcaption",
        "dl",
        "dd",
        "dt",
        "caption",
        "address",
        "aside",
        "nav",
        "main",
    }
)
_SKIP_TAGS = frozenset(_CLEAN_CONTENT_TAGS)
_VOID_TAGS = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
_PARA = "\x00P\x00"  # paragraph-break marker, resolved after whitespace collapsing
_LINE = "\x00L\x00"


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "br":
            self.parts.append(_LINE)
        elif tag == "li":
            self.parts.append(_LINE + "- ")
        elif tag == "tr":
            self.parts.append(_LINE)
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag in _BLOCK_TAGS:
            self.parts.append(_PARA)
            if tag == "pre":
                self._pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID_TAGS or tag not in _SKIP_TAGS:
            self.handle_starttag(tag, attrs)
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(_PARA)
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
        elif tag == "li":
            self.parts.append(_LINE)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        data = data.replace("\xa0", " ")
        if self._pre:
            self.parts.append(data.replace("\n", _LINE))
        else:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML fragment: paragraphs and line breaks kept, entities
    decoded, script/style content dropped, list items prefixed with "- "."""
    if not html:
        return ""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r" +", " ", text)
    # Resolve markers: a run containing a paragraph marker is a blank line, else a newline.
    text = re.sub(
        r"[ ]*(?:(?:\x00[PL]\x00)[ ]*)+",
        lambda m: "\n\n" if _PARA in m.group(0) else "\n",
        text,
    )
    lines = [line.strip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


class _Truncator(HTMLParser):
    def __init__(self, budget: int) -> None:
        super().__init__(convert_charrefs=False)
        self.budget = budget
        self.used = 0
        self.out: list[str] = []
        self.stack: list[str] = []
        self.truncated = False
        self._skip = 0
        self._last_space = True  # a leading whitespace run counts as nothing

    def _emit_text(self, text: str) -> None:
        # Whitespace runs count as one visible character, as a browser renders them.
        kept: list[str] = []
        for ch in text:
            is_space = ch.isspace()
            cost = 0 if (is_space and self._last_space) else 1
            if self.used + cost > self.budget:
                self._cut("".join(kept))
                return
            self.used += cost
            self._last_space = is_space
            kept.append(ch)
        self.out.append("".join(kept))

    def _cut(self, kept: str) -> None:
        # End on a word boundary unless that would drop more than a long word's worth.
        space = max(kept.rfind(" "), kept.rfind("\n"), kept.rfind("\t"))
        if space >= 0 and len(kept) - space <= 20:
            kept = kept[:space]
        kept = kept.rstrip()
        if not kept and self.out and not self.out[-1].endswith(">"):
            self.out[-1] = self.out[-1].rstrip()  # no space before the ellipsis
        self.out.append(kept + "…")
        self.truncated = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.truncated:
            return
        self.out.append(self.get_starttag_text() or f"<{tag}>")
        if tag in _SKIP_TAGS:
            self._skip += 1
        if tag not in _VOID_TAGS:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self.truncated:
            self.out.append(self.get_starttag_text() or f"<{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if self.truncated or tag not in self.stack:
            return
        while self.stack:
            open_tag = self.stack.pop()
            self.out.append(f"</{open_tag}>")
            if open_tag in _SKIP_TAGS:
                self._skip = max(0, self._skip - 1)
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.truncated:
            return
        if self._skip:
            self.out.append(data)
        else:
            self._emit_text(data)

    def _emit_atom(self, raw: str) -> None:
        # An entity is one visible character and is never split.
        if self.truncated:
            return
        if self.used + 1 > self.budget:
            self._cut("")
            return
        self.used += 1
        self._last_space = False
        self.out.append(raw)

    def handle_entityref(self, name: str) -> None:
        self._emit_atom(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self._emit_atom(f"&#{name};")


def _visible_length(html: str) -> int:
    counter = _Truncator(budget=2**62)
    counter.feed(html)
    counter.close()
    return counter.used


def truncate_html(html: str, max_chars: int) -> str:
    """Shorten `html` to at most `max_chars` visible characters (ellipsis included).

    The cut happens in text only, never inside a tag or an entity; every element still open at
    the cut is closed. HTML that already fits is returned unchanged. Feed it sanitized HTML:
    comments and declarations are dropped from a truncated result.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    if _visible_length(html) <= max_chars:
        return html
    parser = _Truncator(budget=max_chars - 1)  # keep one character for the ellipsis
    parser.feed(html)
    parser.close()
    if not parser.truncated:
        parser.out.append("…")
    closing = "".join(f"</{tag}>" for tag in reversed(parser.stack))
    return "".join(parser.out) + closing
