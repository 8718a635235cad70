"""Apprise channels (Mastodon, Bluesky, ntfy, webhooks, ...): one URL at a time, off the loop.

apprise is synchronous, so every notify runs in a worker thread behind a semaphore.
Each URL of a channel is its own outbox row, so one failing target is retried alone.
`serve_url` runs one URL's turn of the outbox.
Social networks cap the length of a post: the text is shortened, never the link.
Mastodon allows 500 characters counted as grapheme clusters, every URL counting as 23;
Bluesky allows 300 grapheme clusters. Bulk email does not go through here (see
network/mail/pool.py): apprise's mailto plugin sleeps 5.5 s between messages.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import apprise

from network.errors import DeliveryError
from network.route_templates import RouteTemplate
from network.routing.render import channel_text
from network.storage import Item, OutboxRow, Storage

log = logging.getLogger(__name__)

MASTODON_URL_WEIGHT = 23  # Mastodon counts every URL as this many characters
_URL = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class PostLimit:
    """A network's post length: ``limit`` grapheme clusters, URLs weighted when set."""

    limit: int
    url_weight: int | None = None


_LIMITS: dict[str, PostLimit] = {
    "mastodon": PostLimit(500, MASTODON_URL_WEIGHT),
    "mastodons": PostLimit(500, MASTODON_URL_WEIGHT),
    "toot": PostLimit(500, MASTODON_URL_WEIGHT),
    "toots": PostLimit(500, MASTODON_URL_WEIGHT),
    "bluesky": PostLimit(300),
    "bsky": PostLimit(300),
}


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


@functools.lru_cache(maxsize=256)
def redact(url: str) -> str:
    """A channel URL fit for a log line or a status page: scheme and host, with apprise's
    own masking of whatever part is the secret (a Telegram bot token is the "host")."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(not a URL)"
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    # A URL apprise cannot read is never sent anywhere: its host helps to find the typo.
    shown = plugin.url(privacy=True) if plugin else rest  # type: ignore[no-untyped-call]
    masked = str(shown).partition("://")[2] if plugin else rest
    # Paths and queries (chat ids, ntfy topics, webhook paths) can be the secret too.
    host = masked.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/…" if host else f"{scheme}://…"


def post_limit(url: str) -> PostLimit | None:
    return _LIMITS.get(scheme_of(url))


# -- grapheme clusters (the common cases of Unicode UAX #29, without a dependency) ----------


def _extends(cp: int, ch: str) -> bool:
    """Joins the character before it: marks, ZWJ, variation selectors, skin tones, tags."""
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc")
        or cp == 0x200D
        or 0xFE00 <= cp <= 0xFE0F
        or 0xE0100 <= cp <= 0xE01EF
        or 0x1F3FB <= cp <= 0x1F3FF
        or 0xE0020 <= cp <= 0xE007F
    )


def _hangul_l(cp: int) -> bool:
    return 0x1100 <= cp <= 0x115F or 0xA960 <= cp <= 0xA97C


def _hangul_vt(cp: int) -> bool:
    return 0x1160 <= cp <= 0x11FF or 0xD7B0 <= cp <= 0xD7FB


def _hangul(cp: int) -> bool:
    return _hangul_l(cp) or _hangul_vt(cp) or 0xAC00 <= cp <= 0xD7A3


def graphemes(text: str) -> list[str]:
    """``text`` split into user-perceived characters."""
    out: list[str] = []
    prev = -1
    after_zwj = False
    regional_open = False
    for ch in text:
        cp = ord(ch)
        regional = 0x1F1E6 <= cp <= 0x1F1FF
        joins = bool(out) and (
            (prev == 0x0D and cp == 0x0A)
            or (_extends(cp, ch) and prev not in (0x0A, 0x0D))
            or after_zwj
            or (regional and regional_open)
            or (_hangul(prev) and (_hangul_vt(cp) or (_hangul_l(prev) and _hangul(cp))))
        )
        if joins:
            out[-1] += ch
            # A flag is exactly two regional letters: the third starts a new flag.
            regional_open = False if regional else regional_open
        else:
            out.append(ch)
            regional_open = regional
        after_zwj = cp == 0x200D
        prev = cp
    return out


def grapheme_len(text: str) -> int:
    return len(graphemes(text))


def post_length(text: str, limit: PostLimit) -> int:
    """``text``'s length as the network counts it."""
    if limit.url_weight is not None:
        text = _URL.sub("x" * limit.url_weight, text)
    return grapheme_len(text)


