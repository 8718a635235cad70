"""Trends for the dashboard and grant reports: aggregate counts per day, nothing per reader.

Each measure is one ``GROUP BY day`` query over a table the service keeps anyway; days are
UTC calendar days. Deliveries count by the day they were sent; failed deliveries (which
record no time of failure) by the day they were queued. Case times are averages, in
hours, over the cases opened that day.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta

from network.storage.base import Database, now_iso
from network.storage.dialect import POSTGRESQL, SQLITE


@dataclass(frozen=True)
class DayTrend:
    day: date
    delivered: int = 0
    failed: int = 0
    joined: int = 0
    left: int = 0
    digests: int = 0
    cases_opened: int = 0
    hours_to_answer: float | None = None
    hours_to_close: float | None = None


MEASURES: tuple[str, ...] = tuple(f.name for f in fields(DayTrend) if f.name != "day")

# measure -> (SQL giving (day, value) rows for rows at or after ?)
_QUERIES: dict[str, str] = {
    "delivered": "SELECT substr(sent_at, 1, 10) AS day, COUNT(*) FROM outbox "
    "WHERE status = 'sent' AND sent_at >= ? GROUP BY day",
    "failed": "SELECT substr(created_at, 1, 10) AS day, COUNT(*) FROM outbox "
    "WHERE status = 'failed' AND created_at >= ? GROUP BY day",
    "joined": "SELECT substr(confirmed_at, 1, 10) AS day, COUNT(*) FROM subscribers "
    "WHERE confirmed_at >= ? GROUP BY day",
    "left": "SELECT substr(unsubscribed_at, 1, 10) AS day, COUNT(*) FROM subscribers "
    "WHERE unsubscribed_at >= ? GROUP BY day",
    "digests": "SELECT substr(sent_at, 1, 10) AS day, COUNT(*) FROM digest_runs "
    "WHERE status = 'sent' AND sent_at >= ? GROUP BY day",
    "cases_opened": "SELECT substr(opened_at, 1, 10) AS day, COUNT(*) FROM cases "
    "WHERE opened_at >= ? GROUP BY day",
    "hours_to_answer": "SELECT substr(opened_at, 1, 10) AS day, "
    "AVG({hours(answered_at)}) FROM cases "
    "WHERE opened_at >= ? AND answered_at IS NOT NULL GROUP BY day",
    "hours_to_close": "SELECT substr(opened_at, 1, 10) AS day, "
    "AVG({hours(closed_at)}) FROM cases "
    "WHERE opened_at >= ? AND closed_at IS NOT NULL GROUP BY day",
}

# Hours from a case's opening to a later time (ISO text in both backends).
_HOURS = {
    SQLITE: "(julianday({end}) - julianday(opened_at)) * 24",
    POSTGRESQL: "EXTRACT(EPOCH FROM (CAST({end} AS timestamptz) - CAST(opened_at AS "
    "timestamptz))) / 3600",
}


def _query(measure: str, dialect: str) -> str:
    sql = _QUERIES[measure]
    for end in ("answered_at", "closed_at"):
        sql = sql.replace(f"{{hours({end})}}", _HOURS[dialect].format(end=end))
    return sql


class TrendStore(Database):
    async def daily_trends(self, *, days: int, now: datetime) -> list[DayTrend]:
        """One `DayTrend` per day for the ``days`` days ending with ``now``'s day, oldest
        first; days without activity are present with zero counts."""
        last = now.date()
        first = last - timedelta(days=days - 1)
        since = now_iso(datetime(first.year, first.month, first.day, tzinfo=now.tzinfo))
        values: dict[str, dict[str, float]] = {m: {} for m in MEASURES}
        for measure in _QUERIES:
            for row in await self.fetchall(_query(measure, self.dialect), (since,)):
                if row[0] is not None and row[1] is not None:
                    values[measure][str(row[0])] = float(row[1])
        out = []
        for n in range(days):
            day = first + timedelta(days=n)
            key = day.isoformat()
            kwargs: dict[str, object] = {}
            for measure in MEASURES:
                v = values[measure].get(key)
                if measure.startswith("hours_"):
                    kwargs[measure] = None if v is None else round(v, 1)
                else:
                    kwargs[measure] = int(v or 0)
            out.append(DayTrend(day, **kwargs))  # type: ignore[arg-type]
        return out
