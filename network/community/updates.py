"""Cohort updates: what members share in their cohort room becomes an item for the network.

A member posts ``!update TEXT`` in their cohort room (or replies to the weekly "what did
your library try this week?" prompt, as a reply or in its thread): the text becomes an
item of kind ``cohort-update``, stored under the feed id ``cohort:<cohort id>`` with the
member's event id as its key, attributed to the member and their library, and queued to
the routes' rooms and channels like any feed item (digests pick it up from the items
table). Within
``community.update_window`` the member can change it (``!update edit TEXT``, or editing the
message in their client) or withdraw it (``!update withdraw``): withdrawn updates leave
the queue, their Matrix posts are redacted and digests skip them.

Restart-safe without a processed-event table: the item key is the event id (storing it
twice changes nothing) and every reply's transaction id is derived from the event that
caused it, so a replayed event gets the same reply event back from the homeserver.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

import nio

from bots.messages import plain_text, reply_to_of, responds_to
from network.community.cohorts import Community
from network.errors import MatrixError
from network.matrix.gateway import MatrixGateway
from network.routing.router import Router
from network.settings.checks import weekday_number
from network.settings.community import CohortSettings
from network.settings.model import Settings
from network.storage import ItemInput, Storage
from network.storage.cohorts import CohortUpdate

log = logging.getLogger(__name__)

COHORT_FEED_PREFIX = "cohort:"
TITLE_CHARS = 80
MAX_UPDATE_CHARS = 4000
_COMMAND = re.compile(r"^!update(?:\s+(.*))?$", re.DOTALL | re.IGNORECASE)

UPDATE_HELP = "share what your library tried with the cohort and the network (cohort rooms)"
HELP = (
    "Share what your library tried with the network: `!update` followed by a few lines. "
    "Within {window} you can change it with `!update edit NEW TEXT` or take it back with "
    "`!update withdraw`."
)


def cohort_feed_id(cohort_id: str) -> str:
    """The synthetic feed id cohort updates are stored under."""
    return f"{COHORT_FEED_PREFIX}{cohort_id}"


def cohort_of_feed(feed_id: str) -> str | None:
    """The cohort of an item's feed id (None for real feeds): for routing and digests."""
    return feed_id[len(COHORT_FEED_PREFIX) :] if feed_id.startswith(COHORT_FEED_PREFIX) else None


@dataclass(frozen=True)
class UpdateCommand:
    action: Literal["post", "edit", "withdraw", "help"]
    text: str = ""


def parse_update(body: str) -> UpdateCommand | None:
    """``!update ...`` as a command (None when the message is not one)."""
    m = _COMMAND.match(body.strip())
    if m is None:
        return None
    rest = (m.group(1) or "").strip()
    word, tail = [*rest.split(None, 1), ""][:2] if rest else ("", "")
    if not rest or word.lower() in ("help", "?"):
        return UpdateCommand("help")
    if word.lower() == "withdraw" and not tail.strip():
        return UpdateCommand("withdraw")
    if word.lower() == "edit":
        return UpdateCommand("edit", tail.strip()) if tail.strip() else UpdateCommand("help")
    return UpdateCommand("post", rest)


def permalink(room_id: str, event_id: str, via: str) -> str:
    return (
        f"https://matrix.to/#/{quote(room_id, safe='!:')}/{quote(event_id, safe='$')}"
        f"?via={quote(via)}"
    )


