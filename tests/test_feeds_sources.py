"""JSON Feed, OPML and autodiscovery on documents shaped like real ones (tests/data/), and
tracker clean-up in feed HTML."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from feeds.discover import discover_feeds
from feeds.errors import NotAFeedError
from feeds.opml import OpmlFeed, read_opml, write_opml
from feeds.parse import parse_feed
from feeds.sanitize import sanitize_html, strip_tracking_params

DATA = Path(__file__).parent / "data"


def test_json_feed_1_1_with_attachments_and_authors() -> None:
    body = (DATA / "jsonfeed-1.1_library-news_attachments-authors.json").read_bytes()
    feed = parse_feed(body, url="https://riversidelibrary.example.org/feed.json")
    assert feed.title == "Riverside Public Library \u2014 News"
    assert feed.link == "https://riversidelibrary.example.org/"
    assert feed.self_link == "https://riversidelibrary.example.org/feed.json"
    assert feed.warnings == ()
    first, webinar, closure = feed.items
    assert first.key == "https://riversidelibrary.example.org/news/2026/11/hotspot-lending"
    assert first.author == "Ana Ruiz, Sam Okafor"
    assert first.categories == ("digital inclusion", "wifi")
    assert first.published == datetime(2026, 11, 20, 13, 30, tzinfo=UTC)
    assert first.updated == datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
    assert [(e.type, e.length) for e in first.enclosures] == [
        ("application/pdf", 184320),
        ("audio/mpeg", 5242880),
    ]
    # Trackers are gone from the link, the summary's links, and the pixel from the summary.
    assert first.link == "https://riversidelibrary.example.org/news/2026/11/hotspot-lending"
    assert "utm_" not in first.summary_html and "fbclid" not in first.summary_html
    assert "hotspots?branch=main" in first.summary_html
    assert "pixel.gif" not in first.summary_html
    # content_text is plain text; the feed's authors stand in for an item without its own.
    assert webinar.summary_html.startswith("Join us on Tuesday")
    assert webinar.author == "Riverside Library Communications"
    # No title: the summary stands in; external_url is the link.
    assert closure.title.startswith("All branches close")
    assert closure.link == "https://city.example.gov/notices/thanksgiving-closures"


def test_json_feed_1_0_numeric_id_and_single_author() -> None:
    body = (DATA / "jsonfeed-1.0_podcast_author-numeric-id.json").read_bytes()
    feed = parse_feed(body, url="https://storytime.example.net/feed.json")
    (item,) = feed.items
    assert item.key == "1042"
    assert item.author == "Maple Grove Library Children's Team"
    assert item.published == datetime(2026, 11, 19, 6, 0, tzinfo=UTC)
    assert item.enclosures[0].url == "https://cdn.storytime.example.net/ep1042.m4a"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"version": "https://jsonfeed.org/version/2", "items": []}', "not a JSON Feed"),
        (b'{"title": "no version"}', "not a JSON Feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', 'no "items"'),
        (b"{not json", "cannot be read"),
    ],
)
def test_json_that_is_not_a_json_feed_is_refused_with_why(body: bytes, why: str) -> None:
    with pytest.raises(NotAFeedError, match=why):
        parse_feed(body, url="https://example.org/api")


def test_json_feed_recognised_by_media_type_despite_leading_space() -> None:
    body = b"\n  " + (DATA / "jsonfeed-1.0_podcast_author-numeric-id.json").read_bytes()
    feed = parse_feed(
        body, url="https://x.example/f", headers={"content-type": "application/feed+json"}
    )
    assert len(feed.items) == 1


def test_opml_nested_outlines_keep_their_folders() -> None:
    feeds = read_opml((DATA / "opml_library-network_nested-outlines.opml").read_bytes())
    assert [(f.url, f.folder) for f in feeds] == [
        ("https://riversidelibrary.example.org/feed.json", "Member libraries/Riverside"),
        ("https://riversidelibrary.example.org/events.rss", "Member libraries/Riverside"),
        ("https://maplegrove.example.org/atom.xml", "Member libraries"),
        ("https://webinars.example.org/rss?format=rss&topic=smart-spaces", "Webinars"),
        ("https://statelibrary.example.gov/news.xml", ""),
    ]
    assert feeds[0].title == "Riverside Public Library - News"
    assert feeds[0].html_url == "https://riversidelibrary.example.org/"


def test_opml_round_trip() -> None:
    feeds = read_opml((DATA / "opml_library-network_nested-outlines.opml").read_bytes())
    written = write_opml(feeds, title="Network feeds", now=datetime(2026, 11, 23, tzinfo=UTC))
    assert read_opml(written) == feeds
    assert b"<title>Network feeds</title>" in written
    assert read_opml(write_opml([OpmlFeed("https://a.example/f", "A & B")], title="t")) == [
        OpmlFeed("https://a.example/f", "A & B")
    ]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<rss><channel/></rss>", "not OPML"),
        (b"<opml><body><outline", "not well-formed"),
        (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><opml><body/></opml>', "document type"),
    ],
)
def test_not_opml_is_refused_with_why(body: bytes, why: str) -> None:
    with pytest.raises(NotAFeedError, match=why):
        read_opml(body, source="upload.opml")


def test_autodiscovery_finds_every_feed_link_once_resolved_against_base() -> None:
    page = (DATA / "homepage_library_several-alternate-links.html").read_bytes()
    found = discover_feeds(page, url="https://mirror.example.net/about/")
    assert [(f.url, f.kind) for f in found] == [
        ("https://riversidelibrary.example.org/feed/", "RSS"),
        ("https://riversidelibrary.example.org/comments/feed/", "RSS"),
        ("https://riversidelibrary.example.org/events/atom.xml", "Atom"),
        ("https://riversidelibrary.example.org/feed.json", "JSON Feed"),
        ("https://riversidelibrary.example.org/late.atom", "Atom"),
    ]
    assert found[0].title == "Riverside Public Library \u00bb Feed"


def test_autodiscovery_on_a_page_without_feeds() -> None:
    assert (
        discover_feeds(b"<html><head><title>x</title></head></html>", url="https://a.example/")
        == []
    )


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        ("https://a.example/x?utm_source=rss&utm_medium=feed", "https://a.example/x"),
        (
            "https://a.example/x?id=3&fbclid=abc&UTM_Campaign=y&gclid=z#top",
            "https://a.example/x?id=3#top",
        ),
        ("https://a.example/x?utmost=1", "https://a.example/x?utmost=1"),
        ("https://a.example/x", "https://a.example/x"),
    ],
)
def test_tracking_parameters_are_stripped(url: str, clean: str) -> None:
    assert strip_tracking_params(url) == clean


def test_tracking_pixels_go_and_real_images_stay() -> None:
    html = (
        '<p>Hi <a href="https://a.example/p?utm_source=x&amp;page=2">more</a></p>'
        '<img src="https://t.example/o.gif" width="1" height="1">'
        '<img src="https://t.example/z.gif" height="0" width="0px">'
        '<img src="https://a.example/photo.jpg" width="640" height="1">'
    )
    out = sanitize_html(html)
    assert "o.gif" not in out and "z.gif" not in out
    assert "photo.jpg" in out
    assert 'href="https://a.example/p?page=2"' in out
