"""The dashboard's feeds page, ``/dashboard/feeds``: every feed, and live ones managed here.

Feeds from the config file are listed read-only (the file wins). Live feeds are added by
address (a library's homepage gives a choice of the feeds it links to), removed, paused and
resumed, given a template and keep/block filters, and pointed at rooms and channels; an
OPML list can be uploaded. Each action goes through `FeedAdmin` (network/feedadmin/manage.py),
which checks everything before storing anything, writes the audit entry with the
coordinator as actor and reloads the catalog, so the change applies without a restart.
Answers show what the feed would post: its latest items, or the first one in the template.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from feeds.sanitize import html_to_text
from network.feedadmin.manage import Added, Discovered, PreviewItem, Refused
from network.feedadmin.opml_import import import_feeds, parse
from network.i18n import gettext as _
from network.i18n import ngettext
from network.routing.catalog import LIVE_ID
from network.web.context import WebContext
from network.web.dashboard import PREFIX, Session, _page, _redirect, _render

FEEDS = f"{PREFIX}/feeds"
# The app takes 64 KiB per request (network/web/app.py): a list of a few hundred feeds.
MAX_OPML_UPLOAD = 60 * 1024
KINDS = ("news", "webinar", "cohort-update")


def _split(text: str) -> tuple[str, ...]:
    """Rooms or channels typed one per line or separated by commas."""
    return tuple(p for p in (x.strip() for x in text.replace(",", "\n").splitlines()) if p)


def _preview(items: tuple[PreviewItem, ...]) -> list[dict[str, str]]:
    return [
        {"title": i.title, "link": i.link or "", "summary": html_to_text(i.summary_html)[:200]}
        for i in items
    ]


def _done_text(done: str, feed_id: str) -> str:
    texts = {
        "removed": _("Removed feed {feed_id}; nothing more from it will be posted."),
        "paused": _("Paused feed {feed_id}; nothing is fetched or posted until it is resumed."),
        "resumed": _("Resumed feed {feed_id}."),
        "route": _("Feed {feed_id} now posts to the rooms and channels shown."),
        "cleared": _("Feed {feed_id} posts with the default layout again."),
    }
    return texts[done].format(feed_id=feed_id) if done in texts else ""


async def _feeds_page(
    service: WebContext, session: Session, status: int = 200, **extra: Any
) -> web.Response:
    catalog = service.feed_admin.catalog
    await catalog.reload(service.storage)  # what another process (the CLI) added, too
    file_feeds = [
        {
            "id": f.id,
            "title": f.title or f.id,
            "url": f.url,
            "kind": f.kind,
            "targets": [*f.rooms, *f.channels],
        }
        for f in service.settings.feeds
    ]
    live_feeds = [
        {
            "id": f.id,
            "title": f.record.title or f.id,
            "url": f.record.url,
            "kind": f.record.kind,
            "rooms": "\n".join(f.record.rooms),
            "channels": "\n".join(f.record.channels),
            "targets": [*f.record.rooms, *f.record.channels],
            "template": f.record.template,
            "filters": [(x.mode, x.pattern) for x in f.record.filters],
            "paused": f.paused,
            "added_by": f.record.added_by,
        }
        for f in catalog.live_feeds()
    ]
    defaults: dict[str, Any] = {
        "error": "",
        "done_text": "",
        "form": {},
        "rendered": "",
        "preview": [],
        "preview_of": "",
        "report": None,
        "choices": [],
    }
    extra = {**defaults, **extra}
    return _render(
        "dashboard_feeds.html.j2",
        status,
        session=session,
        network=service.settings.network.name,
        file_feeds=file_feeds,
        live_feeds=live_feeds,
        channels=sorted(service.settings.channels),
        kinds=KINDS,
        **extra,
    )


async def feeds_page(request: web.Request, service: WebContext, session: Session) -> web.Response:
    done, feed_id = request.query.get("done", ""), request.query.get("feed", "")
    text = _done_text(done, feed_id) if LIVE_ID.match(feed_id) else ""
    return await _feeds_page(service, session, done_text=text)


async def add_feed(request: web.Request, service: WebContext, session: Session) -> web.Response:
    form = await request.post()
    fields = {k: str(form.get(k, "")) for k in ("url", "kind", "title", "rooms", "channels")}
    url = fields["url"].strip()
    if not url:
        return await _feeds_page(
            service, session, 400, error=_("Type the address of a feed or a web page."), form=fields
        )
    try:
        result = await service.feed_admin.add(
            session.name,
            url,
            kind=fields["kind"] or "news",
            title=fields["title"].strip(),
            rooms=_split(fields["rooms"]),
            channels=_split(fields["channels"]),
        )
    except Refused as e:
        return await _feeds_page(service, session, 400, error=str(e), form=fields)
    if isinstance(result, Discovered):
        choices = [{"url": f.url, "title": f.title or f.url, "type": f.kind} for f in result.feeds]
        return await _feeds_page(service, session, form=fields, choices=choices)
    assert isinstance(result, Added)
    text = ngettext(
        "Added feed {feed_id}: {title}. Its {count} current item is marked as seen; new "
        "items will be posted.",
        "Added feed {feed_id}: {title}. Its {count} current items are marked as seen; new "
        "items will be posted.",
        result.count,
    ).format(feed_id=result.feed.id, title=result.feed.title, count=result.count)
    return await _feeds_page(
        service,
        session,
        done_text=text,
        preview=_preview(result.preview),
        preview_of=result.feed.id,
    )


Action = Callable[[web.Request, WebContext, Session, str], Awaitable[web.StreamResponse]]


def _feed_action(action: Action) -> Callable[..., Awaitable[web.StreamResponse]]:
    async def handler(
        request: web.Request, service: WebContext, session: Session
    ) -> web.StreamResponse:
        feed_id = request.match_info["feed_id"]
        try:
            return await action(request, service, session, feed_id)
        except Refused as e:
            return await _feeds_page(service, session, 400, error=str(e))

    return handler


async def _remove(
    request: web.Request, service: WebContext, session: Session, feed_id: str
) -> web.StreamResponse:
    await service.feed_admin.remove(session.name, feed_id)
    return _redirect(f"{FEEDS}?done=removed&feed={feed_id}")


def _pause(paused: bool) -> Action:
    async def action(
        request: web.Request, service: WebContext, session: Session, feed_id: str
    ) -> web.StreamResponse:
        await service.feed_admin.set_paused(session.name, feed_id, paused)
        return _redirect(f"{FEEDS}?done={'paused' if paused else 'resumed'}&feed={feed_id}")

    return action


async def _route(
    request: web.Request, service: WebContext, session: Session, feed_id: str
) -> web.StreamResponse:
    form = await request.post()
    rooms = _split(str(form.get("rooms", "")))
    channels = tuple(str(c) for c in form.getall("channels", []) if str(c))
    await service.feed_admin.set_targets(session.name, feed_id, rooms, channels)
    return _redirect(f"{FEEDS}?done=route&feed={feed_id}")


async def _template(
    request: web.Request, service: WebContext, session: Session, feed_id: str
) -> web.StreamResponse:
    form = await request.post()
    template = str(form.get("template", ""))
    rendered = await service.feed_admin.set_template(session.name, feed_id, template)
    if not template.strip():
        return _redirect(f"{FEEDS}?done=cleared&feed={feed_id}")
    text = _("Feed {feed_id} now posts with this template.").format(feed_id=feed_id)
    return await _feeds_page(
        service,
        session,
        done_text=text,
        rendered=rendered[0] if rendered else _("The feed has no items yet."),
        preview_of=feed_id,
    )


async def _filter(
    request: web.Request, service: WebContext, session: Session, feed_id: str
) -> web.StreamResponse:
    form = await request.post()
    mode = str(form.get("mode", ""))
    if mode not in ("keep", "block"):
        raise Refused(_("The filter was not saved: choose keep or block."))
    pattern = str(form.get("pattern", ""))
    shown, n = await service.feed_admin.add_filter(session.name, feed_id, mode, pattern)
    text = _(
        "Feed {feed_id} now filters with {pattern}; {shown} of its latest {n} items would be "
        "posted."
    ).format(feed_id=feed_id, pattern=pattern, shown=shown, n=n)
    return await _feeds_page(service, session, done_text=text)


async def import_opml(request: web.Request, service: WebContext, session: Session) -> web.Response:
    form = await request.post()
    upload = form.get("opml")
    data = getattr(upload, "file", None)
    body = data.read(MAX_OPML_UPLOAD + 1) if data is not None else b""
    if not body:
        return await _feeds_page(service, session, 400, error=_("Choose an OPML file to upload."))
    if len(body) > MAX_OPML_UPLOAD:
        return await _feeds_page(
            service,
            session,
            400,
            error=_("The OPML file is larger than 60 KiB; split it in parts."),
        )
    try:
        entries = parse(body, source=getattr(upload, "filename", "") or "the OPML file")
    except Refused as e:
        return await _feeds_page(service, session, 400, error=str(e))
    report = await import_feeds(
        service.feed_admin,
        session.name,
        entries,
        rooms=_split(str(form.get("rooms", ""))),
        channels=tuple(str(c) for c in form.getall("channels", []) if str(c)),
    )
    text = _("{added} added, {skipped} skipped.").format(
        added=len(report.added), skipped=len(report.skipped)
    )
    return await _feeds_page(service, session, done_text=text, report=report)


def setup_routes(app: web.Application) -> None:
    app.router.add_get(FEEDS, _page(feeds_page))
    app.router.add_post(f"{FEEDS}/add", _page(add_feed))
    app.router.add_post(f"{FEEDS}/import", _page(import_opml))
    feed = f"{FEEDS}/{{feed_id:[a-z0-9][a-z0-9-]*}}"
    app.router.add_post(f"{feed}/remove", _page(_feed_action(_remove)))
    app.router.add_post(f"{feed}/pause", _page(_feed_action(_pause(True))))
    app.router.add_post(f"{feed}/resume", _page(_feed_action(_pause(False))))
    app.router.add_post(f"{feed}/route", _page(_feed_action(_route)))
    app.router.add_post(f"{feed}/template", _page(_feed_action(_template)))
    app.router.add_post(f"{feed}/filter", _page(_feed_action(_filter)))
