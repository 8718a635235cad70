"""The digest runner against a real SMTP server (aiosmtpd): when digests go out, what they
contain, exactly once per period, immediate notices, the last digest on a switch, bounces,
retries and apprise subscribers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from network.devtools.mailsink import MailSink
from network.settings.loading import Duration
from network.subscriptions.digests.outcomes import bounce_score
from network.subscriptions.schedule import retry_delay
from network.tokens import verify_token
from tests.digestkit import (
    SECRET,
    SECRET_ENV,
    Clock,
    DigestEnv,
    item,
    link_to,
    make_service,
    parts,
    publish,
    settings_for,
    subscriber,
)

Env = DigestEnv


@pytest.fixture
def env(digest_env: DigestEnv) -> DigestEnv:
    return digest_env


async def test_daily_digest_at_their_hour_grouped_with_one_click_headers(env: Env) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    await subscriber(svc, "ana@example.org", now=clock.now)
    webinar_start = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
    await publish(svc, "news", [item("n1", "Hotspot lending expands")], clock.now)
    await publish(
        svc, "webinars", [item("w1", "Webinar: Wi-Fi after hours", "webinar", start=webinar_start)],
        clock.now,
    )  # fmt: skip
    await publish(svc, "smart-updates", [item("c1", "Ignacio opens a makerspace",
                                               "cohort-update")], clock.now)  # fmt: skip

    await svc.digests.run_once()  # 06:00 in Chicago: not yet
    assert sink.received == []
    clock.advance(hours=2)  # 08:00 Chicago
    report = await svc.digests.run_once()
    assert report.sent == 1
    [msg] = sink.to("ana@example.org")

    assert msg["From"] == "Prairie Libraries <news@prairie.example.org>"
    assert msg["Subject"].startswith("Prairie Libraries: Daily digest, Nov 23")
    unsubscribe_header = msg["List-Unsubscribe"]
    https, mailto = [u.strip(" <>") for u in unsubscribe_header.split(",")]
    assert https.startswith(f"{env.settings.web.public_url}/unsubscribe/")
    assert mailto.startswith("mailto:news@prairie.example.org?subject=")
    assert unquote(mailto.split("subject=")[1]) == "unsubscribe ana@example.org"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "Prairie Libraries <digests.prairie.example.org>"

    text, html = parts(msg)
    # Webinars first (with time in the subscriber's zone and a calendar link), then news,
    # then cohort updates, in both parts.
    order = [text.index(h) for h in ("UPCOMING WEBINARS", "NEWS", "COHORT UPDATES")]
    assert order == sorted(order)
    h_order = [html.index(f">{h}</h2>") for h in ("Upcoming webinars", "News", "Cohort updates")]
    assert h_order == sorted(h_order)
    assert "Monday, November 30, 2026, 12:00\u202fPM CST" in text
    ics = link_to(text, "webinars")
    assert ics.endswith(".ics") and f'href="{ics}"' in html
    # The footer links are this person's, signed, and the same as the header's.
    unsubscribe = link_to(text, "unsubscribe")
    assert unsubscribe == https
    claims = verify_token(SECRET.encode(), unsubscribe.rsplit("/", 1)[1],
                          purpose="unsubscribe", now=clock.now)  # fmt: skip
    assert claims.subject == "sub:1"
    manage = link_to(text, "manage")
    assert verify_token(SECRET.encode(), manage.rsplit("/", 1)[1], purpose="manage",
                        now=clock.now).subject == "sub:1"  # fmt: skip
    assert f'href="{manage}"' in html and f'href="{unsubscribe}"' in html


async def test_no_email_when_nothing_new_for_their_topics(env: Env) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    await subscriber(svc, "news-only@example.org", topics=("feed:news",), now=clock.now)
    await publish(svc, "webinars", [item("w1", "Webinar: A", "webinar")], clock.now)
    clock.advance(hours=2)
    await svc.digests.run_once()
    assert sink.received == []
    # The next day there is news: only the news item is in it.
    await publish(svc, "news", [item("n1", "Branch reopens")], clock.now)
    await publish(svc, "webinars", [item("w2", "Webinar: B", "webinar")], clock.now)
    clock.advance(days=1)
    await svc.digests.run_once()
    [msg] = sink.to("news-only@example.org")
    text, _ = parts(msg)
    assert "Branch reopens" in text and "Webinar" not in text


async def test_once_per_period_and_one_catch_up_after_downtime(env: Env) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    await subscriber(svc, "ana@example.org", now=clock.now)
    await publish(svc, "news", [item("n1", "First")], clock.now)
    clock.advance(hours=2, minutes=5)
    for _ in range(3):
        await svc.digests.run_once()
        clock.advance(minutes=20)
    assert len(sink.to("ana@example.org")) == 1
    # Down for three days: one digest on return, with everything since the last one.
    for n in range(3):
        await publish(svc, "news", [item(f"d{n}", f"Day {n}")], clock.now + timedelta(days=n))
    clock.advance(days=3)
    await svc.digests.run_once()
    await svc.digests.run_once()
    msgs = sink.to("ana@example.org")
    assert len(msgs) == 2
    text, _ = parts(msgs[1])
    assert all(f"Day {n}" in text for n in range(3)) and "First" not in text


async def test_weekly_digest_on_their_day(env: Env) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    # Thursday 10:00 in Berlin; it is Monday now.
    await subscriber(svc, "wk@example.org", frequency="weekly", tz="Europe/Berlin", hour=10,
                     weekday=3, now=clock.now)  # fmt: skip
    await publish(svc, "news", [item("n1", "Weekly news")], clock.now)
    sent_at = []
    for _ in range(8 * 24):
        clock.advance(hours=1)
        if (await svc.digests.run_once()).sent:
            sent_at.append(clock.now)
    assert sent_at == [datetime(2026, 11, 26, 9, 0, tzinfo=UTC)]  # 10:00 CET
    [msg] = sink.to("wk@example.org")
    assert "Weekly digest" in msg["Subject"]


async def test_immediate_notice_batches_one_poll_into_one_email(env: Env) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    await subscriber(svc, "now@example.org", frequency="immediate", now=clock.now)
    await publish(svc, "news", [item("a", "Alpha"), item("b", "Beta"), item("c", "Gamma")],
                  clock.now)  # fmt: skip
    await svc.digests.run_once()
    [first] = sink.to("now@example.org")
    text, _ = parts(first)
    assert all(t in text for t in ("Alpha", "Beta", "Gamma"))
    assert first["Subject"] == "Prairie Libraries: 3 news items"
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    await svc.digests.run_once()
    assert len(sink.to("now@example.org")) == 1
    await publish(svc, "news", [item("d", "Delta")], clock.now)
    await svc.digests.run_once()
    msgs = sink.to("now@example.org")
    assert len(msgs) == 2 and msgs[1]["Subject"] == "Prairie Libraries: New: Delta"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A local HTTP endpoint for apprise's json:// (stands in for ntfy, Mastodon...)."""
    got: list[dict[str, str]] = []

    async def post(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", post)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"json://127.0.0.1:{server.port}/hook", got
    finally:
        await server.close()


async def test_channel_subscribers_get_one_message_per_item(
    env: Env, receiver: tuple[str, list[dict[str, str]]]
) -> None:
    svc, clock = env.service, env.clock
    url, got = receiver
    await subscriber(svc, url, frequency="immediate", now=clock.now)
    await publish(svc, "news", [item("a", "Alpha"), item("b", "Beta")], clock.now)
    report = await svc.digests.run_once()
    assert report.sent == 2
    assert [("Alpha" in g["message"], "Beta" in g["message"]) for g in got] == [
        (True, False),
        (False, True),
    ]
    assert env.sink.received == []  # nothing went by email


async def test_switching_to_immediate_sends_one_last_digest(env: Env) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    sub = await subscriber(svc, "switch@example.org", frequency="weekly", now=clock.now)
    await publish(svc, "news", [item("p1", "Pending one"), item("p2", "Pending two")], clock.now)
    prefs = sub.prefs
    from dataclasses import replace

    await svc.subscriptions.update(sub, replace(prefs, frequency="immediate"))
    await svc.digests.run_once()
    [last] = sink.to("switch@example.org")
    assert "Weekly digest" in last["Subject"]
    text, _ = parts(last)
    assert "Pending one" in text and "Pending two" in text
    # From now on: notices, and the pending items are not sent again.
    await publish(svc, "news", [item("n1", "Fresh")], clock.now)
    await svc.digests.run_once()
    msgs = sink.to("switch@example.org")
    assert len(msgs) == 2 and msgs[1]["Subject"] == "Prairie Libraries: New: Fresh"
    assert "Pending" not in parts(msgs[1])[0]


async def test_topics_by_feed_kind_and_cohort(env: Env) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    await subscriber(svc, "cohort@example.org", topics=("cohort:smart-spaces",),
                     frequency="immediate", now=clock.now)  # fmt: skip
    await subscriber(svc, "webinars@example.org", topics=("kind:webinar",),
                     frequency="immediate", now=clock.now)  # fmt: skip
    # A feed posting into the cohort's room, and a member's !update (feed cohort:<id>).
    await publish(svc, "smart-updates", [item("u1", "Round 3 kickoff", "cohort-update")],
                  clock.now)  # fmt: skip
    await publish(svc, "cohort:smart-spaces", [item("u2", "Our 3D printer works",
                                                     "cohort-update")], clock.now)  # fmt: skip
    await publish(svc, "news", [item("w", "Webinar in a news feed", "webinar")], clock.now)
    await svc.digests.run_once()
    [cohort] = sink.to("cohort@example.org")
    text, _ = parts(cohort)
    assert "Round 3 kickoff" in text and "3D printer" in text and "Webinar" not in text
    assert "Small Libraries Create Smart Spaces" in text  # the cohort's name as the source
    [webinars] = sink.to("webinars@example.org")
    assert "Webinar in a news feed" in parts(webinars)[0]


def test_bounce_score_counts_once_a_day_and_goes_stale() -> None:
    day = datetime(2026, 11, 23, 8, tzinfo=UTC)
    stale = timedelta(days=30)
    assert bounce_score(0, None, day, stale) == 1
    assert bounce_score(1, day, day + timedelta(hours=3), stale) == 1
    assert bounce_score(1, day, day + timedelta(days=1), stale) == 2
    assert bounce_score(2.0, day, day + timedelta(days=31), stale) == 1
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 8, 20)] == [60, 120, 240, 3600, 3600]


