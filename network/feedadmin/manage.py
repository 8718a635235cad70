"""Changing live feeds and routes: checks, the first look at a feed, storing, the audit log.

Every change is checked completely before anything is stored (a URL that is not a feed, a
private address, a redirect loop, a template that does not render, an unsafe filter are
refused with why), stored in one transaction with its audit entry, and then the catalog is
reloaded so the poller and router see it at once. A new feed's current items are stored as
seen (`first_poll`), so nothing already in it floods a room.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

from jinja2 import TemplateError

from feeds.discover import DiscoveredFeed, discover_feeds
from feeds.errors import FeedError, FetchError, NotAFeedError
from feeds.fetch import Fetcher
from feeds.parse import ParsedFeed, ParsedItem, parse_feed_async
from feeds.sanitize import html_to_text
from network.errors import ConfigError, LibhubError
from network.feedadmin import messages as M
from network.i18n import gettext as _
from network.route_templates import compile_template, render_channel, render_matrix
from network.routing.catalog import FeedCatalog, LiveFeed
from network.routing.filters import UnsafePattern, compile_filter, match_text, passes
from network.settings.checks import check_room
from network.settings.model import KINDS, Settings
from network.storage import Storage
from network.storage.live_feeds import FeedFilterRecord, LiveFeedRecord, LiveRouteRecord

FirstPoll = Callable[[str], Awaitable[object]]


class Refused(LibhubError):
    """A change that was not made; the message says why and what to do."""


@dataclass(frozen=True)
class PreviewItem:
    """What a template sees of an item (network/route_templates.py `ItemLike`)."""

    kind: str
    title: str
    link: str | None
    published: datetime | None
    author: str | None
    summary_html: str
    event_start: datetime | None


@dataclass(frozen=True)
class Added:
    feed: LiveFeedRecord
    count: int  # items marked as seen
    preview: tuple[PreviewItem, ...]


@dataclass(frozen=True)
class Discovered:
    """The URL was a web page that links to feeds: a person chooses one."""

    url: str
    feeds: tuple[DiscoveredFeed, ...]


def _now() -> datetime:
    return datetime.now(UTC)


def _preview_items(parsed: ParsedFeed, kind: str, n: int) -> tuple[PreviewItem, ...]:
    newest = sorted(
        parsed.items,
        key=lambda i: i.published or datetime.min.replace(tzinfo=UTC),
        reverse=True,
    )
    return tuple(_item(i, kind) for i in newest[:n])


def _item(i: ParsedItem, kind: str) -> PreviewItem:
    return PreviewItem(kind, i.title, i.link, i.published, i.author, i.summary_html, None)


def _slug(url: str) -> str:
    host = (urlsplit(url).hostname or "feed").lower().removeprefix("www.")
    return re.sub(r"[^a-z0-9]+", "-", host).strip("-")[:40] or "feed"


class FeedAdmin:
    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        fetcher: Fetcher,
        catalog: FeedCatalog,
        *,
        first_poll: FirstPoll,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.fetcher = fetcher
        self.catalog = catalog
        self.first_poll = first_poll
        self.on_change = on_change
        self.clock = clock
        self._lock = asyncio.Lock()  # one change at a time: ids and checks stay consistent

    @property
    def preview_size(self) -> int:
        return self.settings.feeds_admin.preview_items

    async def fetch_parsed(self, url: str) -> tuple[ParsedFeed | None, bytes]:
        """The parsed feed at ``url``, or (None, body) when it is not a feed."""
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise Refused(_(M.NOT_HTTP).format(url=url))
        try:
            result = await self.fetcher.fetch(
                url, allow_private=self.settings.feeds_admin.allow_private
            )
        except FetchError as e:
            raise Refused(_(M.FETCH_FAILED).format(why=e)) from e
        body = result.body or b""
        try:
            parsed = await parse_feed_async(body, url=result.url, headers=result.headers)
        except NotAFeedError:
            return None, body
        except FeedError as e:
            raise Refused(_(M.NOT_A_FEED).format(url=url, why=e)) from e
        return parsed, body

    async def add(
        self,
        actor: str,
        url: str,
        *,
        kind: str = "news",
        title: str = "",
        rooms: Sequence[str] = (),
        channels: Sequence[str] = (),
    ) -> Added | Discovered:
        url = url.strip()
        if kind not in KINDS:
            raise Refused(_(M.BAD_KIND).format(kind=kind))
        self._check_targets(rooms, channels)
        for feed in self.catalog.feeds():
            if feed.url == url and (not rooms or set(rooms) & set(feed.rooms)):
                raise Refused(_(M.ALREADY).format(url=url, feed_id=feed.id))
        parsed, body = await self.fetch_parsed(url)
        if parsed is None:
            found = discover_feeds(body, url=url)
            if not found:
                raise Refused(
                    _(M.NOT_A_FEED).format(
                        url=url, why=_("no RSS, Atom or JSON Feed, and no feed links")
                    )
                )
            return Discovered(url, tuple(found))
        async with self._lock:
            taken = await self.storage.feed_ids_in_use() | {f.id for f in self.catalog.feeds()}
            base = _slug(url)
            feed_id, n = base, 1
            while feed_id in taken:
                n += 1
                feed_id = f"{base}-{n}"
            record = LiveFeedRecord(
                id=feed_id,
                url=url,
                kind=kind,
                title=(title or parsed.title)[:200],
                rooms=tuple(rooms),
                channels=tuple(channels),
                template="",
                filters=(),
                paused=False,
                added_by=actor,
                added_at=self.clock(),
            )
            await self.storage.add_live_feed(record, detail=f"{url} -> {', '.join(rooms) or '-'}")
            await self.catalog.reload(self.storage)
        # The current items are history: stored as seen (initial_posts is 0 for live feeds).
        await self.first_poll(feed_id)
        self.on_change()
        return Added(record, len(parsed.items), _preview_items(parsed, kind, self.preview_size))

    def _live(self, feed_id: str, room: str | None = None) -> LiveFeed:
        live = self.catalog.live(feed_id)
        if live is None:
            if self.catalog.is_file_feed(feed_id):
                raise Refused(_(M.FILE_FEED).format(feed_id=feed_id))
            raise Refused(_(M.UNKNOWN_FEED).format(feed_id=feed_id))
        if room is not None and room not in live.record.rooms:
            raise Refused(_(M.OTHER_ROOM).format(feed_id=feed_id))
        return live

    async def _changed(self) -> None:
        await self.catalog.reload(self.storage)
        self.on_change()

    async def remove(self, actor: str, feed_id: str, *, room: str | None = None) -> None:
        async with self._lock:
            self._live(feed_id, room)
            await self.storage.remove_live_feed(feed_id, actor=actor, now=self.clock())
            await self._changed()

    async def set_paused(
        self, actor: str, feed_id: str, paused: bool, *, room: str | None = None
    ) -> None:
        async with self._lock:
            self._live(feed_id, room)
            await self.storage.change_live_feed(
                feed_id,
                actor=actor,
                action="feed.pause" if paused else "feed.resume",
                detail="",
                now=self.clock(),
                paused=paused,
            )
            await self._changed()

    async def latest(self, feed_id: str) -> tuple[PreviewItem, ...]:
        live = self._live(feed_id)
        parsed, _ = await self.fetch_parsed(live.record.url)
        if parsed is None:
            return ()
        return _preview_items(parsed, live.record.kind, max(self.preview_size, 1) * 4)

    async def set_template(
        self, actor: str, feed_id: str, template: str, *, room: str | None = None
    ) -> tuple[str, str] | None:
        """Save ``template`` (checked like route templates); the first item rendered with
        it (plain, HTML), or None when cleared or the feed has no items."""
        live = self._live(feed_id, room)
        template = template.strip()
        rendered = None
        if template:
            try:
                compiled = compile_template(template, html=True, path=f"feed {feed_id} template")
            except ConfigError as e:
                raise Refused(_(M.TEMPLATE_BAD).format(why=e)) from e
            if not live.record.rooms:
                raise Refused(_(M.TEMPLATE_BAD).format(why="the feed posts to no room"))
            items = await self.latest(feed_id)
            if items:
                title = live.record.title or feed_id
                rendered = render_matrix(compiled, items[0], feed_title=title, feed_link=None)
        async with self._lock:
            self._live(feed_id, room)
            await self.storage.change_live_feed(
                feed_id,
                actor=actor,
                action="feed.template",
                detail=template[:300],
                now=self.clock(),
                template=template,
            )
            await self._changed()
        return rendered

    async def add_filter(
        self, actor: str, feed_id: str, mode: str, pattern: str, *, room: str | None = None
    ) -> tuple[int, int]:
        """Add a keep/block filter; (latest items that would be posted, latest items)."""
        live = self._live(feed_id, room)
        try:
            # The check times the pattern on probe texts: off the event loop.
            checked = await asyncio.to_thread(compile_filter, mode, pattern)
        except UnsafePattern as e:
            raise Refused(_(M.FILTER_BAD).format(why=e)) from e
        filters = (*live.filters, checked)
        items = await self.latest(feed_id)
        shown = sum(
            passes(filters, match_text(i.title, (), html_to_text(i.summary_html))) for i in items
        )
        async with self._lock:
            live = self._live(feed_id, room)
            stored = (*live.record.filters, FeedFilterRecord(mode, pattern))
            await self.storage.change_live_feed(
                feed_id,
                actor=actor,
                action="feed.filter",
                detail=f"{mode} {pattern}",
                now=self.clock(),
                filters=stored,
            )
            await self._changed()
        return shown, len(items)

    async def set_targets(
        self, actor: str, feed_id: str, rooms: Sequence[str], channels: Sequence[str]
    ) -> LiveFeedRecord:
        """Change where a live feed posts (the dashboard's route of one feed)."""
        self._check_targets(rooms, channels)
        async with self._lock:
            self._live(feed_id)
            await self.storage.change_live_feed(
                feed_id,
                actor=actor,
                action="feed.route",
                detail=f"rooms={','.join(rooms) or '-'} channels={','.join(channels) or '-'}",
                now=self.clock(),
                rooms=tuple(rooms),
                channels=tuple(channels),
            )
            await self._changed()
            return self._live(feed_id).record

    def _check_targets(self, rooms: Sequence[str], channels: Sequence[str]) -> None:
        for i, room in enumerate(rooms):
            try:
                check_room(room, f"rooms[{i}]")
            except ConfigError as e:
                raise Refused(_(M.ROUTE_BAD).format(why=e)) from e
        unknown = [c for c in channels if c not in self.settings.channels]
        if unknown:
            raise Refused(_(M.ROUTE_BAD).format(why=f"unknown channel {unknown[0]!r}"))

    # -- routes (dashboard) ---------------------------------------------------------------

    def _check_route(self, route: LiveRouteRecord) -> None:
        try:
            for i, room in enumerate(route.rooms):
                check_room(room, f"rooms[{i}]")
            if not (route.rooms or route.channels):
                raise ConfigError("a route needs rooms or channels to send to")
            for name in route.channels:
                if name not in self.settings.channels:
                    raise ConfigError(f"unknown channel {name!r}")
            known = {f.id for f in self.catalog.feeds()}
            for feed_id in route.feeds:
                if feed_id not in known:
                    raise ConfigError(f"unknown feed {feed_id!r}")
            for kind in route.kinds:
                if kind not in KINDS:
                    raise ConfigError(f"unknown kind {kind!r}")
            if route.matrix_template:
                compile_template(route.matrix_template, html=True, path="matrix_template")
            if route.channel_template:
                compile_template(route.channel_template, html=False, path="channel_template")
        except ConfigError as e:
            raise Refused(_(M.ROUTE_BAD).format(why=e)) from e

    async def save_route(self, actor: str, route: LiveRouteRecord) -> int:
        """Add (``route.id`` 0) or change a live route; its id."""
        self._check_route(route)
        detail = (
            f"feeds={','.join(route.feeds) or '*'} kinds={','.join(route.kinds) or '*'} "
            f"rooms={','.join(route.rooms) or '-'} channels={','.join(route.channels) or '-'}"
        )
        async with self._lock:
            if route.id == 0:
                route_id = await self.storage.add_live_route(
                    replace(route, added_by=actor, added_at=self.clock()), detail=detail
                )
            else:
                route_id = route.id
                if not await self.storage.update_live_route(
                    route, actor=actor, now=self.clock(), detail=detail
                ):
                    raise Refused(_(M.ROUTE_BAD).format(why=f"there is no route {route.id}"))
            await self._changed()
        return route_id

    async def remove_route(self, actor: str, route_id: int) -> None:
        async with self._lock:
            if not await self.storage.remove_live_route(route_id, actor=actor, now=self.clock()):
                raise Refused(_(M.ROUTE_BAD).format(why=f"there is no route {route_id}"))
            await self._changed()

    async def route_preview(self, route: LiveRouteRecord) -> tuple[str, str] | None:
        """The newest item of the route's first feed as its template renders it: (what a
        room would show, what a channel would show); None without a feed to read or an item.
        A feed that cannot be read now gives no preview rather than refusing the route."""
        if not route.feeds:
            return None
        feed = self.catalog.feed(route.feeds[0])
        try:
            parsed, _body = await self.fetch_parsed(feed.url)
        except Refused:
            return None
        if parsed is None or not parsed.items:
            return None
        item = _preview_items(parsed, feed.kind, 1)[0]
        title = feed.title or feed.id
        room = channel = ""
        try:
            if route.matrix_template:
                matrix = compile_template(route.matrix_template, html=True, path="matrix_template")
                room = render_matrix(matrix, item, feed_title=title, feed_link=None)[0]
            if route.channel_template:
                plain = compile_template(route.channel_template, html=False, path="channel")
                channel = render_channel(plain, item, feed_title=title, feed_link=None)
        except (ConfigError, TemplateError):
            return None  # the router falls back to the default layout for this item, too
        if not (room or channel):
            room = item.title + (f" {item.link}" if item.link else "")
        return room, channel