def fit_graphemes(text: str, limit: int, measure: Callable[[str], int] = grapheme_len) -> str:
    """The longest prefix of ``text`` (cut at a word, "…" added) measuring at most ``limit``."""
    if measure(text) <= limit:
        return text
    clusters = graphemes(text)
    lo, hi = 0, len(clusters)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure("".join(clusters[:mid])) <= limit - 1:
            lo = mid
        else:
            hi = mid - 1
    cut = "".join(clusters[:lo])
    # A word boundary near the end reads better than half a word.
    if " " in cut[int(len(cut) * 0.6) :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip() + "…"


def fit_post(text: str, link: str, limit: PostLimit) -> str:
    """``text`` within ``limit``: when too long the prose is shortened and the link, wherever
    the template put it, moves whole to the end. Text that fits is returned unchanged."""

    def measure(s: str) -> int:
        return post_length(s, limit)

    if measure(text) <= limit.limit:
        return text
    if not link or link not in text:
        return fit_graphemes(text, limit.limit, measure)
    prose = re.sub(r"[ \t]{2,}", " ", text.replace(link, ""))
    prose = re.sub(r"[ \t]+\n", "\n", prose).strip()
    prose = re.sub(r"\n{3,}", "\n\n", prose)
    tail = f"\n\n{link}"
    room = limit.limit - measure(tail)
    if room <= 1:
        return link  # a link longer than the whole post: the link is what matters
    return fit_graphemes(prose, room, measure) + tail


class ChannelSender:
    """Sends items to apprise URLs in threads, at most ``parallelism`` at once."""

    def __init__(self, *, parallelism: int = 4) -> None:
        self._gate = asyncio.Semaphore(parallelism)

    async def send_item(
        self,
        url: str,
        item: Item,
        *,
        feed_title: str,
        feed_link: str | None = None,
        template: RouteTemplate | None = None,
        zone: ZoneInfo | None = None,
    ) -> None:
        title, body = channel_text(
            item, feed_title=feed_title, feed_link=feed_link, template=template, zone=zone
        )
        limit = post_limit(url)
        if limit is not None:
            body = fit_post(body, item.link or "", limit)
            title = ""  # these services have no title: it would eat into the limit
        await self.send(url, title=title, body=body)

    async def send(self, url: str, *, title: str, body: str) -> None:
        async with self._gate:
            await asyncio.to_thread(_notify, url, title, body)


async def serve_url(
    storage: Storage,
    rows: Sequence[OutboxRow],
    send: Callable[[OutboxRow], Awaitable[bool]],
    *,
    retry_in: Callable[[OutboxRow], float],
    clock: Callable[[], datetime],
    deadline: float,
    max_attempts: int,
) -> tuple[int, int]:
    """One URL's turn: send its rows in order, each result written at once (the target
    does not deduplicate a resend). ``send`` returns False when the item is gone. Returns
    (sent, failed). After a failure the URL's other rows wait as long, untried."""
    sent = failed = 0
    loop = asyncio.get_running_loop()
    for i, row in enumerate(rows):
        if loop.time() > deadline:
            left = [r.id for r in rows[i:]]
            await storage.release(left, next_attempt=clock(), untried=left)
            break
        try:
            if not await send(row):
                failed += 1
                await storage.mark_failed(row.id, error="the item no longer exists")
                continue
        except DeliveryError as e:
            rest = [r.id for r in rows[i + 1 :]]
            if not e.transient:
                # An invalid URL fails every message to it: report them all now.
                log.error(
                    "giving up on %d message(s) to %s: %s", 1 + len(rest), redact(row.target), e
                )
                await storage.mark_failed_many([row.id, *rest], error=str(e))
                return sent, failed + 1 + len(rest)
            delay = retry_in(row)
            retry_at = clock() + timedelta(seconds=delay)
            if row.attempts + 1 >= max_attempts:
                failed += 1
                await storage.mark_failed(row.id, error=f"{e} (gave up after {max_attempts} tries)")
            else:
                await storage.mark_retry(row.id, error=str(e), next_attempt=retry_at)
            await storage.release(rest, next_attempt=retry_at, untried=rest)
            break
        await storage.mark_sent(row.id, event_id=None, now=clock())
        sent += 1
    return sent, failed


def _notify(url: str, title: str, body: str) -> None:
    client = apprise.Apprise()
    if not client.add(url):
        raise DeliveryError(
            f"{redact(url)} is not a valid apprise URL: check the channel's urls", transient=False
        )
    try:
        ok = client.notify(body=body, title=title)
    except Exception as e:  # apprise plugins raise anything; all of it is a failed send
        raise DeliveryError(f"{redact(url)}: {e.__class__.__name__}: {e}") from e
    if not ok:
        raise DeliveryError(f"{redact(url)} did not accept the message; will retry")
