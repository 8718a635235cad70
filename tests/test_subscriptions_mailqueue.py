"""Confirmations and manage links that meet a 4xx or a refusing relay are not lost: they
wait in the database and are retried like digests, and only messages that went out (or
still may) count against the address's limit, so nobody is shut out for a day."""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from network.devtools.devserver import free_port
from network.service import Service
from tests.digestkit import (
    SECRET,
    SECRET_ENV,
    START,
    Clock,
    link_to,
    make_service,
    parts,
    settings_for,
    subscriber,
)


class Relay:
    """aiosmtpd that answers the next recipients with the replies in ``answers`` (one each,
    in order), then accepts; it keeps what it accepted."""

    def __init__(self) -> None:
        self.answers: list[str] = []
        self.got: list[EmailMessage] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self._lock:
            if self.answers:
                return self.answers.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        with self._lock:
            self.got.append(msg)
        return "250 OK"

    def subjects(self) -> list[str]:
        with self._lock:
            return [str(m["Subject"]) for m in self.got]


@pytest.fixture
def relay() -> Iterator[Relay]:
    r = Relay()
    r.controller.start()
    yield r
    r.controller.stop()


async def _service(
    tmp: Path, relay: Relay, monkeypatch: pytest.MonkeyPatch, extra: str = ""
) -> tuple[Service, Clock]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    clock = Clock(START)
    url = f"smtp://127.0.0.1:{relay.port}"
    return await make_service(settings_for(tmp, url, extra=extra), clock), clock


CONFIRM = "Confirm your subscription to Prairie Libraries"


async def test_a_confirmation_that_meets_a_451_arrives_after_the_retry(
    tmp_path: Path, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, clock = await _service(tmp_path, relay, monkeypatch)
    subs = svc.subscriptions
    relay.answers = ["451 4.7.1 Greylisted, try again later"]
    try:
        first = await subs.request("ana@example.org", subs.defaults(), source="web")
        assert not first.sent and "451" in first.detail
        assert relay.got == []
        clock.advance(minutes=1)  # the first retry is due (digests' backoff)
        await svc.digests.run_once()
        assert relay.subjects() == [CONFIRM]
        # Its link works, and the address may still ask again (the limit is 3 a day).
        token = link_to(parts(relay.got[0])[0], "confirm").rsplit("/", 1)[1]
        assert (await subs.confirm(token)).address == "ana@example.org"
        for _ in range(2):
            assert (await subs.request("ana@example.org", subs.defaults(), source="web")).sent
        assert relay.subjects() == [CONFIRM] * 3
        await svc.digests.run_once()  # nothing is sent twice
        assert len(relay.got) == 3
    finally:
        await svc.close()


async def test_a_confirmation_that_was_never_sent_does_not_use_up_the_limit(
    tmp_path: Path, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, clock = await _service(tmp_path, relay, monkeypatch, extra="subscribe_limit = 1")
    subs = svc.subscriptions
    relay.answers = ["550 5.7.1 Relaying temporarily denied"]
    try:
        assert not (await subs.request("bo@example.org", subs.defaults(), source="web")).sent
        clock.advance(minutes=5)
        second = await subs.request("bo@example.org", subs.defaults(), source="web")
        assert second.sent
        assert relay.subjects() == [CONFIRM]
        # One that waits counts, though: no pile of confirmations for one inbox.
        relay.answers = ["451 4.3.0 Try later"]
        assert not (await subs.request("cy@example.org", subs.defaults(), source="web")).sent
        assert (await subs.request("cy@example.org", subs.defaults(), source="web")).detail == (
            "rate-limited"
        )
    finally:
        await svc.close()


async def test_a_manage_link_that_meets_a_451_arrives_after_the_retry(
    tmp_path: Path, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, clock = await _service(tmp_path, relay, monkeypatch)
    subs = svc.subscriptions
    try:
        await subscriber(svc, "dee@example.org", now=clock.now)
        relay.answers = ["421 4.3.2 Service shutting down"]
        subs.send_manage_link("dee@example.org")
        await svc.postman.idle()
        assert relay.got == []
        clock.advance(minutes=1)
        await svc.digests.run_once()
        assert relay.subjects() == ["Your Prairie Libraries subscription"]
        manage = link_to(parts(relay.got[0])[0], "manage").rsplit("/", 1)[1]
        assert (await subs.subscriber_for(manage, "manage")).address == "dee@example.org"
    finally:
        await svc.close()
