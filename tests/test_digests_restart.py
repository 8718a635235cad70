"""Exactly once through restarts and across time zones: the digest runner stopped in the
middle of a round, a sender that crashed holding a lease, a service that was down at the
send hour, and daily digests across DST changes in several zones (runner level)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller

from network.devtools.devserver import free_port
from network.storage import now_iso
from network.subscriptions.digests.send import LEASE
from network.subscriptions.schedule import local_instant
from tests.digestkit import (
    SECRET,
    SECRET_ENV,
    Clock,
    item,
    make_service,
    publish,
    settings_for,
    subscriber,
)
from tests.waiting import eventually

START = datetime(2026, 11, 23, 13, 55, tzinfo=UTC)  # 07:55 in Chicago
SEND = START + timedelta(minutes=10)  # 08:05


class SlowSink:
    """An SMTP server that takes ``delay`` seconds per message, so a round can be stopped
    half-way; it only records who got what."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.got: list[tuple[str, str]] = []  # (recipient, subject)
        self._lock = threading.Lock()
        # With hold_after set, messages past that count wait for `gate` before the server
        # answers: the round is caught half-way however fast or slow the machine is.
        self.hold_after: int | None = None
        self.gate = threading.Event()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        if self.hold_after is not None and self.count() >= self.hold_after:
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 60)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            for rcpt in envelope.rcpt_tos:
                self.got.append((rcpt, str(msg["Subject"])))
        return "250 OK"

    def count(self) -> int:
        with self._lock:
            return len(self.got)

    def per_recipient(self) -> Counter[str]:
        with self._lock:
            return Counter(r for r, _ in self.got)


@pytest.fixture
def slow_sink() -> Iterator[SlowSink]:
    sink = SlowSink(delay=0.02)
    sink._controller.start()
    yield sink
    sink._controller.stop()


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


ADDRESSES = [f"reader{n:02d}@example.org" for n in range(24)]


async def _prepare(tmp: Path, sink: SlowSink, clock: Clock) -> None:
    service = await make_service(settings_for(tmp, sink.url), clock)
    try:
        for address in ADDRESSES:
            await subscriber(service, address, now=clock.now)
        await publish(service, "news", [item("n1", "Budget news"), item("n2", "Grant")],
                      clock.now)  # fmt: skip
    finally:
        await service.close()


async def test_stopping_mid_round_then_restarting_sends_each_digest_once(
    tmp_path: Path, slow_sink: SlowSink
) -> None:
    clock = Clock(START)
    await _prepare(tmp_path, slow_sink, clock)
    clock.now = SEND
    settings = settings_for(tmp_path, slow_sink.url)

    first = await make_service(settings, clock)
    stop = asyncio.Event()
    slow_sink.hold_after = 8
    task = asyncio.create_task(first.digests.run(stop))
    await eventually(lambda: slow_sink.count() >= 8, within=60, what="8 digests accepted")
    # The service is stopped the way `libhub run` stops: its tasks are cancelled. The
    # messages already handed to the server get their answer (the gate opens) and are
    # recorded, so the next start does not send them again.
    task.cancel()
    slow_sink.gate.set()
    with suppress(asyncio.CancelledError):
        await task
    await first.close()
    sent_before_restart = slow_sink.count()
    assert 8 <= sent_before_restart < len(ADDRESSES)

    second = await make_service(settings, clock)
    try:
        await second.digests.run_once()
        await second.digests.run_once()
        runs = await second.storage.run_counts()
    finally:
        await second.close()
    assert slow_sink.per_recipient() == Counter({a: 1 for a in ADDRESSES})
    assert runs["sent"] == len(ADDRESSES) and runs["pending"] == 0


async def test_sender_that_crashed_holding_a_lease_is_replaced_after_the_lease(
    tmp_path: Path, slow_sink: SlowSink
) -> None:
    clock = Clock(START)
    await _prepare(tmp_path, slow_sink, clock)
    clock.now = SEND
    settings = settings_for(tmp_path, slow_sink.url)
    crashed = await make_service(settings, clock)
    await crashed.digests.plan(clock.now)
    # It leased half the runs and was killed before sending any: no clean stop gives the
    # leases back, and no heartbeat renews them.
    leased = await crashed.storage.lease_runs(clock.now, limit=12, lease=crashed.digests.lease)
    assert len(leased) == 12
    await crashed.close()

    service = await make_service(settings, clock)
    try:
        await service.digests.run_once()
        assert slow_sink.count() == 12  # the others; the leased ones wait
        clock.advance(minutes=1)
        await service.digests.run_once()
        assert slow_sink.count() == 12
        clock.advance(minutes=1, seconds=1)  # the short lease (2 minutes) ran out
        await service.digests.run_once()
    finally:
        await service.close()
    assert LEASE <= timedelta(minutes=2)
    assert slow_sink.per_recipient() == Counter({a: 1 for a in ADDRESSES})


