"""Route templates: how a route's ``matrix_template`` and ``channel_template`` are compiled,
checked at start and rendered.

Templates are Jinja2 in an ``ImmutableSandboxedEnvironment`` (a template can read the
variables and call harmless string methods, nothing else) with ``StrictUndefined``. A
template is checked when the config is loaded: it must parse, name only the documented
variables and render against a sample item with every field set and with every optional
field empty; otherwise loading fails with a `ConfigError` naming the key. So a broken
template stops the service at start, never a message at send time.

Variables (all strings; optional ones are ``""`` when the feed does not give them):

=============  ==========================================================================
feed_title     the feed's display name
feed_link      the feed's web site (optional)
title          the item's title ("(untitled)" when the feed gives none)
link           the item's link (optional)
date           publication date, "20 Nov 2026" (optional)
author         the item's author (optional)
summary        the item's summary as sanitized HTML, cut safely at 1000 characters
summary_text   the same summary as plain text
kind           news, webinar or cohort-update
event_start    a webinar's start in the network's time zone and UTC,
               "Fri 20 Nov 2026, 08:00 CST (14:00 UTC)" (optional)
=============  ==========================================================================

The Matrix variant has autoescape on: values are HTML-escaped except ``summary``; its
output is sanitized again and the plain ``body`` is derived from it. The channel variant
renders plain text (use ``summary_text`` there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from feeds.sanitize import html_to_text, sanitize_html, truncate_html
from network.errors import ConfigError

VARIABLES: tuple[str, ...] = (
    "feed_title",
    "feed_link",
    "title",
    "link",
    "date",
    "author",
    "summary",
    "summary_text",
    "kind",
    "event_start",
)
MAX_TEMPLATE_CHARS = 4000
SUMMARY_CHARS = 1000  # visible characters; network/routing/render.py fits the whole event in 64 KiB


class ItemLike(Protocol):
    """What a template can see of an item (both stored items and poll inputs have it)."""

    @property
    def kind(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def link(self) -> str | None: ...
    @property
    def published(self) -> datetime | None: ...
    @property
    def author(self) -> str | None: ...
    @property
    def summary_html(self) -> str: ...
    @property
    def event_start(self) -> datetime | None: ...


@dataclass(frozen=True)
class _Sample:
    kind: str
    title: str
    link: str | None
    published: datetime | None
    author: str | None
    summary_html: str
    event_start: datetime | None


_FULL = _Sample(
    kind="webinar",
    title="Webinar: Wi-Fi after hours",
    link="https://libraries.example.org/news/wifi",
    published=datetime(2026, 11, 20, 12, 0, tzinfo=UTC),
    author="Ana Ruiz",
    summary_html="<p>Keep the <b>hotspot</b> on &amp; lend it.</p>",
    event_start=datetime(2026, 12, 1, 15, 0, tzinfo=UTC),
)
_EMPTY = _Sample(
    kind="news",
    title="(untitled)",
    link=None,
    published=None,
    author=None,
    summary_html="",
    event_start=None,
)


def event_start_text(when: datetime | None, zone: ZoneInfo | None = None) -> str:
    """``Tue 01 Dec 2026, 09:00 CST (15:00 UTC)``: the network's own clock first, UTC for
    members elsewhere; UTC alone when no zone is given."""
    if when is None:
        return ""
    utc = when.astimezone(UTC)
    if zone is None or zone.key in ("UTC", "Etc/UTC"):
        return utc.strftime("%a %d %b %Y, %H:%M UTC")
    local = when.astimezone(zone)
    return f"{local:%a %d %b %Y, %H:%M} {local.tzname() or zone.key} ({utc:%H:%M} UTC)"


def template_vars(
    item: ItemLike,
    *,
    feed_title: str,
    feed_link: str | None,
    html: bool,
    zone: ZoneInfo | None = None,
) -> dict[str, object]:
    """The documented variable set for ``item``; ``summary`` is markup-safe when ``html``."""
    summary = truncate_html(
        # Cut before parsing: the sanitizer's cost grows with a hostile summary's nesting.
        sanitize_html(item.summary_html[:20_000], base_url=item.link, keep_images=False),
        SUMMARY_CHARS,
    )
    return {
        "feed_title": feed_title,
        "feed_link": feed_link or "",
        "title": item.title or "(untitled)",
        "link": item.link or "",
        # The day in the network's zone: 23:30 in Chicago is not "tomorrow" for its readers.
        "date": item.published.astimezone(zone or UTC).strftime("%d %b %Y")
        if item.published
        else "",
        "author": item.author or "",
        "summary": Markup(summary) if html else summary,
        "summary_text": html_to_text(summary),
        "kind": item.kind,
        "event_start": event_start_text(item.event_start, zone),
    }


@dataclass(frozen=True)
class RouteTemplate:
    """A compiled, checked template. ``html`` says which variant it is."""

    source: str
    html: bool

    def render(self, variables: Mapping[str, object]) -> str:
        """The rendered text; raises `jinja2.TemplateError` (callers fall back to default)."""
        return _compiled(self.source, self.html).render(**variables).strip()


def _environment(html: bool) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        autoescape=html, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )


@lru_cache(maxsize=256)
def _compiled(source: str, html: bool) -> Template:
    return _environment(html).from_string(source)


def compile_template(source: str, *, html: bool, path: str) -> RouteTemplate:
    """Check ``source`` and return it compiled; a `ConfigError` at ``path`` when broken."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ConfigError(
            f"template is {len(source)} characters long; keep it under {MAX_TEMPLATE_CHARS}",
            path=path,
        )
    env = _environment(html)
    try:
        names = meta.find_undeclared_variables(env.parse(source))
    except TemplateError as e:
        line = getattr(e, "lineno", None)
        where = f" (template line {line})" if line else ""
        raise ConfigError(f"template syntax error{where}: {e}", path=path) from e
    unknown = sorted(names - set(VARIABLES))
    if unknown:
        raise ConfigError(
            f"unknown template variable(s) {', '.join(unknown)}; available: {', '.join(VARIABLES)}",
            path=path,
        )
    template = RouteTemplate(source, html)
    for sample in (_FULL, _EMPTY):
        variables = template_vars(
            sample, feed_title="Network news", feed_link="https://libraries.example.org/", html=html
        )
        try:
            out = template.render(variables)
        except TemplateError as e:
            raise ConfigError(f"template fails on a sample item: {e}", path=path) from e
        if sample is _FULL and not out:
            raise ConfigError("template renders an empty message", path=path)
    return template


