"""Item kinds and webinar start times (feeds.classify), table-driven."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feeds.classify import KINDS, KindRule, classify, enrich, extract_event_start
from feeds.parse import ParsedItem


def item(
    title: str,
    summary_html: str = "",
    categories: tuple[str, ...] = (),
    published: datetime | None = None,
) -> ParsedItem:
    return ParsedItem(
        key="k",
        title=title,
        link="https://lib.example.org/events/1",
        published=published,
        updated=None,
        author=None,
        categories=categories,
        summary_html=summary_html,
        enclosures=(),
        content_hash="0" * 64,
    )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


@pytest.mark.parametrize(
    ("title", "categories", "feed_kind", "expected"),
    [
        ("Webinar: Makerspaces on a shoestring", (), "news", "webinar"),
        ("Join our free WEBINAR on broadband mapping", (), "news", "webinar"),
        ("Upcoming webinars for spring", (), "cohort-update", "webinar"),
        ("Online workshop: grant writing basics", (), "news", "webinar"),
        ("Live session with the Smart Spaces cohort", (), "news", "webinar"),
        ("Smart city data policies", ("Webinar",), "news", "webinar"),
        ("Smart city data policies", (" webinars ",), "news", "webinar"),
        ("Library board approves budget", ("News",), "news", "news"),
        ("Cohort 3 met its first milestone", (), "cohort-update", "cohort-update"),
        ("Webinarium announced", (), "news", "news"),  # a word, not the keyword
        ("Workshop recap", (), "news", "news"),  # "online workshop" is a phrase
        ("Live  sessions recorded", (), "news", "webinar"),  # spacing and plural
    ],
)
def test_classify_default_rules(
    title: str, categories: tuple[str, ...], feed_kind: str, expected: str
) -> None:
    assert classify(item(title, categories=categories), feed_kind) == expected


def test_custom_rules_first_match_wins() -> None:
    rules = (
        KindRule("cohort-update", categories=("cohort",), title_keywords=("milestone",)),
        KindRule("webinar", title_keywords=("webinar",)),
    )
    assert classify(item("Milestone webinar"), "news", rules) == "cohort-update"
    assert classify(item("Webinar"), "news", rules) == "webinar"
    assert classify(item("Other", categories=("Cohort",)), "news", rules) == "cohort-update"
    assert classify(item("Other"), "news", rules) == "news"


def test_unknown_kinds_are_rejected() -> None:
    assert KINDS == ("news", "webinar", "cohort-update")
    with pytest.raises(ValueError, match="unknown item kind 'event'"):
        KindRule("event")
    with pytest.raises(ValueError, match="unknown feed kind 'blog'"):
        classify(item("x"), "blog")


NOW = utc(2025, 2, 1)


@pytest.mark.parametrize(
    ("title", "summary", "expected"),
    [
        # The phrasings from the announcements: EST in winter is UTC-5 ...
        ("Webinar: Smart spaces, Tuesday, March 4, 2025 at 2:00 PM ET", "", utc(2025, 3, 4, 19)),
        ("Mar 4, 2pm Eastern", "", utc(2025, 3, 4, 19)),
        ("2025-03-04 14:00 CT", "", utc(2025, 3, 4, 20)),
        ("Webinar on 12/3/2025 at 11am PT", "", utc(2025, 12, 3, 19)),
        # ... and after the DST switch (2025-03-09) "ET" is UTC-4.
        ("Webinar: Tuesday, March 11, 2025 at 2:00 PM ET", "", utc(2025, 3, 11, 18)),
        ("Webinar March 8, 2025 at 2 PM ET", "", utc(2025, 3, 8, 19)),  # day before DST
        ("Webinar Nov 2, 2025 1:30 p.m. Eastern", "", utc(2025, 11, 2, 18, 30)),  # DST ended
        ("Webinar Nov 1, 2025 1:30 p.m. Eastern", "", utc(2025, 11, 1, 17, 30)),
        # Mountain time: Denver observes DST.
        ("Webinar July 15, 2025, 10:00 a.m. MT", "", utc(2025, 7, 15, 16)),
        # "EST" in July is taken as New York wall time (what the announcer means).
        ("Webinar July 15, 2025 at 1 PM EST", "", utc(2025, 7, 15, 17)),
        ("Webinar 2:00 PM ET on Tuesday, March 4", "", utc(2025, 3, 4, 19)),
        ("Webinar 4 March 2025, 14:00 GMT", "", utc(2025, 3, 4, 14)),
        ("Webinar Jan 10 at noon", "", utc(2025, 1, 10, 17)),  # no zone: default New York
        ("Session March 4 from 11:30 - 1 pm PT", "", utc(2025, 3, 4, 19, 30)),
        ("Webinar May 5th 3-4pm Central", "", utc(2025, 5, 5, 20)),
        ("Webinar 2025-03-04T14:00:00-05:00", "", utc(2025, 3, 4, 19)),
        (
            "Webinar: broadband for rural libraries",
            "<p>Join us on <b>Thursday, April 10, 2025</b> from 1:00&nbsp;&ndash; 2:00 p.m. "
            "(Central Time)</p>",
            utc(2025, 4, 10, 18),
        ),
        ("Webinar: March 4", "", None),  # a date without a time is no start time
        ("Webinar recording now available", "<p>Thanks for coming!</p>", None),
        ("Webinar on 1/2 of the budget", "", None),
    ],
)
def test_extract_event_start(title: str, summary: str, expected: datetime | None) -> None:
    assert extract_event_start(item(title, summary), now=NOW) == expected


@pytest.mark.parametrize(
    ("published", "title", "expected"),
    [
        # Announced in December for "Jan 10": next year.
        (utc(2024, 12, 20), "Webinar Jan 10 at 2pm ET", utc(2025, 1, 10, 19)),
        # Announced in March for March 25: same year.
        (utc(2025, 3, 1), "Webinar March 25 at 2pm ET", utc(2025, 3, 25, 18)),
        # A recap three weeks after the event keeps the event's year.
        (utc(2025, 3, 25), "Webinar recap: March 4 at 2pm ET", utc(2025, 3, 4, 19)),
    ],
)
def test_year_is_inferred_from_publication(
    published: datetime, title: str, expected: datetime
) -> None:
    assert extract_event_start(item(title, published=published)) == expected


def test_without_year_and_without_reference_there_is_no_answer() -> None:
    assert extract_event_start(item("Webinar Jan 10 at 2pm ET")) is None


def test_default_zone_and_bad_zone() -> None:
    start = extract_event_start(
        item("Webinar March 4, 2025 at 2 PM"), default_tz="America/Los_Angeles"
    )
    assert start == utc(2025, 3, 4, 22)
    with pytest.raises(ValueError, match="unknown time zone"):
        extract_event_start(item("x"), default_tz="Mars/Olympus")


def test_enrich_sets_event_start_only_for_webinars() -> None:
    kind, enriched = enrich(item("Webinar: Tuesday, March 4, 2025 at 2:00 PM ET"), "news")
    assert kind == "webinar" and enriched.event_start == utc(2025, 3, 4, 19)
    kind, plain = enrich(item("Board meeting March 4, 2025 at 2:00 PM ET"), "news")
    assert kind == "news" and plain.event_start is None
