"""A relay that refuses everyone (a blocklisted IP, an expired account) is the relay's
problem: the round pauses and says so, nobody is charged a bounce, and every digest goes
out once the relay accepts mail again. A few refusals among accepted messages are still
the recipients' bounces."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from network.devtools.devserver import free_port
from network.service import Service
from network.subscriptions.digests.send import RELAY_REFUSAL_STREAK
from network.web.app import health_report
from tests.digestkit import (
    SECRET,
    SECRET_ENV,
    START,
    Clock,
    item,
    make_service,
    publish,
    settings_for,
    subscriber,
)


class Relay:
    """aiosmtpd answering RCPT and DATA with what the test says (``None``: accept)."""

    def __init__(self) -> None:
        self.rcpt_answer: str | None = None
        self.data_answer: str | None = None
        self.refuse: set[str] = set()  # recipients refused at RCPT even when accepting
        self.got: list[str] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.rcpt_answer is not None:
            return self.rcpt_answer
        if address in self.refuse:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_answer is not None:
            return self.data_answer
        with self._lock:
            self.got.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def relay() -> Iterator[Relay]:
    r = Relay()
    r.controller.start()
    yield r
    r.controller.stop()


async def _service(tmp: Path, relay: Relay, monkeypatch: pytest.MonkeyPatch) -> Service:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return await make_service(settings_for(tmp, relay.url), Clock(START))


ADDRESSES = [f"reader{n:02d}@example.org" for n in range(30)]


@pytest.mark.parametrize(
    ("rcpt", "data"),
    [("550 5.7.1 Client host blocked", None), (None, "554 5.7.1 Service unavailable")],
    ids=["550-at-rcpt", "554-after-data"],
)
async def test_a_relay_refusing_everyone_pauses_the_round_and_charges_no_bounce(
    tmp_path: Path,
    relay: Relay,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    rcpt: str | None,
    data: str | None,
) -> None:
    svc = await _service(tmp_path, relay, monkeypatch)
    clock = svc.digests.clock
    assert isinstance(clock, Clock)
    alerts: list[str] = []

    async def notify_ops(text: str) -> None:
        alerts.append(text)

    svc.digests.notify_ops = notify_ops
    relay.rcpt_answer, relay.data_answer = rcpt, data
    try:
        subs = [await subscriber(svc, a, frequency="immediate", now=clock.now) for a in ADDRESSES]
        await publish(svc, "news", [item("a", "Alpha")], clock.now)
        for _ in range(4):  # more days than the bounce threshold
            report = await svc.digests.run_once()
            assert report.permanent == 0 and report.suspended == 0
            clock.advance(days=1)
        for sub in subs:
            fresh = await svc.storage.subscriber(sub.id)
            assert fresh is not None
            assert (fresh.status, fresh.bounce_score, fresh.last_bounce_at) == ("active", 0, None)
        runs = [r for s in subs for r in await svc.storage.runs_for(s.id)]
        assert {(r.status, r.attempts) for r in runs} == {("pending", 0)}
        # The round paused at the streak instead of trying all 30 every time.
        assert "refused 20 different recipients in a row" in caplog.text
        _, health = await health_report(svc.web)
        assert "refused" in health["mail_relay_problem"]
        assert alerts and "digests go out once it accepts mail again" in alerts[0]

        relay.rcpt_answer = relay.data_answer = None  # the relay is fixed
        clock.advance(hours=1)
        await svc.digests.run_once()
        assert sorted(relay.got) == ADDRESSES
        _, health = await health_report(svc.web)
        assert health["mail_relay_problem"] is None
    finally:
        await svc.close()


async def test_refusals_among_accepted_messages_are_still_bounces(
    tmp_path: Path, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = await _service(tmp_path, relay, monkeypatch)
    clock = svc.digests.clock
    assert isinstance(clock, Clock)
    gone = ADDRESSES[: RELAY_REFUSAL_STREAK - 1]  # a long run of dead addresses, not all
    relay.refuse = set(gone)
    try:
        subs = [await subscriber(svc, a, frequency="immediate", now=clock.now) for a in ADDRESSES]
        await publish(svc, "news", [item("a", "Alpha")], clock.now)
        report = await svc.digests.run_once()
        assert (report.sent, report.permanent) == (len(ADDRESSES) - len(gone), len(gone))
        for sub in subs:
            fresh = await svc.storage.subscriber(sub.id)
            assert fresh is not None
            assert fresh.bounce_score == (1 if sub.address in gone else 0)
    finally:
        await svc.close()
