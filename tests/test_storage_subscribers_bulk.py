"""Adding subscribers in bulk (large imports, the digest benchmark's setup) on both backends:
each added as `add_subscriber` adds one, known addresses left alone, across several
multi-row statements."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from network.storage import Storage
from network.storage.subscribers import Preferences, Subscriber
from network.subscriptions.topics import next_due

NOW = datetime(2026, 11, 23, 14, 5, tzinfo=UTC)
DAILY = Preferences(("kind:news",), "daily", "America/Chicago", 8)
WEEKLY = Preferences(("kind:webinar", "feed:news"), "weekly", "Europe/Madrid", 9, 2)


async def add_one(storage: Storage, address: str, prefs: Preferences) -> Subscriber:
    sub, _ = await storage.add_subscriber(
        address=address, address_key=address, channel="email", prefs=prefs, source="import",
        consent="signed form", now=NOW, next_due=next_due,
    )  # fmt: skip
    return sub


async def test_bulk_add_matches_one_by_one_and_skips_known(db_location: str | Path) -> None:
    storage = await Storage.open(db_location)
    try:
        alone = await add_one(storage, "known@example.org", DAILY)
        await storage.unsubscribe(alone.id, now=NOW)
        people = [(f"reader{i}@example.org", f"reader{i}@example.org", DAILY if i % 2 else WEEKLY)
                  for i in range(150)]  # fmt: skip
        people.insert(70, ("known@example.org", "known@example.org", WEEKLY))
        people.append(("reader3@example.org", "reader3@example.org", WEEKLY))  # twice

        added = await storage.add_subscribers(
            people, channel="email", source="import", consent="signed form", now=NOW,
            next_due=next_due,
        )  # fmt: skip

        assert added == 150
        counts = await storage.subscriber_counts()
        assert (counts.get("active"), counts.get("unsubscribed")) == (150, 1)
        known = await storage.subscriber_by_key("known@example.org")
        assert known is not None and known.status == "unsubscribed" and known.prefs == DAILY
        twice = await storage.subscriber_by_key("reader3@example.org")
        assert twice is not None and twice.prefs == DAILY  # the first one counts
        # A bulk-added subscriber is what add_subscriber makes of the same person.
        one = await add_one(storage, "single@example.org", WEEKLY)
        bulk = await storage.subscriber_by_key("reader0@example.org")
        assert bulk is not None
        differ = {"id", "address", "address_key"}
        assert {k: v for k, v in dataclasses.asdict(bulk).items() if k not in differ} == {
            k: v for k, v in dataclasses.asdict(one).items() if k not in differ
        }
    finally:
        await storage.close()
