"""Pure scheduling arithmetic for polling feeds, plus dedupe-key disambiguation.

Nothing here reads a clock or a random source: the caller passes `now` and a uniform random
float `rnd` in [0, 1) (e.g. `random.Random().random()`), so every decision is reproducible and
tested with tables. Server hints (Retry-After, Cache-Control max-age, Expires, RSS <ttl>) are
lower bounds on the next check, capped so a misconfigured server cannot silence a feed.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import NamedTuple

__all__ = [
    "KeyEntry",
    "backoff_delay",
    "dedupe_keys",
    "derived_key",
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


class KeyEntry(NamedTuple):
    """What key disambiguation knows of one item: its own key (guid/id, else link, ...),
    its title and link (who it is) and the hash of its title, link and summary."""

    key: str
    title: str
    link: str | None
    content_hash: str


def _same_item(a: KeyEntry, b: KeyEntry) -> bool:
    """Two versions of one item: a publisher's edit changes the text, the title or the link,
    rarely both the title and the link at once; a new item under an old guid differs in both."""
    return a.title == b.title or (a.link is not None and a.link == b.link)


def derived_key(entry: KeyEntry) -> str:
    """The key an item gets when its own key belongs to another item: the suffix comes from
    the item's title and link, not from its position or text, so it stays the same across
    polls, other items coming and going, and edits of its text."""
    who = hashlib.sha256(f"{entry.title}\x1f{entry.link or ''}".encode()).hexdigest()
    return f"{entry.key}#{who[:12]}"


def dedupe_keys(entries: Sequence[KeyEntry], stored: Iterable[KeyEntry] = ()) -> list[str | None]:
    """The key under which to store each item of one feed document, deterministically.

    `entries` are in document order; `stored` are the items already stored for this feed
    under any of the entries' keys or content hashes (their `key` is the stored key). Keys
    must never move from one item to another: the stored item's Matrix post would be edited
    into the other item's text, and the other item would never be posted. So, in this order
    of precedence, each key going to at most one entry:

    1. an entry identical to a stored item (same content hash) keeps that item's key, even if
       its guid changed (gained, lost, swapped): it was delivered already;
    2. an entry whose own key is stored for a version of the same item (same title or same
       link: an edit) gets that key;
    3. an entry whose own key is not stored gets it (the first in document order, if several);
    4. every other entry (its key is stored for a different item, or taken in this document)
       gets `derived_key`, or if that is taken too, the key with its content hash.

    An entry with the same content as an earlier one is the same item listed twice: None
    (the caller drops it).
    """
    result: list[str | None] = [None] * len(entries)
    by_key = {s.key: s for s in stored}
    by_content: dict[str, str] = {}
    for s in sorted(by_key.values(), key=lambda s: s.key):
        by_content.setdefault(s.content_hash, s.key)
    taken: set[str] = set()
    todo: list[int] = []
    contents: set[str] = set()
    for i, entry in enumerate(entries):
        if entry.content_hash not in contents:
            contents.add(entry.content_hash)
            todo.append(i)

    def give(i: int, key: str) -> None:
        result[i] = key
        taken.add(key)

    for i in todo:  # 1. delivered already
        key = by_content.get(entries[i].content_hash)
        if key is not None and key not in taken:
            give(i, key)
    todo = [i for i in todo if result[i] is None]
    for i in todo:  # 2. an edit of a stored item
        entry = entries[i]
        known = by_key.get(entry.key)
        if known is not None and entry.key not in taken and _same_item(known, entry):
            give(i, entry.key)
    todo = [i for i in todo if result[i] is None]
    for i in todo:  # 3. a new key; 4. somebody else's key
        entry = entries[i]
        if entry.key not in by_key and entry.key not in taken:
            give(i, entry.key)
            continue
        for candidate in (
            derived_key(entry),
            f"{entry.key}#{entry.content_hash[:12]}",
            f"{entry.key}#{entry.content_hash}",
        ):
            # A stored derived key has the same title and link: the same item, edited.
            if candidate not in taken:
                give(i, candidate)
                break
    return result
