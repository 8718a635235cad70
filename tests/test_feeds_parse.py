"""Parsing the real-world corpus in tests/data/feeds, plus HTML sanitizing and truncation."""

from __future__ import annotations

import asyncio
import html
import json
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import feeds.parse
from feeds.errors import NotAFeedError
from feeds.parse import (
    ParsedFeed,
    parse_feed,
    parse_feed_async,
    parsed_feed_to_json,
    set_parse_concurrency,
)
from feeds.sanitize import MATRIX_ALLOWED_TAGS, html_to_text, sanitize_html, truncate_html
from feeds.schedule import derived_key

DATA = Path(__file__).parent / "data" / "feeds"

# file -> (URL it is "served" from, expected item count)
CORPUS: dict[str, tuple[str, int]] = {
    "atom_google-alerts_html-b-tags-in-titles_redirect-links.xml": (
        "https://www.google.com/alerts/feeds/04175468913983673025/4428013283581841004",
        20,
    ),
    "atom_intertwingly-sam-ruby_relative-hrefs_leading-newline.xml": (
        "http://intertwingly.net/blog/index.atom",
        20,
    ),
    "atom_pauldix-feedburner_MALFORMED-unbound-wfw-prefix.xml": (
        "http://feeds.feedburner.com/PaulDixExplainsNothing",
        5,
    ),
    "atom_reddit-home_served-as-rss_relative-xml-base-and-id.xml": (
        "https://www.reddit.com/.rss",
        24,
    ),
    "atom_tablix-avian-blog_wrapped-in-xhtml-html-body.xml": (
        "http://www.tablix.org/~avian/blog/atom.xml",
        10,
    ),
    "atom_talkingpointsmemo_xml-base-fragment.xml": ("http://talkingpointsmemo.com/feed/all", 20),
    "rss092_oreilly-example_iso-8859-1_date-03-Apr-02-1500-GMT.xml": (
        "http://www.oreilly.com/example/rss.xml",
        2,
    ),
    "rss1-rdf_avibryant-blog_leading-newline-before-xml-decl.xml": (
        "http://www.avibryant.com/index.rdf",
        10,
    ),
    "rss1-rdf_craigslist-sf_enc-enclosure_entity-and-html-in-cdata-titles.xml": (
        "https://sfbay.craigslist.org/search/apa?format=rss",
        25,
    ),
    "rss1-rdf_science-aaas-this-week_empty-descriptions_no-guid.xml": (
        "http://science.sciencemag.org/rss/twis.xml",
        69,
    ),
    "rss2_arcgames-neverwinter_relative-item-links_2digit-year-dates.xml": (
        "http://www.arcgames.com/en/games/neverwinter/news/rss",
        2,
    ),
    "rss2_braingle-feedburner_duplicate-guids.xml": (
        "http://feeds.braingle.com/braingle/newteasers",
        1,
    ),
    "rss2_cre-fm-podcast-de_614kB_m4a-enclosures_podlove-chapters_paging.xml": (
        "http://cre.fm/feed/m4a/",
        30,
    ),
    "rss2_dailymail_declared-iso-8859-1-but-utf8-bytes_dup-media-content.xml": (
        "http://www.dailymail.co.uk/ushome/index.rss",
        1,
    ),
    "rss2_dotnet-syndication_utf8-bom_a10-atom-prefix_Z-zone-dates.xml": (
        "http://www.example.com/feed",
        5,
    ),
    "rss2_guardian-us-news_55-items_media-content_dc-date.xml": (
        "https://www.theguardian.com/us/rss",
        55,
    ),
    "rss2_jn-pt-jornal-de-noticias_iso-8859-1_crlf-in-pubdate_no-guid.xml": (
        "http://feeds.jn.pt/JN-ULTIMAS",
        40,
    ),
    "rss2_nasa-liftoff-sample_ddmmyyyy-dates.xml": (
        "http://www.esinet.norfolk.gov.uk/cadmin/ecourier/newsnorfolkschools2.xml",
        5,
    ),
    "rss2_nshipster_gzip-compressed-body_113kB-single-item.xml.gz": (
        "http://nshipster.com/feed.xml",
        25,
    ),
    "rss2_oren-ru-news_windows-1251_default-ns-on-rss_no-guid.xml": (
        "http://www.oren.ru/rss/news.xml",
        10,
    ),
    "rss2_pcmag-dvorak-feedburner_item-nested-in-item_EST-dates.xml": (
        "http://feeds.feedburner.com/ziffdavis/pcmag/dvorak",
        10,
    ),
    "rss2_synthetic_MALFORMED-truncated-no-rss-close_unix-epoch-dcdate.xml": (
        "http://example.com/feed.xml",
        2,
    ),
    "rss2_uol-noticias-br_latin1-bytes-no-xml-decl_portuguese-dates_no-guid.xml": (
        "http://rss.uol.com.br/feed/noticias.xml",
        15,
    ),
    "rss2_virtualbox-trac_relative-channel-image-url.xml": (
        "https://www.virtualbox.org/ticket/10860?format=rss",
        1,
    ),
}
NOT_A_FEED = "not-a-feed_marketwatch-document-moved-html.xml"


