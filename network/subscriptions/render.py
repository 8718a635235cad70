"""Rendering subscriber email: digests and immediate notices, as subject, text and HTML.

Owns `DigestItem` (what a digest shows about one feed item), the grouping and ordering of
items (upcoming webinars first, by start time; then news, with past webinars; then cohort
updates) and what the templates ``templates/email/digest.*.j2`` are given (the Jinja2 setup
is network/templating.py). HTML templates are autoescaped, so a title like ``<script>``
shows as text; ``summary_html`` is trusted because the feed pipeline already sanitized it
with nh3. The text part is built from the same context, with summaries converted to plain
text by `feeds.sanitize.html_to_text`, the conversion Matrix notices use, so a summary reads
the same in both.

Dates are shown in the subscriber's time zone and language (CLDR, network/i18n.py), and
every fixed word in the subscriber's language (``language``); ``now`` decides which
webinars are still upcoming. An empty list renders nothing: no empty digests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from markupsafe import Markup

from feeds.sanitize import html_to_text, truncate_html
from network import i18n
from network.i18n import N_
from network.i18n import gettext as _
from network.templating import environment

SUMMARY_TEXT_CHARS = 500
_FREQUENCY_LABELS = {"daily": N_("Daily digest"), "weekly": N_("Weekly digest")}


@dataclass(frozen=True)
class DigestItem:
    """One item as a digest shows it. ``summary_html`` must already be sanitized."""

    item_id: int
    kind: str  # "news" | "webinar" | "cohort-update"
    title: str
    link: str | None
    summary_html: str
    published: datetime | None
    feed_title: str
    event_start: datetime | None
    author: str | None


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


# --- helpers ----------------------------------------------------------------------------


def _safe_link(url: str | None) -> str | None:
    # Feed links are untrusted; only web and mail links become clickable.
    if not url:
        return None
    scheme = urlsplit(url.strip()).scheme.lower()
    return url.strip() if scheme in ("http", "https", "mailto") else None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown subscriber time zone {name!r}: use an IANA name") from e


def format_day(moment: datetime, zone: ZoneInfo) -> str:
    """``Tuesday, May 20, 2025`` in ``zone`` and the language in use (not the process locale)."""
    return i18n.format_day(moment, zone)


def format_when(moment: datetime, zone: ZoneInfo) -> str:
    """``Tuesday, May 20, 2025, 3:00 PM CEST`` in ``zone`` and the language in use."""
    return i18n.format_when(moment, zone)


# --- grouping ---------------------------------------------------------------------------


def _is_upcoming(item: DigestItem, now: datetime) -> bool:
    return item.kind == "webinar" and item.event_start is not None and item.event_start >= now


def group_items(
    items: Sequence[DigestItem], now: datetime
) -> list[tuple[str, str, list[DigestItem]]]:
    """``(group id, heading, items)`` in display order, empty groups left out.

    Upcoming webinars come first, soonest first. Past webinars, webinars without a start
    time and items of unknown kind go with news. News and cohort updates are newest first.
    """

    def newest_first(item: DigestItem) -> tuple[bool, float, int]:
        stamp = item.published.timestamp() if item.published else 0.0
        return (item.published is None, -stamp, item.item_id)

    upcoming = sorted(
        (i for i in items if _is_upcoming(i, now)),
        key=lambda i: (i.event_start, i.item_id),
    )
    cohort = sorted((i for i in items if i.kind == "cohort-update"), key=newest_first)
    news = sorted(
        (i for i in items if not _is_upcoming(i, now) and i.kind != "cohort-update"),
        key=newest_first,
    )
    groups = [
        ("webinars", _("Upcoming webinars"), upcoming),
        ("news", _("News"), news),
        ("cohort-updates", _("Cohort updates"), cohort),
    ]
    return [g for g in groups if g[2]]


def _count(gid: str, n: int) -> str:
    if gid == "webinars":
        text = i18n.ngettext("%(num)d upcoming webinar", "%(num)d upcoming webinars", n)
    elif gid == "news":
        text = i18n.ngettext("%(num)d news item", "%(num)d news items", n)
    else:
        text = i18n.ngettext("%(num)d cohort update", "%(num)d cohort updates", n)
    return text % {"num": n}


def _counts(groups: list[tuple[str, str, list[DigestItem]]]) -> str:
    return ", ".join(_count(gid, len(members)) for gid, _title, members in groups)


# --- rendering --------------------------------------------------------------------------


def _render(
    groups: list[tuple[str, str, list[DigestItem]]],
    *,
    subject: str,
    heading: str,
    intro: str,
    subscriber_tz: str,
    network_name: str,
    manage_url: str,
    unsubscribe_url: str,
    ics_url: Callable[[DigestItem], str] | None,
    now: datetime,
    templates_dir: Path | None,
    calendar_url: str | None = None,
) -> RenderedMessage:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    zone = _zone(subscriber_tz)
    context: dict[str, Any] = {
        "subject": subject,
        "heading": heading,
        "intro": intro,
        "date": format_day(now, zone),
        "network_name": network_name,
        "manage_url": manage_url,
        "unsubscribe_url": unsubscribe_url,
        "tz_name": zone.key,
        # The subscribable calendar of every webinar, when the message has webinars.
        "calendar_url": calendar_url if any(g[0] == "webinars" for g in groups) else None,
        "groups": [
            {
                "id": gid,
                "heading": title,
                "items": [_item_view(i, gid, zone, ics_url) for i in members],
            }
            for gid, title, members in groups
        ],
    }
    env = environment(templates_dir.resolve() if templates_dir else None)
    return RenderedMessage(
        subject=subject,
        text=env.get_template("email/digest.txt.j2").render(context),
        html=env.get_template("email/digest.html.j2").render(context),
    )


def _item_view(
    item: DigestItem,
    group: str,
    zone: ZoneInfo,
    ics_url: Callable[[DigestItem], str] | None,
) -> dict[str, Any]:
    title = " ".join(item.title.split()) or _("(untitled)")
    upcoming = group == "webinars" and item.event_start is not None
    return {
        "title": title,
        "link": _safe_link(item.link),
        # Sanitized upstream (nh3); marking it safe keeps its markup in the HTML part.
        "summary_html": Markup(item.summary_html),
        # The same text a Matrix notice shows (feeds.sanitize), cut by visible length.
        "summary_text": html_to_text(truncate_html(item.summary_html, SUMMARY_TEXT_CHARS)),
        "feed_title": item.feed_title,
        "author": item.author,
        "published": format_day(item.published, zone) if item.published else None,
        "when": format_when(item.event_start, zone) if upcoming and item.event_start else None,
        "ics_url": ics_url(item) if upcoming and ics_url is not None else None,
    }


def render_digest(
    items: Sequence[DigestItem],
    *,
    subscriber_tz: str,
    frequency: str,
    network_name: str,
    manage_url: str,
    unsubscribe_url: str,
    ics_url: Callable[[DigestItem], str] | None,
    now: datetime,
    templates_dir: Path | None = None,
    calendar_url: str | None = None,
    language: str = i18n.SOURCE,
) -> RenderedMessage | None:
    """A daily or weekly digest of ``items``, or None when there is nothing to send.

    ``ics_url(item)`` gives the "Add to calendar" link of an upcoming webinar. Raises
    ValueError for an unknown time zone or frequency.
    """
    if not items:
        return None
    english = _FREQUENCY_LABELS.get(frequency)
    if english is None:
        raise ValueError(
            f"unknown digest frequency {frequency!r}: expected daily or weekly "
            "(immediate notices are rendered by render_immediate)"
        )
    zone = _zone(subscriber_tz)
    with i18n.use(language):
        label = _(english)
        groups = group_items(items, now)  # grouped once: the subject and the body use it
        summary = _counts(groups)
        values = {
            "network": network_name,
            "label": label,
            "day": i18n.short_month_day(now, zone),
            "summary": summary,
        }
        return _render(
            groups,
            subject=_("%(network)s: %(label)s, %(day)s — %(summary)s") % values,
            heading=_("%(network)s — %(label)s") % values,
            intro=_("This digest has %(summary)s.") % values,
            subscriber_tz=subscriber_tz,
            network_name=network_name,
            manage_url=manage_url,
            unsubscribe_url=unsubscribe_url,
            ics_url=ics_url,
            now=now,
            templates_dir=templates_dir,
            calendar_url=calendar_url,
        )


def render_immediate(
    items: Sequence[DigestItem],
    *,
    subscriber_tz: str,
    network_name: str,
    manage_url: str,
    unsubscribe_url: str,
    ics_url: Callable[[DigestItem], str] | None,
    now: datetime,
    templates_dir: Path | None = None,
    calendar_url: str | None = None,
    language: str = i18n.SOURCE,
) -> RenderedMessage | None:
    """One notice for the new items of a poll batch, or None when there are none."""
    if not items:
        return None
    with i18n.use(language):
        groups = group_items(items, now)
        values = {"network": network_name, "summary": _counts(groups)}
        if len(items) == 1:
            only = items[0]
            values["title"] = " ".join(only.title.split()) or _("(untitled)")
            if groups[0][0] == "webinars":
                subject = _("%(network)s: Upcoming webinar: %(title)s") % values
            elif only.kind == "cohort-update":
                subject = _("%(network)s: Cohort update: %(title)s") % values
            else:
                subject = _("%(network)s: New: %(title)s") % values
        else:
            subject = _("%(network)s: %(summary)s") % values
        return _render(
            groups,
            subject=subject,
            heading=_("New from %(network)s") % values,
            intro=_("Just published: %(summary)s.") % values,
            subscriber_tz=subscriber_tz,
            network_name=network_name,
            manage_url=manage_url,
            unsubscribe_url=unsubscribe_url,
            ics_url=ics_url,
            now=now,
            templates_dir=templates_dir,
            calendar_url=calendar_url,
        )