async def test_permanent_failures_suspend_after_the_threshold(env: Env) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    await subscriber(svc, "gone@example.org", frequency="immediate", now=clock.now)
    await subscriber(svc, "fine@example.org", frequency="immediate", now=clock.now)
    sink.reject["gone@example.org"] = "550 5.1.1 No such user"
    for day in range(4):
        for n in range(2):  # two notices a day: the second bounce of a day does not count
            await publish(svc, "news", [item(f"i{day}{n}", f"Item {day}{n}")], clock.now)
            await svc.digests.run_once()
            clock.advance(hours=1)
        clock.advance(hours=22)
    gone = await svc.storage.subscriber_by_key("gone@example.org")
    assert gone is not None
    assert (gone.status, gone.bounce_score) == ("suspended", 3.0)
    assert "550" in (gone.last_error or "")
    runs = await svc.storage.runs_for(gone.id)
    # Day 1 and 2 bounce twice each (counted once a day); the first bounce of day 3
    # reaches 3 and suspends: nothing more is tried.
    assert [r.status for r in runs] == ["failed"] * 5
    assert len(sink.to("fine@example.org")) == 8
    suspended = await svc.storage.list_subscribers(statuses=("suspended",))
    assert [s.address for s in suspended] == ["gone@example.org"]
    # A coordinator fixed the address: mail flows again.
    sink.reject.clear()
    assert await svc.storage.resume_subscriber(gone.id, now=clock.now)
    await publish(svc, "news", [item("back", "Welcome back")], clock.now)
    await svc.digests.run_once()
    assert len(sink.to("gone@example.org")) == 1


