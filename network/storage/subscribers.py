"""Subscribers, subscribe requests and used single-use link tokens.

Only confirmed people are rows of ``subscribers``; a request waits in
``subscribe_requests`` until its single-use link is used (the token's nonce goes into
``used_tokens`` in the same transaction, so a link works once). Manage-link requests are
recorded there too, so one limit covers every message a stranger could trigger; the
message itself waits in ``personal_mail`` (personal_mail.py) until it is sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from network.storage.base import Database, DuplicateKey, now_iso
from network.storage.subscriber_records import (
    SUB_COLS,
    Claim,
    DigestRun,
    NextDue,
    Preferences,
    QueueEntry,
    Subscriber,
    SubscribeRequest,
    TokenAlreadyUsed,
    iso_or_none,
    prefs_values,
)

__all__ = [
    "Claim",
    "DigestRun",
    "NextDue",
    "Preferences",
    "QueueEntry",
    "SubscribeRequest",
    "Subscriber",
    "SubscriberStore",
    "TokenAlreadyUsed",
]


# A bulk insert's rows per statement: 17 parameters each stays under SQLite's oldest
# limit of 999 parameters a statement.
_BULK_PARAMS = 17
_BULK_ROWS = 999 // _BULK_PARAMS


class SubscriberStore(Database):
    # Counts subscribers leaving (unsubscribed, suspended) through this connection, so the
    # digest sender knows at once that its view of who is subscribed is out of date.
    subscribers_left = 0

    # -- subscribe requests ----------------------------------------------------------------

    async def record_subscribe_request(
        self,
        *,
        address: str,
        address_key: str,
        channel: str,
        prefs: Preferences,
        source: str,
        now: datetime,
        expires_at: datetime,
        limit: int,
        window: timedelta,
        mail: str = "confirm",
        lease_until: datetime | None = None,
    ) -> SubscribeRequest:
        """Store a request; ``sent`` is False when ``limit`` messages already went (or wait
        to go) to this address within ``window`` (the caller then sends nothing).

        Otherwise its message (``mail``: confirm|manage) is queued, leased until
        ``lease_until`` by the caller, who sends it at once.
        """
        async with self.transaction() as conn:
            async with conn.execute(
                "SELECT COUNT(*) FROM subscribe_requests WHERE address_key = ? "
                "AND sent IN (1, 2) AND created_at > ?",
                (address_key, now_iso(now - window)),
            ) as cur:
                row = await cur.fetchone()
            allowed = (int(row[0]) if row else 0) < limit
            cur = await conn.execute(
                f"INSERT INTO subscribe_requests (address, address_key, channel, {SUB_COLS}, "
                "source, created_at, expires_at, sent) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "RETURNING id",
                (
                    address,
                    address_key,
                    channel,
                    *prefs_values(prefs),
                    source,
                    now_iso(now),
                    now_iso(expires_at),
                    2 if allowed else 0,  # waiting to be sent (personal_mail.py)
                ),
            )
            inserted = await cur.fetchone()
            request_id = int(inserted[0])
            if allowed:
                await conn.execute(
                    "INSERT INTO personal_mail (request_id, kind, next_attempt) VALUES (?,?,?)",
                    (request_id, mail, now_iso(lease_until or now)),
                )
            async with conn.execute(
                "SELECT * FROM subscribe_requests WHERE id = ?", (request_id,)
            ) as cur:
                stored = await cur.fetchone()
        return SubscribeRequest.from_row(stored)

    async def subscribe_request(self, request_id: int) -> SubscribeRequest | None:
        row = await self.fetchone("SELECT * FROM subscribe_requests WHERE id = ?", (request_id,))
        return SubscribeRequest.from_row(row) if row else None

    async def confirm_request(
        self,
        request_id: int,
        *,
        nonce: str,
        token_expires: datetime,
        now: datetime,
        next_due: NextDue,
        prefs: Preferences | None = None,
    ) -> tuple[Subscriber, bool]:
        """Use a confirmation link: the subscriber exists and is active afterwards.

        ``prefs`` replaces the request's preferences (topics no longer offered dropped by
        the caller). Returns (subscriber, created). Raises TokenAlreadyUsed or LookupError.
        """
        async with self.transaction() as conn:
            try:
                await conn.execute(
                    "INSERT INTO used_tokens (nonce, purpose, used_at, expires_at) "
                    "VALUES (?, 'confirm', ?, ?)",
                    (nonce, now_iso(now), now_iso(token_expires)),
                )
            except DuplicateKey as e:
                raise TokenAlreadyUsed("this confirmation link was already used") from e
            async with conn.execute(
                "SELECT * FROM subscribe_requests WHERE id = ?", (request_id,)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                raise LookupError("the subscription request no longer exists")
            request = SubscribeRequest.from_row(row)
            wanted = prefs or request.prefs
            await conn.execute(
                "UPDATE subscribe_requests SET confirmed_at = ? WHERE id = ?",
                (now_iso(now), request_id),
            )
            async with conn.execute(
                "SELECT * FROM subscribers WHERE address_key = ?", (request.address_key,)
            ) as cur:
                existing = await cur.fetchone()
            if existing is None:
                sub_id = await _insert_subscriber(
                    conn,
                    request.address,
                    request.address_key,
                    request.channel,
                    wanted,
                    source=request.source,
                    consent=f"confirmed link sent to the address on {now_iso(request.created_at)}",
                    now=now,
                    next_due=next_due(wanted, now),
                )
                created = True
            else:
                sub = Subscriber.from_row(existing)
                sub_id = sub.id
                created = False
                if sub.status != "active":
                    await _reactivate(conn, sub_id, now, from_status=sub.status)
                    await conn.execute(
                        "UPDATE subscribers SET confirmed_at = ?, consent = ? WHERE id = ?",
                        (
                            now_iso(now),
                            f"confirmed link sent to the address on {now_iso(request.created_at)}",
                            sub_id,
                        ),
                    )
                    sub = await _load(conn, sub_id)
                await _apply_prefs(conn, sub, wanted, now, next_due)
            return await _load(conn, sub_id), created

    # -- subscribers -------------------------------------------------------------------------

    async def add_subscriber(
        self,
        *,
        address: str,
        address_key: str,
        channel: str,
        prefs: Preferences,
        source: str,
        consent: str,
        now: datetime,
        next_due: NextDue,
    ) -> tuple[Subscriber, bool]:
        """Add a confirmed subscriber (an import with consent). An address that is known,
        including one that unsubscribed, is left exactly as it is: (existing, False)."""
        async with self.transaction() as conn:
            async with conn.execute(
                "SELECT * FROM subscribers WHERE address_key = ?", (address_key,)
            ) as cur:
                existing = await cur.fetchone()
            if existing is not None:
                return Subscriber.from_row(existing), False
            sub_id = await _insert_subscriber(
                conn,
                address,
                address_key,
                channel,
                prefs,
                source=source,
                consent=consent,
                now=now,
                next_due=next_due(prefs, now),
            )
            return await _load(conn, sub_id), True

    async def add_subscribers(
        self,
        people: Sequence[tuple[str, str, Preferences]],
        *,
        channel: str,
        source: str,
        consent: str,
        now: datetime,
        next_due: NextDue,
    ) -> int:
        """Add many confirmed subscribers at once, each (address, address_key, prefs), as
        `add_subscriber` adds one: multi-row inserts in one transaction, so a large import
        (or a benchmark's setup) is not one round trip per person. Known addresses are
        left as they are; returns how many were added."""
        stamp = now_iso(now)
        row = "(" + ",".join("?" * _BULK_PARAMS) + ")"
        added = 0
        async with self.transaction() as conn:
            # Everyone starts at the current end of the digest queue, as one added alone does.
            async with conn.execute("SELECT COALESCE(MAX(seq), 0) FROM digest_queue") as cur:
                found = await cur.fetchone()
            cursor = int(found[0]) if found else 0
            for start in range(0, len(people), _BULK_ROWS):
                chunk = people[start : start + _BULK_ROWS]
                params: list[Any] = []
                for address, address_key, prefs in chunk:
                    params += (address, address_key, channel, *prefs_values(prefs), source,
                               consent, stamp, stamp, stamp, cursor, stamp,
                               iso_or_none(next_due(prefs, now)))  # fmt: skip
                result = await conn.execute(
                    f"INSERT OR IGNORE INTO subscribers (address, address_key, channel, "
                    f"{SUB_COLS}, source, consent, created_at, confirmed_at, updated_at, "
                    f"queue_cursor, last_period, next_due) VALUES {','.join([row] * len(chunk))}",
                    params,
                )
                added += result.rowcount
        return added

    async def subscriber(self, subscriber_id: int) -> Subscriber | None:
        row = await self.fetchone("SELECT * FROM subscribers WHERE id = ?", (subscriber_id,))
        return Subscriber.from_row(row) if row else None

    async def subscriber_by_key(self, address_key: str) -> Subscriber | None:
        row = await self.fetchone("SELECT * FROM subscribers WHERE address_key = ?", (address_key,))
        return Subscriber.from_row(row) if row else None

    async def subscribers_by_ids(self, ids: Sequence[int]) -> dict[int, Subscriber]:
        out: dict[int, Subscriber] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self.fetchall(f"SELECT * FROM subscribers WHERE id IN ({marks})", chunk)
            out.update((int(r["id"]), Subscriber.from_row(r)) for r in rows)
        return out

    async def list_subscribers(
        self, *, statuses: Sequence[str] = (), frequency: str | None = None
    ) -> list[Subscriber]:
        where: list[str] = ["1 = 1"]
        params: list[str] = []
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params.extend(statuses)
        if frequency:
            where.append("frequency = ?")
            params.append(frequency)
        rows = await self.fetchall(
            f"SELECT * FROM subscribers WHERE {' AND '.join(where)} ORDER BY address_key", params
        )
        return [Subscriber.from_row(r) for r in rows]

    async def subscriber_counts(self) -> dict[str, int]:
        rows = await self.fetchall("SELECT status, COUNT(*) FROM subscribers GROUP BY status")
        counts = {"active": 0, "suspended": 0, "unsubscribed": 0}
        counts.update({str(r[0]): int(r[1]) for r in rows})
        return counts

    async def update_preferences(
        self, subscriber_id: int, prefs: Preferences, *, now: datetime, next_due: NextDue
    ) -> Subscriber:
        """Change what and when; leaving daily/weekly for immediate claims one last digest
        of everything pending, so nothing is lost in the switch."""
        async with self.transaction() as conn:
            sub = await _load(conn, subscriber_id)
            await _apply_prefs(conn, sub, prefs, now, next_due)
            return await _load(conn, subscriber_id)

    async def unsubscribe(self, subscriber_id: int, *, now: datetime) -> bool:
        """Stop everything for this subscriber at once (pending digests are dropped).
        False when they had already unsubscribed."""
        async with self.transaction() as conn:
            cur = await conn.execute(
                "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = ?, "
                "updated_at = ? WHERE id = ? AND status != 'unsubscribed'",
                (now_iso(now), now_iso(now), subscriber_id),
            )
            changed = cur.rowcount > 0
            await conn.execute(
                "UPDATE digest_runs SET status = 'dropped', last_error = 'unsubscribed' "
                "WHERE subscriber_id = ? AND status = 'pending'",
                (subscriber_id,),
            )
        self.subscribers_left += 1
        return changed

    async def resume_subscriber(self, subscriber_id: int, *, now: datetime) -> bool:
        """Lift a bounce suspension (a coordinator fixed the address); the bounce score
        starts again from 0 and mail from now. False unless the subscriber was suspended."""
        async with self.transaction() as conn:
            return await _reactivate(conn, subscriber_id, now, from_status="suspended")

    async def record_bounce(
        self, subscriber_id: int, *, score: float, now: datetime, suspend: bool, error: str
    ) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                "UPDATE subscribers SET bounce_score = ?, last_bounce_at = ?, last_error = ?, "
                "status = CASE WHEN ? AND status = 'active' THEN 'suspended' ELSE status END, "
                "suspended_at = CASE WHEN ? AND status = 'active' THEN ? ELSE suspended_at END "
                "WHERE id = ?",
                (
                    score,
                    now_iso(now),
                    error,
                    suspend,
                    suspend,
                    now_iso(now),
                    subscriber_id,
                ),
            )
            if suspend:
                await conn.execute(
                    "UPDATE digest_runs SET status = 'dropped', last_error = 'suspended' "
                    "WHERE subscriber_id = ? AND status = 'pending'",
                    (subscriber_id,),
                )
        if suspend:
            self.subscribers_left += 1

    async def purge_subscription_records(self, now: datetime, *, keep: timedelta) -> None:
        """Forget expired tokens and old requests (they hold addresses of non-subscribers)."""
        async with self.transaction() as conn:
            await conn.execute("DELETE FROM used_tokens WHERE expires_at < ?", (now_iso(now),))
            await conn.execute(
                "DELETE FROM subscribe_requests WHERE created_at < ? AND expires_at < ?",
                (now_iso(now - keep), now_iso(now)),
            )


async def _load(conn: Any, subscriber_id: int) -> Subscriber:
    async with conn.execute("SELECT * FROM subscribers WHERE id = ?", (subscriber_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        raise LookupError(f"subscriber {subscriber_id} does not exist")
    return Subscriber.from_row(row)


async def _reactivate(conn: Any, subscriber_id: int, now: datetime, *, from_status: str) -> bool:
    """Make a suspended or unsubscribed subscriber active again, starting from now: the
    cursor moves to the end of the queue and the last period to now, so someone coming
    back after months gets what arrives from now on, not everything since they left."""
    stamp = now_iso(now)
    cur = await conn.execute(
        "UPDATE subscribers SET status = 'active', unsubscribed_at = NULL, suspended_at = NULL, "
        "bounce_score = 0, last_bounce_at = NULL, last_error = NULL, updated_at = ?, "
        "last_period = ?, queue_cursor = (SELECT COALESCE(MAX(seq), 0) FROM digest_queue) "
        "WHERE id = ? AND status = ?",
        (stamp, stamp, subscriber_id, from_status),
    )
    return int(cur.rowcount) > 0


async def _insert_subscriber(
    conn: Any,
    address: str,
    address_key: str,
    channel: str,
    prefs: Preferences,
    *,
    source: str,
    consent: str,
    now: datetime,
    next_due: datetime | None,
) -> int:
    stamp = now_iso(now)
    # A new subscriber starts with what arrives from now on, and (last_period = now) their
    # first digest waits for their next scheduled hour.
    cur = await conn.execute(
        f"INSERT INTO subscribers (address, address_key, channel, {SUB_COLS}, source, consent, "
        "created_at, confirmed_at, updated_at, queue_cursor, last_period, next_due) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
        "(SELECT COALESCE(MAX(seq), 0) FROM digest_queue),?,?) RETURNING id",
        (
            address,
            address_key,
            channel,
            *prefs_values(prefs),
            source,
            consent,
            stamp,
            stamp,
            stamp,
            stamp,
            iso_or_none(next_due),
        ),
    )
    inserted = await cur.fetchone()
    return int(inserted[0])


async def _apply_prefs(
    conn: Any, sub: Subscriber, prefs: Preferences, now: datetime, next_due: NextDue
) -> None:
    stamp = now_iso(now)
    if sub.prefs.frequency != "immediate" and prefs.frequency == "immediate":
        # One last digest of what was pending under the old frequency (Mailman's "one
        # last digest"); the runner sends it with the next immediate notices.
        async with conn.execute("SELECT COALESCE(MAX(seq), 0) FROM digest_queue") as cur:
            row = await cur.fetchone()
        upto = int(row[0]) if row else 0
        if upto > sub.queue_cursor:
            await conn.execute(
                "INSERT OR IGNORE INTO digest_runs (subscriber_id, period, kind, frequency, "
                "from_seq, upto_seq, next_attempt, created_at) "
                "VALUES (?, ?, 'digest', ?, ?, ?, ?, ?)",
                (
                    sub.id,
                    f"last:{stamp}",
                    sub.prefs.frequency,
                    sub.queue_cursor,
                    upto,
                    stamp,
                    stamp,
                ),
            )
            await conn.execute(
                "UPDATE subscribers SET queue_cursor = ? WHERE id = ?", (upto, sub.id)
            )
    schedule_changed = (prefs.frequency, prefs.tz, prefs.hour, prefs.weekday) != (
        sub.prefs.frequency,
        sub.prefs.tz,
        sub.prefs.hour,
        sub.prefs.weekday,
    )
    if schedule_changed:
        # The next digest follows the new schedule, counted from now (not a catch-up).
        await conn.execute(
            f"UPDATE subscribers SET ({SUB_COLS}) = (?,?,?,?,?,?), updated_at = ?, "
            "last_period = ?, next_due = ? WHERE id = ?",
            (*prefs_values(prefs), stamp, stamp, iso_or_none(next_due(prefs, now)), sub.id),
        )
    else:
        await conn.execute(
            "UPDATE subscribers SET topics = ?, language = ?, updated_at = ? WHERE id = ?",
            (json.dumps(list(prefs.topics)), prefs.language, stamp, sub.id),
        )
