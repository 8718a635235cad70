"""The public archive: ``/archive`` (everything), ``/archive/topic/<topic>`` and
``/archive/cohort/<id>``, newest first, 20 to a page (``?page=N``), searchable
(``?q=words``: every word, in the title or the summary; an HTML GET form, no JavaScript).
What may appear is the rule of `network.subscriptions.public`."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from network.i18n import format_long_date, gettext
from network.storage.archive import ArchiveEntry
from network.subscriptions.public import Scope
from network.web.context import CONTEXT
from network.web.public import (
    COHORT_PATTERN,
    SLUG_PATTERN,
    html_page,
    install,
    not_found,
    public_view,
)

_ = gettext

PER_PAGE = 20
MAX_PAGE = 10_000
MAX_QUERY_CHARS = 200
SUMMARY_CHARS = 300
SUMMARY_INPUT_CHARS = 5_000  # of feed HTML read for one summary shown


def page_number(request: web.Request) -> int:
    text = request.query.get("page", "1")
    return min(int(text), MAX_PAGE) if text.isascii() and text.isdigit() and text != "0" else 1


_TAG = re.compile(r"<[^>]*>")


def short_summary(summary_html: str) -> str:
    """The start of a summary as plain text. Summaries were sanitized when stored (nh3: no
    scripts, no comments), so dropping the tags is enough, and twenty times cheaper than
    a full HTML-to-text pass on every entry of every page."""
    text = " ".join(html.unescape(_TAG.sub(" ", summary_html[:SUMMARY_INPUT_CHARS])).split())
    if len(text) <= SUMMARY_CHARS:
        return text
    return text[: SUMMARY_CHARS - 1].rsplit(" ", 1)[0] + "…"


def entry_view(entry: ArchiveEntry, feed_title: str, zone: ZoneInfo) -> dict[str, Any]:
    """One archived item as the page shows it; its date in the page's language and the
    network's time zone (the machine-readable one stays ISO 8601)."""
    when = entry.published or entry.first_seen
    return {
        "title": " ".join(entry.title.split()) or _("(untitled)"),
        "link": entry.link if (entry.link or "").startswith(("http://", "https://")) else None,
        "source": feed_title,
        "date": format_long_date(when, zone),
        "datetime": when.isoformat(),
        "summary": short_summary(entry.summary_html),
        "author": entry.author,
    }


async def _archive(request: web.Request, scope: Scope | None, path: str) -> web.Response:
    if scope is None:
        raise not_found(_("archive page"))
    view = public_view(request)
    storage = request.app[CONTEXT].storage
    query = request.query.get("q", "").strip()[:MAX_QUERY_CHARS]
    number = page_number(request)
    found = await storage.archive_page(
        feed_ids=scope.feed_ids, kinds=scope.kinds, query=query, page=number, per_page=PER_PAGE
    )

    def link(page: int) -> str:
        params = {k: v for k, v in (("q", query), ("page", str(page))) if v and v != "1"}
        return f"{path}?{urlencode(params)}" if params else path

    zone = ZoneInfo(view.settings.network.timezone)
    title = _("Archive") if scope.slug == "all" else _("Archive: {topic}").format(topic=scope.title)
    feed_slug = scope.slug
    return html_page(
        request,
        "archive.html.j2",
        title=title,
        path=path,
        query=query,
        page=number,
        entries=[entry_view(e, view.catalog.feed_title(e.feed_id), zone) for e in found.entries],
        previous_url=link(number - 1) if number > 1 else None,
        next_url=link(number + 1) if found.has_next else None,
        atom_url=f"/feeds/{feed_slug}.xml",
        json_url=f"/feeds/{feed_slug}.json",
        topics=[
            {"title": s.title, "url": f"/archive/topic/{s.slug}"}
            for s in view.topics()
            if not s.slug.startswith("cohort-")
        ],
        cohorts=[
            {"title": c.name, "url": f"/archive/cohort/{c.id}"} for c in view.settings.cohorts
        ],
    )


async def archive_all(request: web.Request) -> web.Response:
    return await _archive(request, public_view(request).everything(), "/archive")


async def archive_topic(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    return await _archive(request, public_view(request).topic(slug), f"/archive/topic/{slug}")


async def archive_cohort(request: web.Request) -> web.Response:
    cohort_id = request.match_info["cohort_id"]
    scope = public_view(request).cohort(cohort_id)
    return await _archive(request, scope, f"/archive/cohort/{cohort_id}")


def setup_routes(app: web.Application) -> None:
    install(app)
    app.router.add_get("/archive", archive_all)
    app.router.add_get(f"/archive/topic/{{slug:{SLUG_PATTERN}}}", archive_topic)
    app.router.add_get(f"/archive/cohort/{{cohort_id:{COHORT_PATTERN}}}", archive_cohort)
