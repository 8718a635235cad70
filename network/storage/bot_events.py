"""The assistance bot's own bookkeeping: the rooms it has seen, its durable event inbox
(every event is queued before it is handled and moved to ``processed_events`` once done),
its answers to questions and the feedback on them.

Every write that must be exactly-once is keyed by a Matrix event id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from network.storage.base import Database, from_iso, now_iso

# bot_rooms also has an ``encryption_warned`` column from when the bot could not read
# encrypted rooms and warned once; it is no longer read or written (dropping a column
# means rebuilding the table in SQLite, not worth a migration for one unused integer).
RoomFlag = Literal["greeted"]
_ROOM_FLAGS = ("greeted",)


def _dt(value: str | None) -> datetime:
    parsed = from_iso(value)
    if parsed is None:
        raise ValueError("a required timestamp column is empty")
    return parsed


@dataclass(frozen=True)
class BotRoom:
    room_id: str
    joined_ts: int | None
    greeted: bool


@dataclass(frozen=True)
class InboxEvent:
    seq: int
    event_id: str
    room_id: str
    event: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class BotAnswer:
    """One reply of the bot to a question."""

    event_id: str
    room_id: str
    question_event_id: str
    asker: str
    question: str
    page: str | None
    score: float
    escalated: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> BotAnswer:
        return cls(
            event_id=row["event_id"],
            room_id=row["room_id"],
            question_event_id=row["question_event_id"],
            asker=row["asker"],
            question=row["question"],
            page=row["page"],
            score=float(row["score"]),
            escalated=bool(row["escalated"]),
            created_at=_dt(row["created_at"]),
        )


class BotEventStore(Database):
    """The ``bot_rooms``, ``bot_inbox``, ``processed_events``, ``bot_answers`` and
    ``answer_feedback`` tables."""

    # -- rooms -------------------------------------------------------------------------

    async def bot_room(self, room_id: str) -> BotRoom | None:
        row = await self.fetchone("SELECT * FROM bot_rooms WHERE room_id = ?", (room_id,))
        if row is None:
            return None
        return BotRoom(
            room_id=row["room_id"],
            joined_ts=row["joined_ts"],
            greeted=bool(row["greeted"]),
        )

    async def set_bot_room_joined(self, room_id: str, joined_ts: int) -> None:
        """Remember when the bot first joined; a later join (after leaving) keeps the first."""
        await self.execute(
            "INSERT INTO bot_rooms (room_id, joined_ts) VALUES (?, ?) ON CONFLICT (room_id) "
            "DO UPDATE SET joined_ts = COALESCE(bot_rooms.joined_ts, excluded.joined_ts)",
            (room_id, joined_ts),
        )

    async def set_room_flag(self, room_id: str, flag: RoomFlag) -> None:
        if flag not in _ROOM_FLAGS:
            raise ValueError(f"unknown room flag {flag!r}")
        await self.execute(
            f"INSERT INTO bot_rooms (room_id, {flag}) VALUES (?, 1) "
            f"ON CONFLICT (room_id) DO UPDATE SET {flag} = 1",
            (room_id,),
        )

    # -- inbox -------------------------------------------------------------------------

    async def inbox_add(
        self, event_id: str, room_id: str, event: dict[str, Any], now: datetime | None = None
    ) -> bool:
        """Queue an event durably; False when it is already queued."""
        changed = await self.execute(
            "INSERT OR IGNORE INTO bot_inbox (event_id, room_id, event_json, received_at) "
            "VALUES (?, ?, ?, ?)",
            (event_id, room_id, json.dumps(event), now_iso(now)),
        )
        return changed > 0

    async def inbox_pending(self, limit: int = 1000) -> list[InboxEvent]:
        rows = await self.fetchall("SELECT * FROM bot_inbox ORDER BY seq LIMIT ?", (limit,))
        return [
            InboxEvent(
                seq=int(r["seq"]),
                event_id=r["event_id"],
                room_id=r["room_id"],
                event=json.loads(r["event_json"]),
                attempts=int(r["attempts"]),
            )
            for r in rows
        ]

    async def inbox_failed(self, event_id: str, error: str) -> int:
        """Count a failed attempt; returns the attempts so far."""
        await self.execute(
            "UPDATE bot_inbox SET attempts = attempts + 1, last_error = ? WHERE event_id = ?",
            (error[:500], event_id),
        )
        row = await self.fetchone("SELECT attempts FROM bot_inbox WHERE event_id = ?", (event_id,))
        return int(row["attempts"]) if row else 0

    async def inbox_done(
        self,
        event_id: str,
        room_id: str,
        *,
        answer: BotAnswer | None = None,
        now: datetime | None = None,
    ) -> None:
        """Finish an event: out of the inbox, into processed_events, with its answer if any."""
        async with self.transaction() as conn:
            await conn.execute("DELETE FROM bot_inbox WHERE event_id = ?", (event_id,))
            await conn.execute(
                "INSERT OR IGNORE INTO processed_events (event_id, room_id, processed_at) "
                "VALUES (?, ?, ?)",
                (event_id, room_id, now_iso(now)),
            )
            if answer is not None:
                await conn.execute(*_answer_insert(answer))

    # -- answers and feedback ----------------------------------------------------------

    async def record_answer(self, answer: BotAnswer) -> None:
        await self.execute(*_answer_insert(answer))

    async def mark_answer_escalated(self, event_id: str) -> None:
        """The question of this answer went to the Need Assistance team afterwards."""
        await self.execute("UPDATE bot_answers SET escalated = 1 WHERE event_id = ?", (event_id,))

    async def answer_by_event(self, event_id: str) -> BotAnswer | None:
        row = await self.fetchone("SELECT * FROM bot_answers WHERE event_id = ?", (event_id,))
        return BotAnswer.from_row(row) if row else None

    async def answer_to_question(self, question_event_id: str) -> BotAnswer | None:
        row = await self.fetchone(
            "SELECT * FROM bot_answers WHERE question_event_id = ? ORDER BY created_at LIMIT 1",
            (question_event_id,),
        )
        return BotAnswer.from_row(row) if row else None

    async def last_answer_for(self, room_id: str, asker: str) -> BotAnswer | None:
        row = await self.fetchone(
            "SELECT * FROM bot_answers WHERE room_id = ? AND asker = ? "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (room_id, asker),
        )
        return BotAnswer.from_row(row) if row else None

    async def record_feedback(
        self,
        reaction_event_id: str,
        answer_event_id: str,
        sender: str,
        vote: Literal["up", "down"],
        now: datetime | None = None,
    ) -> bool:
        changed = await self.execute(
            "INSERT OR IGNORE INTO answer_feedback "
            "(reaction_event_id, answer_event_id, sender, vote, created_at) VALUES (?, ?, ?, ?, ?)",
            (reaction_event_id, answer_event_id, sender, vote, now_iso(now)),
        )
        return changed > 0

    async def feedback_for(self, answer_event_id: str) -> list[tuple[str, str]]:
        rows = await self.fetchall(
            "SELECT sender, vote FROM answer_feedback WHERE answer_event_id = ? ORDER BY rowid",
            (answer_event_id,),
        )
        return [(str(r["sender"]), str(r["vote"])) for r in rows]

    async def feedback_counts(self) -> dict[str, int]:
        rows = await self.fetchall("SELECT vote, COUNT(*) AS n FROM answer_feedback GROUP BY vote")
        counts = {"up": 0, "down": 0}
        counts.update({str(r["vote"]): int(r["n"]) for r in rows})
        return counts


def _answer_insert(a: BotAnswer) -> tuple[str, tuple[Any, ...]]:
    return (
        "INSERT OR IGNORE INTO bot_answers (event_id, room_id, question_event_id, asker, "
        "question, page, score, escalated, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            a.event_id,
            a.room_id,
            a.question_event_id,
            a.asker,
            a.question,
            a.page,
            a.score,
            int(a.escalated),
            now_iso(a.created_at),
        ),
    )
