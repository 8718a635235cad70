"""Need Assistance cases: opening a case for a question the bot cannot answer, telling the
team about it (a thread in the team room and an email), and the asker's follow-ups.
`Escalation` is what the bot uses; it is composed of the parts that live next to it:

* `bots.cases.transitions`: carrying out a change of a case exactly once (the base);
* `bots.cases.thread`: the team's work on a case in its thread (claim, answer, note, close);
* `bots.cases.reminders`: reminders in business hours and auto-closing.

The email to the team is sent by `send_pending_emails`, retried by the bot's periodic check
(`tick`) until it goes through (at most `MAX_EMAIL_ATTEMPTS` tries).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from bots.cases.hours import is_open, next_opening
from bots.cases.reminders import CaseReminders
from bots.cases.state import Event
from bots.cases.thread import TeamThread
from bots.cases.transitions import Host
from bots.messages import Guess, case_ack, case_email, case_root, message, txn
from network import i18n
from network.i18n import N_
from network.mail.factory import sender_domain, smtp_sender
from network.mail.message import build_message
from network.mail.pool import SmtpSender
from network.storage.cases import CaseRecord, NewCase

log = logging.getLogger(__name__)

MAX_EMAIL_ATTEMPTS = 5
# Said to the asker, in the language of their question (`i18n.use`).
ADDED_TEXT = N_("I've added this to your open question with the Need Assistance team.")
NO_TEAM_TEXT = N_(
    "No Need Assistance team is set up here, so I cannot pass your question to a person. "
    "Please contact your network coordinator."
)
# Translators: {day} is a weekday ("Monday"), {time} a time of day ("9:00 AM") and {zone}
# the team's time zone name ("America/New_York").
AWAY_TEXT = N_("The team is away now; expect an answer after {day} {time} ({zone} time).")


@dataclass(frozen=True)
class Question:
    """A question on its way to the team: who asked, where, and the event that asked it."""

    asker: str
    room_id: str
    event_id: str
    text: str
    is_direct: bool
    thread_root: str | None  # the thread it was asked in, if any
    language: str = "en"  # what it is written in: the team is told, the asker answered in it


class Escalation(TeamThread, CaseReminders):
    """The Need Assistance cases of one bot."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self._smtp: SmtpSender | None = None

    async def close(self) -> None:
        if self._smtp is not None:
            await self._smtp.close()
            self._smtp = None

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
            with i18n.use(q.language):
                added = i18n.gettext(ADDED_TEXT)
            await self.host.send(q.room_id, self._reply_to(q, added), txn("case-add", q.event_id))
            return
        team_room = await self.host.team_room()
        if team_room is None:
            with i18n.use(q.language):
                text = f"{intro} {i18n.gettext(NO_TEAM_TEXT)}".strip()
            await self.host.send(q.room_id, self._reply_to(q, text), txn("case-none", q.event_id))
            return
        name = await self.host.display_name(q.asker)
        where = await self._where(q.room_id, q.is_direct)
        # m.text so the team is notified (notices never are); the team is mentioned.
        root = message(
            *case_root(name, q.asker, where, q.text, guess, q.language),
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
        away = "" if is_open(self.hours, now) else self._away_text(q.language, now)
        text, body = case_ack(intro, q.is_direct, away, guess if suggest else None, q.language)
        ack = self._reply_to(q, text, body)
        ack_id = await self.host.send(q.room_id, ack, txn("case-ack", q.event_id))
        await self._record(rec, "ack", self.host.user_id, text, q.event_id, ack_id, now)
        if rec.email_status == "pending":
            self.wake.set()

    def _away_text(self, language: str, now: datetime) -> str:
        """When the team is back, in ``language``: weekday and time written by CLDR."""
        opening = next_opening(self.hours, now)
        zone = self.hours.zone
        with i18n.use(language):
            return i18n.gettext(AWAY_TEXT).format(
                day=i18n.format_weekday(opening, zone),
                time=i18n.format_clock(opening, zone),
                zone=self.hours.tz,
            )

    @staticmethod
    def _reply_to(q: Question, text: str, body: str | None = None) -> dict[str, Any]:
        return message(
            text, body, reply_to=q.event_id, thread_root=q.thread_root, mentions=[q.asker]
        )

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

    # -- time --------------------------------------------------------------------------------

    async def tick(self, now: datetime) -> None:
        """Reminders and auto-closing due at ``now``, then unsent team emails (also when
        the reminders failed: the two do not wait on each other)."""
        try:
            await self.remind_and_auto_close(now)
        except Exception:
            log.exception("case reminders and auto-closing failed; emails go on")
        await self.send_pending_emails()

    # -- email -------------------------------------------------------------------------------

    def _sender(self) -> SmtpSender:
        if self._smtp is None:
            # One connection: team emails are few, and the digests need the server more.
            self._smtp = smtp_sender(self.settings.email, max_connections=1)
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
            # via: a room id alone does not tell matrix.to which server to ask (and newer
            # room ids name none); the bot's homeserver is in the room.
            f"https://matrix.to/#/{rec.team_room}/{rec.thread_root}"
            f"?via={self.settings.matrix.user_id.partition(':')[2]}",
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
            message_id_domain=sender_domain(e),
            extra_headers={"X-Libhub-Case": str(rec.id)},
        )
