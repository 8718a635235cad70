"""Double opt-in against a real SMTP server: confirmation messages and their single-use,
expiring links, the rate limit per address, addresses, `!subscribe` from the bot, and
manage links that reveal nothing about who is subscribed."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from network.devtools.mailsink import MailSink
from network.storage.subscribers import TokenAlreadyUsed
from network.subscriptions.lifecycle import subscribe_from_matrix
from network.subscriptions.topics import SubscriptionError, parse_address
from network.tokens import TokenExpired
from tests.digestkit import (
    SECRET_ENV,
    START,
    Clock,
    DigestEnv,
    item,
    link_to,
    make_service,
    parts,
    publish,
    settings_for,
)
from tests.waiting import eventually

Env = DigestEnv


@pytest.fixture
def env(digest_env: DigestEnv) -> DigestEnv:
    return digest_env


def flat(text: str) -> str:
    """Text with its line wrapping undone."""
    return " ".join(text.split())


def _token(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.mark.parametrize(
    ("text", "value", "channel"),
    [
        ("  Ana.Lopez@Library.Example.ORG ", "Ana.Lopez@library.example.org", "email"),
        ("Ana <ana@example.org>", "ana@example.org", "email"),
        ("mailto:ana@example.org", "ana@example.org", "email"),
        ("ana@bücherei.example", "ana@xn--bcherei-n2a.example", "email"),
        ("json://127.0.0.1:8000/hook", "json://127.0.0.1:8000/hook", "apprise"),
    ],
)
def test_addresses_are_normalised(text: str, value: str, channel: str) -> None:
    address = parse_address(text, schemes={"json"})
    assert (address.value, address.channel) == (value, channel)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Enter your email address."),
        ("ana@", "“ana@” is not an email address like you@example.org."),
        ("@ana:example.org", "That is a Matrix id: digests go to an email address"),
        ("a@b.org\nBcc: x@y.org", "The address must be on one line."),
        ("mailto://ana@example.org", "Write the email address itself"),
        ("ntfys://ntfy.sh/topic", "Only email addresses (and json URLs) can subscribe here."),
        ("json://", "json://"),
    ],
)
def test_bad_addresses_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(SubscriptionError) as e:
        parse_address(text, schemes={"json"})
    assert str(e.value).startswith(message)
    assert e.value.field == "address"


async def test_confirmation_message_then_single_use_link(env: Env) -> None:
    svc, sink = env.service, env.sink
    subs = svc.subscriptions
    prefs = replace(subs.defaults(), topics=("kind:webinar",), frequency="weekly")
    outcome = await subs.request("ana@example.org", prefs, source="web")
    assert outcome.sent
    [msg] = sink.to("ana@example.org")
    assert msg["Subject"] == "Confirm your subscription to Prairie Libraries"
    # A personal message, not list mail: no unsubscribe headers.
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
    text, html = parts(msg)
    assert "a weekly digest every Monday at 8:00 AM (America/Chicago) of: Webinars" in flat(text)
    assert "72 hours" in flat(text)
    confirm = link_to(text, "confirm")
    assert f'href="{confirm}"' in html
    # Not a subscriber until the link is used.
    assert await svc.storage.subscriber_by_key("ana@example.org") is None

    sub = await subs.confirm(_token(confirm))
    assert (sub.status, sub.prefs.topics, sub.prefs.frequency) == (
        "active", ("kind:webinar",), "weekly",
    )  # fmt: skip
    with pytest.raises(TokenAlreadyUsed):
        await subs.confirm(_token(confirm))


async def test_confirmation_link_expires_after_72_hours(env: Env) -> None:
    subs = env.service.subscriptions
    await subs.request("late@example.org", subs.defaults(), source="web")
    confirm = link_to(parts(env.sink.to("late@example.org")[0])[0], "confirm")
    env.clock.advance(hours=72, seconds=1)
    with pytest.raises(TokenExpired, match="request a new one"):
        await subs.confirm(_token(confirm))
    assert await env.service.storage.subscriber_by_key("late@example.org") is None


async def test_nothing_but_the_confirmation_reaches_an_unconfirmed_address(env: Env) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    subs = svc.subscriptions
    await subs.request("wait@example.org", replace(subs.defaults(), frequency="immediate"),
                       source="web")  # fmt: skip
    for n in range(3):
        await publish(svc, "news", [item(f"n{n}", f"News {n}")], clock.now)
        clock.advance(days=1)
        await svc.digests.run_once()
    assert [m["Subject"] for m in sink.to("wait@example.org")] == [
        "Confirm your subscription to Prairie Libraries"
    ]


async def test_repeated_requests_are_rate_limited_per_address(env: Env) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    subs = svc.subscriptions
    outcomes = []
    for _ in range(5):
        outcomes.append(await subs.request("spam@example.org", subs.defaults(), source="web"))
        clock.advance(minutes=10)
    assert [o.sent for o in outcomes] == [True, True, True, False, False]
    assert len(sink.to("spam@example.org")) == 3
    # Another address is not affected, and a day later the limit is lifted.
    assert (await subs.request("other@example.org", subs.defaults(), source="web")).sent
    clock.advance(hours=24)
    assert (await subs.request("spam@example.org", subs.defaults(), source="web")).sent


async def test_resubscribing_confirms_new_preferences_and_leavers_can_return(env: Env) -> None:
    svc, sink = env.service, env.sink
    subs = svc.subscriptions
    await subs.request("ana@example.org", subs.defaults(), source="web")
    first = await subs.confirm(_token(link_to(parts(sink.to("ana@example.org")[0])[0], "confirm")))
    # Someone else can ask for other preferences, but nothing changes until Ana confirms.
    await subs.request("ana@example.org", replace(subs.defaults(), frequency="daily"),
                       source="web")  # fmt: skip
    assert (await svc.storage.subscriber(first.id)).prefs.frequency == "weekly"  # type: ignore[union-attr]
    second = await subs.confirm(_token(link_to(parts(sink.to("ana@example.org")[1])[0], "confirm")))
    assert second.id == first.id and second.prefs.frequency == "daily"
    await subs.unsubscribe(second)
    await subs.request("ana@example.org", subs.defaults(), source="web")
    back = await subs.confirm(_token(link_to(parts(sink.to("ana@example.org")[2])[0], "confirm")))
    assert back.id == first.id and back.status == "active"


async def test_manage_link_only_for_subscribers_and_same_answer_for_everyone(env: Env) -> None:
    svc, sink = env.service, env.sink
    subs = svc.subscriptions
    await subs.request("member@example.org", subs.defaults(), source="web")
    await subs.confirm(_token(link_to(parts(sink.to("member@example.org")[0])[0], "confirm")))
    for address in ("member@example.org", "stranger@example.org", "not an address"):
        subs.send_manage_link(address)  # never raises, never tells
    await svc.postman.idle()
    assert sink.to("stranger@example.org") == []
    manage_mail = sink.to("member@example.org")[1]
    manage = link_to(parts(manage_mail)[0], "manage")
    sub = await subs.subscriber_for(_token(manage), "manage")
    assert sub.address == "member@example.org"


async def test_manage_link_is_sent_in_the_background_and_cancelled_at_close(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, sink = env.service, env.sink
    subs = svc.subscriptions
    await subs.request("member@example.org", subs.defaults(), source="web")
    await subs.confirm(_token(link_to(parts(sink.to("member@example.org")[0])[0], "confirm")))
    gate = asyncio.Event()  # never opened: the relay hangs
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hanging_send(*args: Any, **kwargs: Any) -> Any:
        started.set()
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    monkeypatch.setattr(svc.postman, "send", hanging_send)
    caller = asyncio.current_task()
    lookups: list[asyncio.Task[Any] | None] = []
    real_lookup = svc.storage.subscriber_by_key

    async def lookup(key: str) -> Any:
        lookups.append(asyncio.current_task())
        return await real_lookup(key)

    monkeypatch.setattr(svc.storage, "subscriber_by_key", lookup)
    # Returns at once for a member and a stranger alike: the lookup and the send happen
    # in the background, in order, not in the caller.
    subs.send_manage_link("member@example.org")
    subs.send_manage_link("stranger@example.org")
    assert lookups == []
    await eventually(started.is_set, what="the background send")
    assert lookups and caller not in lookups
    await svc.postman.close()  # the hanging send does not hold up the shutdown
    assert cancelled.is_set()
    await svc.postman.idle()  # nothing is left waiting either
    assert len(sink.to("member@example.org")) == 1  # just the confirmation


async def test_subscribe_from_matrix_parses_words_in_any_order(env: Env) -> None:
    svc, sink = env.service, env.sink
    reply = await subscribe_from_matrix(svc.subscriptions, "@ana:example.org",
                                        "!subscribe weekly webinars ana@example.org")  # fmt: skip
    assert reply.startswith("I've sent a confirmation message to a…@example.org.")
    assert "weekly digest every Monday at 8:00\u202fAM (America/Chicago) of: Webinars" in reply
    assert "ana@example.org" not in reply  # the room may be public
    reply = await subscribe_from_matrix(
        svc.subscriptions, "@bo:example.org", "bo@example.org news daily"
    )
    assert "daily digest at 8:00\u202fAM (America/Chicago) of: News" in reply
    text = parts(sink.to("bo@example.org")[0])[0]
    assert "daily digest at 8:00 AM (America/Chicago) of: News" in flat(text)
    request = await svc.storage.subscribe_request(2)
    assert request is not None and request.source == "matrix:@bo:example.org"


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("!subscribe", "Usage: !subscribe [immediate|daily|weekly] [topics...] you@example.org"),
        ("!subscribe weekly webinars", "Where should I send it? Add your email address."),
        ("!subscribe weekly podcasts a@example.org", "I don't know the topic(s) podcasts."),
        ("!subscribe weekly @ana:example.org", "Digests go to an email address, not a Matrix id"),
        ("!subscribe a@example.org b@example.org", "Please give one address at a time."),
        ("!subscribe weekly news ana@", "“ana@” is not an email address"),
    ],
)
async def test_subscribe_from_matrix_helps_with_mistakes(env: Env, text: str, start: str) -> None:
    reply = await subscribe_from_matrix(env.service.subscriptions, "@ana:example.org", text)
    assert reply.startswith(start)
    assert env.sink.received == []


async def test_without_a_secret_nothing_is_stored_and_the_error_says_what_to_set(
    tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    service = await make_service(settings_for(tmp_path, sink.url), Clock(START))
    try:
        subs = service.subscriptions
        with pytest.raises(Exception, match=f"set the environment variable {SECRET_ENV}"):
            await subs.request("ana@example.org", subs.defaults(), source="web")
        assert await service.storage.subscribe_request(1) is None
        await service.digests.run_once()  # nothing to send: no secret needed
    finally:
        await service.close()


async def test_expiring_old_requests_forgets_addresses_of_non_subscribers(env: Env) -> None:
    svc, clock = env.service, env.clock
    subs = svc.subscriptions
    await subs.request("never@example.org", subs.defaults(), source="web")
    clock.advance(days=31)
    await svc.digests.run_once()
    assert await svc.storage.subscribe_request(1) is None
    assert timedelta(days=31) > svc.settings.digests.confirm_ttl
