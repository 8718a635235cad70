"""Planning digests: which subscribers are due now, as claims of queue ranges.

For every active subscriber whose digest is due (their hour, in their time zone; see
schedule.py) or who gets immediate notices and has unseen queue entries,
planning *claims* a run: one ``digest_runs`` row per (subscriber, period key) holding the
queue range it covers, written in the same transaction that moves the subscriber's cursor
past that range. The unique key makes a period's digest one row however often this runs; a
subscriber with nothing new for their topics only has the cursor moved (no empty digests).
After downtime the schedule gives one period key, the latest, so a missed week is one
digest, not seven. This module computes the claims; `DigestRunner.plan` writes them.

Subscribers are read in pages (keyset pagination by id, `PAGE_SIZE` at a time) and each
page's claims are written before the next page is read, so memory stays flat however long
the list grows; queue entries are read once per round (they are items, not subscribers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from network.storage import Storage, from_iso, now_iso
from network.storage.subscribers import Claim, QueueEntry, Subscriber
from network.subscriptions.schedule import due, next_send
from network.subscriptions.topics import TopicCatalog, schedule_of


@dataclass(frozen=True)
class PlannedRun:
    """What planning found for one subscriber (also what a dry run prints)."""

    subscriber: Subscriber
    period: str
    items: int


PAGE_SIZE = 500


async def due_claim_pages(
    storage: Storage,
    catalog: TopicCatalog,
    now: datetime,
    *,
    frequency: str | None,
    force: bool,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[tuple[list[Claim], list[PlannedRun]]]:
    """The claims to write for ``now`` (cursor moves included) and the runs they create,
    one page of subscribers at a time (write each page's claims before asking for the next:
    the pages follow ids, so writing them changes nothing ahead)."""
    max_seq = await storage.queue_max_seq()
    stamp = now_iso(now)
    after_id = 0
    entries: list[QueueEntry] = []
    loaded_from: int | None = None  # the lowest cursor `entries` covers
    matching: dict[tuple[tuple[str, ...], int], list[QueueEntry]] = {}
    while True:
        if force:
            page = await storage.active_subscribers_page(
                frequency=frequency, after_id=after_id, limit=page_size
            )
        else:
            page = await storage.digest_candidates_page(
                now, max_seq, after_id=after_id, limit=page_size
            )
        if not page:
            return
        after_id = page[-1].id
        candidates = [c for c in page if not frequency or c.prefs.frequency == frequency]
        if not candidates:
            continue
        lowest = min(c.queue_cursor for c in candidates)
        if loaded_from is None or lowest < loaded_from:
            entries = await storage.queue_entries(lowest, max_seq)
            loaded_from = lowest
            matching.clear()
        yield _page_claims(candidates, entries, matching, catalog, now, stamp, max_seq, force)


async def due_claims(
    storage: Storage, catalog: TopicCatalog, now: datetime, *, frequency: str | None, force: bool
) -> tuple[list[Claim], list[PlannedRun]]:
    """All pages of `due_claim_pages` at once (a dry run, which writes nothing)."""
    claims: list[Claim] = []
    planned: list[PlannedRun] = []
    async for page_claims, page_planned in due_claim_pages(
        storage, catalog, now, frequency=frequency, force=force
    ):
        claims += page_claims
        planned += page_planned
    return claims, planned


def _page_claims(
    candidates: list[Subscriber],
    entries: list[QueueEntry],
    matching: dict[tuple[tuple[str, ...], int], list[QueueEntry]],
    catalog: TopicCatalog,
    now: datetime,
    stamp: str,
    max_seq: int,
    force: bool,
) -> tuple[list[Claim], list[PlannedRun]]:
    claims: list[Claim] = []
    planned: list[PlannedRun] = []
    for sub in candidates:
        key = (sub.prefs.topics, sub.queue_cursor)
        if key not in matching:
            matching[key] = [
                e
                for e in entries
                if e.seq > sub.queue_cursor and catalog.matches(sub.prefs.topics, e.feed_id, e.kind)
            ]
        pending = matching[key]
        freq = sub.prefs.frequency
        if freq == "immediate":
            claims.extend(immediate_claims(sub, pending, max_seq))
            if pending:
                planned.append(PlannedRun(sub, f"immediate:{max_seq}", len(pending)))
            continue
        schedule = schedule_of(sub.prefs)
        if force:
            period, last_period, following = f"manual:{stamp}", None, None
        else:
            key_at = due(schedule, now, from_iso(sub.last_period))
            following = next_send(schedule, now)
            if key_at is None:
                # The prefilter was stale (e.g. an old next_due): only fix it.
                claims.append(
                    Claim(sub.id, sub.queue_cursor, sub.queue_cursor, None, "digest", freq,
                          None, following)
                )  # fmt: skip
                continue
            period = last_period = now_iso(key_at)
        claims.append(
            Claim(sub.id, sub.queue_cursor, max_seq, period if pending else None, "digest",
                  freq, last_period, following)
        )  # fmt: skip
        if pending:
            planned.append(PlannedRun(sub, period, len(pending)))
    return claims, planned


def immediate_claims(sub: Subscriber, pending: list[QueueEntry], max_seq: int) -> list[Claim]:
    """Email gets one notice per poll batch; other channels one message per item."""
    if sub.channel == "email" or not pending:
        period = f"immediate:{max_seq}" if pending else None
        return [Claim(sub.id, sub.queue_cursor, max_seq, period, "immediate", "immediate",
                      None, None)]  # fmt: skip
    claims, cursor = [], sub.queue_cursor
    for entry in pending:
        claims.append(Claim(sub.id, cursor, entry.seq, f"immediate:{entry.seq}", "immediate",
                            "immediate", None, None))  # fmt: skip
        cursor = entry.seq
    if cursor < max_seq:
        claims.append(Claim(sub.id, cursor, max_seq, None, "immediate", "immediate", None, None))
    return claims