def load(name: str) -> ParsedFeed:
    url, _ = CORPUS[name]
    return parse_feed((DATA / name).read_bytes(), url=url)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def test_corpus_is_complete() -> None:
    documents = {p.name for p in DATA.iterdir() if p.name != "INDEX.md"}
    assert documents == set(CORPUS) | {NOT_A_FEED}
    assert len(documents) == 25


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_document_parses(name: str) -> None:
    feed = load(name)
    assert len(feed.items) == CORPUS[name][1]
    assert feed.title
    assert len({item.key for item in feed.items}) == len(feed.items)
    for item in feed.items:
        assert item.title and "<" not in item.title.replace("<3", "")
        if item.link is not None:
            assert urlsplit(item.link).scheme in ("http", "https")
        for moment in (item.published, item.updated):
            assert moment is None or moment.utcoffset() == UTC.utcoffset(None)
        assert len(item.content_hash) == 64
        assert "<script" not in item.summary_html.lower()
    # Parsing is deterministic: same bytes, same keys and hashes.
    again = load(name)
    assert [(i.key, i.content_hash) for i in again.items] == [
        (i.key, i.content_hash) for i in feed.items
    ]


def test_html_page_is_not_a_feed() -> None:
    with pytest.raises(NotAFeedError, match=r"not a feed: the server returned an HTML page"):
        parse_feed((DATA / NOT_A_FEED).read_bytes(), url="http://www.marketwatch.com/rss/pf")
    page = b"<!DOCTYPE html>\n<html><head><title>Error</title></head><body>Oops</body></html>"
    with pytest.raises(NotAFeedError, match="HTML page"):
        parse_feed(page, url="http://example.org/feed", headers={"Content-Type": "text/html"})


@pytest.mark.parametrize(
    ("body", "why"),
    [(b"", "empty"), (b"  \n ", "empty"), (b'{"version": "x"}', "JSON"), (b"hello", "neither")],
)
def test_other_non_feeds(body: bytes, why: str) -> None:
    with pytest.raises(NotAFeedError, match=why):
        parse_feed(body, url="http://example.org/feed")


def test_google_alerts_titles_are_plain_text_and_links_unwrapped() -> None:
    feed = load("atom_google-alerts_html-b-tags-in-titles_redirect-links.xml")
    first = feed.items[0]
    assert first.title.startswith("Report offers Prediction of Automotive Slack Market")
    assert all("<b>" not in i.title and "&lt;" not in i.title for i in feed.items)
    assert first.link is not None and first.link.startswith(
        "https://www.aglobalmarketresearch.com/report-offers-prediction-of-automotive-slack"
    )
    assert not any(i.link and "google.com/url" in i.link for i in feed.items)
    assert first.key == "tag:google.com,2013:googlealerts/feed:8974135267215335962"


def test_root_relative_links_resolve_against_feed_url() -> None:
    feed = load("atom_intertwingly-sam-ruby_relative-hrefs_leading-newline.xml")
    assert feed.link == "http://intertwingly.net/blog/"
    assert feed.items[0].link == "http://intertwingly.net/blog/2013/01/30/Plex"
    assert all(i.link and i.link.startswith("http://intertwingly.net/blog/") for i in feed.items)
    # The leading newline is stripped, so the strict parser reads it without complaint.
    assert not any("well-formed" in w for w in feed.warnings)
    assert feed.items[0].updated == utc(2013, 1, 30, 18, 12, 3)