async def test_temporary_failure_is_retried_and_delivered_once(env: Env) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    sub = await subscriber(svc, "busy@example.org", frequency="immediate", now=clock.now)
    sink.reject["busy@example.org"] = "451 4.7.1 Try again later"
    await publish(svc, "news", [item("a", "Alpha")], clock.now)
    report = await svc.digests.run_once()
    assert report.temporary == 1 and sink.received == []
    sink.reject.clear()
    clock.advance(seconds=30)
    await svc.digests.run_once()  # the retry waits a minute
    assert sink.received == []
    clock.advance(seconds=45)
    await svc.digests.run_once()
    await svc.digests.run_once()
    assert len(sink.to("busy@example.org")) == 1
    assert [(r.status, r.attempts) for r in await svc.storage.runs_for(sub.id)] == [("sent", 2)]
    fresh = await svc.storage.subscriber(sub.id)
    assert fresh is not None and fresh.bounce_score == 0 and fresh.last_error is None


async def test_unsubscribing_drops_what_was_pending(env: Env) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    sub = await subscriber(svc, "bye@example.org", now=clock.now)
    await publish(svc, "news", [item("a", "Alpha")], clock.now)
    clock.advance(hours=2)
    await svc.digests.plan(clock.now)  # claimed, not yet sent
    assert await svc.subscriptions.unsubscribe(sub)
    await svc.digests.run_once()
    assert sink.received == []
    assert [r.status for r in await svc.storage.runs_for(sub.id)] == ["dropped"]


