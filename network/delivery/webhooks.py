"""Inbound webhooks: a posted payload becomes an item, stored and queued like a feed's.

The web layer (network/web/hooks.py) checks the token, the size and the rate; this module
renders the hook's templates over the payload and stores the item under the feed id
``hook:<id>`` with `FeedStore.store_items`, so its deliveries are outbox rows written in
the same transaction (exactly once, held for moderation when a route says so).

The item key is the payload's ``id`` field when it has one, else a hash of the body: a
sender that retries a post it thinks was lost makes no second item.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from jinja2 import TemplateError

from network.errors import LibhubError
from network.route_templates import render_payload
from network.routing.router import Router
from network.settings.model import Settings
from network.settings.moderation import HookSettings
from network.storage import ItemInput, Storage

TITLE_CHARS = 200
SUMMARY_CHARS = 4000
KEY_CHARS = 200


class HookRefused(LibhubError):
    """The payload cannot become an item; the message tells the sender why."""


@dataclass(frozen=True)
class HookResult:
    item_key: str
    new: bool
    updated: bool
    queued: int
    held: int


def payload_item(hook: HookSettings, payload: Mapping[str, object], raw: bytes) -> ItemInput:
    """The item the hook's templates make of ``payload`` (pure)."""
    t = hook.template
    try:
        title = render_payload(t.title, payload)[:TITLE_CHARS]
        link = render_payload(t.link, payload)
        summary = render_payload(t.summary, payload)[:SUMMARY_CHARS]
    except TemplateError as e:
        raise HookRefused(f"the hook's template could not use this payload: {e}") from e
    if not title:
        raise HookRefused(
            "the payload gives no title (the hook's title template rendered nothing); "
            "send the field it reads"
        )
    if not link.startswith(("https://", "http://")):
        link = ""
    given = payload.get("id")
    if isinstance(given, str | int) and not isinstance(given, bool) and str(given).strip():
        key = "id:" + str(given).strip()[:KEY_CHARS]
    else:
        key = "body:" + hashlib.sha256(raw).hexdigest()
    summary_html = f"<p>{html.escape(summary)}</p>" if summary else ""
    content = json.dumps([title, link, summary_html], ensure_ascii=False).encode("utf-8")
    return ItemInput(
        key=key,
        kind=hook.kind,
        title=title,
        link=link or None,
        published=None,
        author=None,
        categories=(),
        summary_html=summary_html,
        enclosures=(),
        event_start=None,
        content_hash=hashlib.sha256(content).hexdigest(),
    )


class Webhooks:
    """Stores the items of inbound webhooks and wakes delivery."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        router: Router,
        *,
        on_queued: Callable[[], None],
        on_new_items: Callable[[Sequence[int]], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.router = router
        self.on_queued = on_queued
        self.on_new_items = on_new_items
        self.clock = clock

    async def receive(
        self, hook: HookSettings, payload: Mapping[str, object], raw: bytes
    ) -> HookResult:
        item = payload_item(hook, payload, raw)
        found = self.router.targets(hook.feed_id, item)
        result = await self.storage.store_items(
            hook.feed_id,
            [item],
            targets=lambda _i: found,
            post=lambda _i: True,
            edit_window=self.settings.delivery.edit_window,
            now=self.clock(),
        )
        if result.queued:
            self.on_queued()
        if result.new and self.on_new_items is not None:
            stored = await self.storage.item_ids_by_key(hook.feed_id, [item.key])
            await self.on_new_items(stored)
        held = sum(t.held for t in found) if result.new else 0
        return HookResult(item.key, bool(result.new), bool(result.updated), result.queued, held)
