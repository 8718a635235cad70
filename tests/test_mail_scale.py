"""Mail at network scale, against a real SMTP server (aiosmtpd): the relay's
messages-per-second quota (``email.max_per_second``) holds across every pooled connection,
judged by the times the server accepted each message; and a digest round reads its
subscribers in pages (keyset by id) and still sends each of them one digest."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from network.devtools.mailsink import MailSink
from network.errors import ConfigError
from network.mail.factory import smtp_sender
from network.storage.subscribers import Subscriber
from tests.digestkit import DigestEnv, item, publish, settings_for, subscriber
from tests.test_mail import make


async def test_the_relay_quota_holds_across_connections(tmp_path: Path, sink: MailSink) -> None:
    rate, connections, n = 10.0, 4, 25
    settings = settings_for(tmp_path, sink.url)
    email = settings.email.__class__(**{**vars(settings.email), "max_per_second": rate,
                                        "max_connections": connections})  # fmt: skip
    async with smtp_sender(email) as sender:
        stats = await sender.send_many(make(f"r{i}@example.org", i) for i in range(n))
    assert stats.sent == n
    times = sorted(r.at for r in sink.received)
    assert len(times) == n
    # Never faster than the quota: n messages span at least (n - 1) / rate seconds (pacing
    # can only make a loaded machine slower), and no one-second window holds more than the
    # rate, give or take the messages in flight on each connection when the server accepted
    # them (its clock is not ours).
    assert times[-1] - times[0] >= (n - 1) / rate * 0.95
    in_any_second = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
    assert in_any_second <= rate + connections


def test_max_per_second_is_checked(tmp_path: Path, sink: MailSink) -> None:
    settings = settings_for(tmp_path, sink.url)
    assert settings.email.max_per_second == 0  # no limit unless the operator sets one
    with pytest.raises(ConfigError, match="max_per_second"):
        settings.email.__class__(**{**vars(settings.email), "max_per_second": -1}).validate("email")


async def test_planning_reads_subscribers_in_pages(digest_env: DigestEnv) -> None:
    svc, clock, sink = digest_env.service, digest_env.clock, digest_env.sink
    addresses = [f"reader{i}@example.org" for i in range(30)]
    for address in addresses:
        await subscriber(svc, address, now=clock.now)
    await publish(svc, "news", [item("n1", "Branch reopens")], clock.now)
    pages: list[int] = []
    read_page = svc.storage.digest_candidates_page

    async def counted(
        now: datetime, max_seq: int, *, after_id: int, limit: int
    ) -> list[Subscriber]:
        page = await read_page(now, max_seq, after_id=after_id, limit=limit)
        pages.append(len(page))
        return page

    # The real storage, only counted: how many subscribers each read returned.
    svc.storage.digest_candidates_page = counted  # type: ignore[method-assign]
    svc.digests.page_size = 7
    clock.advance(hours=2)  # 08:00 in Chicago: everyone's digest is due
    report = await svc.digests.run_once()
    assert pages == [7, 7, 7, 7, 2, 0]
    assert report.sent == 30
    assert sorted(a for r in sink.received for a in r.rcpt_tos) == sorted(addresses)
    # A second round the same day finds nothing due: each got one digest.
    pages.clear()
    clock.advance(minutes=30)
    assert (await svc.digests.run_once()).sent == 0
    assert len(sink.received) == 30