def test_self_link_is_the_base_when_the_url_is_not_http() -> None:
    body = (DATA / "atom_intertwingly-sam-ruby_relative-hrefs_leading-newline.xml").read_bytes()
    feed = parse_feed(body, url="tests/data/feeds/intertwingly.atom")
    assert feed.self_link == "http://intertwingly.net/blog/index.atom"
    assert feed.items[0].link == "http://intertwingly.net/blog/2013/01/30/Plex"


def test_xml_base_fragment_and_relative_entry_links() -> None:
    feed = load("atom_talkingpointsmemo_xml-base-fragment.xml")
    assert feed.items[0].link == (
        "http://talkingpointsmemo.com/livewire/"
        "hannity-announces-fox-hired-sebastian-gorka-national-security-strategist"
    )
    assert feed.items[0].published == utc(2017, 11, 8, 23, 15, 58)


def test_reddit_atom_served_as_rss() -> None:
    feed = load("atom_reddit-home_served-as-rss_relative-xml-base-and-id.xml")
    first = feed.items[0]
    assert first.title == "How the British as seen by Americans and Europeans"
    assert first.categories == ("funny",)
    assert 'href="https://www.reddit.com/user/AngryRedditorsBelow"' in first.summary_html
    assert first.author == "/u/AngryRedditorsBelow"


def test_feed_wrapped_in_html_page() -> None:
    feed = load("atom_tablix-avian-blog_wrapped-in-xhtml-html-body.xml")
    assert feed.title == "Avian’s Blog"
    assert any("wrapped in an HTML page" in w for w in feed.warnings)
    assert feed.items[0].title == "Down time"
    assert feed.items[0].categories == ("Life",)


def test_unbound_prefix_is_accepted_with_a_warning() -> None:
    feed = load("atom_pauldix-feedburner_MALFORMED-unbound-wfw-prefix.xml")
    assert feed.items[0].title == "Making a Ruby C library even faster"
    assert any("unbound prefix" in w and "lenient" in w for w in feed.warnings)
    assert feed.items[0].published == utc(2009, 1, 22, 15, 50, 22)


def test_truncated_document_keeps_items_and_reads_epoch_dates() -> None:
    feed = load("rss2_synthetic_MALFORMED-truncated-no-rss-close_unix-epoch-dcdate.xml")
    assert [i.title for i in feed.items] == [
        "Item 0 with an invalid date",
        "Item 1 with all valid dates",
    ]
    assert any("truncated" in w for w in feed.warnings)
    assert feed.items[0].published == utc(2017, 10, 16, 15, 10)
    assert feed.items[0].updated == utc(2018, 2, 12, 23, 42, 14)  # dc:date 1518478934
    assert feed.items[1].updated == utc(2017, 10, 17, 22, 17)


def test_nested_empty_items_are_not_counted() -> None:
    feed = load("rss2_pcmag-dvorak-feedburner_item-nested-in-item_EST-dates.xml")
    assert len(feed.items) == 10
    assert feed.items[0].title == "My Professional Armchair Analysis of CES"
    assert feed.items[0].published == utc(2018, 1, 17, 20, 50)  # 15:50 EST
    assert any("10 empty item(s)" in w for w in feed.warnings)


def test_braingle_repeated_guid_element_gives_one_item() -> None:
    feed = load("rss2_braingle-feedburner_duplicate-guids.xml")
    (item,) = feed.items
    assert item.key == "http://www.braingle.com/50366.html"
    assert feed.ttl_seconds == 300 * 60


def _braingle_with_two_items(second_title: bytes) -> bytes:
    body = (DATA / "rss2_braingle-feedburner_duplicate-guids.xml").read_bytes()
    start, end = body.index(b"<item>"), body.index(b"</item>") + len(b"</item>")
    item = body[start:end]
    twin = item.replace(b"<title>Huh?</title>", b"<title>" + second_title + b"</title>")
    return body[:end] + twin + body[end:]


