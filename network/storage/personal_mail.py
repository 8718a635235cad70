"""The queue of personal messages (confirmations, manage links): leasing, and what a send did.

A row is created with its subscribe request (subscribers.py) already leased by the one who
asked, who sends it at once; when that fails it waits here and the digest runner tries it
again (network/subscriptions/personal.py). The request's ``sent`` follows the message: 2
while it waits, 1 once sent, 0 when given up, so only messages that went out or may still
go out count against the per-address limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from network.storage.base import Database, from_iso, now_iso
from network.storage.subscriber_records import SubscribeRequest

SENT, WAITING, GIVEN_UP = 1, 2, 0  # values of subscribe_requests.sent


@dataclass(frozen=True)
class QueuedMail:
    """One confirmation or manage link to send, with the request it answers."""

    kind: str  # confirm|manage
    attempts: int
    request: SubscribeRequest


class PersonalMailStore(Database):
    async def lease_personal_mail(
        self, now: datetime, *, limit: int, lease: timedelta
    ) -> list[QueuedMail]:
        """Take up to ``limit`` due messages; nobody else takes them until ``lease`` ends."""
        async with self.transaction() as conn:
            async with conn.execute(
                "SELECT m.kind, m.attempts, r.* FROM personal_mail m "
                "JOIN subscribe_requests r ON r.id = m.request_id "
                "WHERE m.status = 'pending' AND m.next_attempt <= ? ORDER BY m.next_attempt "
                f"LIMIT ?{self.skip_locked('m')}",
                (now_iso(now), limit),
            ) as cur:
                rows = await cur.fetchall()
            mail = [QueuedMail(r["kind"], int(r["attempts"]), SubscribeRequest.from_row(r))
                    for r in rows]  # fmt: skip
            for m in mail:
                await conn.execute(
                    "UPDATE personal_mail SET next_attempt = ? WHERE request_id = ?",
                    (now_iso(now + lease), m.request.id),
                )
        return mail

    async def personal_mail_sent(self, request_id: int, *, now: datetime) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                "UPDATE personal_mail SET status = 'sent', sent_at = ?, last_error = NULL "
                "WHERE request_id = ?",
                (now_iso(now), request_id),
            )
            await conn.execute(
                "UPDATE subscribe_requests SET sent = ? WHERE id = ?", (SENT, request_id)
            )

    async def personal_mail_retry(
        self, request_id: int, *, error: str, next_attempt: datetime, counts: bool
    ) -> None:
        """Try again at ``next_attempt``; ``counts``: this failure uses up an attempt."""
        await self.execute(
            "UPDATE personal_mail SET last_error = ?, next_attempt = ?, "
            "attempts = attempts + ? WHERE request_id = ? AND status = 'pending'",
            (error, now_iso(next_attempt), int(counts), request_id),
        )

    async def personal_mail_given_up(self, request_id: int, *, error: str) -> None:
        """Not sent, and never will be: it no longer counts against the address's limit."""
        async with self.transaction() as conn:
            await conn.execute(
                "UPDATE personal_mail SET status = 'failed', last_error = ? WHERE request_id = ?",
                (error, request_id),
            )
            await conn.execute(
                "UPDATE subscribe_requests SET sent = ? WHERE id = ?", (GIVEN_UP, request_id)
            )

    async def personal_mail_counts(self) -> dict[str, int]:
        rows = await self.fetchall("SELECT status, COUNT(*) FROM personal_mail GROUP BY status")
        counts = {"pending": 0, "sent": 0, "failed": 0}
        counts.update({str(r[0]): int(r[1]) for r in rows})
        return counts

    async def next_personal_mail(self) -> datetime | None:
        row = await self.fetchone(
            "SELECT MIN(next_attempt) FROM personal_mail WHERE status = 'pending'"
        )
        return from_iso(row[0]) if row and row[0] else None