def render_matrix(
    template: RouteTemplate,
    item: ItemLike,
    *,
    feed_title: str,
    feed_link: str | None,
    zone: ZoneInfo | None = None,
) -> tuple[str, str]:
    """(plain body, sanitized HTML) of a Matrix message made with ``template``."""
    variables = template_vars(
        item, feed_title=feed_title, feed_link=feed_link, html=True, zone=zone
    )
    formatted = sanitize_html(template.render(variables), keep_images=False)
    return html_to_text(formatted), formatted


def render_channel(
    template: RouteTemplate,
    item: ItemLike,
    *,
    feed_title: str,
    feed_link: str | None,
    zone: ZoneInfo | None = None,
) -> str:
    """The plain text of a channel post made with ``template``."""
    variables = template_vars(
        item, feed_title=feed_title, feed_link=feed_link, html=False, zone=zone
    )
    return template.render(variables)


# -- webhook templates -----------------------------------------------------------------------
# A webhook's ``[hooks.template]`` turns the posted payload (JSON object, or form fields)
# into an item. Same sandbox; one variable, ``payload``; a missing field renders as "" (a
# calendar that leaves out a location must not lose the event), but the title must not
# come out empty (checked when the hook is called).

PAYLOAD_VARIABLES: tuple[str, ...] = ("payload",)
_SAMPLE_PAYLOAD = {
    "title": "Story time in the park",
    "url": "https://libraries.example.org/events/42",
    "description": "Bring a blanket.",
    "start": "2026-12-01T15:00:00Z",
}


def _payload_environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(autoescape=False, trim_blocks=True, lstrip_blocks=True)


@lru_cache(maxsize=256)
def _payload_compiled(source: str) -> Template:
    return _payload_environment().from_string(source)


def check_payload_template(source: str, *, path: str) -> None:
    """A `ConfigError` at ``path`` unless ``source`` is a usable webhook template."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ConfigError(
            f"template is {len(source)} characters long; keep it under {MAX_TEMPLATE_CHARS}",
            path=path,
        )
    env = _payload_environment()
    try:
        names = meta.find_undeclared_variables(env.parse(source))
    except TemplateError as e:
        raise ConfigError(f"template syntax error: {e}", path=path) from e
    unknown = sorted(names - set(PAYLOAD_VARIABLES))
    if unknown:
        raise ConfigError(
            f"unknown template variable(s) {', '.join(unknown)}; a webhook template sees "
            "only `payload` (the posted JSON object or form fields)",
            path=path,
        )
    try:
        render_payload(source, _SAMPLE_PAYLOAD)
    except TemplateError as e:
        raise ConfigError(f"template fails on a sample payload: {e}", path=path) from e


def render_payload(source: str, payload: Mapping[str, object]) -> str:
    """Render a webhook template; raises `jinja2.TemplateError` when it cannot."""
    return _payload_compiled(source).render(payload=payload).strip()
