"""Routing: which Matrix rooms and apprise URLs an item goes to, and with which template.

A feed's own ``rooms`` and ``channels`` always apply. ``[[routes]]`` add targets by
feed, item kind, cohort and plain include/exclude words (no user-supplied regular
expressions: a coordinator's typo must not be able to hang the poller). Pure: the
answer depends only on the settings and the item.

Templates: an item can match several routes that name the same room. The template used
for that room is the one of the *first* matching route (in config order) that names the
room and has a ``matrix_template``; routes without a template do not hide later ones.
The same rule picks the ``channel_template`` for an apprise URL (by channel name).
Live feeds and routes (network/routing/catalog.py) join the file's after them; a live
feed's keep/block filters decide first whether its item goes anywhere.

Moderation: a target is *held* (it waits for a coordinator) when a matching route with
``moderation = "hold"`` names it and the item comes from an unreviewed source (a member's
update, a webhook, a feed with ``reviewed = false``), or when the item mentions one of
``moderation.flag_words``, whatever the route. A target named by a holding route and by
another one is held: the cautious answer wins.
Templates are looked up when a message is sent, against the config then in force, so a
corrected template also applies to messages still waiting in the outbox.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from feeds.sanitize import html_to_text
from network.errors import ConfigError
from network.route_templates import RouteTemplate, compile_template
from network.routing.catalog import FeedCatalog
from network.settings.model import RouteSettings, Settings
from network.settings.moderation import HOOK_FEED_PREFIX
from network.storage import Target


class Routable(Protocol):
    """What routing looks at; both poll inputs and stored items have it."""

    @property
    def kind(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def summary_html(self) -> str: ...
    @property
    def categories(self) -> tuple[str, ...]: ...


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"\w+", text.casefold())) + " "


def _mentions(haystack: str, phrase: str) -> bool:
    """Whole-word (or whole-phrase) match, case-insensitive."""
    needle = _words(phrase).strip()
    return bool(needle) and f" {needle} " in haystack


@functools.lru_cache(maxsize=512)
def _item_words(title: str, summary_html: str, categories: tuple[str, ...]) -> str:
    # Once per item, not once per route and call: html_to_text is the costly part, and it
    # runs on the event loop.
    return _words(" ".join([title, html_to_text(summary_html), *categories]))


def route_matches(route: RouteSettings, feed_id: str, item: Routable, cohort: str | None) -> bool:
    if route.feeds and feed_id not in route.feeds:
        return False
    if route.kinds and item.kind not in route.kinds:
        return False
    if route.cohorts and (cohort is None or cohort not in route.cohorts):
        return False
    if route.include or route.exclude:
        text = _item_words(item.title, item.summary_html, tuple(item.categories))
        if route.include and not any(_mentions(text, w) for w in route.include):
            return False
        if any(_mentions(text, w) for w in route.exclude):
            return False
    return True


class Router:
    """Reads the routes in force from a `FeedCatalog` (the file's, and the live ones), so a
    route or feed changed live applies to the next item without a restart."""

    def __init__(self, settings: Settings, catalog: FeedCatalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog if catalog is not None else FeedCatalog(settings)
        # The file's templates were checked when the settings were loaded, live ones when
        # they were saved; each is compiled once here, by its text.
        self._templates: dict[tuple[str, bool], RouteTemplate] = {}
        for i, route in enumerate(settings.routes):
            path = f"routes[{i}]"
            if route.matrix_template:
                self._template(route.matrix_template, True, f"{path}.matrix_template")
            if route.channel_template:
                self._template(route.channel_template, False, f"{path}.channel_template")

    def _template(self, source: str, html: bool, path: str = "route") -> RouteTemplate | None:
        key = (source, html)
        if key not in self._templates:
            try:
                self._templates[key] = compile_template(source, html=html, path=path)
            except ConfigError:
                if path != "route":
                    raise
                return None  # a stored template that a later libhub refuses: default layout
        return self._templates[key]

    def reviewed(self, feed_id: str, *, cohort: str | None = None) -> bool:
        """Whether a coordinator vouches for the source: configured feeds, unless marked
        ``reviewed = false``; never member updates or webhooks."""
        if cohort is not None or feed_id.startswith((HOOK_FEED_PREFIX, "cohort:")):
            return False
        try:
            return self.settings.feed(feed_id).reviewed
        except KeyError:
            return True  # internal sources the service writes itself

    def flagged(self, item: Routable) -> bool:
        """The item mentions one of ``moderation.flag_words``."""
        words = self.settings.moderation.flag_words
        if not words:
            return False
        text = _item_words(item.title, item.summary_html, tuple(item.categories))
        return any(_mentions(text, w) for w in words)

    def targets(self, feed_id: str, item: Routable, *, cohort: str | None = None) -> list[Target]:
        if not self.catalog.passes_filters(
            feed_id, item.title, tuple(item.categories), item.summary_html
        ):
            return []  # held back by the feed's keep/block filters
        rooms: list[str] = []
        channels: list[str] = []
        held_rooms: set[str] = set()
        held_channels: set[str] = set()
        try:
            feed = self.catalog.feed(feed_id)
            rooms.extend(feed.rooms)
            channels.extend(feed.channels)
        except KeyError:
            pass  # cohort updates and other internal sources have no feed entry
        if feed_id.startswith(HOOK_FEED_PREFIX):
            try:
                hook = self.settings.hook(feed_id[len(HOOK_FEED_PREFIX) :])
                rooms.extend(hook.rooms)
                channels.extend(hook.channels)
            except KeyError:
                pass  # a hook removed from the file: its routes still apply
        unreviewed = not self.reviewed(feed_id, cohort=cohort)
        for route in self.catalog.routes():
            if route_matches(route, feed_id, item, cohort):
                rooms.extend(route.rooms)
                channels.extend(route.channels)
                if unreviewed and route.moderation == "hold":
                    held_rooms.update(route.rooms)
                    held_channels.update(route.channels)
        out = _targets(self.settings, rooms, channels)
        if self.flagged(item):
            return [replace(t, held=True) for t in out]
        return [
            replace(t, held=True)
            if (t.target in held_rooms if t.target_type == "matrix" else t.channel in held_channels)
            else t
            for t in out
        ]

    def matrix_template(
        self, feed_id: str, item: Routable, room: str, *, cohort: str | None = None
    ) -> RouteTemplate | None:
        """The template for ``item`` in the configured room ``room`` (None: default layout)."""
        for route in self.catalog.routes():
            if (
                route.matrix_template
                and room in route.rooms
                and route_matches(route, feed_id, item, cohort)
            ):
                template = self._template(route.matrix_template, True)
                if template is not None:
                    return template
        return None

    def channel_template(
        self,
        feed_id: str,
        item: Routable,
        url: str,
        channel: str | None,
        *,
        cohort: str | None = None,
    ) -> RouteTemplate | None:
        """The template for ``item`` sent to the apprise ``url`` of ``channel``."""
        for route in self.catalog.routes():
            if not route.channel_template or not route_matches(route, feed_id, item, cohort):
                continue
            for name in route.channels:
                if name == channel or (
                    name in self.settings.channels and url in self.settings.channels[name].urls
                ):
                    template = self._template(route.channel_template, False)
                    if template is not None:
                        return template
        return None


def _targets(settings: Settings, rooms: Sequence[str], channels: Sequence[str]) -> list[Target]:
    out: list[Target] = []
    seen: set[tuple[str, str]] = set()
    for room in rooms:
        if ("matrix", room) not in seen:
            seen.add(("matrix", room))
            out.append(Target("matrix", room))
    for name in channels:
        if name not in settings.channels:
            continue  # a live route naming a channel taken out of the file since
        for url in settings.channels[name].urls:
            if ("apprise", url) not in seen:
                seen.add(("apprise", url))
                out.append(Target("apprise", url, name))
    return out
