"""How an item looks in a Matrix room and in a social/notification channel.

Matrix messages are ``m.notice`` (bots do not ping people) with a plain ``body`` and an
``org.matrix.custom.html`` ``formatted_body`` that only ever contains sanitized HTML;
the summary is cut by visible length, never inside a tag or an entity; ``external_url``
is the item's link. A route may bring its own template (network/route_templates.py); if such a
template fails on a particular item, the default layout is used rather than losing the
message. Length limits of social networks are applied in network/delivery/channels.py.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import TemplateError

from feeds.sanitize import html_to_text, sanitize_html, truncate_html
from network.i18n import gettext
from network.matrix.fit import MAX_CONTENT_BYTES, content_size, fit_event
from network.route_templates import RouteTemplate, event_start_text, render_channel, render_matrix
from network.storage import Item

_ = gettext

log = logging.getLogger(__name__)

SUMMARY_CHARS = 400
TITLE_CHARS = 300
KIND_LABEL = {"news": "News", "webinar": "Webinar", "cohort-update": "Cohort update"}


def _when(item: Item, zone: ZoneInfo | None) -> str:
    return event_start_text(item.event_start, zone) if item.kind == "webinar" else ""


def _title(item: Item) -> str:
    title = " ".join((item.title or "(untitled)").split())
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"


# Feed HTML read for one message: the summary shown is a few hundred characters, and the
# sanitizer's cost grows with nesting, so a hostile summary is cut before it is parsed.
SUMMARY_INPUT_CHARS = 20_000


def _notice(body: str, formatted: str, link: str | None) -> dict[str, Any]:
    content: dict[str, Any] = {
        "msgtype": "m.notice",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": formatted,
    }
    if link:
        content["external_url"] = link
    return fit_event(content)


def matrix_content(
    item: Item,
    *,
    feed_title: str,
    feed_link: str | None = None,
    template: RouteTemplate | None = None,
    zone: ZoneInfo | None = None,
    calendar: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The content of the ``m.notice`` that announces ``item``; times shown in ``zone``.

    ``calendar`` (for a webinar): its calendar file, and the page of the calendars to
    subscribe to (``webcal://`` links; Matrix clients only open http(s) links)."""
    if template is not None:
        try:
            body, formatted = render_matrix(
                template, item, feed_title=feed_title, feed_link=feed_link, zone=zone
            )
        except TemplateError as e:
            log.warning("route template failed for item %d, default layout used: %s", item.id, e)
        else:
            if body or formatted:
                return _notice(body, formatted, item.link)
    title = _title(item)
    # Matrix clients load only mxc:// images; a feed's http images would be dead weight.
    summary_html = truncate_html(
        sanitize_html(
            item.summary_html[:SUMMARY_INPUT_CHARS], base_url=item.link, keep_images=False
        ),
        SUMMARY_CHARS,
    )
    summary_text = html_to_text(summary_html)
    when = _when(item, zone)
    label = KIND_LABEL.get(item.kind, item.kind)
    body_lines = [f"{label} · {feed_title}: {title}"]
    if when:
        body_lines.append(f"When: {when}")
    if summary_text:
        body_lines.append(summary_text)
    if item.link:
        body_lines.append(item.link)
    head = (
        f'<a href="{html.escape(item.link, quote=True)}">{html.escape(title)}</a>'
        if item.link
        else html.escape(title)
    )
    parts = [f"<p><strong>{html.escape(label)}</strong> · {html.escape(feed_title)}: {head}</p>"]
    if when:
        parts.append(f"<p>When: {html.escape(when)}</p>")
    if summary_html:
        parts.append(f"<blockquote>{summary_html}</blockquote>")
    if calendar is not None and when:
        ics, page = calendar
        add = _("Add it to your calendar")
        follow = _("Every webinar in your calendar, kept up to date")
        body_lines += [f"{add}: {ics}", f"{follow}: {page}"]
        parts.append(
            f'<p><a href="{html.escape(ics, quote=True)}">{html.escape(add)}</a> · '
            f'<a href="{html.escape(page, quote=True)}">{html.escape(follow)}</a></p>'
        )
    # Sanitized once more as a whole: the pieces above are escaped, but this is the last
    # point before the HTML leaves libhub.
    return _notice("\n".join(body_lines), sanitize_html("".join(parts)), item.link)


def edit_content(new: dict[str, Any], original_event_id: str) -> dict[str, Any]:
    """An ``m.replace`` edit of an earlier notice with the item's new content."""
    edit = {
        "msgtype": new["msgtype"],
        "body": "* " + new["body"],
        "m.new_content": dict(new),
        "m.relates_to": {"rel_type": "m.replace", "event_id": original_event_id},
    }
    if "formatted_body" in new:
        edit["format"] = new["format"]
        edit["formatted_body"] = new["formatted_body"]
    # Homeservers refuse events over 64 KiB (M_TOO_LARGE): the item would be lost.
    if content_size(edit) > MAX_CONTENT_BYTES:
        # The content is there twice (the fallback and m.new_content): halve what is shown.
        half = fit_event({**new, "body": str(new["body"])[:4000]})
        slim = {k: v for k, v in half.items() if k not in ("format", "formatted_body")}
        edit = {**edit, "body": "* " + slim["body"], "m.new_content": slim}
        edit.pop("format", None)
        edit.pop("formatted_body", None)
    return edit


def grouped_content(items: Sequence[Item], *, feed_titles: dict[str, str]) -> dict[str, Any]:
    """One notice listing a burst of items, instead of flooding the room."""
    lines = [f"{len(items)} new items:"]
    parts = [f"<p><strong>{len(items)} new items</strong></p><ul>"]
    for item in items:
        feed = feed_titles.get(item.feed_id, item.feed_id)
        title = _title(item)
        lines.append(f"- {feed}: {title}" + (f" {item.link}" if item.link else ""))
        link = (
            f'<a href="{html.escape(item.link, quote=True)}">{html.escape(title)}</a>'
            if item.link
            else html.escape(title)
        )
        parts.append(f"<li>{html.escape(feed)}: {link}</li>")
    parts.append("</ul>")
    return fit_event(
        {
            "msgtype": "m.notice",
            "body": "\n".join(lines),
            "format": "org.matrix.custom.html",
            "formatted_body": sanitize_html("".join(parts)),
        }
    )


def channel_text(
    item: Item,
    *,
    feed_title: str,
    feed_link: str | None = None,
    template: RouteTemplate | None = None,
    zone: ZoneInfo | None = None,
) -> tuple[str, str]:
    """(title, body) for an apprise channel; the body ends with the link (default layout)."""
    title = _title(item)
    if template is not None:
        try:
            text = render_channel(
                template, item, feed_title=feed_title, feed_link=feed_link, zone=zone
            )
        except TemplateError as e:
            log.warning("route template failed for item %d, default layout used: %s", item.id, e)
        else:
            if text:
                return f"{feed_title}: {title}", text
    summary = html_to_text(
        sanitize_html(item.summary_html[:SUMMARY_INPUT_CHARS], keep_images=False)
    )
    when = _when(item, zone)
    body = "\n\n".join(p for p in (title, f"When: {when}" if when else "", summary) if p)
    if item.link:
        body = f"{body}\n\n{item.link}"
    return f"{feed_title}: {title}", body
