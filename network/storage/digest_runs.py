"""The digest queue and digest runs: claiming, leasing and recording what was sent.

A digest is *claimed* before it is sent: one ``digest_runs`` row per (subscriber, period)
freezes the queue range it covers and moves the subscriber's cursor past it in the same
transaction (compare-and-set on the cursor, so two planners never hand out one range
twice). Sending only reads the row; a sender that dies leaves it pending, due again when
its lease runs out (see network/subscriptions/digests/runner.py for why that is the right failure).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from network.storage.base import Database, from_iso, now_iso
from network.storage.engine import Conn
from network.storage.subscriber_records import (
    Claim,
    DigestRun,
    QueueEntry,
    Subscriber,
    iso_or_none,
)

# Items waiting for a coordinator (or rejected) are not queued for subscribers; approving
# one queues it then (network/storage/moderation.py).
NOT_HELD = "id NOT IN (SELECT item_id FROM outbox WHERE status IN ('held', 'rejected'))"
# Claims per statement (5 and 8 parameters each: far below both databases' limits).
CLAIM_STEP = 500
_INT, _TEXT = "CAST(? AS INTEGER)", "CAST(? AS TEXT)"
_CLAIM_ROW = f"({_INT}, {_INT}, {_TEXT}, {_TEXT}, {_INT})"
_RUN_ROW = "(?,?,?,?,?,?,?,?)"


async def _claim_step(conn: Conn, claims: Sequence[Claim], stamp: str) -> int:
    """Claims of distinct subscribers in two statements: move the cursors that are still
    where planning read them, then create the runs of the subscribers moved."""
    params: list[object] = []
    for c in claims:
        params += [c.subscriber_id, c.upto_seq, c.last_period, iso_or_none(c.next_due), c.from_seq]
    # VALUES columns are column1… in both databases; the casts type PostgreSQL's parameters.
    moved = await (
        await conn.execute(
            "UPDATE subscribers SET queue_cursor = v.column2, "
            "last_period = COALESCE(v.column3, subscribers.last_period), "
            "next_due = COALESCE(v.column4, subscribers.next_due) "
            f"FROM (VALUES {','.join([_CLAIM_ROW] * len(claims))}) AS v "
            "WHERE subscribers.id = v.column1 AND subscribers.queue_cursor = v.column5 "
            "AND subscribers.status = 'active' RETURNING subscribers.id",
            params,
        )
    ).fetchall()
    ids = {int(r[0]) for r in moved}
    runs = [c for c in claims if c.subscriber_id in ids and c.period is not None]
    if not runs:
        return 0
    values: list[object] = []
    for c in runs:
        values += [c.subscriber_id, c.period, c.kind, c.frequency, c.from_seq, c.upto_seq,
                   stamp, stamp]  # fmt: skip
    cur = await conn.execute(
        "INSERT OR IGNORE INTO digest_runs (subscriber_id, period, kind, frequency, "
        f"from_seq, upto_seq, next_attempt, created_at) VALUES {','.join([_RUN_ROW] * len(runs))}",
        values,
    )
    return int(cur.rowcount)


class DigestRunStore(Database):
    # -- the digest queue ------------------------------------------------------------------

    async def queue_new_items(self, feed_id: str, keys: Sequence[str], first_seen: datetime) -> int:
        """Queue the items of one poll that were new at ``first_seen`` (not edits, not
        items seen before): an item first stored by an earlier poll is never queued again."""
        if not keys:
            return 0
        marks = ",".join("?" * len(keys))
        stamp = now_iso(first_seen)
        return await self.execute(
            "INSERT OR IGNORE INTO digest_queue (item_id, queued_at) "
            "SELECT id, CAST(? AS TEXT) FROM items WHERE feed_id = ? AND first_seen = ? "
            f"AND key IN ({marks}) AND {NOT_HELD} "
            "ORDER BY id",
            (stamp, feed_id, stamp, *keys),
        )

    async def unknown_item_keys(self, feed_id: str, keys: Sequence[str]) -> set[str]:
        """The keys of ``feed_id`` not stored yet (asked just before a poll stores them)."""
        known: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self.fetchall(
                f"SELECT key FROM items WHERE feed_id = ? AND key IN ({marks})", (feed_id, *chunk)
            )
            known.update(str(r[0]) for r in rows)
        return set(keys) - known

    async def queue_items(self, item_ids: Sequence[int], now: datetime) -> int:
        """Queue items stored by other paths (cohort updates, webhooks) for subscribers."""
        async with self.transaction() as conn:
            count = 0
            for item_id in item_ids:
                cur = await conn.execute(
                    "INSERT OR IGNORE INTO digest_queue (item_id, queued_at) "
                    f"SELECT id, ? FROM items WHERE id = ? AND {NOT_HELD}",
                    (now_iso(now), item_id),
                )
                count += int(cur.rowcount)
        return count

    async def queue_max_seq(self) -> int:
        row = await self.fetchone("SELECT COALESCE(MAX(seq), 0) FROM digest_queue")
        return int(row[0]) if row else 0

    async def queue_entries(self, after: int, upto: int) -> list[QueueEntry]:
        rows = await self.fetchall(
            "SELECT q.seq, q.item_id, i.feed_id, i.kind FROM digest_queue q "
            "JOIN items i ON i.id = q.item_id WHERE q.seq > ? AND q.seq <= ? ORDER BY q.seq",
            (after, upto),
        )
        return [QueueEntry(int(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in rows]

    # -- planning and claiming runs ---------------------------------------------------------

    async def digest_candidates(self, now: datetime, max_seq: int) -> list[Subscriber]:
        """Active subscribers whose digest may be due, or who have unseen queue entries."""
        rows = await self.fetchall(
            "SELECT * FROM subscribers WHERE status = 'active' AND ("
            "(frequency != 'immediate' AND next_due <= ?) "
            "OR (frequency = 'immediate' AND queue_cursor < ?)) ORDER BY id",
            (now_iso(now), max_seq),
        )
        return [Subscriber.from_row(r) for r in rows]

    async def digest_candidates_page(
        self, now: datetime, max_seq: int, *, after_id: int, limit: int
    ) -> list[Subscriber]:
        """`digest_candidates` one page at a time, by id (keyset: ``id > after_id``), so a
        round over 100,000 subscribers never holds them all."""
        rows = await self.fetchall(
            "SELECT * FROM subscribers WHERE status = 'active' AND ("
            "(frequency != 'immediate' AND next_due <= ?) "
            "OR (frequency = 'immediate' AND queue_cursor < ?)) AND id > ? ORDER BY id LIMIT ?",
            (now_iso(now), max_seq, after_id, limit),
        )
        return [Subscriber.from_row(r) for r in rows]

    async def active_subscribers_page(
        self, *, frequency: str | None, after_id: int, limit: int
    ) -> list[Subscriber]:
        """Active subscribers (of ``frequency``) one page at a time, by id (keyset)."""
        where = "status = 'active' AND id > ?" + (" AND frequency = ?" if frequency else "")
        params: tuple[object, ...] = (after_id, frequency) if frequency else (after_id,)
        rows = await self.fetchall(
            f"SELECT * FROM subscribers WHERE {where} ORDER BY id LIMIT ?", (*params, limit)
        )
        return [Subscriber.from_row(r) for r in rows]

    async def claim_runs(self, claims: Sequence[Claim], *, now: datetime) -> int:
        """Apply claims in one transaction; returns how many runs were created.

        Set-based, not one statement per subscriber: each step compare-and-sets the cursors
        of many subscribers at once (``UPDATE … FROM (VALUES …) RETURNING id``) and inserts
        the runs of those it moved in one statement, so a page costs a few round trips on
        PostgreSQL, not two per subscriber. A subscriber's chained claims (one notice per
        item) go in successive steps, in order, as the compare-and-set needs."""
        created = 0
        stamp = now_iso(now)
        steps: list[list[Claim]] = []
        seen: dict[int, int] = {}  # subscriber id -> how many of their claims are placed
        for c in claims:
            n = seen.get(c.subscriber_id, 0)
            seen[c.subscriber_id] = n + 1
            if n == len(steps):
                steps.append([])
            steps[n].append(c)
        async with self.transaction() as conn:
            for step in steps:
                for start in range(0, len(step), CLAIM_STEP):
                    created += await _claim_step(conn, step[start : start + CLAIM_STEP], stamp)
        return created

    # -- sending runs ------------------------------------------------------------------------

    async def lease_runs(
        self, now: datetime, *, limit: int, lease: timedelta, kinds: Sequence[str] = ()
    ) -> list[DigestRun]:
        """Take up to ``limit`` due pending runs; nobody else takes them until ``lease``
        runs out (a crashed sender's runs become due again then)."""
        kind_sql = f"AND kind IN ({','.join('?' * len(kinds))})" if kinds else ""
        async with self.transaction() as conn:
            async with conn.execute(
                f"SELECT * FROM digest_runs WHERE status = 'pending' AND next_attempt <= ? "
                f"{kind_sql} ORDER BY id LIMIT ?{self.skip_locked()}",
                (now_iso(now), *kinds, limit),
            ) as cur:
                runs = [DigestRun.from_row(r) for r in await cur.fetchall()]
            if runs:
                marks = ",".join("?" * len(runs))
                await conn.execute(
                    f"UPDATE digest_runs SET next_attempt = ?, attempts = attempts + 1 "
                    f"WHERE id IN ({marks})",
                    (now_iso(now + lease), *(r.id for r in runs)),
                )
        return runs

    async def renew_leases(self, run_ids: Sequence[int], *, until: datetime) -> None:
        """Extend the lease of runs still being sent (the sender's heartbeat): a live
        sender keeps them; a dead one stops renewing and they are due at ``until``."""
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start : start + 500]
            await self.execute(
                f"UPDATE digest_runs SET next_attempt = ? WHERE status = 'pending' "
                f"AND id IN ({','.join('?' * len(chunk))})",
                (now_iso(until), *chunk),
            )

    async def run_sent(self, run: DigestRun, *, now: datetime) -> None:
        """Mark one run sent: a single statement (one commit), made the moment the server
        accepted the message, so a crash can repeat at most the messages in flight."""
        # Only a pending run: one dropped meanwhile (they unsubscribed while it was being
        # sent) stays dropped.
        await self.execute(
            "UPDATE digest_runs SET status = 'sent', sent_at = ?, last_error = NULL "
            "WHERE id = ? AND status = 'pending'",
            (now_iso(now), run.id),
        )

    async def note_sent(self, subscriber_ids: Sequence[int]) -> None:
        """Copy the latest send time of these subscribers' runs onto them (for the list and
        status views); done once per batch, not once per message."""
        for start in range(0, len(subscriber_ids), 500):
            chunk = subscriber_ids[start : start + 500]
            await self.execute(
                "UPDATE subscribers SET last_error = NULL, last_sent_at = (SELECT MAX(sent_at) "
                "FROM digest_runs r WHERE r.subscriber_id = subscribers.id "
                f"AND r.status = 'sent') WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )

    async def run_retry(self, run: DigestRun, *, error: str, next_attempt: datetime) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                "UPDATE digest_runs SET last_error = ?, next_attempt = ? "
                "WHERE id = ? AND status = 'pending'",
                (error, now_iso(next_attempt), run.id),
            )
            await conn.execute(
                "UPDATE subscribers SET last_error = ? WHERE id = ?", (error, run.subscriber_id)
            )

    async def run_postponed(self, run: DigestRun, *, error: str, next_attempt: datetime) -> None:
        """Try ``run`` again at ``next_attempt`` without counting this attempt (the relay
        could not be used: not the run's fault)."""
        await self.execute(
            "UPDATE digest_runs SET last_error = ?, next_attempt = ?, "
            "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END "
            "WHERE id = ? AND status = 'pending'",
            (error, now_iso(next_attempt), run.id),
        )

    async def run_finished(self, run: DigestRun, *, status: str, error: str) -> None:
        """End a run without sending it: ``failed`` (gave up) or ``dropped`` (not wanted)."""
        if status not in ("failed", "dropped"):
            raise ValueError(f"a run ends as failed or dropped, not {status!r}")
        async with self.transaction() as conn:
            cur = await conn.execute(
                "UPDATE digest_runs SET status = ?, last_error = ? "
                "WHERE id = ? AND status = 'pending'",
                (status, error, run.id),
            )
            if status == "failed" and cur.rowcount > 0:
                await conn.execute(
                    "UPDATE subscribers SET last_error = ? WHERE id = ?",
                    (error, run.subscriber_id),
                )

    async def release_runs(self, run_ids: Sequence[int], *, now: datetime) -> None:
        """Give back leased runs that were not tried: due again at ``now`` (a clean stop
        gives the current time; a relay outage a later one)."""
        if not run_ids:
            return
        marks = ",".join("?" * len(run_ids))
        await self.execute(
            "UPDATE digest_runs SET next_attempt = ?, "
            "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END "
            f"WHERE status = 'pending' AND id IN ({marks})",
            (now_iso(now), *run_ids),
        )

    async def runs_for(self, subscriber_id: int) -> list[DigestRun]:
        rows = await self.fetchall(
            "SELECT * FROM digest_runs WHERE subscriber_id = ? ORDER BY id", (subscriber_id,)
        )
        return [DigestRun.from_row(r) for r in rows]

    async def run_counts(self) -> dict[str, int]:
        rows = await self.fetchall("SELECT status, COUNT(*) FROM digest_runs GROUP BY status")
        counts = {"pending": 0, "sent": 0, "failed": 0, "dropped": 0}
        counts.update({str(r[0]): int(r[1]) for r in rows})
        return counts

    async def next_digest_work(self) -> datetime | None:
        """When the runner has something to do next: a scheduled digest or a retry (of a
        digest, or of a confirmation or manage link)."""
        row = await self.fetchone(
            "SELECT MIN(t) FROM ("
            "SELECT MIN(next_due) AS t FROM subscribers WHERE status = 'active' "
            "AND frequency != 'immediate' "
            "UNION ALL SELECT MIN(next_attempt) FROM digest_runs WHERE status = 'pending' "
            # Confirmations and manage links waiting for a retry (personal_mail.py).
            "UNION ALL SELECT MIN(next_attempt) FROM personal_mail WHERE status = 'pending') AS due"
        )
        return from_iso(row[0]) if row and row[0] else None
