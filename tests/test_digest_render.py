"""Digest rendering: grouping and order, subscriber time zone, escaping, text part, footer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from feeds.sanitize import sanitize_html
from network.routing.render import matrix_content
from network.storage import Item
from network.subscriptions.render import (
    DigestItem,
    RenderedMessage,
    group_items,
    render_digest,
    render_immediate,
)

NOW = datetime(2025, 5, 14, 6, 0, tzinfo=UTC)
MANAGE = "https://libhub.example.org/manage?t=abc&x=1"
UNSUB = "https://libhub.example.org/u/tok123"


def item(item_id: int, kind: str, title: str, **kw: object) -> DigestItem:
    fields: dict[str, object] = {
        "item_id": item_id,
        "kind": kind,
        "title": title,
        "link": f"https://example.org/items/{item_id}",
        "summary_html": f"<p>Summary of {item_id}</p>",
        "published": NOW - timedelta(hours=item_id),
        "feed_title": "State Library News",
        "event_start": None,
        "author": None,
    }
    fields.update(kw)
    return DigestItem(**fields)  # type: ignore[arg-type]


ITEMS = [
    item(1, "news", "Grant round opens"),
    item(2, "webinar", "Later webinar", event_start=NOW + timedelta(days=8)),
    item(3, "cohort-update", "Cohort 3 met", author="Bob"),
    item(4, "webinar", "Past webinar recording", event_start=NOW - timedelta(days=1)),
    item(5, "webinar", "Sooner webinar", event_start=datetime(2025, 5, 20, 13, 0, tzinfo=UTC)),
    item(6, "news", "Older news", published=NOW - timedelta(days=3)),
    item(7, "cohort-update", "Cohort 1 update"),
]


def render(items: list[DigestItem] = ITEMS, **kw: object) -> RenderedMessage:
    args: dict[str, object] = {
        "subscriber_tz": "Europe/Berlin",
        "frequency": "daily",
        "network_name": "Prairie Library Network",
        "manage_url": MANAGE,
        "unsubscribe_url": UNSUB,
        "ics_url": lambda i: f"https://libhub.example.org/ics/{i.item_id}.ics",
        "now": NOW,
    }
    args.update(kw)
    message = render_digest(items, **args)  # type: ignore[arg-type]
    assert message is not None
    return message


class _Outline(HTMLParser):
    """Headings and links of an HTML document, as a screen reader would list them."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.links: list[tuple[str, str]] = []
        self.lang: str | None = None
        self._open: list[tuple[str, str | None]] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html":
            self.lang = dict(attrs).get("lang")
        if tag in ("h1", "h2", "h3", "a"):
            self._open.append((tag, dict(attrs).get("href")))
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            _, href = self._open.pop()
            text = "".join(self._text).strip()
            if tag == "a":
                self.links.append((text, href or ""))
            else:
                self.headings.append((tag, text))

    def handle_data(self, data: str) -> None:
        self._text.append(data)


def outline(html: str) -> _Outline:
    parser = _Outline()
    parser.feed(html)
    return parser


def test_groups_in_order_upcoming_webinars_first_by_start() -> None:
    groups = group_items(ITEMS, NOW)
    assert [(g, [i.item_id for i in members]) for g, _, members in groups] == [
        ("webinars", [5, 2]),
        ("news", [1, 4, 6]),  # the past webinar goes with news, newest first
        ("cohort-updates", [3, 7]),
    ]


def test_html_headings_follow_the_groups() -> None:
    doc = outline(render().html)
    assert doc.lang == "en"
    assert doc.headings[0] == ("h1", "Prairie Library Network — Daily digest")
    assert [text for tag, text in doc.headings if tag == "h2"] == [
        "Upcoming webinars",
        "News",
        "Cohort updates",
    ]
    assert [text for tag, text in doc.headings if tag == "h3"] == [
        "Sooner webinar",
        "Later webinar",
        "Grant round opens",
        "Past webinar recording",
        "Older news",
        "Cohort 3 met",
        "Cohort 1 update",
    ]


def test_text_part_has_the_same_order_and_no_markup() -> None:
    text = render().text
    positions = [
        text.index(s)
        for s in (
            "UPCOMING WEBINARS",
            "Sooner webinar",
            "Later webinar",
            "NEWS",
            "Grant round opens",
            "Past webinar recording",
            "COHORT UPDATES",
            "Cohort 3 met",
        )
    ]
    assert positions == sorted(positions)
    assert "<p>" not in text and "</" not in text
    assert "Summary of 1" in text
    assert "https://example.org/items/1" in text


