"""Table-driven tests of the pure scheduling helpers in feeds.schedule."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from feeds.schedule import (
    KeyEntry,
    backoff_delay,
    dedupe_keys,
    derived_key,
    jittered_interval,
    next_check,
    parse_cache_control_max_age,
    parse_http_date,
    parse_retry_after,
)

NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
HOUR = 3600.0


@pytest.mark.parametrize(
    ("interval", "rnd", "fraction", "expected"),
    [
        (3600, 0.0, 0.1, 3240.0),  # lowest: -10 %
        (3600, 0.5, 0.1, 3600.0),  # middle: the configured interval
        (3600, 0.75, 0.1, 3780.0),
        (600, 0.25, 0.2, 540.0),
        (600, 0.9, 0.0, 600.0),  # no jitter
    ],
)
def test_jittered_interval(interval: float, rnd: float, fraction: float, expected: float) -> None:
    assert jittered_interval(interval, rnd, fraction) == pytest.approx(expected)


def test_jitter_keeps_the_mean_and_bounds() -> None:
    rng = random.Random(7)
    values = [jittered_interval(1000, rng.random()) for _ in range(5000)]
    assert 900 <= min(values) and max(values) < 1100
    assert sum(values) / len(values) == pytest.approx(1000, rel=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval_s": 60, "rnd": 1.0}, "rnd"),
        ({"interval_s": 60, "rnd": -0.1}, "rnd"),
        ({"interval_s": 0, "rnd": 0.5}, "interval_s"),
        ({"interval_s": 60, "rnd": 0.5, "jitter_fraction": 1.5}, "jitter_fraction"),
    ],
)
def test_jittered_interval_rejects_bad_input(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        jittered_interval(**kwargs)


@pytest.mark.parametrize(
    ("errors", "rnd", "expected"),
    [
        (0, 0.9, 0.0),  # healthy feed: no backoff
        (1, 0.0, 60.0),  # ceiling 60: always base
        (1, 0.99, 60.0),
        (2, 0.0, 60.0),  # ceiling 120: drawn from [60, 120]
        (2, 0.5, 90.0),
        (3, 0.5, 150.0),  # ceiling 240
        (5, 0.5, 510.0),  # ceiling 960
        (9, 0.5, 7710.0),  # ceiling 15360
        (10, 0.5, 10830.0),  # ceiling capped at 6 h = 21600
        (10_000, 0.0, 60.0),  # huge counts neither overflow nor exceed the cap
        (10_000, 0.999999, pytest.approx(21600, abs=0.1)),
    ],
)
def test_backoff_delay(errors: int, rnd: float, expected: float) -> None:
    assert backoff_delay(errors, rnd=rnd) == pytest.approx(expected)


def test_backoff_grows_and_respects_custom_limits() -> None:
    ceilings = [backoff_delay(n, base_s=5, cap_s=24 * 3600, rnd=0.999999) for n in range(1, 20)]
    assert ceilings == sorted(ceilings)
    assert ceilings[-1] == pytest.approx(24 * 3600, rel=1e-5)
    with pytest.raises(ValueError, match="base_s"):
        backoff_delay(1, base_s=100, cap_s=10, rnd=0.5)
    with pytest.raises(ValueError, match="consecutive_errors"):
        backoff_delay(-1, rnd=0.5)


@pytest.mark.parametrize(
    ("hints", "expected_delay"),
    [
        ({}, HOUR),  # rnd=0.5: exactly the interval
        ({"retry_after_s": 120}, HOUR),  # a shorter hint never shortens our interval
        ({"retry_after_s": 2 * HOUR}, 2 * HOUR),
        ({"cache_max_age_s": 3 * HOUR}, 3 * HOUR),
        ({"ttl_s": 5 * HOUR}, 5 * HOUR),
        ({"expires": NOW + timedelta(hours=4)}, 4 * HOUR),
        ({"expires": NOW - timedelta(hours=4)}, HOUR),  # already expired: no hint
        ({"ttl_s": 2 * HOUR, "cache_max_age_s": 6 * HOUR, "retry_after_s": 3 * HOUR}, 6 * HOUR),
        ({"retry_after_s": 30 * 24 * HOUR}, 24 * HOUR),  # capped at a day
        ({"ttl_s": 30 * HOUR, "cap_s": 12 * HOUR}, 12 * HOUR),
        ({"retry_after_s": 0}, HOUR),
    ],
)
def test_next_check_uses_hints_as_lower_bounds(
    hints: dict[str, object], expected_delay: float
) -> None:
    when = next_check(NOW, interval_s=HOUR, rnd=0.5, **hints)  # type: ignore[arg-type]
    assert (when - NOW).total_seconds() == pytest.approx(expected_delay)


def test_next_check_cap_does_not_shorten_own_interval() -> None:
    when = next_check(NOW, interval_s=48 * HOUR, rnd=0.5, ttl_s=60, cap_s=24 * HOUR)
    assert when - NOW == timedelta(hours=48)


def test_next_check_needs_aware_times() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_check(datetime(2025, 1, 1), interval_s=60, rnd=0.5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Tue, 04 Mar 2025 12:05:00 GMT", 300.0),  # IMF-fixdate
        ("Tuesday, 04-Mar-25 12:10:00 GMT", 600.0),  # RFC 850
        ("Tue Mar  4 12:01:00 2025", 60.0),  # asctime
        ("Tue, 04 Mar 2025 11:00:00 GMT", 0.0),  # in the past
        ("-5", None),
        ("soon", None),
        ("1.5", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("max-age=300", 300.0),
        ("public, max-age=3600, must-revalidate", 3600.0),
        ('Max-Age="60"', 60.0),
        ("no-cache, max-age=600", None),
        ("max-age=600, no-store", None),
        ("private", None),
        ("max-age=soon", None),
        ("s-maxage=100", None),
    ],
)
def test_parse_cache_control_max_age(value: str | None, expected: float | None) -> None:
    assert parse_cache_control_max_age(value) == expected


def test_parse_http_date() -> None:
    assert parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT") == datetime(
        2015, 10, 21, 7, 28, tzinfo=UTC
    )
    assert parse_http_date("0") is None
    assert parse_http_date(None) is None


def e(key: str, name: str, text: str = "", *, title: str | None = None) -> KeyEntry:
    """An item called `name` (its title, unless given, and its link) under its own `key`."""
    return KeyEntry(
        key, name if title is None else title, f"http://x.example/{name}", f"{name}:{text}"
    )


def d(key: str, name: str, *, title: str | None = None) -> str:
    return derived_key(e(key, name, title=title))


@pytest.mark.parametrize(
    ("entries", "stored", "expected"),
    [
        ([e("a", "A"), e("b", "B")], [], ["a", "b"]),
        # Same guid in one document, nothing stored: the first keeps it.
        ([e("g", "A"), e("g", "B")], [], ["g", d("g", "B")]),
        ([e("g", "A"), e("x", "X"), e("g", "B")], [], ["g", "x", d("g", "B")]),
        # Same item listed twice: dropped, whatever its guid says.
        ([e("g", "A"), e("g", "A")], [], ["g", None]),
        ([e("g", "A"), e("h", "A")], [], ["g", None]),
        # A reused guid, newest first: the stored item keeps its key, the newcomer is new.
        ([e("g", "NEW"), e("g", "OLD")], [e("g", "OLD")], [d("g", "NEW"), "g"]),
        # ... and when the old item has left the document.
        ([e("g", "NEW")], [e("g", "OLD")], [d("g", "NEW")]),
        # An edit of the stored item's text, or its title, or its link, keeps the key.
        ([e("g", "A", "v2")], [e("g", "A", "v1")], ["g"]),
        ([e("g", "A", title="A, corrected")], [e("g", "A")], ["g"]),
        ([KeyEntry("g", "A", "http://x.example/moved", "m")], [e("g", "A")], ["g"]),
        # Two edits of one stored item in one document: the first is the edit.
        ([e("g", "A", "v2"), e("g", "A", "v3")], [e("g", "A", "v1")], ["g", d("g", "A")]),
        # Guids swapped, gained, lost: an item already delivered keeps its stored key.
        ([e("b", "A"), e("a", "B")], [e("a", "A"), e("b", "B")], ["a", "b"]),
        ([e("http://x.example/A", "A")], [e("guid-1", "A")], ["guid-1"]),
        ([e("guid-1", "A")], [e("http://x.example/A", "A")], ["http://x.example/A"]),
        # A newcomer taking the guid of an item already derived-keyed.
        ([e("g", "C"), e("g", "A"), e("g", "B")], [e("g", "A"), KeyEntry(d("g", "B"), "B", "http://x.example/B", "B:")],
         [d("g", "C"), "g", d("g", "B")]),
        ([], [], []),
    ],
)  # fmt: skip
def test_dedupe_keys(
    entries: list[KeyEntry], stored: list[KeyEntry], expected: list[str | None]
) -> None:
    assert dedupe_keys(entries, stored) == expected


def test_derived_key_does_not_depend_on_position_or_text() -> None:
    first = dedupe_keys([e("g", "A"), e("g", "B"), e("g", "C")])
    reordered = dedupe_keys([e("g", "A"), e("g", "C", "edited"), e("g", "B")])
    assert first[1] == reordered[2] == d("g", "B")
    assert first[2] == reordered[1] == d("g", "C")