def test_guid_reused_by_two_items_gets_distinct_stable_keys() -> None:
    body = _braingle_with_two_items(b"Huh? (the answer)")
    feed = parse_feed(body, url=CORPUS["rss2_braingle-feedburner_duplicate-guids.xml"][0])
    first, second = feed.items
    guid = "http://www.braingle.com/50366.html"
    assert first.key == guid
    assert second.key == derived_key(second.key_entry()) and second.key.startswith(guid + "#")
    assert first.guid == second.guid == guid
    assert any("reuse another item's guid" in w for w in feed.warnings)
    again = parse_feed(body, url="http://feeds.braingle.com/braingle/newteasers")
    assert [i.key for i in again.items] == [first.key, second.key]


def test_item_listed_twice_is_kept_once() -> None:
    feed = parse_feed(_braingle_with_two_items(b"Huh?"), url="http://feeds.braingle.com/x")
    assert len(feed.items) == 1
    assert any("appear twice" in w for w in feed.warnings)


def test_relative_item_links_and_two_digit_years() -> None:
    feed = load("rss2_arcgames-neverwinter_relative-item-links_2digit-year-dates.xml")
    assert feed.link == "http://www.arcgames.com/en/games/neverwinter/news"
    assert feed.items[0].link == (
        "http://www.arcgames.com/en/games/neverwinter/news/detail/"
        "10743874-neverwinter-%26-jingle-jam-humble-bundle%21"
    )
    assert feed.items[0].published == utc(2017, 12, 7, 18, 0, 29)
    assert feed.items[0].title == "Neverwinter & Jingle Jam Humble Bundle!"


def test_relative_channel_image_and_untitled_item() -> None:
    feed = load("rss2_virtualbox-trac_relative-channel-image-url.xml")
    assert feed.image == "https://www.virtualbox.org/graphics/vbox_logo2_gradient.png"
    (item,) = feed.items
    assert item.title.startswith("The VirtualBox version is actually the 4.2 beta")
    assert item.author == "dsvensson"


def test_ambiguous_numeric_dates_read_day_first_with_a_warning() -> None:
    feed = load("rss2_nasa-liftoff-sample_ddmmyyyy-dates.xml")
    assert all(i.published == utc(2013, 2, 8, 12) for i in feed.items)
    assert feed.updated == utc(2013, 2, 9)
    assert any("ambiguous" in w and "day/month" in w for w in feed.warnings)


def test_rss092_dates_without_colons_and_enclosures() -> None:
    feed = load("rss092_oreilly-example_iso-8859-1_date-03-Apr-02-1500-GMT.xml")
    assert feed.updated == utc(2002, 4, 3, 15, 0)
    assert feed.items[0].enclosures[0].url == "http://www.oreilly.com/001.mp3"
    assert feed.items[0].enclosures[0].type == "audio/mpeg"
    assert feed.items[0].enclosures[0].length == 54321


def test_latin1_without_declaration_and_portuguese_dates() -> None:
    feed = load("rss2_uol-noticias-br_latin1-bytes-no-xml-decl_portuguese-dates_no-guid.xml")
    first = feed.items[0]
    assert first.title == (
        "Ibope: Bolsonaro perde de Haddad, Ciro e Alckmin em simulações de 2º turno"
    )
    assert first.published == utc(2018, 9, 24, 22, 42, 40)  # "Seg, 24 Set 2018 19:42:40 -0300"
    assert all(i.published is not None for i in feed.items)
    assert first.key == first.link  # no guid: the link is the key
    assert any("declares no character encoding" in w for w in feed.warnings)
    assert "Ã" not in "".join(i.title for i in feed.items)


def test_declared_iso_8859_1_noticias() -> None:
    feed = load("rss2_jn-pt-jornal-de-noticias_iso-8859-1_crlf-in-pubdate_no-guid.xml")
    assert feed.title == "Jornal de Notícias - Últimas Notícias"
    assert feed.items[0].title == "Mãe de utente é a nova presidente da Raríssimas"
    assert feed.items[0].published == utc(2018, 1, 3, 13, 47)  # pubDate ends in CRLF + spaces
    assert feed.warnings == ()