def test_webinar_time_is_shown_in_the_subscriber_zone() -> None:
    # 13:00 UTC on 20 May is 15:00 in Berlin (CEST), 09:00 in New York, 18:30 in Kolkata.
    berlin = render().text
    assert "Tuesday, May 20, 2025, 3:00\u202fPM CEST" in berlin
    new_york = render(subscriber_tz="America/New_York")
    assert "Tuesday, May 20, 2025, 9:00\u202fAM EDT" in new_york.text
    assert "Tuesday, May 20, 2025, 9:00\u202fAM EDT" in new_york.html
    kolkata = render(subscriber_tz="Asia/Kolkata").text
    assert "Tuesday, May 20, 2025, 6:30\u202fPM IST" in kolkata
    assert "Times are shown in Asia/Kolkata" in kolkata
    # Auckland is already on 21 May.
    auckland = render(subscriber_tz="Pacific/Auckland").text
    assert "Wednesday, May 21, 2025, 1:00\u202fAM NZST" in auckland


def test_add_to_calendar_only_for_upcoming_webinars() -> None:
    message = render()
    links = outline(message.html).links
    calendar = [(text, href) for text, href in links if text == "Add to calendar"]
    assert [href for _, href in calendar] == [
        "https://libhub.example.org/ics/5.ics",
        "https://libhub.example.org/ics/2.ics",
    ]
    assert 'aria-label="Add Sooner webinar to your calendar"' in message.html
    assert "Add to calendar: https://libhub.example.org/ics/5.ics" in message.text
    assert "ics/4.ics" not in message.text  # the past webinar


def test_no_calendar_links_without_an_ics_url_function() -> None:
    message = render(ics_url=None)
    assert "Add to calendar" not in message.html and "Add to calendar" not in message.text


def test_footer_has_manage_and_unsubscribe_links_with_real_text() -> None:
    message = render()
    links = outline(message.html).links
    assert ("Manage your subscription", MANAGE) in links
    assert ("Unsubscribe", UNSUB) in links
    assert f"Manage your subscription: {MANAGE}" in message.text
    assert f"Unsubscribe: {UNSUB}" in message.text
    # Titles are the link text of items, never "click here".
    assert ("Grant round opens", "https://example.org/items/1") in links


def test_empty_list_renders_nothing() -> None:
    assert render_digest([], **_kwargs()) is None
    assert render_immediate([], **_immediate_kwargs()) is None


def test_script_in_title_is_shown_as_text() -> None:
    hostile = item(9, "news", 'Library <script>alert("x")</script> & "friends"')
    message = render([hostile])
    assert "<script>" not in message.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;friends&#34;" in message.html
    headings = outline(message.html).headings
    assert ("h3", 'Library <script>alert("x")</script> & "friends"') in headings
    # The text part is plain text: the title reads as typed.
    assert 'Library <script>alert("x")</script> & "friends"' in message.text


def test_unsafe_links_are_not_clickable() -> None:
    message = render([item(9, "news", "Sneaky", link="javascript:alert(1)")])
    assert "javascript:" not in message.html and "javascript:" not in message.text
    assert ("h3", "Sneaky") in outline(message.html).headings


def test_sanitized_summary_html_keeps_its_markup() -> None:
    summary = "<p>The <strong>Smallville</strong> library won &amp; celebrated.</p><p>Next.</p>"
    message = render([item(9, "news", "Award", summary_html=summary)])
    assert summary in message.html
    assert "The Smallville library won & celebrated.\n\n  Next." in message.text


def test_subject_counts_and_date_in_subscriber_zone() -> None:
    subject = render().subject
    assert subject.startswith("Prairie Library Network: Daily digest, May 14")
    assert "2 upcoming webinars, 3 news items, 2 cohort updates" in subject
    weekly = render([ITEMS[0]], frequency="weekly", subscriber_tz="Pacific/Auckland")
    assert weekly.subject == "Prairie Library Network: Weekly digest, May 14 — 1 news item"


