"""Pure scheduling arithmetic for polling feeds, plus dedupe-key disambiguation.

Nothing here reads a clock or a random source: the caller passes `now` and a uniform random
float `rnd` in [0, 1) (e.g. `random.Random().random()`), so every decision is reproducible and
tested with tables. Server hints (Retry-After, Cache-Control max-age, Expires, RSS <ttl>) are
lower bounds on the next check, capped so a misconfigured server cannot silence a feed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

__all__ = [
    "backoff_delay",
    "dedupe_keys",
    "jittered_interval",
    "next_check",
    "parse_cache_control_max_age",
    "parse_http_date",
    "parse_retry_after",
]


def _check_rnd(rnd: float) -> None:
    if not 0.0 <= rnd < 1.0:
        raise ValueError(f"rnd must be a uniform random number in [0, 1), got {rnd!r}")


def jittered_interval(interval_s: float, rnd: float, jitter_fraction: float = 0.1) -> float:
    """`interval_s` spread uniformly over ±`jitter_fraction` of itself.

    Symmetric jitter keeps the mean polling rate equal to the configured one while feeds that
    were added together drift apart instead of hitting hosts in lockstep.
    """
    _check_rnd(rnd)
    if interval_s <= 0:
        raise ValueError(f"interval_s must be positive, got {interval_s!r}")
    if not 0.0 <= jitter_fraction < 1.0:
        raise ValueError(f"jitter_fraction must be in [0, 1), got {jitter_fraction!r}")
    return interval_s * (1.0 + jitter_fraction * (2.0 * rnd - 1.0))


def backoff_delay(
    consecutive_errors: int, *, base_s: float = 60, cap_s: float = 6 * 3600, rnd: float
) -> float:
    """Delay before retrying a feed that failed `consecutive_errors` times in a row.

    The ceiling doubles per error (base, 2·base, 4·base, ...) up to `cap_s`; the delay is drawn
    uniformly from [base_s, ceiling] ("full jitter" with a floor, so a failing server is never
    retried sooner than `base_s`). Zero errors means no backoff. The caller keeps retrying at
    the cap rather than giving up: a dead feed stays visible instead of silently stopping.
    """
    _check_rnd(rnd)
    if consecutive_errors < 0:
        raise ValueError(f"consecutive_errors must be >= 0, got {consecutive_errors}")
    if base_s <= 0 or cap_s < base_s:
        raise ValueError(f"need 0 < base_s <= cap_s, got base_s={base_s}, cap_s={cap_s}")
    if consecutive_errors == 0:
        return 0.0
    # Bound the exponent so huge error counts cannot overflow the float.
    exponent = min(consecutive_errors - 1, 64)
    ceiling = min(cap_s, base_s * math.pow(2.0, exponent))
    return base_s + rnd * (ceiling - base_s)


# A server's hint (Retry-After, max-age, Expires, <ttl>) never delays a check longer.
HINT_CAP_S = 24 * 3600


def next_check(
    now: datetime,
    *,
    interval_s: float,
    rnd: float,
    retry_after_s: float | None = None,
    cache_max_age_s: float | None = None,
    expires: datetime | None = None,
    ttl_s: float | None = None,
    cap_s: float = HINT_CAP_S,
) -> datetime:
    """When to poll a feed next: the jittered own interval, pushed later by server hints.

    Each hint (Retry-After, Cache-Control max-age, Expires, RSS <ttl>) is a lower bound, so the
    delay is max(jittered interval, hints), where the hints are first capped at `cap_s`: a
    server asking for a week of silence still gets checked daily. The cap never shortens the
    feed's own configured interval.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    delay = jittered_interval(interval_s, rnd)
    hints = [h for h in (retry_after_s, cache_max_age_s, ttl_s) if h is not None and h > 0]
    if expires is not None:
        if expires.tzinfo is None:
            raise ValueError("expires must be timezone-aware")
        until = (expires - now).total_seconds()
        if until > 0:
            hints.append(until)
    if hints:
        delay = max(delay, min(max(hints), cap_s))
    return now + timedelta(seconds=delay)


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP-date (RFC 9110: IMF-fixdate, RFC 850 or asctime) as aware UTC, or None."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        # HTTP dates are always GMT; email.utils leaves "-0000" naive.
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # a date at the very end of year 9999 with a negative offset
        return None


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None.

    A date in the past means "now" (0.0); garbage means no hint.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if re.fullmatch(r"\d+", text):
        return float(int(text))
    when = parse_http_date(text)
    if when is None:
        return None
    return max(0.0, (when - now).total_seconds())


def parse_cache_control_max_age(value: str | None) -> float | None:
    """`max-age` seconds from a Cache-Control header, or None.

    None when the header is missing, malformed, or says `no-cache`/`no-store` (the server
    asks to be revalidated, so its max-age is no reason to wait).
    """
    if not value:
        return None
    max_age: float | None = None
    for directive in value.split(","):
        name, _, arg = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-cache", "no-store"):
            return None
        if name == "max-age":
            arg = arg.strip().strip('"')
            if not re.fullmatch(r"\d+", arg):
                return None
            max_age = float(int(arg))
    return max_age


def dedupe_keys(entries: Iterable[tuple[str, str]]) -> list[str | None]:
    """Make item keys unique within one feed document, deterministically.

    `entries` are (key, content_hash) pairs in document order. The first item with a key keeps
    it unchanged, so an item already stored under its guid keeps matching when a publisher
    starts reusing that guid. Each later item with the same key but different content becomes
    `key + "#" + content_hash[:12]`: the suffix comes from the item's own title, link and
    summary rather than its position, so inserting or removing other items never moves a key
    from one item to another. A later item with the same key *and* the same content is the same
    item listed twice and gets None (the caller drops it).
    """
    seen: set[str] = set()
    seen_content: set[tuple[str, str]] = set()
    result: list[str | None] = []
    for key, content_hash in entries:
        if (key, content_hash) in seen_content:
            result.append(None)
            continue
        seen_content.add((key, content_hash))
        candidate = key
        if candidate in seen:
            candidate = f"{key}#{content_hash[:12]}"
            # A hash-prefix collision is astronomically unlikely; fall back to the full hash.
            if candidate in seen:
                candidate = f"{key}#{content_hash}"
        seen.add(candidate)
        result.append(candidate)
    return result
