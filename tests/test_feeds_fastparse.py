"""The plain-RSS fast path gives exactly what the feedparser path gives, or declines.

Every document is parsed twice, `parse_feed(...)` and `parse_feed(..., fast_path=False)`, and
the two `ParsedFeed`s (or the two errors) must be equal. Documents: the real-world corpus under
several header and URL variants; the corpus RSS documents with their namespaced or unusual
elements removed (real content the fast path accepts); and generated feeds that combine the
cases feedparser treats specially (relative URIs, HTML-looking titles, entities and CDATA,
cp1252 and double-encoded UTF-8, guid/link precedence, authors with emails, categories with
domains, enclosures, odd dates, empty elements). The tests also check that the fast path
really was taken for the documents meant for it, so equality is not reached by declining.
"""

from __future__ import annotations

import gzip
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import feeds.parse
from feeds.fastparse import parse_plain_rss
from feeds.parse import ParsedFeed, parse_feed

DATA = Path(__file__).parent / "data" / "feeds"

HEADER_VARIANTS: list[dict[str, str] | None] = [
    None,
    {"Content-Type": "application/rss+xml"},
    {"Content-Type": "application/xml; charset=UTF-8", "Content-Language": "en-US"},
    {"Content-Type": "text/xml"},
    {"Content-Type": "text/html; charset=utf-8"},
    {"Content-Type": "application/rss+xml; charset=iso-8859-1"},
]


def corpus() -> list[Path]:
    return sorted(p for p in DATA.iterdir() if p.suffix in (".xml", ".gz"))


URL_VARIANTS = ["https://lib.example.org/news/feed.xml", "file:///srv/feed.xml"]


class Spy:
    """Counts how often the fast path accepted a document."""

    def __init__(self) -> None:
        self.accepted = 0
        self.declined = 0

    def __call__(self, data: bytes, headers: Mapping[str, str]) -> dict[str, Any] | None:
        result = parse_plain_rss(data, headers)
        if result is None:
            self.declined += 1
        else:
            self.accepted += 1
        return result


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    s = Spy()
    monkeypatch.setattr(feeds.parse, "parse_plain_rss", s)
    return s


def both(body: bytes, url: str, headers: Mapping[str, str] | None) -> tuple[object, object]:
    def run(fast: bool) -> ParsedFeed | tuple[str, str]:
        try:
            return parse_feed(body, url=url, headers=headers, fast_path=fast)
        except Exception as e:  # compare failures too: same type, same message
            return (type(e).__name__, str(e))

    return run(True), run(False)


def assert_same(body: bytes, url: str, headers: Mapping[str, str] | None, label: str) -> None:
    fast, slow = both(body, url, headers)
    if fast != slow:
        detail = ""
        if isinstance(fast, ParsedFeed) and isinstance(slow, ParsedFeed):
            for name in ParsedFeed.__dataclass_fields__:
                if getattr(fast, name) != getattr(slow, name):
                    detail += (
                        f"\n{name}:\n  fast {getattr(fast, name)!r}\n  slow {getattr(slow, name)!r}"
                    )
            for a, b in zip(fast.items, slow.items, strict=False):
                if a != b:
                    detail += f"\nfirst differing item:\n  fast {a!r}\n  slow {b!r}"
                    break
        pytest.fail(
            f"{label}: the fast path differs from feedparser{detail or f': {fast!r} / {slow!r}'}"
        )


@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.name[:40])
def test_corpus_documents_parse_the_same_either_way(path: Path) -> None:
    # Every corpus document uses namespaces, a DTD, another format or a broken encoding, so
    # the fast path declines them all; what matters is that declining changes nothing.
    body = path.read_bytes()
    for headers, url in zip(HEADER_VARIANTS[:3], [*URL_VARIANTS, URL_VARIANTS[0]], strict=True):
        assert_same(body, url, headers, f"{path.name} {headers} {url}")


