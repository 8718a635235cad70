"""The dashboard's trends page and its CSV export for grant reports.

Per day over the last `DAYS` days: items delivered, failed deliveries, subscribers joining
and leaving, digests sent, assistance cases opened and the average hours to a first answer
and to closing. Aggregates only (network/storage/trends.py): nothing about any one reader.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from datetime import UTC, datetime

from aiohttp import web

from network.i18n import N_
from network.i18n import gettext as _
from network.storage.trends import MEASURES, DayTrend
from network.web.charts import bar_chart
from network.web.context import WebContext
from network.web.dashboard import PREFIX, Session, _page, _render

DAYS = 90

# measure -> (chart title and table header, unit); one place for the words, translated
# where shown. The hour measures are averages (their charts say so).
LABELS: dict[str, tuple[str, str]] = {
    "delivered": (N_("Items delivered"), N_("deliveries")),
    "failed": (N_("Failed deliveries"), N_("failures")),
    "joined": (N_("Subscribers joining"), N_("subscribers")),
    "left": (N_("Subscribers leaving"), N_("subscribers")),
    "digests": (N_("Digests sent"), N_("digests")),
    "cases_opened": (N_("Assistance cases opened"), N_("cases")),
    "hours_to_answer": (N_("Hours to first answer (average)"), N_("hours")),
    "hours_to_close": (N_("Hours to close (average)"), N_("hours")),
}
AVERAGES = frozenset({"hours_to_answer", "hours_to_close"})


async def _trends(service: WebContext) -> list[DayTrend]:
    return await service.storage.daily_trends(days=DAYS, now=datetime.now(UTC))


async def trends_page(request: web.Request, service: WebContext, session: Session) -> web.Response:
    days = await _trends(service)
    dates = [d.day for d in days]
    charts = [
        {
            "id": f"chart-{m.replace('_', '-')}",
            "title": _(LABELS[m][0]),
            "svg": bar_chart(
                f"chart-{m.replace('_', '-')}",
                _(LABELS[m][0]),
                dates,
                [getattr(d, m) for d in days],
                _(LABELS[m][1]),
                average=m in AVERAGES,
            ),
        }
        for m in MEASURES
    ]
    rows = [
        {"day": d.day.isoformat(), "values": ["" if v is None else v for v in _values(d)]}
        for d in reversed(days)
    ]
    return _render(
        "dashboard_trends.html.j2",
        session=session,
        network=service.settings.network.name,
        days=DAYS,
        charts=charts,
        headers=[_(LABELS[m][0]) for m in MEASURES],
        rows=rows,
    )


def _values(d: DayTrend) -> list[int | float | None]:
    data = asdict(d)
    return [data[m] for m in MEASURES]


def trends_csv(days: list[DayTrend]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["day", *MEASURES])
    for d in days:
        writer.writerow([d.day.isoformat(), *("" if v is None else v for v in _values(d))])
    return out.getvalue()


async def trends_export(
    request: web.Request, service: WebContext, session: Session
) -> web.Response:
    text = trends_csv(await _trends(service))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="libhub-trends-{stamp}.csv"'},
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/trends", _page(trends_page))
    app.router.add_get(f"{PREFIX}/trends.csv", _page(trends_export))
