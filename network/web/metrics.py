"""``GET /metrics``: the service's numbers in the Prometheus text exposition format (0.0.4).

Written by hand (no client library): each metric family gets ``# HELP`` and ``# TYPE``
lines, label values are escaped (backslash, double quote, newline), and values are
plain floats. Counters are the running service's in-memory totals since it started
(Prometheus handles the resets); gauges are read from storage at scrape time. Parts that
are not present in an installation (cases, digests) are left out rather than shown as 0.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from network.web.context import WebContext, context_of
from network.web.limits import metrics_refusal

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _help_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


@dataclass
class Family:
    """One metric family: name, type, help and its samples (labels, value)."""

    name: str
    kind: str  # counter | gauge
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Family:
        self.samples.append((labels, float(value)))
        return self

    def render(self) -> str:
        lines = [f"# HELP {self.name} {_help_text(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            label_text = ",".join(f'{k}="{escape_label(v)}"' for k, v in sorted(labels.items()))
            name = f"{self.name}{{{label_text}}}" if label_text else self.name
            lines.append(f"{name} {format_value(value)}")
        return "\n".join(lines)


def render(families: Iterable[Family]) -> str:
    return "\n".join(f.render() for f in families if f.samples) + "\n"


def _by_label(
    name: str, kind: str, help_text: str, label: str, values: Mapping[str, float]
) -> Family:
    fam = Family(name, kind, help_text)
    for key, value in sorted(values.items()):
        fam.add(value, **{label: key})
    return fam


async def _optional(storage: Any, method: str) -> Any:
    fn = getattr(storage, method, None)
    if fn is None:
        return None
    try:
        return await fn()
    except Exception:
        log.exception("metrics: %s failed", method)
        return None


async def collect(service: WebContext) -> list[Family]:
    """Every metric family of the running service."""
    storage = service.storage
    fams: list[Family] = []
    feeds = await storage.feed_health_counts()
    fams.append(_by_label("libhub_feeds", "gauge", "Feeds by health status.", "status", feeds))
    fams.append(
        Family("libhub_items_ingested_total", "counter", "New items stored by the poller.").add(
            getattr(service.poller, "items_ingested", 0)
        )
    )
    fams.append(Family("libhub_items", "gauge", "Items in the database.").add(
        await storage.item_count()
    ))  # fmt: skip
    delivery = service.delivery
    sent: Mapping[str, int] = getattr(delivery, "sent", {})
    failed: Mapping[str, int] = getattr(delivery, "failed", {})
    fams.append(
        _by_label(
            "libhub_deliveries_sent_total", "counter",
            "Messages delivered, by target type (matrix, apprise).", "target_type", sent,
        )
    )  # fmt: skip
    fams.append(
        _by_label(
            "libhub_deliveries_failed_total", "counter",
            "Deliveries given up as permanently failed, by target type.", "target_type", failed,
        )
    )  # fmt: skip
    fams.append(
        Family(
            "libhub_rate_limit_waits_total", "counter",
            "Times the homeserver answered M_LIMIT_EXCEEDED and sending paused.",
        ).add(getattr(delivery, "rate_limit_waits", 0))
    )  # fmt: skip
    fams.append(
        _by_label(
            "libhub_outbox_rows", "gauge", "Outbox rows by status.", "status",
            await storage.outbox_counts(),
        )
    )  # fmt: skip
    cases = await _optional(storage, "case_counts")
    if cases is not None:
        open_cases = sum(n for state, n in cases.items() if state != "closed")
        fams.append(
            Family("libhub_open_cases", "gauge", "Assistance cases not closed.").add(open_cases)
        )
    runs = await _optional(storage, "run_counts")
    if runs is not None:
        fams.append(
            _by_label(
                "libhub_digest_messages", "gauge",
                "Digest and notice messages by status (sent ones count what was delivered).",
                "status", runs,
            )
        )  # fmt: skip
    fams.append(
        _by_label(
            "libhub_webinar_reminders", "gauge", "Webinar reminders by status.", "status",
            await storage.reminder_counts(),
        )
    )  # fmt: skip
    fams.append(
        _by_label(
            "libhub_cohort_updates", "gauge", "Active cohort updates by cohort.", "cohort",
            await storage.cohort_update_counts(),
        )
    )  # fmt: skip
    matrix = service.matrix
    fams.append(
        Family("libhub_matrix_logged_in", "gauge", "1 when the bot is logged in to Matrix.").add(
            1 if matrix.logged_in else 0
        )
    )
    age = matrix.seconds_since_sync()
    if age is not None:
        fams.append(
            Family(
                "libhub_matrix_sync_age_seconds", "gauge",
                "Seconds since the last successful Matrix sync.",
            ).add(round(age, 3))
        )  # fmt: skip
    return fams


async def metrics(request: web.Request) -> web.Response:
    service = context_of(request)
    refused = metrics_refusal(request, service.settings.web)
    if refused is not None:
        return refused
    text = render(await collect(service))
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