def test_windows_1251_cyrillic_in_default_namespace() -> None:
    feed = load("rss2_oren-ru-news_windows-1251_default-ns-on-rss_no-guid.xml")
    assert feed.title == "Новости Оренбурга и области / Раздел Новости"
    assert feed.items[0].title == "В Бузулуке главные стройплощадки – детсад и Ледовый дворец"
    assert feed.items[0].published == utc(2014, 1, 22, 14, 31, 31)  # 20:31:31 +0600
    assert feed.encoding == "windows-1251"


def test_utf8_bytes_declared_as_iso_8859_1_are_read_as_utf8() -> None:
    name = "rss2_dailymail_declared-iso-8859-1-but-utf8-bytes_dup-media-content.xml"
    body = (DATA / name).read_bytes()
    assert b"\xc2\xa9 Bettmann/CORBIS" in body
    feed = load(name)
    assert any("declares ISO-8859-1 but its bytes are UTF-8" in w for w in feed.warnings)
    # Put the file's own "© Bettmann/CORBIS" credit into the title to see what a reader gets.
    marked = body.replace(b"<title>Could", b"<title>\xc2\xa9 Bettmann/CORBIS: Could", 1)
    item = parse_feed(marked, url=CORPUS[name][0]).items[0]
    assert item.title.startswith("© Bettmann/CORBIS: Could the infamous Black Dahlia")
    assert "Â" not in item.title
    assert [e.type for e in item.enclosures] == ["image/jpeg", "video/mp4", "video/mp4"]


def test_utf8_bom_and_dotnet_atom_prefix() -> None:
    feed = load("rss2_dotnet-syndication_utf8-bom_a10-atom-prefix_Z-zone-dates.xml")
    assert feed.title == "Some Title"
    assert feed.items[0].key == "http://www.example.com/5"  # no guid: link
    assert feed.items[0].author == "John Doe"  # not "John Doe (john.doe@example.com)"
    assert feed.items[0].published == utc(2020, 5, 14, 10, 0, 18)  # "... 10:00:18 Z"


def test_gzip_bytes_are_unpacked() -> None:
    name = "rss2_nshipster_gzip-compressed-body_113kB-single-item.xml.gz"
    assert (DATA / name).read_bytes()[:2] == b"\x1f\x8b"
    feed = load(name)
    assert feed.title == "NSHipster"
    assert feed.items[0].title == "NSOperation"
    assert max(len(i.summary_html) for i in feed.items) > 50_000  # the huge item survives


def test_rdf_enclosure_and_double_escaped_titles() -> None:
    feed = load("rss1-rdf_craigslist-sf_enc-enclosure_entity-and-html-in-cdata-titles.xml")
    first = feed.items[0]
    assert first.title == (
        "Bright, Spacious Beautiful Victorian (oakland north / temescal) $4300 3bd 1930ft2"
    )
    assert not any("&#x0024;" in i.title for i in feed.items)
    assert first.enclosures[0].url.startswith("https://images.craigslist.org/")
    assert first.enclosures[0].type == "image/jpeg"


def test_rdf_without_guids_or_descriptions() -> None:
    feed = load("rss1-rdf_science-aaas-this-week_empty-descriptions_no-guid.xml")
    first = feed.items[0]
    assert first.key == "http://science.sciencemag.org/cgi/content/short/356/6343/1134-a?rss=1"
    assert first.summary_html == ""
    assert first.published == utc(2017, 6, 15, 17, 29, 47)


def test_podcast_enclosures_and_guardian_baseline() -> None:
    cre = load("rss2_cre-fm-podcast-de_614kB_m4a-enclosures_podlove-chapters_paging.xml")
    enclosure = cre.items[0].enclosures[0]
    assert enclosure.type == "audio/mp4" and enclosure.length == 37143728
    guardian = load("rss2_guardian-us-news_55-items_media-content_dc-date.xml")
    assert all(i.key == i.link for i in guardian.items)  # guids are the article URLs
    assert guardian.items[0].categories[:2] == ("Donald Trump", "State of the Union address")
    assert guardian.items[0].published == utc(2018, 1, 31, 7, 26, 5)


