"""Webinar calendar files (written with icalendar): RFC 5545 line endings, folding,
escaping and required fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from network.community.calendar import calendar_uri, webinar_ics

NOW = datetime(2025, 5, 14, 6, 0, tzinfo=UTC)
START = datetime(2025, 5, 20, 15, 0, tzinfo=ZoneInfo("Europe/Berlin"))


def _unfold(text: str) -> list[str]:
    return text.replace("\r\n ", "").split("\r\n")


def _unescape(value: str) -> str:
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m[1] in "nN" else m[1], value)


def _properties(text: str) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in _unfold(text):
        if line:
            name, _, value = line.partition(":")
            props.setdefault(name, value)
    return props


def _ics(**kw: object) -> str:
    args: dict[str, object] = {
        "uid": "item-42@libhub.example.org",
        "title": "Smart spaces 101",
        "start": START,
        "duration": timedelta(hours=1),
        "url": "https://example.org/webinars/smart-spaces",
        "description": "Join us.",
        "now": NOW,
    }
    args.update(kw)
    return webinar_ics(**args)  # type: ignore[arg-type]


def test_structure_and_required_fields() -> None:
    text = _ics()
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    lines = _unfold(text)
    assert lines[:2] == ["BEGIN:VCALENDAR", "VERSION:2.0"]
    assert lines[-2] == "END:VCALENDAR"
    props = _properties(text)
    assert props["METHOD"] == "PUBLISH"
    assert props["PRODID"].startswith("-//libhub//")
    assert props["UID"] == "item-42@libhub.example.org"
    assert props["SUMMARY"] == "Smart spaces 101"
    assert props["URL"] == "https://example.org/webinars/smart-spaces"
    assert lines.index("BEGIN:VEVENT") < lines.index("END:VEVENT")


def parse(value: str) -> datetime:
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def test_times_are_utc_with_z_and_parse_with_the_stdlib() -> None:
    props = _properties(_ics())
    # 15:00 in Berlin in May is CEST (UTC+2).
    assert parse(props["DTSTART"]) == datetime(2025, 5, 20, 13, 0, tzinfo=UTC)
    assert parse(props["DTEND"]) == datetime(2025, 5, 20, 14, 0, tzinfo=UTC)
    assert parse(props["DTSTAMP"]) == NOW


def test_text_values_are_escaped_and_round_trip() -> None:
    title = "Budgets, grants; and C:\\paths"
    description = "Line one\nLine two, with comma; and semicolon\r\nBackslash \\ end"
    props = _properties(_ics(title=title, description=description))
    assert props["SUMMARY"] == "Budgets\\, grants\\; and C:\\\\paths"
    assert "\n" not in props["DESCRIPTION"]
    assert _unescape(props["SUMMARY"]) == title
    assert _unescape(props["DESCRIPTION"]) == description.replace("\r\n", "\n")


def test_long_lines_fold_at_75_octets_without_splitting_utf8() -> None:
    title = "Bibliothèques et villes intelligentes — " * 6 + "📚 fin"
    text = _ics(title=title, description="é" * 200)
    for physical in text.split("\r\n"):
        assert len(physical.encode("utf-8")) <= 75
    # Every physical line decodes on its own: no multi-octet character was cut.
    for raw in text.encode("utf-8").split(b"\r\n"):
        raw.decode("utf-8")
    props = _properties(text)
    assert _unescape(props["SUMMARY"]) == title
    assert props["DESCRIPTION"] == "é" * 200


def test_optional_url_and_empty_description_are_left_out() -> None:
    props = _properties(_ics(url=None, description="  "))
    assert "URL" not in props and "DESCRIPTION" not in props


def test_a_link_with_spaces_is_percent_encoded_not_refused() -> None:
    props = _properties(_ics(url="https://example.org/webinars/smart spaces 101"))
    assert props["URL"] == "https://example.org/webinars/smart%20spaces%20101"


@pytest.mark.parametrize(
    ("link", "uri"),
    [
        (" https://example.org/a b ", "https://example.org/a%20b"),
        ("https://example.org/a\tb", None),
        ("https://example.org/a\r\nX-INJECT:1", None),
        ("javascript:alert(1)", None),
        ("/relative/page", None),
    ],
)
def test_calendar_uri_or_none(link: str, uri: str | None) -> None:
    assert calendar_uri(link) == uri


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"url": "javascript:alert(1)"}, "http"),
        ({"url": "https://example.org/a\r\nX-INJECT:1"}, "http"),
        ({"duration": timedelta(0)}, "positive"),
        ({"start": datetime(2025, 5, 20, 15, 0)}, "timezone-aware"),
        ({"uid": " "}, "uid"),
    ],
)
def test_bad_input_is_refused(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _ics(**kw)
