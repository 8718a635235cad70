"""The languages of what people read: web pages, subscriber email, notices.

English is the source language; every other language is a gettext catalog,
``network/locale/<lang>/LC_MESSAGES/libhub.po`` compiled to ``libhub.mo`` beside it
(``make i18n``). The languages offered are the folders found there, so adding one is a
catalog, not code.

The language in use is a context variable: the web middleware sets it per request
(`network.web.language`), mail rendering sets it per subscriber with `use`. `gettext`
and `ngettext` read it, and so do the Jinja2 templates, whose i18n extension is given
these callables (network/templating.py). `N_` only marks a string for extraction where it
must be translated later (module constants). Dates and times are formatted by CLDR
(babel.dates) in the same language.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, tzinfo
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_skeleton, format_time
from babel.support import NullTranslations, Translations

SOURCE = "en"
DOMAIN = "libhub"
LOCALE_DIR = Path(__file__).parent / "locale"

_current: ContextVar[str] = ContextVar("libhub_language", default=SOURCE)


@functools.cache
def languages() -> tuple[str, ...]:
    """The source language first, then every language with a compiled catalog."""
    found: list[str] = []
    if LOCALE_DIR.is_dir():
        for folder in sorted(LOCALE_DIR.iterdir()):
            if (folder / "LC_MESSAGES" / f"{DOMAIN}.mo").is_file() and folder.name != SOURCE:
                found.append(folder.name)
    return (SOURCE, *found)


def known(lang: str | None) -> str:
    """``lang`` when it is offered, else the source language."""
    return lang if lang in languages() else SOURCE


@functools.cache
def translations(lang: str) -> NullTranslations:
    if lang == SOURCE or lang not in languages():
        return NullTranslations()
    return Translations.load(str(LOCALE_DIR), [lang], DOMAIN)


def language_name(lang: str) -> str:
    """A language's name in itself ("English", "Español"): how people look for theirs."""
    try:
        name = Locale.parse(lang).get_display_name(lang) or lang
    except (UnknownLocaleError, ValueError):
        return lang
    return name[:1].upper() + name[1:]


def current() -> str:
    return _current.get()


@contextmanager
def use(lang: str | None) -> Iterator[str]:
    """Everything translated inside the block is in ``lang`` (an unknown one: English)."""
    chosen = known(lang)
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def gettext(message: str) -> str:
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks ``message`` for extraction; translate it with `gettext` where it is shown."""
    return message


def negotiate(accept_language: str | None) -> str:
    """The offered language a browser's ``Accept-Language`` prefers most (else English).

    ``es-MX,es;q=0.9,en;q=0.8`` is Spanish; a region falls back to its language.
    """
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if tag and q > 0:
            weighted.append((-q, index, tag.lower()))
    offered = languages()
    for _q, _i, tag in sorted(weighted):
        for candidate in (tag, tag.split("-")[0]):
            if candidate in offered:
                return candidate
    return SOURCE


# -- dates and times (CLDR) ------------------------------------------------------------------


def format_day(moment: datetime, zone: tzinfo) -> str:
    """The full date in ``zone``: "Tuesday, May 20, 2025", "martes, 20 de mayo de 2025"."""
    return format_date(moment.astimezone(zone), "full", locale=_current.get())


def format_long_date(moment: datetime, zone: tzinfo) -> str:
    """The date without the weekday in ``zone``: "May 20, 2025", "20 de mayo de 2025"."""
    return format_date(moment.astimezone(zone), "long", locale=_current.get())


def format_weekday(moment: datetime, zone: tzinfo) -> str:
    """The day of the week in ``zone``: "Monday", "lunes"."""
    return format_date(moment.astimezone(zone), "EEEE", locale=_current.get())


def format_clock(moment: datetime, zone: tzinfo) -> str:
    """The time of day in ``zone``: "3:00 PM", "15:00"."""
    return format_time(moment.astimezone(zone), "short", tzinfo=zone, locale=_current.get())


def format_when(moment: datetime, zone: tzinfo) -> str:
    """Date, time and zone abbreviation: "Tuesday, May 20, 2025, 3:00 PM CEST"."""
    local = moment.astimezone(zone)
    # Translators: a date, a time of day and a time zone abbreviation, as in
    # "Tuesday, May 20, 2025, 3:00 PM EDT".
    return gettext("%(date)s, %(time)s %(zone)s") % {
        "date": format_day(moment, zone),
        "time": format_clock(moment, zone),
        "zone": local.tzname() or str(zone),
    }


def format_hour(hour: int) -> str:
    """An hour of the day as the language writes it: "8:00 AM", "8:00"."""
    return format_time(datetime(2000, 1, 1, hour), "short", locale=_current.get())


def weekday_names() -> tuple[str, ...]:
    """Monday first, in the current language ("lunes", ...)."""
    names = Locale.parse(_current.get()).days["format"]["wide"]
    return tuple(names[i] for i in range(7))


def short_month_day(moment: datetime, zone: tzinfo) -> str:
    """Day and month only ("May 20", "20 may"), for subject lines."""
    return format_skeleton("MMMd", moment.astimezone(zone), locale=_current.get())
