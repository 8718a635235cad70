"""What a digest send's outcome costs: the send report, bounce scores and retry backoff.

A permanent refusal of the recipient (5xx to RCPT) adds to the address's bounce score (once
a day at most); reaching ``digests.bounce_threshold`` suspends the subscription. A
permanent refusal of the message (5xx after DATA) fails the run and nothing else.
Temporary failures, and errors of our own while sending a run (a message that cannot be
built, say), are retried with backoff up to ``digests.retry_limit`` attempts: libhub's
own failure is logged and never counted as the recipient's bounce. When the relay cannot be
used at all (down, login refused, not configured) the run is put off without using up an
attempt: the runner waits for the relay (see send.py), and nobody's digest is lost to a
night's outage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from network.mail.pool import SendResult
from network.settings.model import DigestSettings
from network.storage import Storage
from network.storage.subscribers import DigestRun, Subscriber
from network.subscriptions.schedule import retry_delay

# The runner's logger, as before this module was split out of runner.py.
log = logging.getLogger("network.subscriptions.digests.runner")


def bounce_score(
    score: float, last_bounce: datetime | None, now: datetime, stale_after: timedelta
) -> float:
    """The score after one more permanent failure: +1, at most once per UTC day, and
    starting again from 0 when the last bounce is older than ``stale_after``."""
    if last_bounce is not None and now - last_bounce > stale_after:
        return 1.0
    if last_bounce is not None and last_bounce.date() == now.astimezone(UTC).date() and score:
        return score
    return score + 1.0


@dataclass
class SendReport:
    """Counts of one `DigestRunner.send_pending` call."""

    sent: int = 0
    permanent: int = 0
    temporary: int = 0
    dropped: int = 0
    suspended: int = 0

    @property
    def done(self) -> int:
        return self.sent + self.permanent + self.temporary + self.dropped


async def record_result(
    storage: Storage,
    limits: DigestSettings,
    run: DigestRun,
    sub: Subscriber,
    result: SendResult,
    report: SendReport,
    *,
    now: datetime,
    relay_wait: timedelta,
) -> None:
    """Write what one send did to the run (and, for a bounce, to the subscriber).

    ``relay_wait``: how long a run waits when the relay could not be used.
    """
    if result.ok:
        await storage.run_sent(run, now=now)
        report.sent += 1
        return
    if result.relay:
        report.temporary += 1
        await storage.run_postponed(run, error=result.detail, next_attempt=now + relay_wait)
        return
    if result.own:
        log.error(
            "digest run %d cannot be sent (libhub's failure, not a bounce): %s",
            run.id,
            result.detail,
        )
        await record_retry(storage, limits, run, result.detail, report, now=now)
        return
    if result.permanent and not result.bounce:
        await storage.run_finished(run, status="failed", error=result.detail)
        report.permanent += 1
        return
    if result.permanent:
        score = bounce_score(sub.bounce_score, sub.last_bounce_at, now, limits.bounce_stale_after)
        suspend = score >= limits.bounce_threshold
        # This run first: suspending drops the subscriber's pending runs, this one too.
        await storage.run_finished(run, status="failed", error=result.detail)
        await storage.record_bounce(
            sub.id, score=score, now=now, suspend=suspend, error=result.detail
        )
        report.permanent += 1
        if suspend:
            report.suspended += 1
            log.warning(
                "subscriber %d suspended after bounces (score %.1f): %s",
                sub.id,
                score,
                result.detail,
            )
        return
    await record_retry(storage, limits, run, result.detail, report, now=now)


async def record_retry(
    storage: Storage,
    limits: DigestSettings,
    run: DigestRun,
    error: str,
    report: SendReport,
    *,
    now: datetime,
) -> None:
    """One attempt of ``run`` failed for now: try again after a backoff, or give up."""
    report.temporary += 1
    attempts = run.attempts + 1
    if attempts >= limits.retry_limit:
        await storage.run_finished(
            run, status="failed", error=f"gave up after {attempts} attempts: {error}"
        )
    else:
        await storage.run_retry(run, error=error, next_attempt=now + retry_delay(attempts))
