"""``!feed`` in a room: members with the configured power level manage the feeds that post
to that room; everyone may list them. The answer says what was done and shows the latest
items as they would be posted (they are history: marked seen, never posted).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from feeds.discover import DiscoveredFeed
from network.errors import LibhubError
from network.feedadmin import messages as M
from network.feedadmin.manage import Added, FeedAdmin, PreviewItem, Refused
from network.settings.model import KINDS

log = logging.getLogger(__name__)


class RoomState(Protocol):
    async def room_state(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Answer:
    text: str
    html: str


def _answer(lines: list[str], items: list[str] | None = None) -> Answer:
    body = "\n".join(lines)
    parts = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    if items:
        parts += "<ul>" + "".join(items) + "</ul>"
    return Answer(body, parts)


def _item_lines(items: tuple[PreviewItem, ...]) -> tuple[list[str], list[str]]:
    text = [f"- {i.title}" + (f" <{i.link}>" if i.link else "") for i in items]
    markup = [
        "<li>"
        + (
            f'<a href="{html.escape(i.link, quote=True)}">{html.escape(i.title)}</a>'
            if i.link
            else html.escape(i.title)
        )
        + "</li>"
        for i in items
    ]
    return text, markup


class FeedRoomCommands:
    def __init__(self, admin: FeedAdmin, matrix: RoomState) -> None:
        self.admin = admin
        self.matrix = matrix
        # The last autodiscovery answer per (room, sender): "!feed add 2" picks from it.
        self._choices: dict[tuple[str, str], tuple[DiscoveredFeed, ...]] = {}

    @property
    def level(self) -> int:
        return self.admin.settings.feeds_admin.power_level

    async def power_level(self, room_id: str, user_id: str) -> int:
        content = await self.matrix.room_state(room_id, "m.room.power_levels") or {}
        users = content.get("users") or {}
        value = users.get(user_id, content.get("users_default", 0))
        return int(value) if isinstance(value, int) else 0

    async def handle(self, room_id: str, sender: str, args: str) -> Answer:
        words = args.split()
        if not words:
            return _answer([M.USAGE])
        sub, rest = words[0].lower(), words[1:]
        if sub == "list":
            return self._list(room_id)
        if sub not in ("add", "remove", "template", "filter", "pause", "resume"):
            return _answer([M.USAGE])
        have = await self.power_level(room_id, sender)
        if have < self.level:
            return _answer([M.NOT_ALLOWED.format(level=self.level, have=have)])
        try:
            return await self._change(room_id, sender, sub, rest, args)
        except Refused as e:
            return _answer([str(e)])
        except LibhubError as e:
            log.warning("!feed %s in %s failed: %s", sub, room_id, e)
            return _answer([str(e)])

    def _list(self, room_id: str) -> Answer:
        lines, items = [], []
        for feed in self.admin.catalog.feeds():
            if room_id not in feed.rooms:
                continue
            live = self.admin.catalog.live(feed.id)
            state = "config file" if live is None else ("paused" if live.paused else "live")
            extra = ""
            if live is not None and live.record.filters:
                extra = "; filters: " + ", ".join(
                    f"{f.mode} {f.pattern!r}" for f in live.record.filters
                )
            line = f"{feed.id}: {feed.title or feed.url} ({feed.kind}, {state}){extra}"
            lines.append(f"- {line}")
            items.append(f"<li>{html.escape(line)}</li>")
        if not lines:
            return _answer([M.NO_FEEDS])
        return Answer(
            "\n".join([M.LIST_HEAD, *lines]), f"<p>{M.LIST_HEAD}</p><ul>{''.join(items)}</ul>"
        )

    async def _change(
        self, room_id: str, sender: str, sub: str, rest: list[str], args: str
    ) -> Answer:
        admin = self.admin
        if sub == "add":
            return await self._add(room_id, sender, rest)
        if not rest:
            return _answer([M.USAGE])
        feed_id = rest[0]
        if sub == "remove":
            await admin.remove(sender, feed_id, room=room_id)
            return _answer([M.REMOVED.format(feed_id=feed_id)])
        if sub in ("pause", "resume"):
            await admin.set_paused(sender, feed_id, sub == "pause", room=room_id)
            done = M.PAUSED if sub == "pause" else M.RESUMED
            return _answer([done.format(feed_id=feed_id)])
        if sub == "template":
            # The template is everything after the id, spaces and all.
            template = args.split(None, 2)[2] if len(args.split(None, 2)) > 2 else ""
            rendered = await admin.set_template(sender, feed_id, template, room=room_id)
            if not template.strip():
                return _answer([M.TEMPLATE_CLEARED.format(feed_id=feed_id)])
            head = M.TEMPLATE_SET.format(feed_id=feed_id)
            if rendered is None:
                return _answer([head, M.NO_ITEMS])
            plain, markup = rendered
            return Answer(
                f"{head}\n{plain}", f"<p>{html.escape(head)}</p><blockquote>{markup}</blockquote>"
            )
        # filter ID keep|block REGEX
        parts = args.split(None, 3)
        if len(parts) < 4 or parts[2].lower() not in ("keep", "block"):
            return _answer([M.USAGE])
        mode, pattern = parts[2].lower(), parts[3].strip()
        shown, n = await admin.add_filter(sender, feed_id, mode, pattern, room=room_id)
        verb = "keeps only" if mode == "keep" else "blocks"
        return _answer(
            [M.FILTER_SET.format(feed_id=feed_id, verb=verb, pattern=pattern, shown=shown, n=n)]
        )

    async def _add(self, room_id: str, sender: str, rest: list[str]) -> Answer:
        if not rest:
            return _answer([M.USAGE])
        url = rest[0]
        if url.isdigit():
            choices = self._choices.get((room_id, sender))
            if not choices:
                return _answer([M.NO_CHOICE])
            n = int(url)
            if not 1 <= n <= len(choices):
                return _answer([M.BAD_CHOICE.format(n=len(choices))])
            url = choices[n - 1].url
        kind = "news"
        if len(rest) > 1 and rest[1].lower() in KINDS:
            kind, title_words = rest[1].lower(), rest[2:]
        else:
            title_words = rest[1:]
        result = await self.admin.add(
            sender, url, kind=kind, title=" ".join(title_words), rooms=(room_id,)
        )
        if isinstance(result, Added):
            self._choices.pop((room_id, sender), None)
            return self._added(result)
        self._choices[(room_id, sender)] = result.feeds
        head = M.DISCOVERED.format(url=result.url, n=len(result.feeds))
        lines = [
            f"{i}. {f.title or f.url} ({f.kind}) {f.url}" for i, f in enumerate(result.feeds, 1)
        ]
        items = [
            f"<li>{html.escape(f.title or f.url)} ({html.escape(f.kind)}) "
            f"<code>{html.escape(f.url)}</code></li>"
            for f in result.feeds
        ]
        return Answer(
            "\n".join([head, *lines]), f"<p>{html.escape(head)}</p><ol>{''.join(items)}</ol>"
        )

    def _added(self, added: Added) -> Answer:
        r = added.feed
        head = M.ADDED.format(feed_id=r.id, title=r.title, kind=r.kind, count=added.count)
        if not added.preview:
            return _answer([head, M.NO_ITEMS])
        text, markup = _item_lines(added.preview)
        return Answer(
            "\n".join([head, M.PREVIEW, *text]),
            f"<p>{html.escape(head)}</p><p>{html.escape(M.PREVIEW)}</p><ul>{''.join(markup)}</ul>",
        )