async def test_polled_feed_items_reach_immediate_subscribers_but_history_does_not(
    tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from tests.publisher import FeedItem, Publisher, rss

    monkeypatch.setenv(SECRET_ENV, SECRET)
    pub = await Publisher().start()
    try:
        pub.documents["news.xml"] = rss("News", [FeedItem("old", "Old history item")])
        settings = settings_for(tmp_path, sink.url)
        settings = replace(
            settings,
            feeds=tuple(replace(f, url=pub.url("news.xml")) for f in settings.feeds[:1]),
            polling=replace(settings.polling, max_age=Duration(days=3650)),
        )
        clock = Clock(datetime.now(UTC))
        svc = await make_service(settings, clock)
        try:
            await subscriber(svc, "now@example.org", frequency="immediate", now=clock.now)
            woken = []
            svc.poller.cycle_hooks.append(lambda: woken.append(True))
            await svc.poller.prepare()
            await svc.poller.poll_due()  # first poll: what the feed holds is history
            await svc.digests.run_once()
            assert sink.received == [] and woken == [True]
            pub.documents["news.xml"] = rss(
                "News",
                [FeedItem("n1", "Fresh one"), FeedItem("n2", "Fresh two"),
                 FeedItem("old", "Old history item")],
            )  # fmt: skip
            await svc.poller.poll_due(force=True)
            await svc.digests.run_once()
            await svc.poller.poll_due(force=True)  # nothing new: nothing queued again
            await svc.digests.run_once()
        finally:
            await svc.close()
    finally:
        await pub.close()
    [msg] = sink.to("now@example.org")
    text, _ = parts(msg)
    assert "Fresh one" in text and "Fresh two" in text and "Old history" not in text


async def test_shared_body_decodes_to_each_persons_own_text(env: Env) -> None:
    from network.subscriptions.postman import ListMail
    from network.subscriptions.render import RenderedMessage

    mark = "https://libhub.invalid/__x__"
    text = (
        "Digest — ünïcode ✓\n" + "a long line with = signs " * 12 + "\n\ntrailing space \n"
        f"Manage: {mark}\nend without newline"
    )
    html = "<p>" + "é" * 300 + f'</p>\n<p><a href="{mark}">Manage</a> = done</p>\n'
    mail = ListMail.prepare(RenderedMessage("Subject ✓", text, html), (mark,))
    for n, address in enumerate(["a@example.org", "b@example.org"]):
        own = f"https://libhub.example.org/manage/token-{n}-" + "x" * 150
        result = await env.service.postman.send_list(
            address, "email", mail, lambda s, own=own: s.replace(mark, own),  # type: ignore[misc]
            unsubscribe_url=f"https://libhub.example.org/unsubscribe/{n}", now=env.clock.now,
        )  # fmt: skip
        assert result.ok
        got_text, got_html = parts(env.sink.to(address)[0])
        assert got_text.replace("\r\n", "\n") == text.replace(mark, own)
        assert got_html.replace("\r\n", "\n") == html.replace(mark, own)
