"""The assistance bot in Matrix: which messages it answers, the answers themselves, feedback
reactions and knowledge-base reloads; the entry point that puts the bot's parts together.

Where it answers: every message in a direct chat (a room created or invited as one, see
`bots.rooms`); questions in the configured help rooms; anywhere else only when mentioned
(``m.mentions``, its user id or display name) or addressed with a known ``!command``. Answers are
``m.notice`` replies to the question (inside its thread if it was in one) with the asker
in ``m.mentions``. Below the knowledge base's confidence floor the question goes to the
Need Assistance team (`bots.cases.escalation`), or with ``escalate_when_unsure = false`` the
bot says it is not sure and offers ``!human``. A request for a person to act goes to the
team, chit-chat gets a short reply, and when the knowledge base offers choices between
pages the person's reply "1", "2"... in the same room is answered from the chosen page.
Replies come in the question's language. While a case is open in a direct chat, messages
go to the team, and a new toolbox question is answered as well. Events older than the
bot's first join of the room (history shown on join) are ignored.

The bot is three parts: this module decides what to do with each event and answers;
`bots.inbox` stores events as they are synced and hands them over one room at a time, in
order and restart-safe; `bots.rooms` sends, and knows the rooms (direct chat or not,
encrypted, the configured team and help rooms) and people's display names.

Knowledge-base reload: every ``assistance.check_every`` the bot compares the toolbox
folder's file names, sizes and modification times with what it loaded, and the
``kb.reload_requested`` state that ``libhub kb reload`` writes; either change reloads the
pages in a thread. A broken page is logged and the previous pages stay in use.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nio

from bots.cases.escalation import Escalation, Question
from bots.commands import BotApi, Command, CommandContext, Reply, SubscribeHandler, default_registry
from bots.inbox import Inbox
from bots.kb.index import Answer, KnowledgeBase, KnowledgeBaseError, wants_person
from bots.kb.language import detect
from bots.kb.replies import say
from bots.messages import (
    ALREADY_WITH_TEAM,
    DOWNVOTE,
    NO_QUESTION,
    NO_TOOLBOX,
    SEND_HELP,
    SEND_HUMAN,
    Guess,
    answer_text,
    choice_gone,
    choices_text,
    html_of,
    intro,
    looks_like_question,
    mentions_user,
    message,
    parse_command,
    plain_text,
    relates_to,
    reply_to_of,
    responds_to,
    strip_mention,
    thread_root_of,
    translated,
    txn,
    vote_of,
)
from bots.rooms import RoomInfo, Rooms
from network import i18n
from network.matrix.gateway import MatrixGateway
from network.settings.model import Settings
from network.storage import Storage
from network.storage.bot_events import BotAnswer

log = logging.getLogger(__name__)

DEFAULT_TOOLBOX = Path(__file__).resolve().parent / "kb" / "pages"
MAX_QUESTION = 1000  # characters given to retrieval: it runs on the event loop
_CHOICE_RE = re.compile(r"^\s*#?([1-9])\s*[.)]?\s*$")  # "2", "2.", "#2" picks a choice


def toolbox_dir(settings: Settings | None) -> Path:
    """The knowledge-base folder: ``assistance.toolbox_dir`` or the shipped pages."""
    if settings is None or not settings.assistance.toolbox_dir:
        return DEFAULT_TOOLBOX
    p = Path(settings.assistance.toolbox_dir)
    return p if p.is_absolute() else settings.base_dir / p


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        files = sorted(folder.glob("*.md"))
        return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except OSError:
        return ()


class Assistant(BotApi):
    """The bot of one service: register ``on_event`` as a hook and run ``run(stop)``.

    ``commands`` are added to the built-in ones (replacing any of the same name);
    ``subscribe`` carries out ``!subscribe`` (without it the bot says subscriptions are off).
    """

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        matrix: MatrixGateway,
        *,
        commands: Sequence[Command] = (),
        subscribe: SubscribeHandler | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.matrix = matrix
        self.commands = default_registry(commands, subscribe_handler=subscribe)
        self.rooms = Rooms(self.settings, self.storage, self.matrix)
        self.escalation = Escalation(self.rooms)
        self.inbox = Inbox(self.storage, self.rooms, self._handle)
        self.kb: KnowledgeBase | None = None
        self.kb_dir = toolbox_dir(self.settings)
        self.kb_loaded_at: datetime | None = None
        self.kb_error: str | None = None
        self._kb_signature: tuple[tuple[str, int, int], ...] | None = None
        self._kb_request: str | None = None

    @property
    def user_id(self) -> str:
        return self.matrix.user_id

    async def on_event(self, room_id: str, event: nio.Event) -> None:
        """The sync hook: keep the event in the inbox if the bot may have to handle it."""
        if isinstance(event, nio.MegolmEvent):
            # Its key never came (the gateway keeps waiting for it, and hands the decrypted
            # event over if it does): the sender is told once, outside the inbox, so the
            # event id stays free for the message itself.
            if event.sender != self.user_id:
                await self.rooms.tell_unreadable(room_id, event.sender, event.session_id)
            return
        await self.inbox.on_event(room_id, event)

    # -- running -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Load the pages, resume the inbox, then check reminders, emails and page changes
        every ``assistance.check_every`` until ``stop`` is set."""
        try:
            await self.check_reload()
            self.inbox.ready.set()
            await self.inbox.resume()
            period = self.settings.assistance.check_every.total_seconds()
            while not stop.is_set():
                await self._periodic()
                waiters = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self.escalation.wake.wait()),
                ]
                try:
                    # Until the configured rooms are joined (after the first login), look
                    # again soon: a help room's questions only arrive once the bot is in it.
                    wait = period if self.rooms.resolved() else min(period, 1.0)
                    await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
                self.escalation.wake.clear()
        finally:
            await self.inbox.close()
            await self.escalation.close()

    async def _periodic(self) -> None:
        steps = [self.check_reload, self.inbox.resume, self.rooms.resolve]
        if self.matrix.logged_in:
            steps.append(lambda: self.escalation.tick(datetime.now(UTC)))
        for step in steps:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("assistance bot: periodic check failed")

    async def check_reload(self) -> bool:
        """Load the pages if they changed or a reload was requested; True when loaded."""
        sig = await asyncio.to_thread(_signature, self.kb_dir)
        request = await self.storage.get_state("kb.reload_requested")
        if self.kb is not None and sig == self._kb_signature and request == self._kb_request:
            return False
        if self.kb is None and sig == self._kb_signature and self.kb_error:
            return False
        self._kb_signature, self._kb_request = sig, request
        try:
            kb = await asyncio.to_thread(KnowledgeBase.load, self.kb_dir)
        except KnowledgeBaseError as e:
            self.kb_error = str(e)
            log.error("knowledge base not (re)loaded, answers use the pages loaded before: %s", e)
            return False
        self.kb, self.kb_error, self.kb_loaded_at = kb, None, datetime.now(UTC)
        log.info("knowledge base: %d pages from %s", len(kb.pages), self.kb_dir)
        return True

    # -- handling one event ------------------------------------------------------------------

    async def _handle(self, room_id: str, ev: dict[str, Any], now: datetime) -> None:
        etype = ev.get("type")
        await self.rooms.resolve()
        if etype == "m.room.member":
            await self.rooms.on_own_join(room_id, ev)
            return
        info = await self.rooms.info(room_id)
        if info is None or int(ev.get("origin_server_ts", 0)) < info.joined_ts:
            return  # not in the room, or history from before the bot joined
        if etype in ("m.room.encrypted", "m.room.encryption"):
            self.rooms.on_encrypted(room_id, info)
        elif self.rooms.is_team_room(room_id) and await self.escalation.on_team_event(ev, now):
            return
        elif etype == "m.reaction":
            await self._on_reaction(room_id, ev, now)
        elif etype == "m.room.message":
            await self._on_message(room_id, ev, info, now)

    async def _on_message(
        self, room_id: str, ev: dict[str, Any], info: RoomInfo, now: datetime
    ) -> None:
        content: dict[str, Any] = ev.get("content") or {}
        if content.get("msgtype") != "m.text":
            return
        sender, event_id = str(ev["sender"]), str(ev["event_id"])
        text = plain_text(content)
        if not text:
            return
        is_dm = await self.rooms.is_direct(room_id, info)
        in_help = self.rooms.is_help_room(room_id)
        names = [await self.rooms.display_name(self.user_id)]
        mentioned = mentions_user(content, text, self.user_id, names)
        if mentioned:
            text = strip_mention(text, self.user_id, names)
        thread_root, reply_to = thread_root_of(content), reply_to_of(content)
        command = parse_command(text)
        args = command[1] if command else ""
        ctx = CommandContext(sender, room_id, event_id, args, is_dm, thread_root, reply_to, self)
        if command is None:
            prompt = responds_to(content)
            if prompt and await self.storage.prompt_cohort(prompt) is not None:
                return  # an answer to the weekly cohort prompt: a cohort update, not a question
            if await self._pick_choice(ctx, text):
                return
            case = await self.escalation.case_for_followup(
                room_id, sender, is_direct=is_dm, thread_root=thread_root, reply_to=reply_to
            )
            if case is not None:
                html_body = html_of(content)
                await self.escalation.asker_followup(case, event_id, sender, text, html_body, now)
                # The team sees it in the thread; a new toolbox question is answered too.
                found = self._ask(text)
                if (
                    is_dm
                    and thread_root is None
                    and reply_to is None
                    and found
                    and _confident(found)
                ):
                    await self._send_answer(ctx, text, found)
                return
        if command is not None:
            if command[0] not in self.commands and not (is_dm or in_help or mentioned):
                return  # another bot's command, in a room where nobody addressed us
            reply = await self.commands.dispatch(command[0], ctx)
            if reply is not None:
                await self._reply(ctx, reply, txn("cmd", event_id))
            return
        if is_dm or mentioned or (in_help and looks_like_question(text)):
            await self.answer(ctx, text)

    async def _reply(self, ctx: CommandContext, reply: Reply, txn_id: str) -> str:
        content = message(
            reply.text,
            reply.html,
            reply_to=ctx.event_id,
            thread_root=ctx.thread_root,
            mentions=[ctx.sender],
        )
        return await self.rooms.send(ctx.room_id, content, txn_id)

    async def _on_reaction(self, room_id: str, ev: dict[str, Any], now: datetime) -> None:
        rel = relates_to(ev.get("content") or {})
        vote = vote_of(str(rel.get("key", "")))
        if rel.get("rel_type") != "m.annotation" or vote is None:
            return
        answer = await self.storage.answer_by_event(str(rel.get("event_id", "")))
        if answer is None:
            return
        sender, event_id = str(ev["sender"]), str(ev["event_id"])
        fresh = await self.storage.record_feedback(event_id, answer.event_id, sender, vote, now)
        if fresh and vote == "down" and not answer.escalated:
            text = translated(DOWNVOTE, detect(answer.question))
            content = message(text, reply_to=answer.event_id, mentions=[sender])
            await self.rooms.send(room_id, content, txn("down", event_id))

    # -- answering (BotApi) ------------------------------------------------------------------

    def _ask(self, question: str) -> Answer | None:
        return self.kb.ask(question[:MAX_QUESTION]) if self.kb is not None else None

    async def answer(self, ctx: CommandContext, question: str) -> None:
        """Answer from the toolbox, offer choices, reply to chat, or hand the question to a
        person, in the question's language."""
        if wants_person(question):
            await self.escalate(ctx, question)
            return
        found = self._ask(question)
        if found is None:
            lang = detect(question)
            await self._escalate(ctx, question, None, translated(NO_TOOLBOX, lang))
            return
        lang = found.language
        if found.escalate and found.answer == say("empty", lang):
            text = f"{found.answer} {translated(SEND_HELP, lang)}"
            await self._reply(ctx, Reply(text), txn("ans", ctx.event_id))
            return
        if found.intent == "chat":
            await self._reply(ctx, Reply(found.answer), txn("ans", ctx.event_id))
            return
        if found.escalate and (
            found.intent == "action" or self.settings.assistance.escalate_when_unsure
        ):
            kind = "action" if found.intent == "action" else "unsure"
            await self._escalate(ctx, question, found, intro(kind, lang))
            return
        if found.escalate:
            await self._reply(
                ctx,
                Reply(f"{say('not_sure', lang)} {translated(SEND_HUMAN, lang)}"),
                txn("ans", ctx.event_id),
            )
            return
        await self._send_answer(ctx, question, found)

    async def _send_answer(self, ctx: CommandContext, question: str, found: Answer) -> None:
        """Send an answer or the choices between pages, and remember it (for feedback,
        !human and the choice the person replies with)."""
        assert self.kb is not None
        if found.choices:
            body = Reply(*choices_text(found))
        else:
            body = Reply(*answer_text(found, self.kb.pages_in(found.language)))
        sent = await self._reply(ctx, body, txn("ans", ctx.event_id))
        key = _choices_key(ctx.room_id, ctx.sender)
        if found.choices:
            offer = {"q": question, "lang": found.language, "slugs": list(found.choices)}
            await self.storage.set_state(key, json.dumps(offer))
        else:
            await self.storage.delete_state(key)
        record = BotAnswer(
            sent,
            ctx.room_id,
            ctx.event_id,
            ctx.sender,
            question,
            found.page,
            found.score,
            False,
            datetime.now(UTC),
        )
        await self.storage.record_answer(record)

    async def _pick_choice(self, ctx: CommandContext, text: str) -> bool:
        """A reply "1", "2"... to the pages offered: answer the chosen one. False when the
        message is not such a reply."""
        m = _CHOICE_RE.match(text)
        if m is None or self.kb is None:
            return False
        raw = await self.storage.get_state(_choices_key(ctx.room_id, ctx.sender))
        if raw is None:
            return False
        offer = json.loads(raw)
        slugs, lang = list(offer.get("slugs", [])), str(offer.get("lang", "en"))
        index = int(m.group(1)) - 1
        if index >= len(slugs):
            return False
        if slugs[index] not in self.kb.pages_in(lang):
            await self._reply(ctx, Reply(choice_gone(lang)), txn("ans", ctx.event_id))
            return True
        chosen = self.kb.answer_page(slugs[index], str(offer.get("q", "")), lang)
        await self._send_answer(ctx, str(offer.get("q", "")), chosen)
        return True

    async def escalate(self, ctx: CommandContext, question: str) -> None:
        """``!human [QUESTION]`` or a request for a person in words."""
        question = question.strip()
        asked_for_person = not question or wants_person(question)
        found = self.kb.ask(question[:MAX_QUESTION]) if self.kb is not None and question else None
        before: BotAnswer | None = None
        if asked_for_person and (found is None or found.page is None):
            # "!human" or "can I talk to a person?": the question is the one asked before.
            before = await self.storage.answer_by_event(ctx.reply_to) if ctx.reply_to else None
            if before is None or before.asker != ctx.sender:
                before = await self.storage.last_answer_for(ctx.room_id, ctx.sender)
            if before is not None:
                question = before.question + (f"\n({question})" if question else "")
                asked = before.question[:MAX_QUESTION]
                found = self.kb.ask(asked) if self.kb is not None else None
            elif not question:
                active = await self.storage.active_case_for(ctx.room_id, ctx.sender)
                text = (
                    translated(ALREADY_WITH_TEAM, detect(active.question))
                    if active is not None
                    else i18n.gettext(NO_QUESTION)
                )
                await self._reply(ctx, Reply(text), txn("human", ctx.event_id))
                return
        await self._escalate(ctx, question, found, "")
        if before is not None:
            # A 👎 on that answer now must not offer !human again.
            await self.storage.mark_answer_escalated(before.event_id)

    async def _escalate(
        self, ctx: CommandContext, question: str, found: Answer | None, intro: str
    ) -> None:
        guess, suggest = None, found is not None and found.page is not None
        if found is not None and found.page is not None:
            guess = Guess(found.page, found.title or found.page, found.url or "", found.score)
        elif found is not None and found.guess is not None and self.kb is not None:
            # A request for action: the team gets the most related page.
            page = self.kb.pages[found.guess]
            guess = Guess(page.slug, page.title, page.source_url, found.score)
        elif (
            self.kb is not None
            and (best := self.kb.rank(question[:MAX_QUESTION], 1))
            and best[0][1] > 0
        ):
            page = self.kb.pages[best[0][0]]
            guess = Guess(page.slug, page.title, page.source_url, best[0][1])
        language = found.language if found is not None else detect(question)
        q = Question(
            ctx.sender,
            ctx.room_id,
            ctx.event_id,
            question,
            ctx.is_direct,
            ctx.thread_root,
            language,
        )
        now = datetime.now(UTC)
        await self.escalation.open_case(q, guess=guess, suggest=suggest, intro=intro, now=now)

    async def status_lines(self) -> list[str]:
        s, gw = self.storage, self.matrix
        since = gw.seconds_since_sync()
        cases = await s.case_counts()
        votes = await s.feedback_counts()
        outbox = await s.outbox_counts()
        feeds = await s.feed_health_counts()
        a = self.settings.assistance
        _ = i18n.gettext  # for coordinators: the language in use (English unless set)
        kb = (
            _("{pages} pages from {folder}").format(pages=len(self.kb.pages), folder=self.kb_dir)
            if self.kb
            else _("not loaded")
        )
        sync = (
            _("last sync {seconds} s ago").format(seconds=f"{since:.0f}")
            if since is not None
            else _("not synced yet")
        )
        error = _(", last error: {error}").format(error=gw.last_error) if gw.last_error else ""
        kb_error = _(" (error: {error})").format(error=self.kb_error) if self.kb_error else ""
        none = _("none")
        return [
            _("Matrix: {user}, {sync}").format(user=self.user_id, sync=sync) + error,
            _("Feeds: {counts}").format(
                counts=", ".join(f"{n} {k}" for k, n in sorted(feeds.items())) or none
            ),
            _("Outbox: {counts}").format(
                counts=", ".join(f"{n} {k}" for k, n in sorted(outbox.items()))
            ),
            _("Knowledge base: {kb}").format(kb=kb) + kb_error,
            _("Cases: {counts}").format(counts=", ".join(f"{n} {k}" for k, n in cases.items())),
            _("Answer feedback: {up} 👍, {down} 👎").format(up=votes["up"], down=votes["down"]),
            _("Team room: {room}; {members} team members").format(
                room=a.team_room or _("not set"), members=len(a.team_members)
            ),
        ]


def _choices_key(room_id: str, sender: str) -> str:
    return f"bot.choices.{room_id}.{sender}"


def _confident(found: Answer) -> bool:
    """A plain toolbox answer: a page, no person needed, no choices, not chat."""
    return (
        found.page is not None
        and not found.escalate
        and found.intent == "info"
        and not found.choices
    )
