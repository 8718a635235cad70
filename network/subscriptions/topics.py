"""Topics, addresses and preferences of subscriptions: the pure part.

Owns the topics offered (``kind:webinar``, ``feed:<id>``, ``cohort:<id>``), their labels
and which items match them (`TopicCatalog`); what counts as an address (`parse_address`:
an email address or an apprise URL, with the reason in words when it is neither); and
small helpers about preferences (their schedule, a sentence describing them; the time
zones a person picks from are zones.py). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

import apprise

from network.delivery.channels import redact
from network.errors import ConfigError, LibhubError
from network.i18n import N_, format_hour, weekday_names
from network.i18n import gettext as _
from network.settings.checks import bare_address, email_address
from network.settings.model import Settings
from network.storage.subscribers import Preferences
from network.subscriptions.schedule import Schedule, next_send

# Labels of the kinds, in English: translated where they are shown (`TopicCatalog.label`).
KIND_TOPIC_LABELS = {
    "webinar": N_("Webinars"),
    "news": N_("News"),
    "cohort-update": N_("Cohort updates"),
}


class SubscriptionError(LibhubError, ValueError):
    """A subscription request cannot be accepted; ``field`` names the form field."""

    def __init__(self, message: str, *, field: str = "") -> None:
        self.field = field
        super().__init__(message)


# -- topics --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    id: str
    label: str
    group: str  # "kind" | "feed" | "cohort"


class TopicCatalog:
    """The topics of the subscribe page and how items match them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        feeds = {f.id: f for f in settings.feeds}
        cohorts = {c.id: c for c in settings.cohorts}
        ids = settings.digests.topics or (
            *(f"kind:{k}" for k in ("webinar", "news", "cohort-update")),
            *(f"feed:{f}" for f in feeds),
            *(f"cohort:{c}" for c in cohorts),
        )
        topics = []
        for i, topic_id in enumerate(ids):
            group, _, name = topic_id.partition(":")
            if group == "kind":
                label = KIND_TOPIC_LABELS.get(name, name)
            elif group == "feed" and name in feeds:
                label = feeds[name].title or name
            elif group == "cohort" and name in cohorts:
                label = cohorts[name].name
            else:
                raise ConfigError(
                    f"unknown {group} {name!r}: define it as [[{group}s]] or remove the topic",
                    path=f"digests.topics[{i}]",
                )
            topics.append(Topic(topic_id, label, group))
        self.topics: tuple[Topic, ...] = tuple(topics)
        self._by_id = {t.id: t for t in topics}
        # A feed that posts into a cohort's room speaks for that cohort; cohort updates
        # from members are items of the feed "cohort:<id>".
        self._feed_cohorts: dict[str, set[str]] = {}
        for cohort in settings.cohorts:
            self._feed_cohorts.setdefault(f"cohort:{cohort.id}", set()).add(cohort.id)
            for feed in settings.feeds:
                if cohort.room in feed.rooms:
                    self._feed_cohorts.setdefault(feed.id, set()).add(cohort.id)

    def __contains__(self, topic_id: object) -> bool:
        return topic_id in self._by_id

    def label(self, topic_id: str) -> str:
        """The topic's name in the language in use (feeds and cohorts keep their own)."""
        topic = self._by_id.get(topic_id)
        if topic is None:
            return topic_id.partition(":")[2]
        return _(topic.label) if topic.group == "kind" else topic.label

    def labels(self, topic_ids: Iterable[str]) -> str:
        return ", ".join(self.label(t) for t in topic_ids)

    def matches(self, topic_ids: Iterable[str], feed_id: str, kind: str) -> bool:
        cohorts = self._feed_cohorts.get(feed_id, set())
        for topic in topic_ids:
            group, _, name = topic.partition(":")
            if (
                (group == "kind" and name == kind)
                or (group == "feed" and name == feed_id)
                or (group == "cohort" and name in cohorts)
            ):
                return True
        return False

    def feed_title(self, feed_id: str) -> str:
        for feed in self.settings.feeds:
            if feed.id == feed_id:
                return feed.title or feed.id
        if feed_id.startswith("cohort:"):
            for cohort in self.settings.cohorts:
                if f"cohort:{cohort.id}" == feed_id:
                    return cohort.name
        return feed_id

    def from_word(self, word: str) -> str | None:
        """The topic a person means by ``word`` ("webinars", "smart-spaces", "news")."""
        w = word.lower().strip(",.;")
        candidates = [w, w.removesuffix("s"), w.removesuffix("es")]
        for topic in self.topics:
            name = topic.id.partition(":")[2]
            if topic.id == w or name in candidates or topic.label.lower() == w:
                return topic.id
        if w in ("cohort", "cohorts", "updates", "cohort-updates"):
            return "kind:cohort-update" if "kind:cohort-update" in self else None
        return None


