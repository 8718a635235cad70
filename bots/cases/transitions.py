"""Carrying out a change of a Need Assistance case, the base every part of `bots.cases.escalation`
builds on: what cases need from the bot (`Host`), the conversions between stored records and
`bots.cases.state.Case`, and `CaseTransitions`, which applies an event and sends its effects.

Every change of a case goes through `bots.cases.state.apply`; this module carries out the
effects it returns. Exactly-once without a distributed transaction: the effects of an
event are sent first, with transaction ids derived from the triggering event id (a replay
after a crash gets the first event back from the homeserver instead of a copy), and the
new case state is stored afterwards. A per-case lock keeps the team's thread, the asker's
room and the reminder loop from interleaving their read-modify-write of one case.

Relays fit in one Matrix event (`bots.messages.relay_message`): a message too long is
shortened and its writer is told how much the other side sees; one the homeserver refuses
all the same is not lost silently: its writer is told it could not be passed on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from bots.cases.hours import BusinessHours, BusinessHoursError
from bots.cases.state import (
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
)
from bots.kb.language import detect
from bots.messages import (
    ASKER_NOT_SENT,
    ASKER_SHORTENED,
    TEAM_NOT_SENT,
    TEAM_SHORTENED,
    MsgType,
    message,
    relay_message,
    txn,
)
from network import i18n
from network.errors import ConfigError, MatrixPermanent
from network.i18n import N_
from network.settings.model import Settings
from network.storage import Storage
from network.storage.cases import CaseProgress, CaseRecord, MessageKind

log = logging.getLogger(__name__)

CLOSED_TEXT = (
    "The Need Assistance team has closed your question. If you need more help, reply to "
    "this message and it will be reopened."
)
# Heads of relayed messages: to the asker in their language, to the team in the team's.
RELAY_HEAD_TO_ASKER = N_("Need Assistance team ({name}):")
RELAY_HEAD_TO_TEAM = N_("{name} (the asker) wrote:")
REOPENED_TEXT = N_("The asker wrote again, so this case is open again.")


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


def _asker_place(rec: CaseRecord) -> dict[str, Any]:
    """Where a message for the asker goes: a reply to their question in a direct chat, else
    in the thread of their question; it mentions them."""
    thread = None if rec.asker_is_direct else rec.asker_thread_root
    return {
        "reply_to": rec.question_event_id,
        "thread_root": thread,
        "falling_back": True,
        "mentions": [rec.asker],
    }


class CaseTransitions:
    """The state shared by the parts of `bots.cases.escalation.Escalation` and the one way they
    change a case."""

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

    def _lock(self, case_id: int) -> asyncio.Lock:
        return self._locks.setdefault(case_id, asyncio.Lock())

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

    async def _where(self, room_id: str, is_direct: bool) -> str:
        if is_direct:
            return "a direct message with the bot"
        return f"the room {await self.host.room_label(room_id)}"

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
                with i18n.use(detect(rec.question)):  # the asker reads it: their language
                    head = i18n.gettext(RELAY_HEAD_TO_ASKER)
                head = head.format(name=await self.host.display_name(actor))
                content, kept = relay_message(head, text, html_body, **_asker_place(rec))
                try:
                    sent = await self.host.send(rec.asker_room, content, txn("relay", trigger))
                except MatrixPermanent as e:
                    log.warning("case %d: answer not relayed to the asker: %s", rec.id, e)
                    await self._in_thread(
                        rec, TEAM_NOT_SENT, txn("not-sent", trigger), [actor], reply_to=reply_to
                    )
                    continue
                await self._record(rec, "answer", actor, text, trigger, sent, now)
                if kept is not None:
                    note = TEAM_SHORTENED.format(kept=kept, total=len(text))
                    await self._in_thread(
                        rec, note, txn("shortened", trigger), [actor], reply_to=reply_to
                    )
            elif isinstance(effect, RelayToTeam):
                name = await self.host.display_name(rec.asker)
                head = i18n.gettext(RELAY_HEAD_TO_TEAM).format(name=name)
                content, kept = relay_message(
                    head, text, html_body, thread_root=rec.thread_root, mentions=claimant
                )
                try:
                    sent = await self.host.send(rec.team_room, content, txn("to-team", trigger))
                except MatrixPermanent as e:
                    log.warning("case %d: follow-up not relayed to the team: %s", rec.id, e)
                    await self._tell_asker(rec, ASKER_NOT_SENT, trigger, now, kind="not-sent")
                    continue
                await self._record(rec, "followup", rec.asker, text, trigger, sent, now)
                if kept is not None:
                    await self._tell_asker(
                        rec,
                        ASKER_SHORTENED,
                        trigger,
                        now,
                        kind="shortened",
                        kept=kept,
                        total=len(text),
                    )
            elif isinstance(effect, NotifyTeam):
                await self._in_thread(rec, effect.text, txn("notify", trigger))
            elif isinstance(effect, Reopened):
                await self._in_thread(
                    rec, i18n.gettext(REOPENED_TEXT), txn("reopened", trigger), claimant
                )
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
        return message(text, body_html, msgtype=msgtype, **_asker_place(rec))

    async def _tell_asker(
        self,
        rec: CaseRecord,
        source: str,
        trigger: str,
        now: datetime,
        *,
        kind: str = "tell-asker",
        **fields: int,
    ) -> None:
        """Tell the asker ``source`` (a marked English text, its ``fields`` filled in) in
        the language of their question: detected again from the stored question, the same
        detection that chose the language of the bot's first reply."""
        with i18n.use(detect(rec.question)):
            text = i18n.gettext(source)
        text = text.format(**fields) if fields else text
        content = self._to_asker(rec, text, None, "m.text")
        sent = await self.host.send(rec.asker_room, content, txn(kind, trigger))
        await self._record(rec, "to_asker", self.host.user_id, text, trigger, sent, now)