def test_json_shape() -> None:
    feed = load("rss2_arcgames-neverwinter_relative-item-links_2digit-year-dates.xml")
    data = parsed_feed_to_json(feed, ["news", "webinar"])
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {"title", "link", "items", "warnings"}
    first = data["items"][0]
    assert first["published"] == "2017-12-07T18:00:29Z"
    assert first["kind"] == "news" and data["items"][1]["kind"] == "webinar"
    assert set(first) == {
        "key",
        "title",
        "link",
        "published",
        "kind",
        "summary_html",
        "categories",
        "enclosures",
        "event_start",
    }
    with pytest.raises(ValueError, match="2 items"):
        parsed_feed_to_json(feed, ["news"])


async def test_parse_async_does_not_block_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parsing itself runs in worker threads, and the loop keeps ticking meanwhile.
    (How long a tick waits is measured by bench/feeds_poll.py, not asserted here.)"""
    import feeds.parse as parse_module

    largest = max((p for p in DATA.iterdir() if p.suffix == ".xml"), key=lambda p: p.stat().st_size)
    body = largest.read_bytes()
    url = "http://cre.fm/feed/m4a/"
    loop_thread = threading.get_ident()
    parsed_in: list[int] = []
    release = threading.Event()
    real_parse = parse_module.parse_feed

    def parse_feed(*args: Any, **kwargs: Any) -> Any:
        parsed_in.append(threading.get_ident())
        release.wait(30)  # held until the loop has shown it is free
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(parse_module, "parse_feed", parse_feed)
    parsing = asyncio.gather(*(parse_feed_async(body, url=url) for _ in range(5)))
    ticks = 0
    while not parsed_in or ticks < 3:  # the loop runs while a parse is held in its thread
        await asyncio.sleep(0.01)
        ticks += 1
    release.set()
    feeds = await parsing
    assert all(len(f.items) == 30 for f in feeds)
    assert parsed_in and loop_thread not in parsed_in


async def test_parse_concurrency_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def slow_parse(body: bytes, *, url: str, headers: object = None) -> ParsedFeed:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1
        return ParsedFeed(title=url, link=None, items=(), warnings=(), ttl_seconds=None)

    monkeypatch.setattr(feeds.parse, "parse_feed", slow_parse)
    set_parse_concurrency(2)
    try:
        results = await asyncio.gather(
            *(parse_feed_async(b"", url=f"http://x.org/{i}") for i in range(6))
        )
    finally:
        set_parse_concurrency(2)
    assert [r.title for r in results] == [f"http://x.org/{i}" for i in range(6)]
    assert peak == 2
    with pytest.raises(ValueError, match="at least 1"):
        set_parse_concurrency(0)


def test_feed_served_as_text_html_is_still_read() -> None:
    name = "rss2_guardian-us-news_55-items_media-content_dc-date.xml"
    feed = parse_feed(
        (DATA / name).read_bytes(),
        url=CORPUS[name][0],
        headers={"Content-Type": "text/html; charset=UTF-8"},
    )
    assert len(feed.items) == 55
    assert any("non-XML media type" in w for w in feed.warnings)


def test_utf8_cyrillic_declared_as_windows_1251() -> None:
    name = "rss2_oren-ru-news_windows-1251_default-ns-on-rss_no-guid.xml"
    utf8 = (DATA / name).read_bytes().decode("windows-1251").encode("utf-8")
    feed = parse_feed(utf8, url=CORPUS[name][0])
    assert feed.title == "Новости Оренбурга и области / Раздел Новости"
    assert any("declares WINDOWS-1251 but its bytes are UTF-8" in w for w in feed.warnings)


# ---------------------------------------------------------------- sanitize


def test_matrix_tags_follow_the_spec() -> None:
    assert {"a", "b", "blockquote", "code", "details", "img", "s", "span"} <= MATRIX_ALLOWED_TAGS
    assert not {"script", "style", "iframe", "font", "strike"} & MATRIX_ALLOWED_TAGS


def test_sanitize_html_removes_active_content_and_resolves_links() -> None:
    dirty = (
        '<p onclick="steal()">Hi <a href="javascript:alert(1)">js</a>'
        '<a href="/events/1" target="_blank">rel</a><a href="mailto:a@example.org">mail</a>'
        '<a href="ftp://example.org/f">ftp</a><img src="img/x.png" onerror="x()">'
        "<script>alert('x')</script><style>p{color:red}</style><iframe src=/x></iframe>"
        '<code class="language-python evil">x</code><b>unclosed'
    )
    clean = sanitize_html(dirty, base_url="https://lib.example.org/news/feed.xml")
    assert "alert" not in clean and "color:red" not in clean and "onclick" not in clean
    assert "onerror" not in clean and "iframe" not in clean and "target" not in clean
    assert '<a href="https://lib.example.org/events/1">rel</a>' in clean
    assert '<a href="mailto:a@example.org">mail</a>' in clean
    assert "<a>js</a>" in clean and "<a>ftp</a>" in clean
    assert '<img src="https://lib.example.org/news/img/x.png">' in clean
    assert '<code class="language-python">x</code>' in clean
    assert clean.endswith("<b>unclosed</b></p>")
    no_base = sanitize_html('<a href="/x">x</a><img src="/i.png">', keep_images=False)
    assert no_base == "<a>x</a>"


def test_html_to_text_keeps_structure() -> None:
    text = html_to_text(
        "<p>Caf&eacute; &amp; books&nbsp;today</p><ul><li>one</li><li>two</li></ul>"
        "<script>x()</script><p>line<br>break</p>"
    )
    assert text == "Café & books today\n\n- one\n- two\n\nline\nbreak"


@pytest.mark.parametrize(
    ("markup", "limit", "expected"),
    [
        ("<p>short</p>", 10, "<p>short</p>"),
        ("<p>Hello <b>brave new</b> world</p>", 12, "<p>Hello <b>brave…</b></p>"),
        ("<p>Tom &amp; Jerry</p>", 6, "<p>Tom &amp;…</p>"),
        ("<p>abcdefghij</p>", 5, "<p>abcd…</p>"),
        ('<p><a href="https://x.org/a?b=1&amp;c=2">link text here</a></p>', 8,
         '<p><a href="https://x.org/a?b=1&amp;c=2">link…</a></p>'),
        ("<ul><li>one</li><li>two</li><li>three</li></ul>", 7,
         "<ul><li>one</li><li>two</li><li>…</li></ul>"),
    ],
)  # fmt: skip
def test_truncate_html(markup: str, limit: int, expected: str) -> None:
    result = truncate_html(markup, limit)
    assert result == expected
    visible = " ".join(html.unescape(re.sub(r"<[^>]+>", "", result)).split())
    assert len(visible) <= limit


@pytest.mark.parametrize("fast", [True, False])
def test_a_link_cannot_carry_a_line_of_its_own(fast: bool) -> None:
    """A link with a newline and text would put the feed's own words, and a clickable
    URL, under the library's name in a notice: whitespace in links is percent-encoded."""
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        b"<link>https://lib.example/</link><item><title>Event</title>"
        b"<link>https://lib.example/event\nVerify your account: https://evil.example/login</link>"
        b"<guid>g1</guid></item></channel></rss>"
    )
    if not fast:
        body = body.replace(b'version="2.0"', b'version="2.0" xmlns:x="urn:x"')
    [item] = parse_feed(body, url="https://lib.example/feed.xml").items
    assert item.link is not None
    assert not re.search(r"\s", item.link)
    assert item.link.startswith("https://lib.example/event")
    assert "Verify%20your%20account:%20https://evil.example" in item.link  # one inert URL


def test_an_unwrapped_redirect_link_cannot_carry_a_line_of_its_own() -> None:
    """Google Alerts' google.com/url?url=... is unwrapped to its target, which comes out of
    the query percent-decoded: it is checked like any link after unwrapping."""
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        b"<link>https://lib.example/</link><item><title>Alert</title>"
        b"<link>https://www.google.com/url?rct=j&amp;url=https://lib.example/a%0D%0A--%20%0A"
        b"Verify%20your%20account%3A%20https://evil.example&amp;ct=ga</link>"
        b"<guid>g1</guid></item></channel></rss>"
    )
    [item] = parse_feed(body, url="https://lib.example/feed.xml").items
    assert item.link == (
        "https://lib.example/a%0D%0A--%20%0AVerify%20your%20account:%20https://evil.example"
    )
