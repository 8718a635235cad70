"""Moderation: coordinators approve or reject held items, on the dashboard or by reacting
in the ops room; approved items are then delivered once, through the outbox.

The queue itself is the outbox (rows in status ``held``, network/storage/moderation.py);
this module announces each held item once in ``network.ops_room`` (the notice's
transaction id is derived from the item, so a notice re-sent after a crash is the same
event) and turns a coordinator's ✅ or ❌ reaction to that notice into a decision. Only the
Matrix ids in ``assistance.coordinators`` may decide; everyone else's reactions are ignored.
Every decision (and every edit) is in the audit log, written with it.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import nio

from network.errors import MatrixError
from network.matrix.gateway import MatrixGateway
from network.settings.model import Settings
from network.storage import Item, Storage

log = logging.getLogger(__name__)

APPROVE_KEYS = frozenset({"✅", "✔", "☑"})
REJECT_KEYS = frozenset({"❌", "✖", "🚫"})
_VARIATION = re.compile("[\ufe0e\ufe0f]")

# What people read (one place, for translation later).
NOTICE = (
    "Held for review: {title} (from {source}){link}. React ✅ to approve it or ❌ to "
    "reject it, or use the dashboard: {url}"
)
DECIDED = "{verb} by {who}: {title}"
VERBS = {True: "Approved", False: "Rejected"}


def decision_of(key: str) -> bool | None:
    """True for an approving reaction, False for a rejecting one, None otherwise."""
    k = _VARIATION.sub("", key.strip())
    if k in APPROVE_KEYS:
        return True
    if k in REJECT_KEYS:
        return False
    return None


def _relates_to(content: Mapping[str, Any]) -> Mapping[str, Any]:
    rel = content.get("m.relates_to")
    return rel if isinstance(rel, Mapping) else {}


class Moderation:
    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        matrix: MatrixGateway,
        *,
        on_released: Callable[[], None],
        source_title: Callable[[str], str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.matrix = matrix
        self.on_released = on_released
        self.source_title = source_title
        self.clock = clock
        self.wake = asyncio.Event()
        self._ops_room_id: str | None = None

    async def decide(self, item_id: int, *, approve: bool, actor: str) -> int:
        """Approve or reject ``item_id``'s held deliveries; how many rows changed (0: it
        was not held any more, and nothing was recorded)."""
        changed = await self.storage.decide_held(
            item_id, approve=approve, actor=actor, now=self.clock()
        )
        if changed:
            log.info("moderation: %s %s item %d", actor, VERBS[approve].lower(), item_id)
            if approve:
                self.on_released()
        return changed

    async def edit_title(self, item_id: int, title: str, *, actor: str) -> bool:
        return await self.storage.edit_held_item(
            item_id, title=title, actor=actor, now=self.clock()
        )

    # -- the ops room ----------------------------------------------------------------------

    async def _ops_room(self) -> str | None:
        ref = self.settings.network.ops_room
        if not ref or not self.matrix.logged_in:
            return None
        if self._ops_room_id is None:
            self._ops_room_id = await self.matrix.resolve_room(ref)
        return self._ops_room_id

    def _notice(self, item: Item) -> dict[str, Any]:
        url = f"{self.settings.web.public_url.rstrip('/')}/dashboard/moderation"
        source = self.source_title(item.feed_id)
        link = f" {item.link}" if item.link else ""
        body = NOTICE.format(title=item.title, source=source, link=link, url=url)
        formatted = NOTICE.format(
            title=f"<b>{html.escape(item.title)}</b>",
            source=html.escape(source),
            link=f' <a href="{html.escape(item.link)}">{html.escape(item.link)}</a>'
            if item.link
            else "",
            url=f'<a href="{html.escape(url)}">{html.escape(url)}</a>',
        )
        return {
            "msgtype": "m.notice",
            "body": body,
            "format": "org.matrix.custom.html",
            "formatted_body": formatted,
        }

    async def post_notices(self) -> int:
        """Announce every held item that has no notice yet; how many were posted."""
        try:
            room_id = await self._ops_room()
        except MatrixError as e:
            log.warning("moderation: cannot resolve the ops room: %s", e)
            return 0
        if room_id is None:
            return 0
        posted = 0
        for item in await self.storage.held_without_notice():
            try:
                sent = await self.matrix.send(
                    room_id, self._notice(item), txn_id=f"libhub-held-{item.id}"
                )
            except MatrixError as e:
                log.warning("moderation: notice for item %d not sent: %s", item.id, e)
                break
            await self.storage.record_notice(
                item.id, room_id=room_id, event_id=sent.event_id, now=self.clock()
            )
            posted += 1
        return posted

    async def on_event(self, room_id: str, event: nio.Event) -> None:
        """The sync hook: a coordinator's ✅/❌ on a held item's notice decides it."""
        source = getattr(event, "source", None)
        if not isinstance(source, Mapping) or source.get("type") != "m.reaction":
            return
        sender = str(source.get("sender", ""))
        if sender == self.matrix.user_id or room_id != self._ops_room_id:
            return
        rel = _relates_to(source.get("content") or {})
        if rel.get("rel_type") != "m.annotation":
            return
        approve = decision_of(str(rel.get("key", "")))
        if approve is None:
            return
        item_id = await self.storage.item_of_notice(str(rel.get("event_id", "")))
        if item_id is None:
            return
        if sender not in self.settings.assistance.coordinators:
            log.info("moderation: ignoring a reaction by %s (not a coordinator)", sender)
            return
        if await self.decide(item_id, approve=approve, actor=sender):
            item = await self.storage.item(item_id)
            text = DECIDED.format(
                verb=VERBS[approve], who=sender, title=item.title if item else item_id
            )
            try:
                await self.matrix.send(
                    room_id,
                    {"msgtype": "m.notice", "body": text},
                    txn_id=f"libhub-decided-{source.get('event_id', item_id)}",
                )
            except MatrixError as e:
                log.warning("moderation: confirmation not sent: %s", e)

    async def run(self, stop: asyncio.Event) -> None:
        period = self.settings.moderation.notice_every.total_seconds()
        while not stop.is_set():
            try:
                await self.post_notices()
            except Exception:
                log.exception("moderation: posting notices failed; trying again later")
            self.wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
            try:
                await asyncio.wait(waiters, timeout=period, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
