"""Need Assistance cases (``cases``) and the messages of each case (``case_messages``):
the question, the team's thread, the state of the case, the team email, and what was
relayed between the team and the asker.

The case state columns mirror `bots.cases.state.Case` but this module does not import
`bots/` (storage stays below the bot): the bot converts `CaseProgress` to and from its own
state type. Every write that must be exactly-once is keyed by a Matrix event id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from network.storage.base import Database, from_iso, now_iso

MessageKind = Literal["ack", "answer", "note", "followup", "to_asker"]


def _iso(value: datetime | None) -> str | None:
    return now_iso(value) if value is not None else None


def _dt(value: str | None) -> datetime:
    parsed = from_iso(value)
    if parsed is None:
        raise ValueError("a required timestamp column is empty")
    return parsed


@dataclass(frozen=True)
class CaseProgress:
    """The state-machine part of a case (see `bots.cases.state.Case`)."""

    state: str
    claimed_by: str | None
    opened_at: datetime
    last_activity_at: datetime
    answered_at: datetime | None = None
    closed_at: datetime | None = None
    reminders_sent: int = 0
    waiting_since: datetime | None = None


@dataclass(frozen=True)
class NewCase:
    question_event_id: str
    question: str
    asker: str
    asker_room: str
    asker_is_direct: bool
    asker_thread_root: str | None
    guess_page: str | None
    guess_score: float | None
    team_room: str
    thread_root: str
    opened_at: datetime
    email: bool


@dataclass(frozen=True)
class CaseRecord:
    id: int
    question_event_id: str
    question: str
    asker: str
    asker_room: str
    asker_is_direct: bool
    asker_thread_root: str | None
    guess_page: str | None
    guess_score: float | None
    team_room: str
    thread_root: str
    progress: CaseProgress
    email_status: str
    email_attempts: int
    email_error: str | None

    @property
    def state(self) -> str:
        return self.progress.state

    @classmethod
    def from_row(cls, row: Any) -> CaseRecord:
        return cls(
            id=int(row["id"]),
            question_event_id=row["question_event_id"],
            question=row["question"],
            asker=row["asker"],
            asker_room=row["asker_room"],
            asker_is_direct=bool(row["asker_is_direct"]),
            asker_thread_root=row["asker_thread_root"],
            guess_page=row["guess_page"],
            guess_score=row["guess_score"],
            team_room=row["team_room"],
            thread_root=row["thread_root"],
            progress=CaseProgress(
                state=row["state"],
                claimed_by=row["claimed_by"],
                opened_at=_dt(row["opened_at"]),
                last_activity_at=_dt(row["last_activity_at"]),
                answered_at=from_iso(row["answered_at"]),
                closed_at=from_iso(row["closed_at"]),
                reminders_sent=int(row["reminders_sent"]),
                waiting_since=from_iso(row["waiting_since"]),
            ),
            email_status=row["email_status"],
            email_attempts=int(row["email_attempts"]),
            email_error=row["email_error"],
        )


@dataclass(frozen=True)
class CaseMessage:
    id: int
    case_id: int
    kind: str
    sender: str
    body: str
    source_event_id: str
    sent_event_id: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> CaseMessage:
        return cls(
            id=int(row["id"]),
            case_id=int(row["case_id"]),
            kind=row["kind"],
            sender=row["sender"],
            body=row["body"],
            source_event_id=row["source_event_id"],
            sent_event_id=row["sent_event_id"],
            created_at=_dt(row["created_at"]),
        )


@dataclass(frozen=True)
class KbCandidate:
    """A case a person answered: the question and the team's answers, for a new KB page."""

    case: CaseRecord
    answers: tuple[CaseMessage, ...]


