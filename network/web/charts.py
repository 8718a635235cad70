"""Small bar charts as inline SVG, rendered on the server: readable without JavaScript.

Each chart is an ``<svg role="img">`` with a ``<title>`` and ``<desc>`` (named by
``aria-labelledby``) summing it up in words; the page puts the same numbers in a table
for screen readers and for copying. Pure: values in, markup out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from html import escape

from markupsafe import Markup

from network.i18n import gettext as _
from network.i18n import ngettext

WIDTH = 560
HEIGHT = 120
PAD_TOP = 14
PAD_BOTTOM = 18


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def bar_chart(
    chart_id: str,
    title: str,
    days: Sequence[date],
    values: Sequence[float | None],
    unit: str,
    *,
    average: bool = False,
) -> Markup:
    """One bar per day; a missing value (no data that day) draws no bar. ``unit`` is the
    word shown (translated); ``average`` sums the chart up as an average, not a total."""
    known = [v for v in values if v is not None]
    top = max(known, default=0.0)
    total = sum(known)
    if average:
        summary = (
            ngettext(
                "average {value} {unit} over {n} day with cases",
                "average {value} {unit} over {n} days with cases",
                len(known),
            ).format(value=_number(total / len(known)), unit=unit, n=len(known))
            if known
            else _("no data")
        )
    else:
        summary = _("{total} {unit} in {n} days, at most {top} a day").format(
            total=_number(total), unit=unit, n=len(days), top=_number(top)
        )
    first = days[0].isoformat() if days else ""
    last = days[-1].isoformat() if days else ""
    desc = _("{title}, {first} to {last}: {summary}.").format(
        title=title, first=first, last=last, summary=summary
    )
    maximum = _("max {top}").format(top=_number(top))
    slot = WIDTH / max(1, len(days))
    inner = HEIGHT - PAD_TOP - PAD_BOTTOM
    bars = []
    for i, (day, value) in enumerate(zip(days, values, strict=True)):
        if not value:
            continue
        h = max(1.0, inner * value / top) if top else 0.0
        x = i * slot + slot * 0.1
        y = PAD_TOP + inner - h
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" height="{h:.1f}" '
            f'fill="#12355b"><title>{escape(day.isoformat())}: {_number(value)}</title></rect>'
        )
    base = PAD_TOP + inner
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" style="max-width:{WIDTH}px" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>',
        f'<line x1="0" y1="{base}" x2="{WIDTH}" y2="{base}" stroke="#555"/>',
        f'<text x="0" y="10" font-size="10" fill="#333">{escape(maximum)}</text>',
        f'<text x="0" y="{HEIGHT - 4}" font-size="10" fill="#333">{escape(first)}</text>',
        f'<text x="{WIDTH}" y="{HEIGHT - 4}" font-size="10" fill="#333" '
        f'text-anchor="end">{escape(last)}</text>',
        *bars,
        "</svg>",
    ]
    return Markup("".join(parts))
