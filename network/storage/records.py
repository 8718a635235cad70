"""Typed records that cross the storage boundary (never raw rows)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from network.storage.base import from_iso


@dataclass(frozen=True)
class FeedState:
    """What polling has learned about one configured feed."""

    id: str
    config_url: str
    url: str
    title: str
    link: str | None
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    status: str
    last_check: datetime | None
    last_success: datetime | None
    next_check: datetime | None
    consecutive_errors: int
    last_error: str | None
    warning: str | None
    initial_sync_done: bool
    outage_notified: bool

    @classmethod
    def from_row(cls, row: Any) -> FeedState:
        return cls(
            id=row["id"],
            config_url=row["config_url"],
            url=row["url"],
            title=row["title"],
            link=row["link"],
            etag=row["etag"],
            last_modified=row["last_modified"],
            body_hash=row["body_hash"],
            status=row["status"],
            last_check=from_iso(row["last_check"]),
            last_success=from_iso(row["last_success"]),
            next_check=from_iso(row["next_check"]),
            consecutive_errors=row["consecutive_errors"],
            last_error=row["last_error"],
            warning=row["warning"],
            initial_sync_done=bool(row["initial_sync_done"]),
            outage_notified=bool(row["outage_notified"]),
        )


@dataclass(frozen=True)
class ItemInput:
    """An item as the poller hands it to storage."""

    key: str
    kind: str
    title: str
    link: str | None
    published: datetime | None
    author: str | None
    categories: tuple[str, ...]
    summary_html: str
    enclosures: tuple[dict[str, Any], ...]
    event_start: datetime | None
    content_hash: str


@dataclass(frozen=True)
class StoredText:
    """What a reader saw of a stored item: for deciding whether a change is worth an edit."""

    title: str
    link: str | None
    summary_html: str
    event_start: datetime | None


@dataclass(frozen=True)
class Item:
    id: int
    feed_id: str
    key: str
    kind: str
    title: str
    link: str | None
    published: datetime | None
    author: str | None
    categories: tuple[str, ...]
    summary_html: str
    enclosures: tuple[dict[str, Any], ...]
    event_start: datetime | None
    content_hash: str
    version: int
    first_seen: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Item:
        first_seen = from_iso(row["first_seen"])
        updated_at = from_iso(row["updated_at"])
        assert first_seen is not None and updated_at is not None
        return cls(
            id=row["id"],
            feed_id=row["feed_id"],
            key=row["key"],
            kind=row["kind"],
            title=row["title"],
            link=row["link"],
            published=from_iso(row["published"]),
            author=row["author"],
            categories=tuple(json.loads(row["categories"])),
            summary_html=row["summary_html"],
            enclosures=tuple(json.loads(row["enclosures"])),
            event_start=from_iso(row["event_start"]),
            content_hash=row["content_hash"],
            version=row["version"],
            first_seen=first_seen,
            updated_at=updated_at,
        )


@dataclass(frozen=True)
class Target:
    """Where an item goes: a Matrix room reference or one apprise URL of a channel."""

    target_type: str  # "matrix" | "apprise"
    target: str
    channel: str | None = None
    # Waits for a coordinator (network/storage/moderation.py) before it is delivered.
    held: bool = False


@dataclass(frozen=True)
class OutboxRow:
    id: int
    item_id: int
    item_version: int
    action: str
    target_type: str
    target: str
    channel: str | None
    txn_id: str
    status: str
    attempts: int
    next_attempt: datetime
    last_error: str | None
    event_id: str | None
    created_at: datetime
    sent_at: datetime | None
    poll: str | None = None  # the store transaction that created a post row

    @classmethod
    def from_row(cls, row: Any) -> OutboxRow:
        next_attempt = from_iso(row["next_attempt"])
        created_at = from_iso(row["created_at"])
        assert next_attempt is not None and created_at is not None
        return cls(
            id=row["id"],
            item_id=row["item_id"],
            item_version=row["item_version"],
            action=row["action"],
            target_type=row["target_type"],
            target=row["target"],
            channel=row["channel"],
            txn_id=row["txn_id"],
            status=row["status"],
            attempts=row["attempts"],
            next_attempt=next_attempt,
            last_error=row["last_error"],
            event_id=row["event_id"],
            created_at=created_at,
            sent_at=from_iso(row["sent_at"]),
            poll=row["poll"],
        )


@dataclass(frozen=True)
class StoreResult:
    """What storing one poll's items did."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    queued: int = 0
