"""Rendering (pure): the default notice, route templates (escaping, sanitizing, the plain body
derived from the HTML, fallback when a template fails on one item), edits, grouped
messages and channel text."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from network.route_templates import compile_template, template_vars
from network.routing.render import channel_text, edit_content, grouped_content, matrix_content
from network.storage import Item


def make(
    title: str = "Hotspot lending expands",
    summary: str = "<p>Twelve <b>branches</b> join.</p>",
    *,
    kind: str = "news",
    link: str | None = "https://lib.example.org/n/1",
    author: str | None = "Ana",
    event_start: datetime | None = None,
    item_id: int = 1,
) -> Item:
    when = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    return Item(
        id=item_id, feed_id="news", key=f"k{item_id}", kind=kind, title=title, link=link,
        published=when, author=author, categories=(), summary_html=summary, enclosures=(),
        event_start=event_start, content_hash="h", version=1, first_seen=when, updated_at=when,
    )  # fmt: skip


def test_default_notice() -> None:
    c = matrix_content(
        make(summary='<p>Twelve <b>branches</b> <img src="https://x/y.png"></p>'),
        feed_title="Network news",
    )
    assert c["msgtype"] == "m.notice" and c["format"] == "org.matrix.custom.html"
    assert c["external_url"] == "https://lib.example.org/n/1"
    assert (
        c["body"]
        == "News · Network news: Hotspot lending expands\nTwelve branches\nhttps://lib.example.org/n/1"
    )
    assert c["formatted_body"] == (
        '<p><strong>News</strong> · Network news: <a href="https://lib.example.org/n/1">'
        "Hotspot lending expands</a></p><blockquote><p>Twelve <b>branches</b> </p></blockquote>"
    )  # no <img>: Matrix clients only load mxc:// images


def test_default_notice_truncates_the_summary_safely_and_shows_webinar_time() -> None:
    long = "<p>" + "word &amp; " * 200 + "</p>"
    c = matrix_content(
        make(summary=long, kind="webinar", event_start=datetime(2026, 12, 1, 15, 0, tzinfo=UTC)),
        feed_title="F",
    )
    assert "When: Tue 01 Dec 2026, 15:00 UTC" in c["body"]
    assert c["formatted_body"].endswith("…</p></blockquote>")
    assert "&amp" in c["formatted_body"] and "&am…" not in c["formatted_body"]
    assert len(c["body"]) < 700


def test_template_escapes_values_keeps_sanitized_summary_and_derives_the_body() -> None:
    tpl = compile_template(
        '<h3>{{ title }}</h3>{{ summary }}<p><a href="{{ link }}">More</a>'
        '<a href="javascript:alert(1)">bad</a> by {{ author }} on {{ date }}</p>',
        html=True,
        path="t",
    )
    item = make(title="<script>x</script> & more", summary='<p onclick="x()">Hi <b>there</b></p>')
    c = matrix_content(item, feed_title="F", template=tpl)
    assert c["formatted_body"] == (
        "<h3>&lt;script&gt;x&lt;/script&gt; &amp; more</h3><p>Hi <b>there</b></p>"
        '<p><a href="https://lib.example.org/n/1">More</a><a>bad</a> by Ana on 20 Nov 2026</p>'
    )
    assert c["body"] == "<script>x</script> & more\n\nHi there\n\nMorebad by Ana on 20 Nov 2026"
    assert c["msgtype"] == "m.notice" and c["external_url"] == "https://lib.example.org/n/1"


def test_template_that_fails_on_one_item_falls_back_to_the_default() -> None:
    # Passes the start-up check (no sample author is "Zed") but fails for this item.
    tpl = compile_template(
        '{% if author == "Zed" %}{{ title[500] }}{% endif %}{{ title }}', html=True, path="t"
    )
    assert (
        matrix_content(make(author="Ana"), feed_title="F", template=tpl)["body"]
        == "Hotspot lending expands"
    )
    fallback = matrix_content(make(author="Zed"), feed_title="F", template=tpl)
    assert fallback["body"].startswith("News · F: Hotspot lending expands")


def test_documented_variables() -> None:
    v = template_vars(
        make(kind="webinar", event_start=datetime(2026, 12, 1, 15, 0, tzinfo=UTC)),
        feed_title="F", feed_link="https://lib.example.org/", html=False,
    )  # fmt: skip
    assert v == {
        "feed_title": "F",
        "feed_link": "https://lib.example.org/",
        "title": "Hotspot lending expands",
        "link": "https://lib.example.org/n/1",
        "date": "20 Nov 2026",
        "author": "Ana",
        "summary": "<p>Twelve <b>branches</b> join.</p>",
        "summary_text": "Twelve branches join.",
        "kind": "webinar",
        "event_start": "Tue 01 Dec 2026, 15:00 UTC",
    }


def test_edit_replaces_the_original() -> None:
    new = matrix_content(make(summary="Now fourteen."), feed_title="F")
    e = edit_content(new, "$orig")
    assert e["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$orig"}
    assert e["m.new_content"] == new and "m.relates_to" not in e["m.new_content"]
    assert e["body"] == "* " + new["body"] and e["msgtype"] == "m.notice"


def test_grouped_message_lists_every_item_escaped() -> None:
    items = [make(title=f"Item <{i}>", item_id=i, link=f"https://x/{i}") for i in range(12)]
    c = grouped_content(items, feed_titles={"news": "Network news"})
    assert c["body"].splitlines()[0] == "12 new items:"
    assert c["body"].splitlines()[1] == "- Network news: Item <0> https://x/0"
    assert c["formatted_body"].count("<li>") == 12
    assert '<li>Network news: <a href="https://x/3">Item &lt;3&gt;</a></li>' in c["formatted_body"]


def test_channel_text_default_and_template() -> None:
    title, body = channel_text(make(), feed_title="Network news")
    assert title == "Network news: Hotspot lending expands"
    assert body == "Hotspot lending expands\n\nTwelve branches join.\n\nhttps://lib.example.org/n/1"
    tpl = compile_template(
        "{{ title }} ({{ feed_title }}) {{ link }} {{ summary }}", html=False, path="t"
    )
    _, body = channel_text(make(), feed_title="Network news", template=tpl)
    # Plain text: no escaping; summary is the sanitized HTML as documented.
    assert (
        body
        == "Hotspot lending expands (Network news) https://lib.example.org/n/1 <p>Twelve <b>branches</b> join.</p>"
    )


def test_webinar_time_in_the_network_zone_with_utc_for_members_elsewhere() -> None:
    chicago = ZoneInfo("America/Chicago")
    # 1 December is standard time (CST, UTC-6); 1 July is daylight time (CDT, UTC-5).
    winter = make(kind="webinar", event_start=datetime(2026, 12, 1, 15, 0, tzinfo=UTC))
    summer = make(kind="webinar", event_start=datetime(2027, 7, 1, 15, 0, tzinfo=UTC))
    assert (
        "When: Tue 01 Dec 2026, 09:00 CST (15:00 UTC)"
        in matrix_content(winter, feed_title="F", zone=chicago)["body"]
    )
    assert (
        "When: Thu 01 Jul 2027, 10:00 CDT (15:00 UTC)"
        in matrix_content(summer, feed_title="F", zone=chicago)["formatted_body"]
    )
    _, body = channel_text(winter, feed_title="F", zone=chicago)
    assert body.splitlines()[2] == "When: Tue 01 Dec 2026, 09:00 CST (15:00 UTC)"
    v = template_vars(winter, feed_title="F", feed_link=None, html=False, zone=chicago)
    assert v["event_start"] == "Tue 01 Dec 2026, 09:00 CST (15:00 UTC)"
    # Published 21 Nov 03:00 UTC is still 20 Nov in Chicago.
    late = replace(make(), published=datetime(2026, 11, 21, 3, 0, tzinfo=UTC))
    assert template_vars(late, feed_title="F", feed_link=None, html=False)["date"] == "21 Nov 2026"
    assert (
        template_vars(late, feed_title="F", feed_link=None, html=False, zone=chicago)["date"]
        == "20 Nov 2026"
    )
    # News has no start time to show, whatever the zone.
    assert "When:" not in channel_text(make(), feed_title="F", zone=chicago)[1]


def test_hostile_summaries_and_links_still_fit_in_one_event() -> None:
    """Visible text is truncated, but empty tags and long hrefs are not text: the event is
    measured, and falls back to plain text rather than being refused (M_TOO_LARGE)."""
    from network.matrix.fit import MAX_CONTENT_BYTES
    from network.matrix.fit import content_size as _size

    empty_tags = make(summary="<b></b>" * 20_000)
    long_links = make(
        summary="".join(f'<a href="https://x.example/{"a" * 4000}{i}">l{i}</a>' for i in range(40))
    )
    for item in (empty_tags, long_links):
        c = matrix_content(item, feed_title="F")
        assert _size(c) <= MAX_CONTENT_BYTES
        assert "Hotspot lending expands" in c["body"]
        e = edit_content(c, "$orig")
        assert _size(e) <= MAX_CONTENT_BYTES and e["m.new_content"]["body"]
    huge_link = "https://x.example/" + "a" * 60_000
    burst = [make(item_id=i, link=f"{huge_link}{i}") for i in range(3)]
    assert _size(grouped_content(burst, feed_titles={"news": "N"})) <= MAX_CONTENT_BYTES
    c = matrix_content(make(link=huge_link), feed_title="F")
    assert _size(c) <= MAX_CONTENT_BYTES and "external_url" not in c


def test_fit_keeps_as_much_text_as_an_event_holds_and_says_how_much() -> None:
    from network.matrix.fit import MAX_CONTENT_BYTES, content_size, fit

    text = "é" * 30_000 + '"' * 30_000  # two bytes each in UTF-8 and in JSON
    content = {"msgtype": "m.text", "body": text, "format": "x", "formatted_body": text}
    fitted = fit(content, max_chars=None)
    assert fitted.plain and fitted.kept_chars is not None
    assert fitted.content["body"] == text[: fitted.kept_chars] + "…"
    assert content_size(fitted.content) <= MAX_CONTENT_BYTES
    one_more = {**fitted.content, "body": text[: fitted.kept_chars + 1] + "…"}
    assert content_size(one_more) > MAX_CONTENT_BYTES  # nothing left out that would fit
    # Whole text that fits once the HTML copy is dropped is not shortened.
    half = {**content, "body": text[:20_000], "formatted_body": text[:20_000]}
    assert fit(half) == fit(half, max_chars=None) and not fit(half).shortened
    assert fit(half).plain and fit(half).content["body"] == text[:20_000]
