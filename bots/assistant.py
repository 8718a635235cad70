"""The assistance bot in Matrix: which messages it answers, the answers themselves, feedback
reactions, encrypted rooms, and the durable inbox that makes it restart-safe.

Where it answers: every message in a direct chat (a room with the bot and one person);
questions in the configured help rooms; anywhere else only when mentioned (``m.mentions``,
its user id or display name) or addressed with a known ``!command``. Answers are
``m.notice`` replies to the question (inside its thread if it was in one) with the asker
in ``m.mentions``. Below the knowledge base's confidence floor the question goes to the
Need Assistance team (`bots.escalation`), or with ``escalate_when_unsure = false`` the
bot says it is not sure and offers ``!human``.

Restart safety. The sync hook only stores each relevant event in the ``bot_inbox`` table
and queues it; ``next_batch`` is saved after the hook returns, so an event is either in
the inbox or will be synced again. Workers (one per room, so a room's messages keep their
order, several rooms at once) handle it and then, in one transaction, delete it from the
inbox and record it in ``processed_events``. A crash in between replays the event; every
send uses a transaction id derived from the event id, so the homeserver hands back the
first event instead of posting a second answer. Ignored: the bot's own events, notices,
edits, and events older than the bot's first join of the room (history shown on join).

Knowledge-base reload: every ``assistance.check_every`` the bot compares the toolbox
folder's file names, sizes and modification times with what it loaded, and the
``kb.reload_requested`` state that ``libhub kb reload`` writes; either change reloads the
pages in a thread. A broken page is logged and the previous pages stay in use.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import nio

from bots.commands import BotApi, CommandContext, Reply, default_registry
from bots.escalation import Escalation, Question
from bots.knowledge import EMPTY, NOT_SURE, Answer, KnowledgeBase, KnowledgeBaseError, wants_person
from bots.messages import (
    DOWNVOTE,
    ENCRYPTED,
    GREETING,
    NO_QUESTION,
    UNSURE,
    Guess,
    answer_text,
    html_of,
    is_edit,
    looks_like_question,
    mentions_user,
    message,
    parse_command,
    plain_text,
    relates_to,
    reply_to_of,
    strip_mention,
    thread_root_of,
    txn,
    vote_of,
)
from network.errors import MatrixError, MatrixPermanent, MatrixRateLimited, MatrixUnavailable
from network.settings import Settings
from network.storage.cases import BotAnswer

if TYPE_CHECKING:
    from network.app import Service

log = logging.getLogger(__name__)

DEFAULT_TOOLBOX = Path(__file__).resolve().parents[1] / "config" / "toolbox"
MAX_PENDING = 500  # events queued in memory before the sync loop is made to wait
ROOM_PARALLELISM = 32  # rooms handled at once (mostly waiting on the homeserver)
MAX_ATTEMPTS = 5  # tries of an event that fails for a reason other than the homeserver
MAX_QUESTION = 1000  # characters given to retrieval: it runs on the event loop
_WANTED = frozenset({"m.room.message", "m.reaction", "m.room.encrypted", "m.room.encryption"})


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


@dataclass(frozen=True)
class _RoomInfo:
    joined_ts: int
    members: int
    encrypted: bool


class Assistant(BotApi):
    """The bot of one `Service`: register ``on_event`` as a hook and run ``run(stop)``."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.settings = service.settings
        self.storage = service.storage
        self.matrix = service.matrix
        self.commands = default_registry()
        self.escalation = Escalation(self)
        self.kb: KnowledgeBase | None = None
        self.kb_dir = toolbox_dir(self.settings)
        self.kb_loaded_at: datetime | None = None
        self.kb_error: str | None = None
        self._kb_signature: tuple[tuple[str, int, int], ...] | None = None
        self._kb_request: str | None = None
        self._ready = asyncio.Event()
        self._names: dict[str, str] = {}
        self._labels: dict[str, str] = {}
        self._rooms: dict[str, _RoomInfo] = {}
        self._team_room: str | None = None
        self._help_rooms: dict[str, str] = {}  # config ref -> room id
        self._community_rooms: set[str] = set()  # the space, network and cohort rooms
        self._resolve_after = 0.0  # loop time before which unresolved rooms are not retried
        self._queues: dict[str, deque[tuple[str, dict[str, Any]]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._queued: set[str] = set()
        self._slots = asyncio.Semaphore(ROOM_PARALLELISM)
        self._pending = asyncio.Semaphore(MAX_PENDING)

    @property
    def user_id(self) -> str:
        return self.matrix.user_id

    # -- the sync hook and the inbox ---------------------------------------------------------

    async def on_event(self, room_id: str, event: nio.Event) -> None:
        ev = getattr(event, "source", None)
        if not isinstance(ev, dict):
            return
        etype, sender, event_id = ev.get("type"), ev.get("sender"), ev.get("event_id")
        if not isinstance(event_id, str) or not isinstance(sender, str):
            return
        raw = ev.get("content")
        content: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if etype == "m.room.member":
            # Membership changes who is in the room: a "direct chat" may stop being one.
            self._rooms.pop(room_id, None)
            if ev.get("state_key") != self.user_id or content.get("membership") != "join":
                return
        elif sender == self.user_id or etype not in _WANTED:
            return
        elif etype == "m.room.message" and (
            content.get("msgtype") == "m.notice" or is_edit(content)
        ):
            return
        if event_id in self._queued or await self.storage.event_processed(event_id):
            return
        await self._pending.acquire()
        try:
            await self.storage.inbox_add(event_id, room_id, ev)
        except BaseException:
            self._pending.release()
            raise
        self._enqueue(room_id, event_id, ev)

    def _enqueue(self, room_id: str, event_id: str, ev: dict[str, Any]) -> None:
        """Queue an event whose ``_pending`` slot the caller holds."""
        if event_id in self._queued:
            self._pending.release()
            return
        self._queued.add(event_id)
        self._queues.setdefault(room_id, deque()).append((event_id, ev))
        if room_id not in self._workers:
            self._workers[room_id] = asyncio.create_task(
                self._drain(room_id), name=f"bot {room_id}"
            )

    async def _drain(self, room_id: str) -> None:
        queue = self._queues[room_id]
        try:
            await self._ready.wait()
            while queue:
                event_id, ev = queue[0]
                async with self._slots:
                    try:
                        await self._process(room_id, event_id, ev)
                    except Exception:
                        # Even the database failed: the event stays in the inbox table and
                        # the periodic check queues it again.
                        log.exception("event %s in %s left for later", event_id, room_id)
                queue.popleft()
                self._queued.discard(event_id)
                self._pending.release()
        finally:
            self._workers.pop(room_id, None)
            if not queue:
                self._queues.pop(room_id, None)

    async def _process(self, room_id: str, event_id: str, ev: dict[str, Any]) -> None:
        try:
            await self._handle(room_id, ev, datetime.now(UTC))
        except asyncio.CancelledError:
            raise
        except MatrixPermanent as e:
            log.warning("giving up on event %s in %s: %s", event_id, room_id, e)
        except (MatrixUnavailable, MatrixRateLimited) as e:
            # The homeserver's trouble, not the event's: retried by the periodic check.
            log.warning("event %s in %s will be retried: %s", event_id, room_id, e)
            return
        except Exception as e:
            attempts = await self.storage.inbox_failed(event_id, f"{type(e).__name__}: {e}")
            log.exception(
                "handling event %s in %s failed (attempt %d)", event_id, room_id, attempts
            )
            if attempts < MAX_ATTEMPTS:
                return
        await self.storage.inbox_done(event_id, room_id)

    async def _resume_inbox(self) -> None:
        for item in await self.storage.inbox_pending(limit=MAX_PENDING):
            if item.event_id in self._queued:
                continue
            await self._pending.acquire()
            self._enqueue(item.room_id, item.event_id, item.event)

    # -- running -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Load the pages, resume the inbox, then check reminders, emails and page changes
        every ``assistance.check_every`` until ``stop`` is set."""
        try:
            await self.check_reload()
            self._ready.set()
            await self._resume_inbox()
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
                    wait = period if self._rooms_resolved() else min(period, 1.0)
                    await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
                self.escalation.wake.clear()
        finally:
            for task in list(self._workers.values()):
                task.cancel()
            await asyncio.gather(*self._workers.values(), return_exceptions=True)
            await self.escalation.close()

    async def _periodic(self) -> None:
        steps = [self.check_reload, self._resume_inbox, self._resolve_rooms]
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

    # -- Matrix helpers ----------------------------------------------------------------------

    async def send(self, room_id: str, content: dict[str, Any], txn_id: str) -> str:
        """Send with a few retries on rate limits and outages; the same ``txn_id`` every time."""
        delay = 1.0
        for attempt in range(4):
            try:
                return (await self.matrix.send(room_id, content, txn_id=txn_id)).event_id
            except MatrixRateLimited as e:
                if attempt == 3:
                    raise
                await asyncio.sleep(min(e.retry_after, 30.0))
            except MatrixUnavailable:
                if attempt == 3:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def display_name(self, user_id: str) -> str:
        if user_id not in self._names:
            name = user_id[1:].split(":", 1)[0]
            try:
                data = await self.matrix._request(
                    "GET",
                    f"/_matrix/client/v3/profile/{quote(user_id, safe='')}/displayname",
                    what=f"display name of {user_id}",
                )
                name = str(data.get("displayname") or name)
            except MatrixError:
                pass
            if len(self._names) > 2000:
                self._names.clear()
            self._names[user_id] = name
        return self._names[user_id]

    async def room_label(self, room_id: str) -> str:
        if room_id not in self._labels:
            label = room_id
            for event_type, key in (("m.room.canonical_alias", "alias"), ("m.room.name", "name")):
                try:
                    state = await self.matrix.room_state(room_id, event_type)
                except MatrixError:
                    state = None
                if state and isinstance(state.get(key), str) and state[key]:
                    label = str(state[key])
                    break
            self._labels[room_id] = label
        return self._labels[room_id]

    async def team_room(self) -> str | None:
        await self._resolve_rooms()
        return self._team_room

    def _rooms_resolved(self) -> bool:
        a = self.settings.assistance
        team_ok = not a.team_room or self._team_room is not None
        return team_ok and all(ref in self._help_rooms for ref in a.help_rooms)

    async def _resolve_rooms(self) -> None:
        a = self.settings.assistance
        # Rooms libhub created for the community are never taken for direct chats.
        self._community_rooms = {r.room_id for r in await self.storage.community_rooms()}
        for cohort in self.settings.cohorts:
            if (room_id := await self.storage.room_id_for(cohort.room)) is not None:
                self._community_rooms.add(room_id)
        now = asyncio.get_running_loop().time()
        if not self.matrix.logged_in or now < self._resolve_after:
            return
        failed = False
        if a.team_room and self._team_room is None:
            try:
                self._team_room = await self.matrix.resolve_room(a.team_room)
            except MatrixError as e:
                failed = True
                log.warning("cannot use the team room %s: %s", a.team_room, e)
        for ref in a.help_rooms:
            if ref not in self._help_rooms:
                try:
                    self._help_rooms[ref] = await self.matrix.resolve_room(ref)
                except MatrixError as e:
                    failed = True
                    log.warning("cannot use the help room %s: %s", ref, e)
        if failed:
            # Tried again a minute later, not on every event.
            self._resolve_after = now + 60.0

    async def _room_info(self, room_id: str) -> _RoomInfo | None:
        """When the bot joined, how many people are in, and whether it is encrypted."""
        if room_id in self._rooms:
            return self._rooms[room_id]
        try:
            members = await self.matrix._request(
                "GET",
                f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/members?membership=join",
                what=f"members of {room_id}",
            )
        except MatrixPermanent:
            return None  # not in the room (any more)
        chunk = [e for e in members.get("chunk", []) if isinstance(e, dict)]
        own = [e for e in chunk if e.get("state_key") == self.user_id]
        if not own:
            return None
        row = await self.storage.bot_room(room_id)
        joined_ts = row.joined_ts if row and row.joined_ts else int(own[0]["origin_server_ts"])
        if row is None or row.joined_ts is None:
            await self.storage.set_bot_room_joined(room_id, joined_ts)
        encrypted = await self.matrix.room_state(room_id, "m.room.encryption") is not None
        info = _RoomInfo(joined_ts, len(chunk), encrypted)
        if len(self._rooms) > 5000:
            self._rooms.clear()
        self._rooms[room_id] = info
        if encrypted:
            await self._warn_encrypted(room_id)
        return info

    def _is_direct(self, room_id: str, info: _RoomInfo) -> bool:
        # Cohort rooms and the space start with two members too: they are not DMs.
        special = (
            room_id == self._team_room
            or room_id in self._help_rooms.values()
            or room_id in self._community_rooms
        )
        return not special and info.members <= 2

    async def _warn_encrypted(self, room_id: str) -> None:
        row = await self.storage.bot_room(room_id)
        if row is not None and row.encryption_warned:
            return
        await self.send(room_id, message(ENCRYPTED), txn("e2ee", room_id))
        await self.storage.set_room_flag(room_id, "encryption_warned")

    # -- handling one event ------------------------------------------------------------------

    async def _handle(self, room_id: str, ev: dict[str, Any], now: datetime) -> None:
        etype = ev.get("type")
        await self._resolve_rooms()
        if etype == "m.room.member":
            await self._on_own_join(room_id, ev)
            return
        info = await self._room_info(room_id)
        if info is None or int(ev.get("origin_server_ts", 0)) < info.joined_ts:
            return  # not in the room, or history from before the bot joined
        if etype in ("m.room.encrypted", "m.room.encryption"):
            self._rooms[room_id] = replace(info, encrypted=True)
            await self._warn_encrypted(room_id)
        elif room_id == self._team_room and await self.escalation.on_team_event(ev, now):
            return
        elif etype == "m.reaction":
            await self._on_reaction(room_id, ev, now)
        elif etype == "m.room.message":
            await self._on_message(room_id, ev, info, now)

    async def _on_own_join(self, room_id: str, ev: dict[str, Any]) -> None:
        await self.storage.set_bot_room_joined(room_id, int(ev.get("origin_server_ts", 0)))
        self._rooms.pop(room_id, None)
        info = await self._room_info(room_id)
        if info is None or info.encrypted or not self._is_direct(room_id, info):
            return
        row = await self.storage.bot_room(room_id)
        if row is not None and not row.greeted:
            await self.send(room_id, message(GREETING), txn("greet", room_id))
            await self.storage.set_room_flag(room_id, "greeted")

    async def _on_message(
        self, room_id: str, ev: dict[str, Any], info: _RoomInfo, now: datetime
    ) -> None:
        content: dict[str, Any] = ev.get("content") or {}
        if content.get("msgtype") != "m.text":
            return
        sender, event_id = str(ev["sender"]), str(ev["event_id"])
        text = plain_text(content)
        if not text:
            return
        reply_to = ((content.get("m.relates_to") or {}).get("m.in_reply_to") or {}).get("event_id")
        if reply_to and await self.storage.prompt_cohort(str(reply_to)) is not None:
            return  # an answer to the weekly cohort prompt: a cohort update, not a question
        is_dm = self._is_direct(room_id, info)
        in_help = room_id in self._help_rooms.values()
        names = [await self.display_name(self.user_id)]
        mentioned = mentions_user(content, text, self.user_id, names)
        if mentioned:
            text = strip_mention(text, self.user_id, names)
        thread_root, reply_to = thread_root_of(content), reply_to_of(content)
        command = parse_command(text)
        if command is None:
            case = await self.escalation.case_for_followup(
                room_id, sender, is_direct=is_dm, thread_root=thread_root, reply_to=reply_to
            )
            if case is not None:
                html_body = html_of(content)
                await self.escalation.asker_followup(case, event_id, sender, text, html_body, now)
                return
        args = command[1] if command else ""
        ctx = CommandContext(sender, room_id, event_id, args, is_dm, thread_root, reply_to, self)
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
        return await self.send(ctx.room_id, content, txn_id)

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
            content = message(DOWNVOTE, reply_to=answer.event_id, mentions=[sender])
            await self.send(room_id, content, txn("down", event_id))

    # -- answering (BotApi) ------------------------------------------------------------------

    async def answer(self, ctx: CommandContext, question: str) -> None:
        """Answer from the toolbox, or hand the question to a person."""
        if wants_person(question):
            await self.escalate(ctx, question)
            return
        if self.kb is None:
            await self._escalate(ctx, question, None, "The toolbox pages are not available.")
            return
        found = self.kb.ask(question[:MAX_QUESTION])
        now = datetime.now(UTC)
        if found.escalate and found.answer == EMPTY:
            text = f"{EMPTY} Send !help to see what I can do."
            await self._reply(ctx, Reply(text), txn("ans", ctx.event_id))
            return
        if found.escalate and self.settings.assistance.escalate_when_unsure:
            await self._escalate(ctx, question, found, UNSURE)
            return
        if found.escalate:
            body = Reply(f"{NOT_SURE} Send !human and I will.")
        else:
            body = Reply(*answer_text(found, self.kb.pages))
        sent = await self._reply(ctx, body, txn("ans", ctx.event_id))
        record = BotAnswer(
            sent,
            ctx.room_id,
            ctx.event_id,
            ctx.sender,
            question,
            found.page,
            found.score,
            False,
            now,
        )
        await self.storage.record_answer(record)

    async def escalate(self, ctx: CommandContext, question: str) -> None:
        """``!human [QUESTION]`` or a request for a person in words."""
        question = question.strip()
        asked_for_person = not question or wants_person(question)
        found = self.kb.ask(question[:MAX_QUESTION]) if self.kb is not None and question else None
        if asked_for_person and (found is None or found.page is None):
            # "!human" or "can I talk to a person?": the question is the one asked before.
            before = await self.storage.answer_by_event(ctx.reply_to) if ctx.reply_to else None
            if before is None or before.asker != ctx.sender:
                before = await self.storage.last_answer_for(ctx.room_id, ctx.sender)
            if before is not None:
                question = before.question + (f"\n({question})" if question else "")
                found = self.kb.ask(before.question) if self.kb is not None else None
            elif not question:
                active = await self.storage.active_case_for(ctx.room_id, ctx.sender)
                text = (
                    "Your question is already with the Need Assistance team."
                    if active is not None
                    else NO_QUESTION
                )
                await self._reply(ctx, Reply(text), txn("human", ctx.event_id))
                return
        await self._escalate(ctx, question, found, "")

    async def _escalate(
        self, ctx: CommandContext, question: str, found: Answer | None, intro: str
    ) -> None:
        guess, suggest = None, found is not None and found.page is not None
        if found is not None and found.page is not None:
            guess = Guess(found.page, found.title or found.page, found.url or "", found.score)
        elif (
            self.kb is not None
            and (best := self.kb.rank(question[:MAX_QUESTION], 1))
            and best[0][1] > 0
        ):
            page = self.kb.pages[best[0][0]]
            guess = Guess(page.slug, page.title, page.source_url, best[0][1])
        q = Question(
            ctx.sender, ctx.room_id, ctx.event_id, question, ctx.is_direct, ctx.thread_root
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
        kb = f"{len(self.kb.pages)} pages from {self.kb_dir}" if self.kb else "not loaded"
        return [
            f"Matrix: {self.user_id}, "
            + (f"last sync {since:.0f} s ago" if since is not None else "not synced yet")
            + (f", last error: {gw.last_error}" if gw.last_error else ""),
            "Feeds: " + (", ".join(f"{n} {k}" for k, n in sorted(feeds.items())) or "none"),
            "Outbox: " + ", ".join(f"{n} {k}" for k, n in sorted(outbox.items())),
            f"Knowledge base: {kb}" + (f" (error: {self.kb_error})" if self.kb_error else ""),
            "Cases: " + ", ".join(f"{n} {k}" for k, n in cases.items()),
            f"Answer feedback: {votes['up']} 👍, {votes['down']} 👎",
            f"Team room: {a.team_room or 'not set'}; {len(a.team_members)} team members",
        ]