class CaseStore(Database):
    """The ``cases`` and ``case_messages`` tables."""

    # -- cases -------------------------------------------------------------------------

    async def create_case(self, new: NewCase) -> CaseRecord:
        """Open a case for a question; opening the same question again returns the first."""
        p = new.opened_at
        await self.execute(
            "INSERT OR IGNORE INTO cases (question_event_id, question, asker, asker_room, "
            "asker_is_direct, asker_thread_root, guess_page, guess_score, team_room, "
            "thread_root, state, opened_at, last_activity_at, email_status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?)",
            (
                new.question_event_id,
                new.question,
                new.asker,
                new.asker_room,
                int(new.asker_is_direct),
                new.asker_thread_root,
                new.guess_page,
                new.guess_score,
                new.team_room,
                new.thread_root,
                now_iso(p),
                now_iso(p),
                "pending" if new.email else "none",
            ),
        )
        case = await self.case_by_question(new.question_event_id)
        assert case is not None
        return case

    async def _case_where(self, where: str, params: Sequence[Any]) -> CaseRecord | None:
        row = await self.fetchone(f"SELECT * FROM cases WHERE {where} LIMIT 1", params)
        return CaseRecord.from_row(row) if row else None

    async def case(self, case_id: int) -> CaseRecord | None:
        return await self._case_where("id = ?", (case_id,))

    async def case_by_question(self, event_id: str) -> CaseRecord | None:
        return await self._case_where("question_event_id = ?", (event_id,))

    async def case_by_thread_root(self, event_id: str) -> CaseRecord | None:
        return await self._case_where("thread_root = ?", (event_id,))

    async def case_by_team_event(self, event_id: str) -> CaseRecord | None:
        """The case whose thread root, or a follow-up the bot relayed, is ``event_id``."""
        found = await self.case_by_thread_root(event_id)
        if found is not None:
            return found
        row = await self.fetchone(
            "SELECT case_id FROM case_messages WHERE sent_event_id = ? AND kind = 'followup'",
            (event_id,),
        )
        return await self.case(int(row["case_id"])) if row else None

    async def active_case_for(self, room_id: str, asker: str) -> CaseRecord | None:
        """The asker's newest case from this room that is not closed."""
        return await self._case_where(
            "asker_room = ? AND asker = ? AND state != 'closed' ORDER BY id DESC",
            (room_id, asker),
        )

    async def case_for_asker_event(self, room_id: str, event_id: str) -> CaseRecord | None:
        """The case an event in the asker's room belongs to: its question, the thread of
        its question, or a message the bot sent there for the case."""
        found = await self._case_where(
            "asker_room = ? AND (question_event_id = ? OR asker_thread_root = ?) ORDER BY id DESC",
            (room_id, event_id, event_id),
        )
        if found is not None:
            return found
        row = await self.fetchone(
            "SELECT case_id FROM case_messages WHERE sent_event_id = ? LIMIT 1", (event_id,)
        )
        if row is None:
            return None
        found = await self.case(int(row["case_id"]))
        return found if found is not None and found.asker_room == room_id else None

    async def active_cases(self) -> list[CaseRecord]:
        rows = await self.fetchall("SELECT * FROM cases WHERE state != 'closed' ORDER BY id")
        return [CaseRecord.from_row(r) for r in rows]

    async def cases_needing_email(self, max_attempts: int) -> list[CaseRecord]:
        rows = await self.fetchall(
            "SELECT * FROM cases WHERE email_status = 'pending' AND email_attempts < ? ORDER BY id",
            (max_attempts,),
        )
        return [CaseRecord.from_row(r) for r in rows]

    async def update_case(self, case_id: int, progress: CaseProgress) -> None:
        p = progress
        await self.execute(
            "UPDATE cases SET state = ?, claimed_by = ?, opened_at = ?, last_activity_at = ?, "
            "answered_at = ?, closed_at = ?, reminders_sent = ?, waiting_since = ? WHERE id = ?",
            (
                p.state,
                p.claimed_by,
                now_iso(p.opened_at),
                now_iso(p.last_activity_at),
                _iso(p.answered_at),
                _iso(p.closed_at),
                p.reminders_sent,
                _iso(p.waiting_since),
                case_id,
            ),
        )

    async def set_case_email(self, case_id: int, *, sent: bool, error: str | None = None) -> None:
        """Record one email attempt: sent, or failed with ``error`` (retried later)."""
        await self.execute(
            "UPDATE cases SET email_status = ?, email_attempts = email_attempts + 1, "
            "email_error = ? WHERE id = ?",
            ("sent" if sent else "pending", error, case_id),
        )

    async def give_up_case_email(self, case_id: int, error: str) -> None:
        await self.execute(
            "UPDATE cases SET email_status = 'failed', email_error = ? WHERE id = ?",
            (error, case_id),
        )

    # -- case messages -----------------------------------------------------------------

    async def add_case_message(
        self,
        case_id: int,
        kind: MessageKind,
        *,
        sender: str,
        body: str,
        source_event_id: str,
        sent_event_id: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Record one case message; the same (source event, kind) is recorded once."""
        changed = await self.execute(
            "INSERT INTO case_messages (case_id, kind, sender, body, source_event_id, "
            "sent_event_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (source_event_id, kind) DO UPDATE SET "
            "sent_event_id = COALESCE(case_messages.sent_event_id, excluded.sent_event_id)",
            (case_id, kind, sender, body, source_event_id, sent_event_id, now_iso(now)),
        )
        return changed > 0

    async def case_messages(self, case_id: int) -> list[CaseMessage]:
        rows = await self.fetchall(
            "SELECT * FROM case_messages WHERE case_id = ? ORDER BY id", (case_id,)
        )
        return [CaseMessage.from_row(r) for r in rows]

    async def kb_candidates(self) -> list[KbCandidate]:
        """Cases a person answered, oldest first, with the team's answers."""
        rows = await self.fetchall(
            "SELECT * FROM cases WHERE id IN "
            "(SELECT case_id FROM case_messages WHERE kind = 'answer') ORDER BY id"
        )
        out: list[KbCandidate] = []
        for row in rows:
            case = CaseRecord.from_row(row)
            answers = [m for m in await self.case_messages(case.id) if m.kind == "answer"]
            out.append(KbCandidate(case, tuple(answers)))
        return out

    async def case_counts(self) -> dict[str, int]:
        rows = await self.fetchall("SELECT state, COUNT(*) AS n FROM cases GROUP BY state")
        counts = {"open": 0, "claimed": 0, "answered": 0, "closed": 0}
        counts.update({str(r["state"]): int(r["n"]) for r in rows})
        return counts
