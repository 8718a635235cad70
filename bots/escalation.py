"""Need Assistance cases: opening a case for a question the bot cannot answer, the team's
work on it in a thread of the team room, relaying between the team and the asker, the
email to the team, reminders in business hours and auto-closing.

Every change of a case goes through `bots.case_state.apply`; this module carries out the
effects it returns. Exactly-once without a distributed transaction: the effects of an
event are sent first, with transaction ids derived from the triggering event id (a replay
after a crash gets the first event back from the homeserver instead of a copy), and the
new case state is stored afterwards. A per-case lock keeps the team's thread, the asker's
room and the reminder loop from interleaving their read-modify-write of one case.

In the team room a case is a thread whose root is the bot's message about the question.
Inside it, from team members: 👍 on the root or ``!claim`` claims; ``!note TEXT`` stays
internal; ``!close`` closes (the asker is told); anything else is an answer, relayed to the
asker as "Need Assistance team (Name): ...". Anyone else gets a polite refusal and nothing
they write is relayed. The email to the team is sent by `send_pending_emails`, retried by
the bot's periodic check until it goes through (at most `MAX_EMAIL_ATTEMPTS` tries).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any, Protocol

from bots.business_hours import BusinessHours, BusinessHoursError, is_open, next_opening
from bots.case_state import (
    Case,
    CaseState,
    Event,
    NotifyTeam,
    RelayToAsker,
    RelayToTeam,
    Reopened,
    TellActor,
    TellAsker,
    Transition,
    apply,
    auto_close_due,
    reminder_due,
    with_reminder_sent,
)
from bots.messages import (
    Guess,
    MsgType,
    case_ack,
    case_email,
    case_root,
    html_of,
    is_edit,
    message,
    parse_command,
    plain_text,
    relates_to,
    relayed,
    reply_to_of,
    thread_root_of,
    txn,
    vote_of,
)
from network.errors import ConfigError
from network.mail import SmtpSender, build_message, parse_smtp_url
from network.settings import Settings, secret
from network.storage import Storage
from network.storage.cases import CaseProgress, CaseRecord, MessageKind, NewCase

log = logging.getLogger(__name__)

MAX_EMAIL_ATTEMPTS = 5
CLOSED_TEXT = (
    "The Need Assistance team has closed your question. If you need more help, reply to "
    "this message and it will be reopened."
)
REOPENED_TEXT = "The asker wrote again, so this case is open again."
ADDED_TEXT = "I've added this to your open question with the Need Assistance team."
NO_TEAM_TEXT = (
    "No Need Assistance team is set up here, so I cannot pass your question to a person. "
    "Please contact your network coordinator."
)
_THREAD_COMMANDS = {"claim": Event.CLAIM, "close": Event.CLOSE, "note": Event.NOTE}


class Host(Protocol):
    """What cases need from the running bot."""

    settings: Settings
    storage: Storage

    @property
    def user_id(self) -> str: ...

    async def send(self, room_id: str, content: dict[str, Any], txn_id: str) -> str: ...

    async def display_name(self, user_id: str) -> str: ...

    async def room_label(self, room_id: str) -> str: ...

    async def team_room(self) -> str | None: ...


@dataclass(frozen=True)
class Question:
    """A question on its way to the team: who asked, where, and the event that asked it."""

    asker: str
    room_id: str
    event_id: str
    text: str
    is_direct: bool
    thread_root: str | None  # the thread it was asked in, if any


def to_case(rec: CaseRecord) -> Case:
    p = rec.progress
    return Case(
        CaseState(p.state),
        p.claimed_by,
        p.opened_at,
        p.last_activity_at,
        p.answered_at,
        p.closed_at,
        p.reminders_sent,
        p.waiting_since,
    )


def progress_of(c: Case) -> CaseProgress:
    return CaseProgress(
        c.state.value,
        c.claimed_by,
        c.opened_at,
        c.last_activity_at,
        c.answered_at,
        c.closed_at,
        c.reminders_sent,
        c.waiting_since,
    )


def business_hours(settings: Settings) -> BusinessHours:
    a = settings.assistance
    try:
        return BusinessHours.from_config(
            a.timezone or settings.network.timezone, a.hours, a.workdays, a.holidays
        )
    except BusinessHoursError as e:
        raise ConfigError(str(e), path="assistance") from e


class Escalation:
    """The Need Assistance cases of one bot."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.settings = host.settings
        self.storage = host.storage
        a = self.settings.assistance
        self.team = frozenset(a.team_members)
        self.hours = business_hours(self.settings)
        self.email_enabled = bool(a.team_email and self.settings.email.smtp_url)
        self.wake = asyncio.Event()  # set when an email waits to be sent
        self._locks: dict[int, asyncio.Lock] = {}
        self._smtp: SmtpSender | None = None

    def _lock(self, case_id: int) -> asyncio.Lock:
        return self._locks.setdefault(case_id, asyncio.Lock())

    async def close(self) -> None:
        if self._smtp is not None:
            await self._smtp.close()
            self._smtp = None

    async def _record(
        self,
        rec: CaseRecord,
        kind: MessageKind,
        sender: str,
        body: str,
        source: str,
        sent: str | None,
        now: datetime,
    ) -> None:
        await self.storage.add_case_message(
            rec.id,
            kind,
            sender=sender,
            body=body,
            source_event_id=source,
            sent_event_id=sent,
            now=now,
        )

    # -- opening ---------------------------------------------------------------------------

    async def open_case(
        self, q: Question, *, guess: Guess | None, suggest: bool, intro: str, now: datetime
    ) -> None:
        """Hand ``q`` to the team, or add it to the asker's open case in this room.

        ``guess`` is the bot's best page, shown to the team and, when ``suggest``, to the
        asker; ``intro`` starts the message to the asker ("I'm not sure the toolbox covers
        that."). Idempotent per question event.
        """
        existing = await self.storage.active_case_for(q.room_id, q.asker)
        if existing is not None and existing.question_event_id != q.event_id:
            await self.asker_followup(existing, q.event_id, q.asker, q.text, None, now)
            await self.host.send(
                q.room_id, self._reply_to(q, ADDED_TEXT), txn("case-add", q.event_id)
            )
            return
        team_room = await self.host.team_room()
        if team_room is None:
            text = f"{intro} {NO_TEAM_TEXT}".strip()
            await self.host.send(q.room_id, self._reply_to(q, text), txn("case-none", q.event_id))
            return
        name = await self.host.display_name(q.asker)
        where = await self._where(q.room_id, q.is_direct)
        # m.text so the team is notified (notices never are); the team is mentioned.
        root = message(
            *case_root(name, q.asker, where, q.text, guess),
            msgtype="m.text",
            mentions=sorted(self.team),
        )
        root_id = await self.host.send(team_room, root, txn("case-root", q.event_id))
        rec = await self.storage.create_case(
            NewCase(
                q.event_id,
                q.text,
                q.asker,
                q.room_id,
                q.is_direct,
                None if q.is_direct else (q.thread_root or q.event_id),
                guess.slug if guess else None,
                guess.score if guess else None,
                team_room,
                root_id,
                now,
                self.email_enabled,
            )
        )
        away = ""
        if not is_open(self.hours, now):
            opening = next_opening(self.hours, now).astimezone(self.hours.zone)
            away = (
                f"The team is away now; expect an answer after {opening:%A %H:%M} "
                f"({self.hours.tz} time)."
            )
        text, body = case_ack(intro, q.is_direct, away, guess if suggest else None)
        ack = self._reply_to(q, text, body)
        ack_id = await self.host.send(q.room_id, ack, txn("case-ack", q.event_id))
        await self._record(rec, "ack", self.host.user_id, text, q.event_id, ack_id, now)
        if rec.email_status == "pending":
            self.wake.set()

    @staticmethod
    def _reply_to(q: Question, text: str, body: str | None = None) -> dict[str, Any]:
        return message(
            text, body, reply_to=q.event_id, thread_root=q.thread_root, mentions=[q.asker]
        )

    async def _where(self, room_id: str, is_direct: bool) -> str:
        if is_direct:
            return "a direct message with the bot"
        return f"the room {await self.host.room_label(room_id)}"

    # -- the asker's side ------------------------------------------------------------------

    async def case_for_followup(
        self,
        room_id: str,
        sender: str,
        *,
        is_direct: bool,
        thread_root: str | None,
        reply_to: str | None,
    ) -> CaseRecord | None:
        """The case a message of ``sender`` continues: in a direct chat everything while a
        case is open; otherwise (and to reopen) a reply to the case or a message in its
        thread."""
        if is_direct:
            active = await self.storage.active_case_for(room_id, sender)
            if active is not None:
                return active
        for event_id in (thread_root, reply_to):
            if event_id:
                case = await self.storage.case_for_asker_event(room_id, event_id)
                if case is not None and case.asker == sender:
                    return case
        return None

    async def asker_followup(
        self,
        case: CaseRecord,
        event_id: str,
        sender: str,
        text: str,
        html_body: str | None,
        now: datetime,
    ) -> None:
        await self._transition(case, Event.ASKER_FOLLOWUP, sender, event_id, now, text, html_body)

    # -- the team's side -------------------------------------------------------------------

    async def on_team_event(self, ev: Mapping[str, Any], now: datetime) -> bool:
        """Handle an event of the team room; False when it is not about a case (then the
        bot treats it like any other message, e.g. ``!help`` in a thread)."""
        content = ev.get("content")
        if not isinstance(content, Mapping):
            return False
        sender, event_id = str(ev.get("sender", "")), str(ev.get("event_id", ""))
        if ev.get("type") == "m.reaction":
            rel = relates_to(content)
            case = await self.storage.case_by_thread_root(str(rel.get("event_id", "")))
            if case is None or rel.get("rel_type") != "m.annotation":
                return False
            if vote_of(str(rel.get("key", ""))) == "up":
                await self._transition(case, Event.CLAIM, sender, event_id, now)
            return True
        # Clients without threads reply to the root, or to a follow-up the bot relayed.
        root = thread_root_of(content) or reply_to_of(content)
        case = await self.storage.case_by_team_event(root) if root else None
        if case is None or ev.get("type") != "m.room.message":
            return False
        text = plain_text(content)
        if content.get("msgtype") == "m.notice" or is_edit(content) or not text:
            return True
        command = parse_command(text)
        if command is None:
            await self._transition(
                case, Event.ANSWER, sender, event_id, now, text, html_of(content), event_id
            )
        elif command[0] in _THREAD_COMMANDS:
            event = _THREAD_COMMANDS[command[0]]
            await self._transition(case, event, sender, event_id, now, command[1], None, event_id)
        else:
            return False
        return True

    # -- transitions -----------------------------------------------------------------------

    async def _transition(
        self,
        case: CaseRecord,
        event: Event,
        actor: str,
        trigger: str,
        now: datetime,
        text: str = "",
        html_body: str | None = None,
        reply_to: str | None = None,
    ) -> None:
        async with self._lock(case.id):
            rec = await self.storage.case(case.id) or case
            before = to_case(rec)
            result = apply(before, event, actor=actor, now=now, team=self.team)
            await self._carry_out(rec, result, actor, trigger, now, text, html_body, reply_to)
            if event is Event.NOTE and actor in self.team:
                await self._record(rec, "note", actor, text, trigger, None, now)
            closing = before.state is not CaseState.CLOSED
            if event is Event.CLOSE and closing and result.case.state is CaseState.CLOSED:
                await self._tell_asker(rec, CLOSED_TEXT, trigger, now)
            if result.case != before:
                await self.storage.update_case(rec.id, progress_of(result.case))

    async def _carry_out(
        self,
        rec: CaseRecord,
        result: Transition,
        actor: str,
        trigger: str,
        now: datetime,
        text: str,
        html_body: str | None,
        reply_to: str | None,
    ) -> None:
        claimant = [result.case.claimed_by] if result.case.claimed_by else []
        for effect in result.effects:
            if isinstance(effect, RelayToAsker):
                head = f"Need Assistance team ({await self.host.display_name(actor)}):"
                content = self._to_asker(rec, *relayed(head, text, html_body), "m.text")
                sent = await self.host.send(rec.asker_room, content, txn("relay", trigger))
                await self._record(rec, "answer", actor, text, trigger, sent, now)
            elif isinstance(effect, RelayToTeam):
                head = f"{await self.host.display_name(rec.asker)} (the asker) wrote:"
                content = message(
                    *relayed(head, text, html_body),
                    msgtype="m.text",
                    thread_root=rec.thread_root,
                    mentions=claimant,
                )
                sent = await self.host.send(rec.team_room, content, txn("to-team", trigger))
                await self._record(rec, "followup", rec.asker, text, trigger, sent, now)
            elif isinstance(effect, NotifyTeam):
                await self._in_thread(rec, effect.text, txn("notify", trigger))
            elif isinstance(effect, Reopened):
                await self._in_thread(rec, REOPENED_TEXT, txn("reopened", trigger), claimant)
            elif isinstance(effect, TellActor):
                tell = txn("tell", trigger)
                await self._in_thread(rec, effect.text, tell, [actor], reply_to=reply_to)
            elif isinstance(effect, TellAsker):
                await self._tell_asker(rec, effect.text, trigger, now)

    async def _in_thread(
        self,
        rec: CaseRecord,
        text: str,
        txn_id: str,
        mentions: Sequence[str] = (),
        *,
        reply_to: str | None = None,
        notify: bool = False,
    ) -> str:
        content = message(
            text,
            msgtype="m.text" if notify else "m.notice",
            mentions=mentions,
            thread_root=rec.thread_root,
            reply_to=reply_to,
        )
        return await self.host.send(rec.team_room, content, txn_id)

    def _to_asker(
        self, rec: CaseRecord, text: str, body_html: str | None, msgtype: MsgType = "m.notice"
    ) -> dict[str, Any]:
        """A message for the asker: a reply to their question in a direct chat, else in
        the thread of their question."""
        thread = None if rec.asker_is_direct else rec.asker_thread_root
        return message(
            text,
            body_html,
            msgtype=msgtype,
            reply_to=rec.question_event_id,
            thread_root=thread,
            falling_back=True,
            mentions=[rec.asker],
        )

    async def _tell_asker(self, rec: CaseRecord, text: str, trigger: str, now: datetime) -> None:
        content = self._to_asker(rec, text, None, "m.text")
        sent = await self.host.send(rec.asker_room, content, txn("tell-asker", trigger))
        await self._record(rec, "to_asker", self.host.user_id, text, trigger, sent, now)

    # -- time --------------------------------------------------------------------------------

    async def tick(self, now: datetime) -> None:
        """Reminders and auto-closing due at ``now``, then unsent team emails."""
        a = self.settings.assistance
        for listed in await self.storage.active_cases():
            async with self._lock(listed.id):
                rec = await self.storage.case(listed.id)
                if rec is None or rec.state == CaseState.CLOSED.value:
                    continue
                case = to_case(rec)
                reason = reminder_due(
                    case,
                    self.hours,
                    now,
                    unclaimed_after_h=a.remind_unclaimed_after,
                    unanswered_after_h=a.remind_unanswered_after,
                    max_reminders=a.max_reminders,
                )
                if reason is not None:
                    who = [case.claimed_by] if case.claimed_by else sorted(self.team)
                    n = str(case.reminders_sent + 1)
                    key = txn("remind", str(rec.id), case.wait_started_at.isoformat(), n)
                    await self._in_thread(rec, f"⏰ Reminder: {reason}", key, who, notify=True)
                    case = with_reminder_sent(case)
                    await self.storage.update_case(rec.id, progress_of(case))
                if auto_close_due(case, now, a.auto_close_days):
                    bot = self.host.user_id
                    trigger = f"autoclose:{rec.id}:{case.last_activity_at.isoformat()}"
                    result = apply(case, Event.AUTO_CLOSE, actor=bot, now=now, team=self.team)
                    await self._carry_out(rec, result, bot, trigger, now, "", None, None)
                    await self.storage.update_case(rec.id, progress_of(result.case))
        await self.send_pending_emails()

    # -- email -------------------------------------------------------------------------------

    def _sender(self) -> SmtpSender:
        if self._smtp is None:
            target = parse_smtp_url(self.settings.email.smtp_url)
            password_env = target.password_env or self.settings.email.password_env
            password = secret(password_env) if target.username else None
            self._smtp = SmtpSender(target, password=password, max_connections=1, timeout=20)
        return self._smtp

    async def send_pending_emails(self) -> int:
        """Send the team email of every case that still needs one; returns how many went."""
        if not self.email_enabled:
            return 0
        sent = 0
        for rec in await self.storage.cases_needing_email(MAX_EMAIL_ATTEMPTS):
            result = await self._sender().send(await self._email_for(rec))
            if result.ok:
                await self.storage.set_case_email(rec.id, sent=True)
                sent += 1
                continue
            log.warning("email about case %d to the team failed: %s", rec.id, result.detail)
            await self.storage.set_case_email(rec.id, sent=False, error=result.detail)
            if result.permanent or rec.email_attempts + 1 >= MAX_EMAIL_ATTEMPTS:
                await self.storage.give_up_case_email(rec.id, result.detail)
        return sent

    async def _email_for(self, rec: CaseRecord) -> EmailMessage:
        e = self.settings.email
        guess = "none"
        if rec.guess_page and rec.guess_score is not None:
            guess = f"{rec.guess_page} (score {rec.guess_score:.2f})"
        subject, text, body = case_email(
            await self.host.display_name(rec.asker),
            rec.asker,
            await self._where(rec.asker_room, rec.asker_is_direct),
            rec.question,
            guess,
            f"https://matrix.to/#/{rec.team_room}/{rec.thread_root}",
        )
        return build_message(
            sender=e.from_,
            to=self.settings.assistance.team_email,
            subject=subject,
            text=text,
            html=body,
            list_unsubscribe_url=None,
            list_unsubscribe_mailto=None,
            list_id=None,
            message_id_domain=parseaddr(e.from_)[1].rpartition("@")[2] or "libhub.invalid",
            extra_headers={"X-Libhub-Case": str(rec.id)},
        )
