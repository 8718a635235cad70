"""A digest round split across two instances on one PostgreSQL: both plan and send at the
same time, in small batches, into one real SMTP server (aiosmtpd); each subscriber gets
exactly one digest."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from network.devtools.mailsink import MailSink
from network.settings.model import parse_settings
from tests.digestkit import (
    SECRET,
    SECRET_ENV,
    START,
    Clock,
    config_text,
    item,
    make_service,
    publish,
    subscriber,
)
from tests.instancekit import on_postgres
from tests.pgkit import PgServer

SUBSCRIBERS = 120


async def test_two_instances_send_one_round_each_subscriber_once(
    postgres: PgServer, sink: MailSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    url = await postgres.new_database()
    clock = Clock(START)
    services = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        text = on_postgres(config_text(folder, sink.url), url)
        services.append(await make_service(parse_settings(text, base_dir=folder, env={}), clock))
    a, b = services
    try:
        addresses = [f"reader{i:03d}@example.org" for i in range(SUBSCRIBERS)]
        for address in addresses:
            await subscriber(a, address, now=clock.now)
        await publish(a, "news", [item("n1", "Hotspot lending expands")], clock.now)
        for svc in services:
            svc.digests.batch = 7  # many small leases, so the two interleave
        clock.advance(hours=2)  # 08:00 in Chicago: everyone's digest is due
        reports = await asyncio.gather(a.digests.run_once(), b.digests.run_once())
        print(f"sent by each instance: {[r.sent for r in reports]}")
        assert sum(r.sent for r in reports) == SUBSCRIBERS
        assert all(r.sent > 0 for r in reports), "one instance did the whole round"
        counts = Counter(to for m in sink.received for to in m.rcpt_tos)
        assert sorted(counts) == addresses
        assert set(counts.values()) == {1}
        # A second round in the same period sends nothing more, from either instance.
        again = await asyncio.gather(a.digests.run_once(), b.digests.run_once())
        assert sum(r.sent for r in again) == 0
        assert len(sink.received) == SUBSCRIBERS
    finally:
        for svc in services:
            await svc.close()
