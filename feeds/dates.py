"""Dates in feeds as aware UTC datetimes, including the ones feedparser gives up on.

feedparser reads RFC 822 and ISO 8601 dates; this module adds Unix epochs, non-English month
names ("Seg, 24 Set 2018"), "1500"-style times and numeric D/M/Y dates (M/D/Y only for feeds
in en-US), and refuses years outside 1970..2200. Each kind of repair is described once in
`notes` so the caller can report it as a warning.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = ["entry_date", "fallback_date"]

_MONTHS = {
    "jan": 1, "ene": 1, "janv": 1, "fev": 2, "feb": 2, "fevr": 2, "mar": 3, "mars": 3,
    "mrz": 3, "maer": 3, "abr": 4, "apr": 4, "avr": 4, "mai": 5, "may": 5, "jun": 6,
    "juin": 6, "jul": 7, "juil": 7, "ago": 8, "aug": 8, "aou": 8, "set": 9, "sep": 9,
    "out": 10, "oct": 10, "okt": 10, "nov": 11, "dez": 12, "dec": 12, "dic": 12,
}  # fmt: skip
_ACCENTS = str.maketrans("áàâãäéèêëíîïóôõöúûüç", "aaaaaeeeeiiioooouuuc")
_TEXT_DATE = re.compile(
    r"^(?:[^\W\d_]+\.?,?\s+)?(\d{1,2})\s+([^\W\d_]+)\.?\s+(\d{2}|\d{4})"
    r"(?:\s+(\d{1,2}):?(\d{2})(?::(\d{2}))?)?\s*([+-]\d{4}|[A-Za-z]{1,5})?$"
)
_NUMERIC_DATE = re.compile(
    r"^(\d{1,2})[/.](\d{1,2})[/.](\d{4})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?"
    r"\s*([+-]\d{2}:?\d{2}|Z|[A-Za-z]{2,5})?$"
)


def _month_number(word: str) -> int | None:
    word = word.lower().translate(_ACCENTS)
    for length in (4, 3):
        if word[:length] in _MONTHS:
            return _MONTHS[word[:length]]
    return None


def _sane(moment: datetime) -> datetime | None:
    return moment if 1970 <= moment.year <= 2200 else None


def _utc_from_parts(
    day: int, month: int, year: int, hh: str | None, mm: str | None, ss: str | None, zone: str
) -> datetime | None:
    # email.utils knows the RFC 822 zone names (GMT, EST, PDT...) and numeric offsets.
    rebuilt = (
        f"{day} {calendar.month_abbr[month]} {year} "
        f"{int(hh or 0):02d}:{mm or '00'}:{ss or '00'} {zone.replace(':', '')}"
    )
    try:
        parsed = parsedate_to_datetime(rebuilt)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return _sane(parsed.astimezone(UTC))
    except OverflowError:  # "31 Dec 9999 23:00 -0500" is past datetime.max in UTC
        return None


def fallback_date(raw: str, month_first: bool, notes: dict[str, str]) -> datetime | None:
    """Dates feedparser gives up on: Unix epochs, non-English month names, "1500" times,
    and numeric D/M/Y (M/D/Y only for feeds in en-US) dates."""
    text = " ".join(raw.split())
    if re.fullmatch(r"\d{9,11}", text):
        notes.setdefault("epoch", f"dates like {text} are Unix timestamps; read as UTC seconds")
        return _sane(datetime.fromtimestamp(int(text), UTC))
    match = _TEXT_DATE.match(text)
    if match:
        day, month_word, year, hh, mm, ss, zone = match.groups()
        month = _month_number(month_word)
        if month is None:
            return None
        year_n = int(year) + (0 if len(year) == 4 else (2000 if int(year) < 70 else 1900))
        return _utc_from_parts(int(day), month, year_n, hh, mm, ss, zone or "+0000")
    match = _NUMERIC_DATE.match(text)
    if match:
        first, second, year, hh, mm, ss, zone = match.groups()
        a, b = int(first), int(second)
        day_first = a > 12 or (b <= 12 and not month_first)
        day, month = (a, b) if day_first else (b, a)
        if not 1 <= month <= 12:
            return None
        order = "day/month" if day_first else "month/day"
        zone_note = "" if zone else " in UTC (no time zone given)"
        notes.setdefault(
            "numeric", f"numeric dates like {text!r} are ambiguous; read as {order}{zone_note}"
        )
        return _utc_from_parts(day, month, int(year), hh, mm, ss, zone or "+0000")
    return None


def entry_date(
    entry: Mapping[str, Any], field: str, month_first: bool, notes: dict[str, str]
) -> datetime | None:
    # Plain-dict lookups: feedparser's own mapping silently answers "updated" with "published".
    stored = dict(entry.items())
    raw = stored.get(field)
    parsed = stored.get(f"{field}_parsed")
    # feedparser misreads bare epochs as calendar dates; recognise them first.
    if isinstance(raw, str) and re.fullmatch(r"\s*\d{9,11}\s*", raw):
        return fallback_date(raw, month_first, notes)
    if isinstance(parsed, time.struct_time):
        try:
            # feedparser's *_parsed values are UTC struct_times.
            return _sane(datetime.fromtimestamp(calendar.timegm(parsed), UTC))
        except (OverflowError, ValueError, OSError):
            return None
    if isinstance(raw, str) and raw.strip():
        return fallback_date(raw, month_first, notes)
    return None
