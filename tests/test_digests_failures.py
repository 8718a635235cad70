"""The digest runner when things go wrong: a database error between rounds, a run that
raises, the relay down overnight, a message refused after DATA, someone leaving while a
batch is sent, a suspended subscriber resumed, and wake-ups that arrive during a round."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from network.devtools.devserver import free_port
from network.devtools.mailsink import MailSink
from network.storage import Storage
from network.storage.subscribers import DigestRun, Subscriber
from network.subscriptions.digests.outcomes import SendReport
from network.subscriptions.postman import ListMail
from tests.digestkit import (
    SECRET,
    SECRET_ENV,
    START,
    Clock,
    DigestEnv,
    item,
    make_service,
    parts,
    publish,
    settings_for,
    subscriber,
)
from tests.waiting import eventually

Env = DigestEnv


@pytest.fixture
def env(digest_env: DigestEnv) -> DigestEnv:
    return digest_env


# -- the loop ----------------------------------------------------------------------------------


async def test_runner_survives_a_database_error_between_rounds(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runner, storage = env.service.digests, env.service.storage
    rounds: list[datetime] = []
    real_round, real_next = runner.run_once, storage.next_digest_work
    failures = 0

    async def counted_round() -> SendReport:
        rounds.append(env.clock.now)
        return await real_round()

    async def next_work_once_locked() -> datetime | None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise RuntimeError("database is locked")
        return await real_next()

    monkeypatch.setattr(runner, "run_once", counted_round)
    monkeypatch.setattr(storage, "next_digest_work", next_work_once_locked)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await eventually(lambda: failures == 1, what="the failing call")
        runner.wake()  # new items: the runner is still there to hear it
        await eventually(lambda: len(rounds) >= 2, what="a round after the error")
    finally:
        stop.set()
        await asyncio.wait([task])
    assert task.exception() is None
    assert "cannot tell when digests are next due" in caplog.text


async def test_a_wake_up_during_a_round_starts_another(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = env.service.digests
    monkeypatch.setattr(runner, "idle_wait", 3600.0)  # nothing else would start a round
    rounds = 0

    async def round_that_sees_new_items() -> SendReport:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            runner.wake()  # the poller queued items while this round was running
        return SendReport()

    monkeypatch.setattr(runner, "run_once", round_that_sees_new_items)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await eventually(lambda: rounds >= 2, what="the round the wake-up asked for")
    finally:
        stop.set()
        await asyncio.wait([task])
    assert task.exception() is None


# -- one run's trouble -------------------------------------------------------------------------


async def test_a_run_that_raises_is_retried_with_backoff_and_others_still_get_theirs(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    poison = await subscriber(svc, "poison@example.org", frequency="immediate", now=clock.now)
    await subscriber(svc, "ok@example.org", frequency="immediate", now=clock.now)
    await publish(svc, "news", [item("a", "Alpha")], clock.now)
    real_content = svc.digests._content
    tries: list[datetime] = []

    def content(b: Any, run: DigestRun, sub: Subscriber) -> ListMail | None:
        if sub.address.startswith("poison"):
            tries.append(clock.now)
            raise ValueError("template blew up")
        return real_content(b, run, sub)

    monkeypatch.setattr(svc.digests, "_content", content)
    report = await svc.digests.run_once()
    assert report.sent == 1 and report.temporary == 1
    assert len(sink.to("ok@example.org")) == 1
    [run] = await svc.storage.runs_for(poison.id)
    assert (run.status, run.attempts) == ("pending", 1)
    assert "template blew up" in (run.last_error or "")
    assert run.next_attempt == clock.now + timedelta(minutes=1)

    for _ in range(6 * 60):  # six hours, a round a minute
        clock.advance(minutes=1)
        await svc.digests.run_once()
    [run] = await svc.storage.runs_for(poison.id)
    limit = svc.settings.digests.retry_limit
    assert (run.status, run.attempts, len(tries)) == ("failed", limit, limit)
    assert f"gave up after {limit} attempts" in (run.last_error or "")
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps == sorted(gaps) and gaps[0] < gaps[-1]  # backed off, not every round
    assert len(sink.to("ok@example.org")) == 1


# -- the relay ---------------------------------------------------------------------------------


async def test_relay_down_overnight_uses_no_attempts_and_all_goes_out_when_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    port = free_port()  # nothing listens here until the relay "comes back"
    clock = Clock(START)
    svc = await make_service(settings_for(tmp_path, f"smtp://127.0.0.1:{port}"), clock)
    relay = MailSink(port=port)
    relay_started = False
    addresses = [f"reader{n}@example.org" for n in range(5)]
    try:
        subs = [await subscriber(svc, a, frequency="immediate", now=clock.now) for a in addresses]
        await publish(svc, "news", [item("a", "Alpha")], clock.now)
        tried_at: list[datetime] = []
        real_send = svc.postman.send_list

        async def counted_send(*args: Any, **kwargs: Any) -> Any:
            tried_at.append(clock.now)
            return await real_send(*args, **kwargs)

        monkeypatch.setattr(svc.postman, "send_list", counted_send)
        rounds = 12 * 12  # twelve hours, a round every five minutes
        for _ in range(rounds):
            await svc.digests.run_once()
            clock.advance(minutes=5)
        runs = [r for s in subs for r in await svc.storage.runs_for(s.id)]
        assert {(r.status, r.attempts) for r in runs} == {("pending", 0)}
        assert any("cannot connect to SMTP server" in (r.last_error or "") for r in runs)
        # The runner waited for the relay, longer and longer, instead of trying every
        # message in every round.
        assert len(tried_at) < rounds
        trying_rounds = sorted(set(tried_at))
        gaps = [b - a for a, b in itertools.pairwise(trying_rounds)]
        assert gaps == sorted(gaps) and gaps[-1] >= timedelta(hours=1)
        for sub in subs:  # and nobody was counted as bouncing
            fresh = await svc.storage.subscriber(sub.id)
            assert fresh is not None and fresh.status == "active" and fresh.bounce_score == 0

        relay.start()
        relay_started = True
        clock.advance(hours=1)
        await svc.digests.run_once()
        assert {a: len(relay.to(a)) for a in addresses} == dict.fromkeys(addresses, 1)
        runs = [r for s in subs for r in await svc.storage.runs_for(s.id)]
        assert {r.status for r in runs} == {"sent"}
    finally:
        await svc.close()
        if relay_started:
            relay.stop()


class RefusesContent:
    """An SMTP server that accepts every recipient but refuses the message itself (after
    DATA) when it is for ``refused``, as relays do for content or size."""

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self.got: list[str] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refused in envelope.rcpt_tos:
            return "554 5.6.0 Message content rejected"
        self.got.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def refusing() -> Iterator[RefusesContent]:
    server = RefusesContent("big@example.org")
    server.controller.start()
    yield server
    server.controller.stop()


async def test_message_refused_after_data_fails_the_run_but_is_no_bounce(
    tmp_path: Path, refusing: RefusesContent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    clock = Clock(START)
    svc = await make_service(settings_for(tmp_path, f"smtp://127.0.0.1:{refusing.port}"), clock)
    try:
        big = await subscriber(svc, "big@example.org", frequency="immediate", now=clock.now)
        await subscriber(svc, "fine@example.org", frequency="immediate", now=clock.now)
        for day in range(4):  # more days than the bounce threshold
            await publish(svc, "news", [item(f"i{day}", f"Item {day}")], clock.now)
            await svc.digests.run_once()
            clock.advance(days=1)
        runs = await svc.storage.runs_for(big.id)
        assert [r.status for r in runs] == ["failed"] * 4
        assert all("554" in (r.last_error or "") for r in runs)
        fresh = await svc.storage.subscriber(big.id)
        assert fresh is not None
        assert (fresh.status, fresh.bounce_score, fresh.last_bounce_at) == ("active", 0, None)
        assert refusing.got == ["fine@example.org"] * 4
    finally:
        await svc.close()


# -- leaving and coming back -------------------------------------------------------------------


async def test_leaving_while_a_batch_is_sent_stops_the_mail_and_the_run_stays_dropped(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    # One connection: the runs go out one after the other, first's before second's.
    postman = svc.postman
    postman.settings = replace(postman.settings, email=replace(postman.settings.email,
                                                               max_connections=1))  # fmt: skip
    first = await subscriber(svc, "first@example.org", frequency="immediate", now=clock.now)
    second = await subscriber(svc, "second@example.org", frequency="immediate", now=clock.now)
    await publish(svc, "news", [item("a", "Alpha")], clock.now)
    real_send = postman.send_list

    async def send_while_both_leave(address: str, *args: Any, **kwargs: Any) -> Any:
        if address == "first@example.org":
            # Both click "unsubscribe" while first's message is on its way.
            assert await svc.subscriptions.unsubscribe(first)
            assert await svc.subscriptions.unsubscribe(second)
        return await real_send(address, *args, **kwargs)

    monkeypatch.setattr(postman, "send_list", send_while_both_leave)
    await svc.digests.run_once()
    # first's message was already handed over: it arrives, but the run is not "sent".
    assert len(sink.to("first@example.org")) == 1
    assert [r.status for r in await svc.storage.runs_for(first.id)] == ["dropped"]
    # second's had not started: nothing is sent to someone who has left.
    assert sink.to("second@example.org") == []
    assert [r.status for r in await svc.storage.runs_for(second.id)] == ["dropped"]


async def test_leaving_through_another_process_is_seen_within_a_second(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    postman = svc.postman
    postman.settings = replace(postman.settings, email=replace(postman.settings.email,
                                                               max_connections=1))  # fmt: skip
    await subscriber(svc, "first@example.org", frequency="immediate", now=clock.now)
    second = await subscriber(svc, "second@example.org", frequency="immediate", now=clock.now)
    await publish(svc, "news", [item("a", "Alpha")], clock.now)
    other = await Storage.open(svc.settings.database.path)  # e.g. `libhub subscribers remove`
    real_send = postman.send_list

    async def send_while_second_leaves_elsewhere(address: str, *args: Any, **kw: Any) -> Any:
        if address == "first@example.org":
            assert await other.unsubscribe(second.id, now=clock.now)
            clock.advance(seconds=2)  # first's message takes a while
        return await real_send(address, *args, **kw)

    monkeypatch.setattr(postman, "send_list", send_while_second_leaves_elsewhere)
    try:
        await svc.digests.run_once()
    finally:
        await other.close()
    assert len(sink.to("first@example.org")) == 1
    assert sink.to("second@example.org") == []
    assert [r.status for r in await svc.storage.runs_for(second.id)] == ["dropped"]


async def test_a_resumed_subscriber_starts_from_now_not_from_the_suspension(env: Env) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    sub = await subscriber(svc, "back@example.org", frequency="immediate", now=clock.now)
    await svc.storage.record_bounce(sub.id, score=3, now=clock.now, suspend=True, error="550")
    for month in range(3):
        await publish(svc, "news", [item(f"away{month}", f"While away {month}")], clock.now)
        await svc.digests.run_once()
        clock.advance(days=30)
    assert sink.received == []
    assert await svc.storage.resume_subscriber(sub.id, now=clock.now)
    resumed = await svc.storage.subscriber(sub.id)
    assert resumed is not None and resumed.last_period is not None
    await publish(svc, "news", [item("back", "Welcome back")], clock.now)
    await svc.digests.run_once()
    [msg] = sink.to("back@example.org")
    text, _ = parts(msg)
    assert "Welcome back" in text and "While away" not in text


async def test_no_smtp_server_configured_waits_like_a_relay_outage_and_says_so_once(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    svc, clock = env.service, env.clock
    subs = [
        await subscriber(svc, f"r{n}@example.org", frequency="immediate", now=clock.now)
        for n in range(4)
    ]
    await publish(svc, "news", [item("a", "Alpha")], clock.now)
    svc.postman.settings = replace(
        svc.postman.settings, email=replace(svc.postman.settings.email, smtp_url="")
    )
    caplog.set_level(logging.WARNING, logger="network.subscriptions.digests.runner")
    report = await svc.digests.run_once()
    assert report.sent == 0 and report.permanent == 0
    assert caplog.text.count("mail relay unusable") == 1
    assert "no SMTP server" in caplog.text
    runs = [r for s in subs for r in await svc.storage.runs_for(s.id)]
    assert {(r.status, r.attempts) for r in runs} == {("pending", 0)}
    assert {r.next_attempt for r in runs} == {clock.now + timedelta(minutes=1)}


async def test_a_message_libhub_cannot_build_is_retried_and_never_a_bounce(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    subs = [
        await subscriber(svc, f"r{n}@example.org", frequency="immediate", now=clock.now)
        for n in range(3)
    ]
    # A header value no message can carry (settings refuse it at load; a value that slips
    # through some other way must still be libhub's problem, not its readers').
    good_list_id = svc.postman.list_id
    svc.postman.list_id = "Prairie\nLibraries <digests.prairie.example.org>"
    caplog.set_level(logging.ERROR, logger="network.subscriptions.digests.runner")
    for day in range(4):  # more days than the bounce threshold
        await publish(svc, "news", [item(f"d{day}", f"Day {day}")], clock.now)
        report = await svc.digests.run_once()
        assert report.permanent == 0 and report.suspended == 0
        clock.advance(days=1)
    assert sink.received == []
    assert "cannot be sent (libhub's failure, not a bounce)" in caplog.text
    for sub in subs:
        fresh = await svc.storage.subscriber(sub.id)
        assert fresh is not None
        assert (fresh.status, fresh.bounce_score, fresh.last_bounce_at) == ("active", 0, None)
    # Fixed within the retries: the waiting runs go out.
    svc.postman.list_id = good_list_id
    clock.advance(hours=1)
    await svc.digests.run_once()
    assert all(len(sink.to(s.address)) >= 1 for s in subs)
