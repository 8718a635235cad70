"""The dashboard's moderation queue and audit log.

``/dashboard/moderation`` lists the items held for review (from member updates, webhooks,
unreviewed feeds, or flagged by ``moderation.flag_words``) with where they would go; each
has Approve and Reject buttons and a title field to correct before approving (CSRF forms
like every dashboard form). ``/dashboard/audit`` shows who approved, rejected or edited
what, newest first.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from feeds.sanitize import html_to_text
from network.i18n import N_, format_clock, format_day
from network.i18n import gettext as _
from network.web.context import WebContext
from network.web.dashboard import PREFIX, Page, Session, _page, _redirect, _render, age_text
from network.web.security import ID_PATTERN, path_id

# The status line after an action (one place; translated where shown).
DONE = {
    "approved": N_("Item #{item} is approved and queued for delivery."),
    "rejected": N_("Item #{item} is rejected: it will not be delivered."),
    "edited": N_("Item #{item} now has the new title."),
    "nothing": N_("Item #{item} was not waiting any more (someone decided already)."),
}
MAX_TITLE = 200


async def moderation_page(
    request: web.Request, service: WebContext, session: Session
) -> web.Response:
    now = datetime.now(UTC)
    held = await service.storage.held_items(limit=200)
    items = [
        {
            "id": h.item.id,
            "title": h.item.title,
            "link": h.item.link or "",
            "summary": html_to_text(h.item.summary_html)[:400],
            "source": service.feed_title(h.item.feed_id),
            "kind": h.item.kind,
            "targets": [
                t.channel or service.display_target(t.target_type, t.target) for t in h.targets
            ],
            "age": age_text(h.held_since, now),
        }
        for h in held
    ]
    done, item = request.query.get("done", ""), request.query.get("item", "")
    status = _(DONE[done]).format(item=item) if done in DONE and item.isdigit() else ""
    return _render(
        "dashboard_moderation.html.j2",
        session=session,
        network=service.settings.network.name,
        items=items,
        done_text=status,
    )


def _decision(approve: bool) -> Page:
    async def handler(
        request: web.Request, service: WebContext, session: Session
    ) -> web.StreamResponse:
        item_id = path_id(request, "item_id")
        changed = await service.moderation.decide(item_id, approve=approve, actor=session.name)
        done = ("approved" if approve else "rejected") if changed else "nothing"
        return _redirect(f"{PREFIX}/moderation?done={done}&item={item_id}")

    return handler


async def edit_title(
    request: web.Request, service: WebContext, session: Session
) -> web.StreamResponse:
    item_id = path_id(request, "item_id")
    form = await request.post()
    title = " ".join(str(form.get("title", "")).split())[:MAX_TITLE]
    if not title:
        return _render(
            "dashboard_message.html.j2", 400, title=_("Title missing"),
            text=_("An item needs a title. Go back and type one."),
        )  # fmt: skip
    changed = await service.moderation.edit_title(item_id, title, actor=session.name)
    return _redirect(
        f"{PREFIX}/moderation?done={'edited' if changed else 'nothing'}&item={item_id}"
    )


async def audit_page(request: web.Request, service: WebContext, session: Session) -> web.Response:
    entries = await service.storage.audit_entries(limit=500)
    return _render(
        "dashboard_audit.html.j2",
        session=session,
        network=service.settings.network.name,
        entries=[
            {
                "id": e.id,
                "at": f"{format_day(e.at, UTC)} {format_clock(e.at, UTC)} UTC",
                "datetime": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "subject": e.subject,
                "detail": e.detail,
            }
            for e in entries
        ],
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/moderation", _page(moderation_page))
    item = f"{PREFIX}/moderation/{{item_id:{ID_PATTERN}}}"
    app.router.add_post(f"{item}/approve", _page(_decision(True)))
    app.router.add_post(f"{item}/reject", _page(_decision(False)))
    app.router.add_post(f"{item}/edit", _page(edit_title))
    app.router.add_get(f"{PREFIX}/audit", _page(audit_page))