def test_immediate_notice_subject_names_the_item() -> None:
    one = render_immediate([ITEMS[4]], **_immediate_kwargs())
    assert one is not None
    assert one.subject == "Prairie Library Network: Upcoming webinar: Sooner webinar"
    assert "Add to calendar" in one.text
    many = render_immediate(ITEMS[:2], **_immediate_kwargs())
    assert many is not None
    assert many.subject == "Prairie Library Network: 1 upcoming webinar, 1 news item"
    assert outline(many.html).headings[0] == ("h1", "New from Prairie Library Network")


def test_bad_time_zone_or_frequency_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone 'Nowhere/Land'"):
        render(subscriber_tz="Nowhere/Land")
    with pytest.raises(ValueError, match="frequency 'hourly'"):
        render(frequency="hourly")


def test_templates_dir_can_be_overridden(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "digest.txt.j2").write_text("TEXT {{ groups | length }}\n")
    (tmp_path / "email" / "digest.html.j2").write_text("<p>{{ heading }}</p>\n")
    message = render(templates_dir=tmp_path, network_name="A & B")
    assert message.text == "TEXT 3\n"
    assert message.html == "<p>A &amp; B — Daily digest</p>\n"


# Paragraphs, a list, a link, entities and a line break: what feeds send.
TRICKY_SUMMARY = (
    "<p>Tom &amp; Jerry&#8217;s &quot;maker&quot;&nbsp;night is <b>back</b>.</p>"
    "<ul><li>3D printers</li><li>Laser <i>cutters</i> &lt;new&gt;</li></ul>"
    '<p>Sign up at <a href="https://lib.example.org/signup">the signup page</a>.<br>'
    "Seats are limited.</p><p>Questions? Ask&hellip; anyone.</p>"
)


def test_email_text_and_matrix_body_show_a_summary_the_same_way() -> None:
    summary = sanitize_html(TRICKY_SUMMARY)  # stored items are sanitized once, at ingest
    digest = render([item(1, "news", "Maker night", summary_html=summary)])
    when = datetime(2025, 5, 13, 9, 0, tzinfo=UTC)
    stored = Item(
        id=1, feed_id="news", key="k1", kind="news", title="Maker night",
        link="https://example.org/items/1", published=when, author=None, categories=(),
        summary_html=summary, enclosures=(), event_start=None, content_hash="h", version=1,
        first_seen=when, updated_at=when,
    )  # fmt: skip
    body = matrix_content(stored, feed_title="State Library News")["body"]
    # The Matrix body: heading line, the summary, the link.
    matrix_summary = body.split("\n", 1)[1].rsplit("\n", 1)[0]
    assert matrix_summary == (
        'Tom & Jerry\u2019s "maker" night is back.\n\n- 3D printers\n- Laser cutters <new>\n\n'
        "Sign up at the signup page.\nSeats are limited.\n\nQuestions? Ask\u2026 anyone."
    )
    # The email's text part: the same lines, indented under the item (no line is long
    # enough to be wrapped).
    indented = "\n".join(f"  {line}" if line else "" for line in matrix_summary.split("\n"))
    assert f"\n{indented}\n" in digest.text


def test_long_summaries_are_shortened_in_the_text_part() -> None:
    long = render([item(1, "news", "Long", summary_html="<p>" + "word " * 300 + "</p>")]).text
    words = [line for line in long.split("\n") if line.startswith("  word")]
    shown = " ".join(words)
    assert 400 < len(shown) < 520 and shown.endswith("…")


def test_long_links_in_the_text_part_are_not_cut() -> None:
    """Wrapping at 72 columns must not break a link a reader copies or clicks."""
    link = "https://libraries.example.org/events/2025/maker-night/registration?cohort=smart-spaces"
    summary = f"<p>Register at {link} before Friday.</p>"
    message = render([item(1, "news", "A very long title " * 6, summary_html=summary)])
    assert f"  {link}" in message.text.split("\n")
    assert "A very long title A very long title" in message.text


def _kwargs() -> dict[str, Any]:
    return {
        "subscriber_tz": "UTC",
        "frequency": "daily",
        "network_name": "N",
        "manage_url": MANAGE,
        "unsubscribe_url": UNSUB,
        "ics_url": None,
        "now": NOW,
    }


def _immediate_kwargs() -> dict[str, Any]:
    return {
        "subscriber_tz": "Europe/Berlin",
        "network_name": "Prairie Library Network",
        "manage_url": MANAGE,
        "unsubscribe_url": UNSUB,
        "ics_url": lambda i: f"https://libhub.example.org/ics/{i.item_id}.ics",
        "now": NOW,
    }