def _plain_variant(body: bytes, *, whitelist: bool) -> bytes | None:
    """The document without namespaced elements and attributes (and, with `whitelist`,
    without RSS elements the fast path does not take), or None if it is not plain RSS."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    try:
        root = ET.fromstring(body.lstrip().removeprefix(b"\xef\xbb\xbf"))
    except ET.ParseError:
        return None
    if root.tag != "rss":
        return None
    keep = {
        "channel": {"title", "link", "description", "language", "copyright", "managingEditor",
                    "webMaster", "pubDate", "lastBuildDate", "generator", "docs", "ttl",
                    "image", "item", "category"},
        "item": {"title", "link", "description", "author", "comments", "guid", "pubDate",
                 "category", "enclosure"},
        "image": {"title", "url", "link", "width", "height", "description"},
    }  # fmt: skip

    def prune(element: ET.Element) -> None:
        for name in [k for k in element.attrib if k.startswith("{")]:
            del element.attrib[name]
        for child in list(element):
            allowed = keep.get(element.tag)
            if child.tag.startswith("{") or (whitelist and allowed and child.tag not in allowed):
                element.remove(child)
            else:
                prune(child)

    prune(root)
    root.attrib["version"] = "2.0"
    serialized: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return serialized


def test_plain_variants_of_real_feeds_take_the_fast_path(spy: Spy) -> None:
    variants: set[bytes] = set()
    for path in corpus():
        for whitelist in (False, True):
            body = _plain_variant(path.read_bytes(), whitelist=whitelist)
            if body is None or body in variants:
                continue
            variants.add(body)
            for headers, url in zip(HEADER_VARIANTS[1:3], URL_VARIANTS, strict=True):
                assert_same(body, url, headers, f"{path.name} plain={whitelist} {headers}")
    assert len(variants) >= 12
    # Only braingle (two guids in one item) and the unpruned variants with an element the
    # fast path does not know are declined.
    assert spy.accepted >= 2 * (len(variants) - 3), (spy.accepted, spy.declined)


# ---------------------------------------------------------------- generated feeds

TITLES = [
    "Storytime &amp; makerspace", "Webinar: Smart Cities 101", "<![CDATA[Caf\u00e9 <b>bold</b>]]>",
    "&lt;b&gt;Escaped&lt;/b&gt; markup", "Tom &amp;amp; Jerry", "  spaced   title  ",
    "Ã©t\u00e9 double-encoded", "\u201cQuoted\u201d \u2013 dash", "&#150; cp1252 dash &#147;q&#148;",
    "x &lt; y &amp;&amp; z", "<![CDATA[a </i>close-only]]>", "", "&#x3C;i&#x3E;hex refs&#x3C;/i&#x3E;",
    "Fish &amp;chips;", "Pre&#xA0;nbsp", "<![CDATA[&amp; double]]>", "Ünïcödé ✓ 📚",
]  # fmt: skip
LINKS = [
    "/events/1", "events/2?a=1&amp;b=2", "https://other.example.net/x", "  /padded  ",
    "?q=1", "#frag", "//cdn.example.org/p", "javascript:alert(1)", "", "../up/one",
    "http://host/path?x=&amp;amp;y", "mailto:a@example.org", "https://ex.org/a%20b c",
]  # fmt: skip
DESCRIPTIONS = [
    "&lt;p&gt;Para with &lt;a href=\"/rel\"&gt;link&lt;/a&gt; and &lt;img src=\"i.png\"&gt;&lt;/p&gt;",
    "<![CDATA[<p>CDATA <a href='../x'>x</a><br/><script>bad()</script></p>]]>",
    "plain text only", "", "Line one\nLine two &amp; three", "&lt;b&gt;unclosed",
    "<![CDATA[<div><p>n&eacute;e</p><ul><li>a</li></ul></div>]]>", "x &lt; 3 and y &gt; 2",
    "<![CDATA[<a href=\"javascript:x()\">js</a> <a href=\"mailto:b@c.org\">m</a>]]>",
    "\u00c3\u00a9 mojibake", "&#128; euro from cp1252", "<![CDATA[<!-- c --><p>after</p>]]>",
    "<![CDATA[<p style=\"color:red\" onclick=\"x\">styled</p><iframe src=\"/f\"></iframe>]]>",
]  # fmt: skip
DATES = [
    "Mon, 23 Nov 2026 08:00:00 GMT", "Tue, 03 Jun 2003 09:39:21 +0200", "2026-11-23T08:00:00Z",
    "Seg, 24 Set 2018 19:42:40 -0300", "1700000000", "23/11/2026", "garbage date", "",
    "Thu, 14 May 2020 10:00:18 Z", "Sat, 07 Sep 02 00:00:01 EST", "  Mon, 23 Nov 2026 08:00:00 GMT\n ",
]  # fmt: skip
AUTHORS = [
    "jane@example.org (Jane Doe)", "Jane Doe", "jane@example.org", "(Jane)", "  ",
    "Jane &lt;jane@example.org&gt;", "ops@lib.example.org", "<![CDATA[<i>Ann</i>]]>",
]  # fmt: skip
GUIDS = [
    ("urn:uuid:1234", ' isPermaLink="false"'), ("/guid/rel", ""), ("/guid/rel", ' isPermaLink="true"'),
    ("https://ex.org/p/1", ' isPermaLink="True"'), ("", ""), ("  spaced-guid  ", ' ISPERMALINK="false"'),
]  # fmt: skip


def _item(rnd: random.Random, i: int) -> str:
    parts: list[str] = []
    fields = ["title", "link", "description", "author", "guid", "pubDate", "comments"]
    rnd.shuffle(fields)
    for name in fields:
        if rnd.random() < 0.2:
            continue
        if name == "title":
            parts.append(f"<title>{rnd.choice(TITLES)}</title>")
        elif name == "link":
            parts.append(f"<link>{rnd.choice(LINKS)}</link>")
        elif name == "description":
            parts.append(f"<description>{rnd.choice(DESCRIPTIONS)}</description>")
        elif name == "author":
            parts.append(f"<author>{rnd.choice(AUTHORS)}</author>")
        elif name == "guid":
            value, attr = rnd.choice(GUIDS)
            parts.append(f"<guid{attr}>{value or f'g{i}'}</guid>")
        elif name == "pubDate":
            parts.append(f"<pubDate>{rnd.choice(DATES)}</pubDate>")
        else:
            parts.append(f"<comments>{rnd.choice(LINKS)}</comments>")
    for _ in range(rnd.randrange(4)):
        domain = rnd.choice(["", ' domain="tax"', ' domain=""'])
        term = rnd.choice(["Webinars", " news ", "", "Makerspace", "Webinars", "&amp;c"])
        parts.insert(rnd.randrange(len(parts) + 1), f"<category{domain}>{term}</category>")
    for _ in range(rnd.randrange(3)):
        url = rnd.choice(["/media/a.mp3", "https://ex.org/b.m4a", "", "rel/c.pdf"])
        kind = rnd.choice(['type="audio/MPEG"', 'type="application/pdf"', ""])
        length = rnd.choice(['length="1234"', 'length=""', 'length="x"', ""])
        parts.insert(rnd.randrange(len(parts) + 1), f'<enclosure url="{url}" {kind} {length}/>')
    sep = rnd.choice(["", "\n    ", " "])
    return f"<item>{sep}{sep.join(parts)}{sep}</item>"


def generated(count: int, seed: int) -> Iterator[tuple[bytes, dict[str, str] | None, str]]:
    rnd = random.Random(seed)
    for n in range(count):
        channel = [
            f"<title>{rnd.choice(TITLES) or 'Library news'}</title>",
            f"<link>{rnd.choice(LINKS)}</link>",
            f"<description>{rnd.choice(DESCRIPTIONS)}</description>",
        ]
        if rnd.random() < 0.4:
            channel.append(
                f"<language>{rnd.choice(['en-US', 'en-us', 'pt-BR', ' en_US '])}</language>"
            )
        if rnd.random() < 0.3:
            channel.append(f"<ttl>{rnd.choice(['60', ' 15 ', 'x', '0'])}</ttl>")
        if rnd.random() < 0.3:
            channel.append(f"<lastBuildDate>{rnd.choice(DATES)}</lastBuildDate>")
        if rnd.random() < 0.3:
            channel.append(f"<pubDate>{rnd.choice(DATES)}</pubDate>")
        if rnd.random() < 0.3:
            channel.append(
                f"<image><url>{rnd.choice(LINKS)}</url><title>{rnd.choice(TITLES)}</title>"
                f"<link>{rnd.choice(LINKS)}</link></image>"
            )
        if rnd.random() < 0.3:
            channel.append(
                "<generator>gen</generator><docs>/docs</docs><copyright>&lt;b&gt;c</copyright>"
            )
        if rnd.random() < 0.2:
            channel.append("<category>Library</category>")
        if rnd.random() < 0.2:
            channel.append("<managingEditor>ed@example.org (Ed)</managingEditor>")
        items = [_item(rnd, i) for i in range(rnd.randrange(0, 8))]
        if rnd.random() < 0.2 and items:
            items.append(items[0])  # the same item twice
        rnd.shuffle(channel)
        at = rnd.randrange(len(channel) + 1)
        body_parts = channel[:at] + items + channel[at:]
        decl = rnd.choice([
            '<?xml version="1.0" encoding="utf-8"?>', "<?xml version='1.0' encoding='UTF-8'?>",
            '<?xml version="1.0"?>', "", '<?xml version="1.0" encoding="iso-8859-1"?>',
        ])  # fmt: skip
        rss = f'<rss version="{rnd.choice(["2.0", "2.0.1"])}"><channel>'
        doc = decl + rss + "".join(body_parts) + "</channel></rss>"
        if rnd.random() < 0.15:
            # feedparser lower-cases element and attribute names: <PUBDATE>, URL="..."
            doc = re.sub(
                r"(</?)(pubDate|title|guid|link)\b", lambda m: m[1] + m[2].upper(), doc
            ).replace("<enclosure url=", "<enclosure URL=")
        body = doc.encode("utf-8")
        if rnd.random() < 0.1:
            body = b"\xef\xbb\xbf" + body
        headers = rnd.choice(HEADER_VARIANTS[:4])
        url = rnd.choice(URL_VARIANTS) if n % 5 else "https://lib.example.org/feed?a=1&b=2#top"
        yield body, headers, url


def test_generated_feeds_parse_the_same_either_way(spy: Spy) -> None:
    count = 0
    for body, headers, url in generated(400, seed=2026):
        assert_same(body, url, headers, f"generated #{count}: {body[:300]!r} {headers} {url}")
        count += 1
    # Most generated documents are meant for the fast path (the exceptions: a legacy
    # declaration over non-ASCII bytes, repeated items fine; duplicate categories fine).
    assert spy.accepted >= count // 2, (spy.accepted, spy.declined)


@pytest.mark.parametrize(
    "doc",
    [
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>t</title>'
        "<item><dc:creator>x</dc:creator></item></channel></rss>",
        '<rss version="2.0"><channel><title>a</title><title>b</title></channel></rss>',
        '<rss version="2.0"><channel><item><title>a</title><title>b</title></item></channel></rss>',
        '<!DOCTYPE rss [<!ENTITY x "y">]><rss version="2.0"><channel><title>&x;</title>'
        "</channel></rss>",
        '<rss version="0.91"><channel><title>t</title></channel></rss>',
        '<rss version="2.0"><channel><title>t</title><item><source url="/s">S</source></item>'
        "</channel></rss>",
        '<rss version="2.0"><channel xml:base="/b/"><title>t</title></channel></rss>',
        '<rss version="2.0"><channel><title type="html">&lt;b&gt;t</title></channel></rss>',
        '<rss version="2.0"><channel><title>t &nbsp; undefined entity</title></channel></rss>',
        '<rss version="2.0"><channel><title>truncated</title>',
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>atom</title></feed>',
    ],
)
def test_unusual_documents_are_left_to_feedparser(doc: str, spy: Spy) -> None:
    assert_same(doc.encode("utf-8"), URL_VARIANTS[0], None, doc)
    assert spy.accepted == 0


# ---------------------------------------------------------------- HTML link resolution

HTML_TAGS = ["a", "A", "p", "br", "BR", "img", "b", "div", "span", "hr", "q", "blockquote",
             "h2", "iframe", "source", "video", "link", "area", "input", "form"]  # fmt: skip
HTML_ATTRS = ["href", "HREF", "src", "class", "rel", "type", "TYPE", "title", "cite", "poster",
              "usemap", "action", "data-x", "on:click", "x.y", "_u"]  # fmt: skip
HTML_VALUES = [
    "/rel", "rel/x", "http://ex.org/a?b=1&c=2", "https://ex.org/a b", "javascript:alert(1)", "",
    " /pad ", "#f", "?q", "MiXeD", "a'b", "//cdn.org/x", "mailto:a@b.c", "&amp;", "a&b", "&#38;",
    "Text/HTML", "..//../up", "data:xyz", "\u00e9t\u00e9", "a/", "  ",
]  # fmt: skip
HTML_TEXT = [
    "plain", " two  words ", "\n", "a > b", "&amp;", "&copy;", "&nbsp;", "&apos;", "&sup2;",
    "&#8217;", "&#160;", "\u2019", "/", "x/>",
    # outside what the fast resolver takes: it must decline them
    "&foo;", "&#39;", "&#150;", "&#x2019;", "& bare", "5 < 6", "&amp", "<!-- c -->", "<?pi?>",
]  # fmt: skip


def _html_fragment(rnd: random.Random, simple: bool) -> str:
    texts = HTML_TEXT[:14] if simple else HTML_TEXT
    parts: list[str] = []
    for _ in range(rnd.randrange(1, 12)):
        r = rnd.random()
        tag = rnd.choice(HTML_TAGS)
        if r < 0.35:
            parts.append(rnd.choice(texts))
        elif r < 0.7:
            attrs = ""
            for _ in range(rnd.randrange(4)):
                quote = rnd.choice(['"', "'"] if simple else ['"', "'", ""])
                value = rnd.choice(HTML_VALUES)
                if not quote:
                    value = value.replace(" ", "")
                space = rnd.choice([" ", "  ", "\n"])
                attrs += f"{space}{rnd.choice(HTML_ATTRS)}{rnd.choice(['=', ' = '])}{quote}{value}{quote}"
            parts.append(f"<{tag}{attrs}{rnd.choice(['', '', ' ', '/', ' /'])}>")
        else:
            parts.append(f"</{tag}{rnd.choice(['', ' '])}>")
    return "".join(parts)


def test_fast_html_resolver_matches_feedparser() -> None:
    from feedparser.urls import resolve_relative_uris

    from feeds.fastparse import resolve_simple_html

    rnd = random.Random(7)
    accepted = 0
    for n in range(4000):
        fragment = _html_fragment(rnd, simple=n % 2 == 0)
        base = rnd.choice(["http://ex.org/feed/x.xml", "", "https://a.b/c?d#e"])
        fast = resolve_simple_html(fragment, base)
        if fast is None:
            continue
        accepted += 1
        assert fast == resolve_relative_uris(fragment, base, "utf-8", "text/html"), fragment
    assert accepted > 1500