def update_item(
    *,
    event_id: str,
    text: str,
    name: str,
    library: str | None,
    cohort: CohortSettings,
    link: str | None,
    published: datetime,
) -> ItemInput:
    """The item a member's update becomes. Pure."""
    text = text.strip()[:MAX_UPDATE_CHARS]
    first = text.splitlines()[0] if text else ""
    if len(first) > TITLE_CHARS:
        first = first[: TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"
    title = f"{library or name}: {first}"
    author = f"{name} ({library})" if library else name
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    summary = "".join(
        "<p>" + "<br>".join(html.escape(line) for line in p.splitlines()) + "</p>"
        for p in paragraphs
    )
    categories = (cohort.name, library) if library else (cohort.name,)
    content_hash = hashlib.sha256(f"{title}\x1f{summary}\x1f{author}".encode()).hexdigest()
    return ItemInput(
        key=event_id,
        kind="cohort-update",
        title=title,
        link=link,
        published=published,
        author=author,
        categories=categories,
        summary_html=summary,
        enclosures=(),
        event_start=None,
        content_hash=content_hash,
    )


def prompt_week(now: datetime, tz: str, weekday: str, hour: int) -> str | None:
    """The ISO week key ("2026-W47") of a weekly prompt due at ``now``, else None.

    Due from the configured local weekday and hour until the end of that day, so a
    service that was down at the hour still asks once, but never days late."""
    local = now.astimezone(ZoneInfo(tz))
    if local.weekday() != weekday_number(weekday) or local.hour < hour:
        return None
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"


def _window_text(window: timedelta) -> str:
    minutes = int(window.total_seconds() // 60)
    if minutes % (24 * 60) == 0:
        days = minutes // (24 * 60)
        return f"{days} day{'s' if days != 1 else ''}"
    if minutes % 60 == 0:
        return f"{minutes // 60} hour{'s' if minutes != 60 else ''}"
    return f"{minutes} minutes"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CohortUpdates:
    """Handles ``!update`` and prompt replies in cohort rooms; posts the weekly prompt."""

    def __init__(
        self,
        settings: Settings,
        matrix: MatrixGateway,
        storage: Storage,
        router: Router,
        community: Community,
        *,
        on_queued: Callable[[], None] = lambda: None,
        on_new_items: Callable[[Sequence[int]], Awaitable[None]] | None = None,
        handle_commands: bool = True,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.matrix = matrix
        self.storage = storage
        self.router = router
        self.community = community
        self.on_queued = on_queued
        self.clock = clock
        self.posted = 0
        self.window = settings.community.update_window
        # False when the assistance bot's command registry runs !update (network/service.py).
        self.handle_commands = handle_commands
        # Digests queue items stored outside the poller through this (DigestRunner.queue_items).
        self.on_new_items = on_new_items

    # -- the command ---------------------------------------------------------------

    async def handle(
        self,
        room_id: str,
        sender: str,
        event_id: str,
        text: str,
        *,
        reply_to: str | None = None,
    ) -> str:
        """Carry out ``!update`` + ``text`` (what follows the command word); the reply."""
        cohort = await self.community.cohort_for_room(room_id)
        if cohort is None:
            return "!update works in cohort rooms only."
        command = parse_update(f"!update {text}")
        assert command is not None
        window = _window_text(self.window)
        if command.action == "help":
            return HELP.format(window=window)
        if command.action == "post":
            return await self.post(cohort, room_id, sender, event_id, command.text)
        target = await self._target(cohort, sender, reply_to)
        if target is None:
            return f"You have no update from the last {window} to change."
        if command.action == "edit":
            return await self.edit(cohort, target, command.text)
        return await self.withdraw(target)

    async def _target(
        self, cohort: CohortSettings, sender: str, reply_to: str | None
    ) -> CohortUpdate | None:
        since = self.clock() - self.window
        if reply_to:
            chosen = await self.storage.cohort_update(reply_to)
            if (
                chosen is not None
                and chosen.sender == sender
                and chosen.status == "active"
                and chosen.posted_at >= since
            ):
                return chosen
        return await self.storage.latest_cohort_update(cohort.id, sender, since)

    async def _name(self, room_id: str, sender: str) -> str:
        try:
            member = await self.matrix.room_state(room_id, "m.room.member", sender)
        except MatrixError:
            member = None
        name = (member or {}).get("displayname")
        return str(name) if name else sender[1:].split(":")[0]

    async def _store(
        self, cohort: CohortSettings, item: ItemInput
    ) -> tuple[int, int]:  # (new, queued)
        feed_id = cohort_feed_id(cohort.id)
        result = await self.storage.store_items(
            feed_id,
            [item],
            targets=lambda i: self.router.targets(feed_id, i, cohort=cohort.id),
            post=lambda _i: True,
            edit_window=self.settings.delivery.edit_window,
            now=self.clock(),
        )
        if result.queued:
            self.on_queued()
        return result.new + result.updated, result.queued

    async def post(
        self, cohort: CohortSettings, room_id: str, sender: str, event_id: str, text: str
    ) -> str:
        """Store a new update from ``sender`` (the message ``event_id``)."""
        now = self.clock()
        library = cohort.library_of(sender)
        name = await self._name(room_id, sender)
        item = update_item(
            event_id=event_id,
            text=text,
            name=name,
            library=library,
            cohort=cohort,
            link=permalink(room_id, event_id, self.matrix.user_id.split(":", 1)[-1]),
            published=now,
        )
        changed, _queued = await self._store(cohort, item)
        update = await self.storage.record_cohort_update(
            event_id=event_id,
            feed_id=cohort_feed_id(cohort.id),
            cohort_id=cohort.id,
            room_id=room_id,
            sender=sender,
            library=library,
            now=now,
        )
        if changed:
            self.posted += 1
            if update is not None and self.on_new_items is not None:
                await self.on_new_items([update.item_id])
        who = f" for {library}" if library else ""
        return (
            f"Thanks, {name}: your update{who} is shared with the network and the people who "
            f"follow {cohort.name} by email. Within {_window_text(self.window)}: "
            "`!update edit NEW TEXT` changes it, `!update withdraw` takes it back."
        )

    async def edit(self, cohort: CohortSettings, update: CohortUpdate, text: str) -> str:
        item = await self.storage.item(update.item_id)
        if item is None:
            return "That update no longer exists."
        name = item.author or update.sender
        if update.library and name.endswith(f" ({update.library})"):
            name = name[: -len(f" ({update.library})")]
        new = update_item(
            event_id=update.event_id,
            text=text,
            name=name,
            library=update.library,
            cohort=cohort,
            link=item.link,
            published=item.published or update.posted_at,
        )
        changed, _ = await self._store(cohort, new)
        await self.storage.touch_cohort_update(update.event_id, self.clock())
        return "Your update is changed." if changed else "Your update already says that."

    async def withdraw(self, update: CohortUpdate) -> str:
        posts = await self.storage.withdraw_cohort_update(update.event_id, self.clock())
        redacted = 0
        for row in posts:
            room_id = await self.storage.room_id_for(row.target)
            if room_id is None or row.event_id is None:
                continue
            try:
                await self.matrix._request(
                    "PUT",
                    f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/redact/"
                    f"{quote(row.event_id, safe='')}/libhub-redact-{row.id}",
                    {"reason": "withdrawn by its author"},
                    what=f"redact {row.event_id}",
                )
                redacted += 1
            except MatrixError as e:
                log.warning("could not redact withdrawn update %s: %s", row.event_id, e)
        where = f"; its {redacted} message(s) in Matrix rooms are removed" if redacted else ""
        return f"Your update is withdrawn{where}; digests will leave it out."

    # -- the event hook ------------------------------------------------------------

    async def on_event(self, room_id: str, event: nio.Event) -> None:
        """Event hook: ``!update`` messages, edits of them, and replies to the prompt."""
        if not isinstance(event, nio.RoomMessageText) or event.sender == self.matrix.user_id:
            return
        content: dict[str, Any] = dict(event.source.get("content") or {})
        if content.get("msgtype") != "m.text":
            return  # notices are never answered (bots must not talk to each other)
        relates = content.get("m.relates_to") or {}
        if relates.get("rel_type") == "m.replace":
            await self._on_edit(room_id, event, content, str(relates.get("event_id", "")))
            return
        body = plain_text(content)
        text: str | None = None
        command = parse_update(body)
        if command is not None:
            if not self.handle_commands:
                return  # the assistance bot runs it, also in reply to the prompt
            text = body.strip()[len("!update") :].strip()
        else:
            prompt = responds_to(content)
            if prompt and body and await self.storage.prompt_cohort(prompt):
                text = body
        if text is None or await self.community.cohort_for_room(room_id) is None:
            return
        reply_to = reply_to_of(content)
        reply = await self.handle(room_id, event.sender, event.event_id, text, reply_to=reply_to)
        await self._reply(room_id, event.event_id, event.sender, reply)

    async def _on_edit(
        self, room_id: str, event: nio.RoomMessageText, content: dict[str, Any], original: str
    ) -> None:
        """A member edited their ``!update`` message in their client: follow the edit."""
        update = await self.storage.cohort_update(original)
        if update is None or update.sender != event.sender or update.status != "active":
            return
        cohort = await self.community.cohort_for_room(room_id)
        if cohort is None or update.posted_at < self.clock() - self.window:
            return
        new_body = str((content.get("m.new_content") or {}).get("body", ""))
        command = parse_update(new_body)
        text = command.text if command is not None and command.action == "post" else new_body
        if text.strip():
            await self.edit(cohort, update, text)

    async def _reply(self, room_id: str, event_id: str, sender: str, text: str) -> None:
        content = {
            "msgtype": "m.notice",
            "body": text,
            "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
            "m.mentions": {"user_ids": [sender]},
        }
        digest = hashlib.sha256(event_id.encode()).hexdigest()[:32]
        await self.matrix.send(room_id, content, txn_id=f"libhub-update-reply-{digest}")

    # -- the weekly prompt -----------------------------------------------------------

    async def prompt_once(self) -> int:
        """Post this week's prompt in every cohort room where it is due; how many posted."""
        c = self.settings.community
        if not c.weekly_prompt or not self.matrix.logged_in:
            return 0
        week = prompt_week(self.clock(), self.settings.network.timezone, c.prompt_weekday,
                           c.prompt_hour)  # fmt: skip
        if week is None:
            return 0
        posted = 0
        for cohort in self.settings.cohorts:
            if await self.storage.prompt_posted(cohort.id, week):
                continue
            room_id = await self.storage.room_id_for(cohort.room)
            if room_id is None:
                continue
            content = {"msgtype": "m.notice", "body": c.prompt_text}
            digest = hashlib.sha256(f"{cohort.id}|{week}".encode()).hexdigest()[:24]
            sent = await self.matrix.send(room_id, content, txn_id=f"libhub-prompt-{digest}")
            await self.storage.record_prompt(cohort.id, week, room_id, sent.event_id, self.clock())
            posted += 1
        return posted

    async def run(self, stop: asyncio.Event) -> None:
        if not self.settings.community.weekly_prompt:
            return
        while not stop.is_set():
            try:
                await self.prompt_once()
            except Exception:
                log.exception("weekly prompt failed; trying again in a minute")
            try:
                await asyncio.wait_for(stop.wait(), timeout=60.0)
            except TimeoutError:
                pass