async def test_a_live_sender_keeps_its_runs_past_the_lease_by_heartbeats(
    tmp_path: Path, slow_sink: SlowSink
) -> None:
    clock = Clock(START)
    await _prepare(tmp_path, slow_sink, clock)
    clock.now = SEND
    settings = settings_for(tmp_path, slow_sink.url)
    first = await make_service(settings, clock)
    other = await make_service(settings, clock)  # e.g. `libhub digest send` by hand
    first.digests.lease = timedelta(seconds=3)  # a heartbeat a second
    slow_sink.hold_after = 4  # the relay stalls: the round outlasts its lease
    task = asyncio.create_task(first.digests.run_once())
    try:
        await eventually(lambda: slow_sink.count() >= 4, within=60, what="4 digests accepted")
        clock.advance(minutes=5)  # far past the lease taken at SEND

        async def renewed() -> bool:
            due = await other.storage.fetchone(
                "SELECT COUNT(*) FROM digest_runs WHERE status = 'pending' AND next_attempt <= ?",
                (now_iso(clock.now),),
            )
            return due is not None and due[0] == 0

        await eventually(renewed, within=60, what="a heartbeat renewing the lease")
        await other.digests.run_once()  # finds nothing due
        slow_sink.gate.set()
        await task
    finally:
        slow_sink.gate.set()
        await asyncio.wait([task])
        await first.close()
        await other.close()
    # The other sender took nothing the live one was sending: nobody got two.
    assert slow_sink.per_recipient() == Counter({a: 1 for a in ADDRESSES})


async def test_down_at_the_send_hour_catches_up_once_on_start(
    tmp_path: Path, slow_sink: SlowSink
) -> None:
    clock = Clock(START)
    await _prepare(tmp_path, slow_sink, clock)
    # Down from 07:55 until 11:30 two days later: one digest each, not three.
    clock.now = START + timedelta(days=2, hours=3, minutes=35)
    service = await make_service(settings_for(tmp_path, slow_sink.url), clock)
    try:
        await service.digests.run_once()
        clock.advance(hours=1)
        await service.digests.run_once()
    finally:
        await service.close()
    assert slow_sink.per_recipient() == Counter({a: 1 for a in ADDRESSES})


# -- daily digests across DST changes, at runner level -------------------------------------

DST_CASES = [
    # zone, local send hour, first local day (a few days around a change)
    ("America/New_York", 2, date(2026, 3, 6)),  # 02:00 does not exist on 8 March
    ("America/New_York", 1, date(2026, 10, 30)),  # 01:00 happens twice on 1 November
    ("Europe/Berlin", 2, date(2026, 3, 27)),  # spring forward 29 March, 02:00 missing
    ("Europe/Berlin", 2, date(2026, 10, 23)),  # fall back 25 October, 02:00 twice
    ("Australia/Lord_Howe", 2, date(2026, 4, 3)),  # half-hour change on 5 April
    ("Asia/Kolkata", 23, date(2026, 3, 6)),  # no DST, +05:30
]


@pytest.fixture
async def sink_fast() -> AsyncIterator[SlowSink]:
    sink = SlowSink(delay=0)
    sink._controller.start()
    yield sink
    sink._controller.stop()


@pytest.mark.parametrize(("tz", "hour", "first_day"), DST_CASES)
async def test_one_daily_digest_per_local_day_across_dst(
    tmp_path: Path, sink_fast: SlowSink, tz: str, hour: int, first_day: date
) -> None:
    zone = ZoneInfo(tz)
    clock = Clock(local_instant(first_day, 12, zone))  # subscribed at noon, local time
    days = [first_day + timedelta(days=n) for n in range(5)]
    expected = [t for d in days if (t := local_instant(d, hour, zone)) > clock.now]
    service = await make_service(settings_for(tmp_path, sink_fast.url), clock)
    try:
        sub = await subscriber(service, "tz@example.org", tz=tz, hour=hour, now=clock.now)
        sends: list[datetime] = []
        step = 0
        while clock.now < expected[-1] + timedelta(hours=12):
            clock.advance(minutes=15)
            step += 1
            await publish(service, "news", [item(f"s{step}", f"Step {step}")], clock.now)
            if (await service.digests.run_once()).sent:
                sends.append(clock.now)
        runs = await service.storage.runs_for(sub.id)
    finally:
        await service.close()
    assert [r.period for r in runs] == [now_iso(e) for e in expected]
    # Each went out in the first run after its instant (15-minute steps).
    assert all(timedelta(0) <= s - e < timedelta(minutes=15) for s, e in zip(sends, expected,
                                                                            strict=True))  # fmt: skip
    assert sink_fast.count() == len(expected) >= 4
