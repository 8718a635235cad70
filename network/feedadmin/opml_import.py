"""Importing an OPML subscription list: every feed in it checked like `!feed add` (a URL that
is not a feed, a private address, one already there are skipped with the reason), one at a
time, so a list of a hundred feeds neither floods the network nor stores a half-checked feed.

Shared by ``libhub feeds import`` and the dashboard's upload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from feeds.errors import NotAFeedError
from feeds.opml import OpmlFeed, read_opml
from network.feedadmin.manage import Added, FeedAdmin, Refused
from network.i18n import N_
from network.i18n import gettext as _

# Translators: an OPML entry that was a web page rather than a feed.
WEB_PAGE = N_("{url} is a web page that links to feeds, not a feed; add one of them instead.")


class OpmlRefused(Refused):
    """The file itself is not a usable OPML document."""


@dataclass(frozen=True)
class Skipped:
    url: str
    title: str
    reason: str


@dataclass
class ImportReport:
    added: list[Added] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def parse(data: bytes, *, source: str) -> list[OpmlFeed]:
    try:
        return read_opml(data, source=source)
    except NotAFeedError as e:
        raise OpmlRefused(str(e)) from e


async def import_feeds(
    admin: FeedAdmin,
    actor: str,
    entries: Sequence[OpmlFeed],
    *,
    kind: str = "news",
    rooms: Sequence[str] = (),
    channels: Sequence[str] = (),
    progress: Callable[[OpmlFeed], None] = lambda _f: None,
) -> ImportReport:
    """Add each entry as a live feed posting to ``rooms`` and ``channels``."""
    report = ImportReport()
    for entry in entries:
        try:
            result = await admin.add(
                actor, entry.url, kind=kind, title=entry.title, rooms=rooms, channels=channels
            )
        except Refused as e:
            report.skipped.append(Skipped(entry.url, entry.title, str(e)))
        else:
            if isinstance(result, Added):
                report.added.append(result)
            else:
                reason = _(WEB_PAGE).format(url=entry.url)
                report.skipped.append(Skipped(entry.url, entry.title, reason))
        progress(entry)
    return report
