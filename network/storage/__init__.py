"""All of libhub's SQL: the one package that talks to the database.

`Storage` composes the domain stores (state, feeds and items, outbox) over one
connection; other modules get typed records from it and never see a row or a cursor.
"""

from __future__ import annotations

from network.storage.archive import ArchiveStore
from network.storage.audit import AuditStore
from network.storage.base import SCHEMA_VERSION, Database, from_iso, now_iso
from network.storage.bot_events import BotEventStore
from network.storage.calendar import CalendarStore
from network.storage.cases import CaseStore
from network.storage.cohorts import CommunityStore
from network.storage.digest_runs import DigestRunStore
from network.storage.feeds import FeedStore
from network.storage.instances import Instance, InstanceStore
from network.storage.live_feeds import LiveFeedStore
from network.storage.moderation import ModerationStore
from network.storage.outbox import OutboxStore
from network.storage.personal_mail import PersonalMailStore
from network.storage.records import (
    FeedState,
    Item,
    ItemInput,
    OutboxRow,
    StoredText,
    StoreResult,
    Target,
)
from network.storage.state import StateStore
from network.storage.subscribers import SubscriberStore
from network.storage.trends import TrendStore
from network.storage.undecrypted import UndecryptedEvent, UndecryptedStore


class Storage(
    StateStore,
    FeedStore,
    OutboxStore,
    CommunityStore,
    BotEventStore,
    CaseStore,
    SubscriberStore,
    DigestRunStore,
    PersonalMailStore,
    CalendarStore,
    ArchiveStore,
    InstanceStore,
    UndecryptedStore,
    LiveFeedStore,
    AuditStore,
    ModerationStore,
    TrendStore,
):
    """The database of one libhub instance. Open with ``await Storage.open(path)``."""


__all__ = [
    "SCHEMA_VERSION",
    "Database",
    "FeedState",
    "Instance",
    "Item",
    "ItemInput",
    "OutboxRow",
    "Storage",
    "StoreResult",
    "StoredText",
    "Target",
    "UndecryptedEvent",
    "from_iso",
    "now_iso",
]
