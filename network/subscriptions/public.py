"""What the network shows the public (archive pages, feeds out, calendars): the pure rule.

Every configured feed is public: its items came from the open web. A member's cohort
update (an item of the feed ``cohort:<id>``) is public only when the network already
sends that cohort's updates somewhere anyone can read them:

- the subscribe page offers a topic that matches them (``kind:cohort-update`` or
  ``cohort:<id>``): anyone can subscribe by email and read them; or
- a route sends them to a channel (social networks, through apprise) for every update,
  i.e. a route matching the cohort's updates without ``include``/``exclude`` words.

Rooms do not count: cohort rooms are the members' own space. When neither holds, updates
stay in their rooms and never appear on a public page. Where they are public, they appear
on their cohort's pages, on topic pages whose topic matches them, and in search. Withdrawn
updates (and any state other than ``active``, such as a future ``held`` for moderation)
are left out by the storage query (`network.storage.archive.VISIBLE`).

A scope is what one page, feed or calendar covers: some feeds, optionally some kinds.
Topics appear in URLs as slugs: ``kind:webinar`` is ``kind-webinar``.
"""

from __future__ import annotations

from dataclasses import dataclass

from network.settings.model import RouteSettings, Settings
from network.subscriptions.topics import TopicCatalog

COHORT_FEED_PREFIX = "cohort:"  # members' updates are stored under "cohort:<id>"


@dataclass(frozen=True)
class Scope:
    slug: str
    title: str
    feed_ids: tuple[str, ...]
    kinds: tuple[str, ...] = ()  # empty: every kind


def topic_slug(topic_id: str) -> str:
    return topic_id.replace(":", "-", 1)


def _route_publishes(route: RouteSettings, cohort_id: str) -> bool:
    """Whether ``route`` sends every update of ``cohort_id`` to a channel."""
    return bool(
        route.channels
        and not route.include
        and not route.exclude
        and (not route.feeds or f"{COHORT_FEED_PREFIX}{cohort_id}" in route.feeds)
        and (not route.kinds or "cohort-update" in route.kinds)
        and (not route.cohorts or cohort_id in route.cohorts)
    )


def public_cohorts(settings: Settings, catalog: TopicCatalog) -> frozenset[str]:
    """The cohorts whose members' updates are public (see the module docstring)."""
    found = set()
    for cohort in settings.cohorts:
        offered = "kind:cohort-update" in catalog or f"cohort:{cohort.id}" in catalog
        if offered or any(_route_publishes(r, cohort.id) for r in settings.routes):
            found.add(cohort.id)
    return frozenset(found)


class PublicView:
    """The scopes of the public pages, from the settings."""

    def __init__(self, settings: Settings, catalog: TopicCatalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.cohorts = public_cohorts(settings, catalog)
        self.feed_ids: tuple[str, ...] = (
            *(f.id for f in settings.feeds),
            *(f"{COHORT_FEED_PREFIX}{c.id}" for c in settings.cohorts if c.id in self.cohorts),
        )

    def everything(self) -> Scope:
        return Scope("all", self.settings.network.name, self.feed_ids)

    def cohort(self, cohort_id: str) -> Scope | None:
        for cohort in self.settings.cohorts:
            if cohort.id == cohort_id:
                # Feeds that post into the cohort's room speak for it.
                feeds = [f.id for f in self.settings.feeds if cohort.room in f.rooms]
                if cohort.id in self.cohorts:
                    feeds.append(f"{COHORT_FEED_PREFIX}{cohort.id}")
                return Scope(f"cohort-{cohort.id}", cohort.name, tuple(feeds))
        return None

    def topics(self) -> list[Scope]:
        found = []
        for topic in self.catalog.topics:
            scope = self.topic(topic_slug(topic.id))
            if scope is not None:
                found.append(scope)
        return found

    def topic(self, slug: str) -> Scope | None:
        """The scope of a topic of the subscribe page, by its slug."""
        if slug == "all":
            return self.everything()
        group, _, name = slug.partition("-")
        topic_id = f"{group}:{name}"
        if topic_id not in self.catalog:
            return None
        title = self.catalog.label(topic_id)
        if group == "kind":
            return Scope(slug, title, self.feed_ids, (name,))
        if group == "feed":
            return Scope(slug, title, (name,) if name in self.feed_ids else ())
        cohort = self.cohort(name)
        return Scope(slug, title, cohort.feed_ids) if cohort else None
