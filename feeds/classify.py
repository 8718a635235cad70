"""What kind of post an item is (news, webinar, cohort update) and when a webinar starts.

`classify` applies keyword/category rules (plain phrase matching, no user regexes, so rules
from configuration cannot cause catastrophic backtracking) and falls back to the kind of the
feed. `extract_event_start` reads the start of an event from announcement text such as
"Tuesday, March 4, 2025 at 2:00 PM ET" or "on 12/3/2025 at 11am PT", interprets US zone
abbreviations as the wall-clock time of the IANA zone they name (so "EST" in July still means
New York time, which is what announcers mean), and returns aware UTC. Pure: `now` is passed in.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from feeds.parse import ParsedItem
from feeds.sanitize import html_to_text

__all__ = ["DEFAULT_RULES", "KINDS", "KindRule", "classify", "enrich", "extract_event_start"]

KINDS = ("news", "webinar", "cohort-update")


@dataclass(frozen=True)
class KindRule:
    """Items whose category equals one of `categories`, or whose title contains one of
    `title_keywords` as a word or phrase (case-insensitive, plural "s" allowed), are `kind`."""

    kind: str
    categories: tuple[str, ...] = ()
    title_keywords: tuple[str, ...] = ()
    # Derived once per rule: rules are matched against every item of every poll.
    _wanted: frozenset[str] = field(init=False, repr=False, compare=False)
    _title: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown item kind {self.kind!r}; expected one of {KINDS}")
        wanted = frozenset(c.strip().casefold() for c in self.categories)
        phrases = [_phrase(k) for k in self.title_keywords]
        # One alternation instead of one search per keyword; phrases are escaped literals.
        title = re.compile("|".join(f"(?:{p})" for p in phrases)) if phrases else None
        object.__setattr__(self, "_wanted", wanted)
        object.__setattr__(self, "_title", title)

    def matches(self, item: ParsedItem) -> bool:
        if self._wanted and any(c.strip().casefold() in self._wanted for c in item.categories):
            return True
        return self._title is not None and self._title.search(item.title.casefold()) is not None


def _phrase(keyword: str) -> str:
    words = r"\s+".join(re.escape(w) for w in keyword.casefold().split())
    return rf"(?<!\w){words}(?:e?s)?(?!\w)"


DEFAULT_RULES: tuple[KindRule, ...] = (
    KindRule(
        "webinar",
        categories=("webinar", "webinars"),
        title_keywords=("webinar", "online workshop", "live session"),
    ),
)


def classify(item: ParsedItem, feed_kind: str, rules: Sequence[KindRule] = DEFAULT_RULES) -> str:
    """The first matching rule's kind, else the feed's own kind."""
    if feed_kind not in KINDS:
        raise ValueError(f"unknown feed kind {feed_kind!r}; expected one of {KINDS}")
    for rule in rules:
        if rule.matches(item):
            return rule.kind
    return feed_kind


# ---------------------------------------------------------------- event start times

_ZONES = {
    "America/New_York": ("et", "est", "edt", "eastern"),
    "America/Chicago": ("ct", "cst", "cdt", "central"),
    "America/Denver": ("mt", "mst", "mdt", "mountain"),
    "America/Los_Angeles": ("pt", "pst", "pdt", "pacific"),
    "America/Anchorage": ("akt", "akst", "akdt", "alaska"),
    "Pacific/Honolulu": ("ht", "hst", "hast", "hawaii"),
    "UTC": ("utc", "gmt", "z"),
}
_ZONE_BY_NAME = {name: tz for tz, names in _ZONES.items() for name in names}
_ZONE = (
    r"(?:\(?\s*(?P<zone>akst|akdt|akt|hast|[ecmp][sd]?t|hst|ht|utc|gmt"
    r"|(?:eastern|central|mountain|pacific|alaska|hawaii)(?:\s+(?:standard|daylight))?"
    r"(?:\s+time)?)(?![\w]))?"
)
_MERIDIEM = r"(?:a\.?\s?m\.?|p\.?\s?m\.?)"
_TIME = (
    r"(?:(?P<noon>(?:12\s+)?noon)|(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ap>" + _MERIDIEM + r")?"
    r"(?:\s*(?:-|–|—|to|until)\s*(?P<h2>\d{1,2})(?::(?P<m2>\d{2}))?\s*(?P<ap2>"
    + _MERIDIEM
    + r")?)?)"
)
_WEEKDAY = r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*"
_TIME_AFTER = re.compile(
    r"[\s,;:(\-–—|]*(?:(?:at|@|from|starting|beginning|begins|starts)\s+(?:at\s+)?)?"
    + _TIME
    + r"\s*"
    + _ZONE,
    re.IGNORECASE,
)
_TIME_BEFORE = re.compile(
    _TIME + r"\s*" + _ZONE + r"[\s,]*(?:on\s+)?(?:" + _WEEKDAY + r"\.?,?\s*)?$",
    re.IGNORECASE,
)
_MONTH = (
    r"(?P<month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATES = (
    re.compile(
        _MONTH + r"\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?\b(?:,?\s+(?P<year>\d{4})\b)?",
        re.IGNORECASE,
    ),
    re.compile(
        r"\b(?P<day>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?"
        + _MONTH
        + r"(?![a-z])(?:,?\s+(?P<year>\d{4})\b)?",
        re.IGNORECASE,
    ),
    re.compile(r"\b(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})(?:T|\b)"),
    re.compile(r"\b(?P<month>\d{1,2})/(?P<day>\d{1,2})(?:/(?P<year>\d{4}|\d{2}))?\b"),
)
_ISO_WITH_OFFSET = re.compile(
    r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})"
)
_MONTH_NUMBERS = {
    name: i
    for i, names in enumerate(
        [
            (),
            ("jan",),
            ("feb",),
            ("mar",),
            ("apr",),
            ("may",),
            ("jun",),
            ("jul",),
            ("aug",),
            ("sep",),
            ("oct",),
            ("nov",),
            ("dec",),
        ]
    )
    for name in names
}


def _month(value: str) -> int:
    return int(value) if value.isdigit() else _MONTH_NUMBERS[value[:3].lower()]


def _hour_minute(m: re.Match[str]) -> tuple[int, int] | None:
    if m.group("noon"):
        return 12, 0
    hour, minute = int(m.group("h")), int(m.group("m") or 0)
    ap = (m.group("ap") or "").lower()
    ap2 = (m.group("ap2") or "").lower()
    if not ap and not m.group("m"):
        # A bare number is only a time with a meridiem, here or at the end of a range ("2-3 pm").
        if not ap2:
            return None
    if not ap and ap2:
        end = int(m.group("h2"))
        # "11:30 - 1 pm" starts in the morning; "2 - 3 pm" starts in the afternoon.
        ap = "a" if ap2.startswith("p") and hour > end and hour != 12 else ap2
    if ap:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ap.startswith("p") else 0)
    if hour > 23 or minute > 59:
        return None
    return hour, minute


def _resolve_year(
    month: int, day: int, year: str | None, reference: datetime | None
) -> date | None:
    if year:
        y = int(year) + (2000 if len(year) == 2 else 0)
        try:
            return date(y, month, day)
        except ValueError:
            return None
    if reference is None:
        return None
    # The first occurrence on or after two months before the reference: announcements look
    # ahead, recaps look back a little.
    earliest = reference.date() - timedelta(days=60)
    for y in (reference.year - 1, reference.year, reference.year + 1):
        try:
            candidate = date(y, month, day)
        except ValueError:
            continue
        if candidate >= earliest:
            return candidate
    return None


def _find_start(text: str, default_tz: str, reference: datetime | None) -> datetime | None:
    iso = _ISO_WITH_OFFSET.search(text)
    if iso:
        try:
            return datetime.fromisoformat(iso.group(0).replace("Z", "+00:00")).astimezone(UTC)
        except (ValueError, OverflowError):  # "9999-12-31T23:00-05:00" is past datetime.max
            pass
    found = sorted(
        (m for pattern in _DATES for m in pattern.finditer(text)), key=lambda m: m.start()
    )
    last_end = -1
    for dm in found:
        if dm.start() < last_end:
            continue  # overlaps a date already tried ("March 4" inside "Tuesday, March 4")
        last_end = dm.end()
        try:
            month = _month(dm.group("month"))
        except (KeyError, ValueError):
            continue
        if not 1 <= month <= 12:
            continue
        day_date = _resolve_year(month, int(dm.group("day")), dm.group("year"), reference)
        if day_date is None:
            continue
        tm = _TIME_AFTER.match(text, dm.end(), min(len(text), dm.end() + 60))
        hm = _hour_minute(tm) if tm else None
        if hm is None:
            before = _TIME_BEFORE.search(text, max(0, dm.start() - 40), dm.start())
            tm = before
            hm = _hour_minute(before) if before else None
        if tm is None or hm is None:
            continue
        zone_word = " ".join((tm.group("zone") or "").lower().split())
        zone_key = zone_word.split(" ")[0] if zone_word else ""
        tz_name = _ZONE_BY_NAME.get(zone_key, default_tz) if zone_key else default_tz
        local = datetime(day_date.year, day_date.month, day_date.day, *hm, tzinfo=ZoneInfo(tz_name))
        try:
            return local.astimezone(UTC)
        except OverflowError:  # a date at the very end of year 9999
            continue
    return None


def extract_event_start(
    item: ParsedItem, *, default_tz: str = "America/New_York", now: datetime | None = None
) -> datetime | None:
    """The event start announced in the item's title or summary, as aware UTC, or None.

    A date without a year takes the first occurrence no earlier than 60 days before the
    item's publication date (or `now` when the item has none); with neither, None. A date
    without a time is not a start time (None). Times without a zone use `default_tz`.
    """
    try:
        ZoneInfo(default_tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {default_tz!r} (expected an IANA name)") from e
    reference = item.published or now
    for text in (item.title, html_to_text(item.summary_html)):
        start = _find_start(" ".join(text.split()), default_tz, reference)
        if start is not None:
            return start
    return None


def enrich(
    item: ParsedItem,
    feed_kind: str,
    rules: Sequence[KindRule] = DEFAULT_RULES,
    default_tz: str = "America/New_York",
    now: datetime | None = None,
) -> tuple[str, ParsedItem]:
    """Classify the item; for webinars, also fill in `event_start`."""
    kind = classify(item, feed_kind, rules)
    if kind == "webinar":
        start = extract_event_start(item, default_tz=default_tz, now=now)
        if start is not None:
            item = dataclasses.replace(item, event_start=start)
    return kind, item
