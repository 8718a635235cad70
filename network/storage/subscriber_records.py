"""Records of subscriptions and digests (frozen, built from rows) and their small helpers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from network.errors import StorageError
from network.storage.base import from_iso, now_iso

NextDue = Callable[["Preferences", datetime], datetime | None]


class TokenAlreadyUsed(StorageError):
    """A single-use link was used before."""


@dataclass(frozen=True)
class Preferences:
    """What a subscriber gets and when. ``weekday`` matters for weekly digests only."""

    topics: tuple[str, ...]
    frequency: str  # immediate | daily | weekly
    tz: str
    hour: int
    weekday: int = 0
    language: str = "en"  # of all their mail; one of network.i18n.languages()


def _prefs(row: Any) -> Preferences:
    return Preferences(
        topics=tuple(json.loads(row["topics"])),
        frequency=row["frequency"],
        tz=row["tz"],
        hour=int(row["hour"]),
        weekday=int(row["weekday"]),
        language=row["language"],
    )


def _req(value: str | None) -> datetime:
    moment = from_iso(value)
    assert moment is not None
    return moment


@dataclass(frozen=True)
class Subscriber:
    id: int
    address: str
    address_key: str
    channel: str  # email | apprise
    prefs: Preferences
    status: str  # active | suspended | unsubscribed
    source: str
    consent: str
    created_at: datetime
    confirmed_at: datetime
    updated_at: datetime
    unsubscribed_at: datetime | None
    suspended_at: datetime | None
    queue_cursor: int
    last_period: str | None
    next_due: datetime | None
    last_sent_at: datetime | None
    bounce_score: float
    last_bounce_at: datetime | None
    last_error: str | None

    @classmethod
    def from_row(cls, row: Any) -> Subscriber:
        return cls(
            id=int(row["id"]),
            address=row["address"],
            address_key=row["address_key"],
            channel=row["channel"],
            prefs=_prefs(row),
            status=row["status"],
            source=row["source"],
            consent=row["consent"],
            created_at=_req(row["created_at"]),
            confirmed_at=_req(row["confirmed_at"]),
            updated_at=_req(row["updated_at"]),
            unsubscribed_at=from_iso(row["unsubscribed_at"]),
            suspended_at=from_iso(row["suspended_at"]),
            queue_cursor=int(row["queue_cursor"]),
            last_period=row["last_period"],
            next_due=from_iso(row["next_due"]),
            last_sent_at=from_iso(row["last_sent_at"]),
            bounce_score=float(row["bounce_score"]),
            last_bounce_at=from_iso(row["last_bounce_at"]),
            last_error=row["last_error"],
        )


@dataclass(frozen=True)
class SubscribeRequest:
    id: int
    address: str
    address_key: str
    channel: str
    prefs: Preferences
    source: str
    created_at: datetime
    expires_at: datetime
    sent: bool  # counts against the limit: sent, or waiting to be sent (personal_mail.py)
    confirmed_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> SubscribeRequest:
        return cls(
            id=int(row["id"]),
            address=row["address"],
            address_key=row["address_key"],
            channel=row["channel"],
            prefs=_prefs(row),
            source=row["source"],
            created_at=_req(row["created_at"]),
            expires_at=_req(row["expires_at"]),
            sent=bool(row["sent"]),
            confirmed_at=from_iso(row["confirmed_at"]),
        )


@dataclass(frozen=True)
class DigestRun:
    """One digest or notice for one subscriber: queue entries (from_seq, upto_seq]."""

    id: int
    subscriber_id: int
    period: str
    kind: str  # digest | immediate
    frequency: str
    from_seq: int
    upto_seq: int
    status: str  # pending | sent | failed | dropped
    attempts: int
    next_attempt: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> DigestRun:
        return cls(
            id=int(row["id"]),
            subscriber_id=int(row["subscriber_id"]),
            period=row["period"],
            kind=row["kind"],
            frequency=row["frequency"],
            from_seq=int(row["from_seq"]),
            upto_seq=int(row["upto_seq"]),
            status=row["status"],
            attempts=int(row["attempts"]),
            next_attempt=_req(row["next_attempt"]),
            last_error=row["last_error"],
            created_at=_req(row["created_at"]),
            sent_at=from_iso(row["sent_at"]),
        )


@dataclass(frozen=True)
class QueueEntry:
    seq: int
    item_id: int
    feed_id: str
    kind: str


@dataclass(frozen=True)
class Claim:
    """Hand queue entries (from_seq, upto_seq] of one subscriber to a new run.

    ``from_seq`` must still be the subscriber's cursor (else someone else claimed first and
    this claim is skipped). With ``period`` None nothing matched the subscriber's topics:
    only the cursor (and ``last_period``/``next_due``) move, no run is created.
    """

    subscriber_id: int
    from_seq: int
    upto_seq: int
    period: str | None
    kind: str
    frequency: str
    last_period: str | None
    next_due: datetime | None


SUB_COLS = "topics, frequency, tz, hour, weekday, language"


def prefs_values(p: Preferences) -> tuple[str, str, str, int, int, str]:
    return (json.dumps(list(p.topics)), p.frequency, p.tz, p.hour, p.weekday, p.language)


def iso_or_none(value: datetime | None) -> str | None:
    return now_iso(value) if value is not None else None