# -- addresses -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    value: str
    key: str
    channel: str  # "email" | "apprise"

    def display(self) -> str:
        """Safe to show to others: apprise URLs hold tokens, addresses are personal."""
        if self.channel == "apprise":
            return redact(self.value)
        local, _, domain = self.value.partition("@")
        return f"{local[:1]}…@{domain}"


def parse_address(text: str, *, schemes: Collection[str] | None) -> Address:
    """An email address or an apprise URL (``schemes`` None: any scheme apprise knows).

    Raises SubscriptionError that says what is wrong with the address.
    """
    value = text.strip()
    if not value:
        raise SubscriptionError(_("Enter your email address."), field="address")
    if any(c in value for c in "\r\n\t"):
        raise SubscriptionError(_("The address must be on one line."), field="address")
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme in ("mailto", "mailtos"):
            raise SubscriptionError(
                _("Write the email address itself (you@example.org), not a mailto:// URL."),
                field="address",
            )
        if schemes is not None and scheme not in schemes:
            raise SubscriptionError(
                _("Only email addresses (and %(schemes)s URLs) can subscribe here.")
                % {"schemes": ", ".join(sorted(schemes))}
                if schemes
                else _("Only email addresses can subscribe here."),
                field="address",
            )
        if apprise.Apprise.instantiate(value) is None:
            raise SubscriptionError(
                _("%(url)s is not a notification URL that apprise understands.")
                % {"url": redact(value)},
                field="address",
            )
        return Address(value, value, "apprise")
    value = bare_address(value.removeprefix("mailto:"))  # "Ana <ana@example.org>"
    address = email_address(value)
    if address is None:
        if value.startswith("@") and ":" in value:
            raise SubscriptionError(
                _(
                    "That is a Matrix id: digests go to an email address (you@example.org); "
                    "in Matrix, join the rooms instead."
                ),
                field="address",
            )
        raise SubscriptionError(
            _("“%(value)s” is not an email address like you@example.org.") % {"value": value},
            field="address",
        )
    local, _at, domain = address.rpartition("@")
    return Address(f"{local}@{domain.lower()}", address.lower(), "email")


# -- preferences ---------------------------------------------------------------------------


def schedule_of(prefs: Preferences) -> Schedule:
    return Schedule(prefs.frequency, prefs.tz, prefs.hour, prefs.weekday)  # type: ignore[arg-type]


def next_due(prefs: Preferences, now: datetime) -> datetime | None:
    """When a digest with these preferences is next due after ``now`` (None: immediate)."""
    if prefs.frequency == "immediate":
        return None
    return next_send(schedule_of(prefs), now)


def describe(prefs: Preferences, catalog: TopicCatalog) -> str:
    """'a weekly digest on Mondays at 8:00 AM (Europe/Berlin) of: Webinars, News', in the
    language in use."""
    values = {
        "topics": catalog.labels(prefs.topics),
        "time": format_hour(prefs.hour),
        "tz": prefs.tz,
        "day": weekday_names()[prefs.weekday],
    }
    if prefs.frequency == "immediate":
        return _("a message as soon as something new is published in: %(topics)s") % values
    if prefs.frequency == "weekly":
        return _("a weekly digest every %(day)s at %(time)s (%(tz)s) of: %(topics)s") % values
    return _("a daily digest at %(time)s (%(tz)s) of: %(topics)s") % values
