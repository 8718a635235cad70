"""The feeds and routes in force: the config file's, plus those managed live (stored in the
database, network/storage/live_feeds.py), as one view the poller and router read.

The file wins: a live feed can never take the id of a file feed, and file feeds cannot be
changed live. `reload` re-reads the live part after every change, so the poller and router
see it at their next look, without a restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from feeds.sanitize import html_to_text
from network.routing.filters import ItemFilter, UnsafePattern, compile_filter, match_text, passes
from network.settings.model import FeedSettings, RouteSettings, Settings
from network.storage import Storage
from network.storage.live_feeds import LiveFeedRecord, LiveRouteRecord

# Live feed ids: lower-case words joined by dashes, so `!feed remove ID` is easy to type.
LIVE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class LiveFeed:
    """A feed managed live: its settings as the poller and router use them, and more."""

    settings: FeedSettings
    record: LiveFeedRecord
    filters: tuple[ItemFilter, ...]

    @property
    def id(self) -> str:
        return self.settings.id

    @property
    def paused(self) -> bool:
        return self.record.paused


def live_feed_settings(record: LiveFeedRecord) -> FeedSettings:
    # Everything a live feed holds when it is added is history: initial_posts 0.
    kind = record.kind if record.kind in ("news", "webinar", "cohort-update") else "news"
    return FeedSettings(
        id=record.id,
        url=record.url,
        kind=kind,  # type: ignore[arg-type]
        rooms=record.rooms,
        channels=record.channels,
        title=record.title,
        initial_posts=0,
    )


def _filters(record: LiveFeedRecord) -> tuple[ItemFilter, ...]:
    out = []
    for f in record.filters:
        try:
            out.append(compile_filter(f.mode, f.pattern))
        except UnsafePattern:
            continue  # stored before a stricter check: ignored rather than run
    return tuple(out)


class FeedCatalog:
    """What is configured now. Without `reload`, only the file's feeds and routes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._live: dict[str, LiveFeed] = {}
        self._routes: tuple[LiveRouteRecord, ...] = ()
        self._all_routes: tuple[RouteSettings, ...] = settings.routes
        self.version = 0  # bumped by every reload: caches keyed on it

    async def reload(self, storage: Storage) -> None:
        live: dict[str, LiveFeed] = {}
        file_ids = {f.id for f in self.settings.feeds}
        for record in await storage.live_feeds():
            if record.id in file_ids:
                continue  # the file wins
            live[record.id] = LiveFeed(live_feed_settings(record), record, _filters(record))
        routes = tuple(await storage.live_routes())
        self._live = live
        self._routes = routes
        self._all_routes = (
            self.settings.routes
            + tuple(_route_of(r) for r in routes)
            + tuple(
                RouteSettings(
                    feeds=(f.id,), rooms=f.record.rooms, matrix_template=f.record.template
                )
                for f in live.values()
                if f.record.template and f.record.rooms
            )
        )
        self.version += 1

    # -- feeds ----------------------------------------------------------------------------

    def feeds(self) -> tuple[FeedSettings, ...]:
        """Every feed, the file's first; paused live feeds included."""
        return self.settings.feeds + tuple(f.settings for f in self._live.values())

    def feed(self, feed_id: str) -> FeedSettings:
        live = self._live.get(feed_id)
        if live is not None:
            return live.settings
        return self.settings.feed(feed_id)

    def live(self, feed_id: str) -> LiveFeed | None:
        return self._live.get(feed_id)

    def live_feeds(self) -> tuple[LiveFeed, ...]:
        return tuple(self._live.values())

    def is_file_feed(self, feed_id: str) -> bool:
        return any(f.id == feed_id for f in self.settings.feeds)

    def passes_filters(
        self, feed_id: str, title: str, categories: tuple[str, ...], summary_html: str
    ) -> bool:
        live = self._live.get(feed_id)
        if live is None or not live.filters:
            return True
        text = match_text(title, categories, html_to_text(summary_html[:4000]))
        return passes(live.filters, text)

    # -- routes ---------------------------------------------------------------------------

    def routes(self) -> tuple[RouteSettings, ...]:
        """The file's routes, then the live ones, then each live feed's own template route."""
        return self._all_routes

    def live_routes(self) -> tuple[LiveRouteRecord, ...]:
        return self._routes


def _route_of(r: LiveRouteRecord) -> RouteSettings:
    kinds = tuple(k for k in r.kinds if k in ("news", "webinar", "cohort-update"))
    return RouteSettings(
        feeds=r.feeds,
        kinds=kinds,  # type: ignore[arg-type]
        rooms=r.rooms,
        channels=r.channels,
        matrix_template=r.matrix_template,
        channel_template=r.channel_template,
    )
