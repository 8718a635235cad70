"""The time zones a person picks from: a short list of the network's likely zones, and a
search of all the others by city name.

The likely zones are those of the network's own country (from the tz database's
``zone.tab``), one per distinct clock (offsets in January and July): for a network in New
York that is Eastern, Central, Mountain, Arizona, Pacific, Alaska, Hawaii-Aleutian and
Hawaii, with the network's own zone standing for its clock. Any other zone is found by
`search`, which matches city and zone names in English and in the language in use
(CLDR, so "Nueva York" and "New York" both work), accents and case ignored. Labels are
CLDR's too: "Eastern Time (New York)", "hora oriental (Nueva York)". Pure: no I/O but
reading the tz database once.
"""

from __future__ import annotations

import functools
import unicodedata
from datetime import datetime
from importlib import resources
from zoneinfo import ZoneInfo

from babel.dates import get_timezone_location, get_timezone_name

from network.i18n import current

SEARCH_LIMIT = 20


@functools.cache
def _zone_tab() -> tuple[tuple[str, str], ...]:
    """(country code, zone) of every zone people live in, in the tz database's order."""
    rows: list[tuple[str, str]] = []
    text = resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text("utf-8")
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split("\t")
        rows.append((fields[0], fields[2]))
    return tuple(rows)


def _clock(zone: str) -> tuple[float, float]:
    """UTC offsets (seconds) in January and July: zones that share both share a clock."""
    tz = ZoneInfo(zone)

    def offset(month: int) -> float:
        # Any recent year tells the clocks apart.
        delta = datetime(2025, month, 15, 12, tzinfo=tz).utcoffset()
        return delta.total_seconds() if delta is not None else 0.0

    return offset(1), offset(7)


@functools.cache
def likely(network_tz: str) -> tuple[str, ...]:
    """The zones of the network's country, one per clock, the network's own among them."""
    country = next((c for c, z in _zone_tab() if z == network_tz), None)
    if country is None:
        return (network_tz,) if network_tz != "UTC" else ()
    own = _clock(network_tz)
    chosen: dict[tuple[float, float], str] = {}
    for c, zone in _zone_tab():
        if c == country:
            chosen.setdefault(_clock(zone), network_tz if _clock(zone) == own else zone)
    return tuple(sorted(chosen.values(), key=lambda z: tuple(-x for x in _clock(z))))


def label(zone: str) -> str:
    """The zone as a person knows it, in the language in use."""
    if zone == "UTC":
        return "UTC"
    lang = current()
    tz = ZoneInfo(zone)
    try:
        name = get_timezone_name(tz, "long", zone_variant="generic", locale=lang)
        city = get_timezone_location(tz, locale=lang, return_city=True)
    except (LookupError, ValueError):
        return zone.replace("_", " ")
    return name if city in name else f"{name} ({city})"


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("_", " ")


@functools.cache
def _index(lang: str) -> tuple[tuple[str, str], ...]:
    entries: list[tuple[str, str]] = []
    for _country, zone in _zone_tab():
        names = {zone, zone.rsplit("/", 1)[-1]}
        for locale in {"en", lang}:
            try:
                names.add(get_timezone_location(ZoneInfo(zone), locale=locale, return_city=True))
            except (LookupError, ValueError):
                pass
        entries.append((zone, " | ".join(_fold(n) for n in names)))
    entries.append(("UTC", "utc | coordinated universal time"))
    return tuple(entries)


def search(query: str) -> tuple[str, ...]:
    """Zones whose city or name contains ``query`` (at most SEARCH_LIMIT), best first:
    a name that starts with it before one that only contains it."""
    wanted = _fold(" ".join(query.split()))
    if not wanted:
        return ()
    starts: list[str] = []
    contains: list[str] = []
    for zone, haystack in _index(current()):
        names = haystack.split(" | ")
        if any(n.startswith(wanted) or f"/{wanted}" in n for n in names):
            starts.append(zone)
        elif wanted in haystack:
            contains.append(zone)
    return tuple((starts + contains)[:SEARCH_LIMIT])
