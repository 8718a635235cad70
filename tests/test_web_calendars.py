"""The subscribable calendars over HTTP (real aiohttp server, SQLite on disk), parsed back
with icalendar: stable UIDs, SEQUENCE raised when a webinar moves, CANCELLED when it is
marked cancelled, taken down from its feed or withdrawn; per cohort and per topic; the
page that offers them as webcal:// links."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import icalendar
import pytest
from aiohttp.test_utils import TestClient, TestServer

from network.community.calendar import revise
from network.community.webinars import webinar_calendar_links
from network.service import Service
from network.storage import ItemInput
from network.storage.calendar import CalendarCandidate, Published
from network.web.app import make_web_app
from tests.digestkit import START, DigestEnv, item, parts, publish, subscriber

SOON = datetime.now(UTC).replace(microsecond=0) + timedelta(days=5)


@pytest.fixture
async def client(digest_env: DigestEnv) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    client = TestClient(TestServer(make_web_app(digest_env.service.web), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def webinar(key: str, title: str, start: datetime) -> ItemInput:
    found = item(key, title, "webinar", start=start, summary="<p>Makerspaces on a budget.</p>")
    digest = hashlib.sha256(f"{key}{title}{start.isoformat()}".encode()).hexdigest()
    return replace(found, content_hash=digest)


async def events(client: TestClient, path: str = "/calendar.ics") -> dict[str, icalendar.Event]:  # type: ignore[type-arg]
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/calendar"
    cal = icalendar.Calendar.from_ical(await resp.read())
    assert str(cal["VERSION"]) == "2.0" and str(cal["METHOD"]) == "PUBLISH"
    return {str(e["UID"]): e for e in cal.walk("VEVENT") if isinstance(e, icalendar.Event)}


async def item_id(service: Service, feed_id: str, key: str) -> int:
    page = await service.storage.archive_page(feed_ids=[feed_id], per_page=100)
    [found] = [e.id for e in page.entries if e.link and e.link.endswith(f"/{key}")]
    return found


async def test_a_moved_webinar_keeps_its_uid_with_a_higher_sequence(
    digest_env: DigestEnv,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    svc = digest_env.service
    await publish(svc, "webinars", [webinar("w1", "Smart spaces 101", SOON)], START)
    uid = f"item-{await item_id(svc, 'webinars', 'w1')}@127.0.0.1"
    first = (await events(client))[uid]
    assert first["SEQUENCE"] == 0 and str(first["STATUS"]) == "CONFIRMED"
    assert first.decoded("DTSTART") == SOON
    assert first.decoded("DTEND") == SOON + timedelta(hours=1)
    assert str(first["SUMMARY"]) == "Smart spaces 101"
    assert (await events(client))[uid]["SEQUENCE"] == 0  # reading again changes nothing

    later = SOON + timedelta(days=1, hours=2)
    await publish(svc, "webinars", [webinar("w1", "Smart spaces 101", later)], START)
    moved = (await events(client))[uid]
    assert moved["SEQUENCE"] == 1 and moved.decoded("DTSTART") == later
    assert str(moved["STATUS"]) == "CONFIRMED"
    # The one-event file is the same event.
    resp = await client.get(f"/webinars/{uid.split('-')[1].split('@')[0]}.ics")
    [single] = icalendar.Calendar.from_ical(await resp.read()).walk("VEVENT")
    assert str(single["UID"]) == uid and single["SEQUENCE"] == 1

    await publish(svc, "webinars", [webinar("w1", "CANCELLED: Smart spaces 101", later)], START)
    cancelled = (await events(client))[uid]
    assert str(cancelled["STATUS"]) == "CANCELLED" and cancelled["SEQUENCE"] == 2


async def test_a_webinar_taken_down_from_its_feed_is_cancelled(
    digest_env: DigestEnv,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    svc = digest_env.service
    older = webinar("w0", "Last month's talk", SOON - timedelta(days=30))
    gone = webinar("w2", "Grant writing", SOON)
    await publish(svc, "webinars", [older, gone], START)
    uid = f"item-{await item_id(svc, 'webinars', 'w2')}@127.0.0.1"
    assert str((await events(client))[uid]["STATUS"]) == "CONFIRMED"
    # The next poll lists the older item but no longer the upcoming one.
    assert await svc.storage.note_feed_listing("webinars", ["w0"], START) == 1
    event = (await events(client))[uid]
    assert str(event["STATUS"]) == "CANCELLED" and event["SEQUENCE"] == 1
    # Listed again: back on, one more change for the calendar programs.
    await svc.storage.note_feed_listing("webinars", ["w0", "w2"], START)
    event = (await events(client))[uid]
    assert str(event["STATUS"]) == "CONFIRMED" and event["SEQUENCE"] == 2


async def test_a_feed_that_only_rolled_off_its_oldest_entries_cancels_nothing(
    digest_env: DigestEnv,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    svc = digest_env.service
    await publish(svc, "webinars", [webinar("w3", "Oldest stored", SOON)], START)
    await publish(svc, "webinars", [webinar("w4", "Newer", SOON + timedelta(days=1))], START)
    assert await svc.storage.note_feed_listing("webinars", ["w4"], START) == 0
    statuses = {str(e["STATUS"]) for e in (await events(client)).values()}
    assert statuses == {"CONFIRMED"}


async def test_calendars_per_cohort_and_per_topic(
    digest_env: DigestEnv,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    svc = digest_env.service
    await publish(svc, "webinars", [webinar("n1", "Network-wide", SOON)], START)
    # The cohort's feed posts into the cohort room: its webinars are the cohort's.
    await publish(svc, "smart-updates", [webinar("c1", "Cohort call", SOON)], START)
    network = f"item-{await item_id(svc, 'webinars', 'n1')}@127.0.0.1"
    cohort = f"item-{await item_id(svc, 'smart-updates', 'c1')}@127.0.0.1"
    assert set(await events(client)) == {network, cohort}
    assert set(await events(client, "/calendar/cohort/smart-spaces.ics")) == {cohort}
    assert set(await events(client, "/calendar/topic/feed-webinars.ics")) == {network}
    assert set(await events(client, "/calendar/topic/kind-webinar.ics")) == {network, cohort}
    assert (await client.get("/calendar/cohort/nobody.ics")).status == 404
    assert (await client.get("/calendar/topic/feed-unknown.ics")).status == 404


async def test_the_calendar_page_offers_webcal_subscriptions(
    digest_env: DigestEnv,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    resp = await client.get("/calendar")
    html = await resp.text()
    assert resp.status == 200 and '<html lang="en">' in html
    assert len(re.findall(r"<h1[ >]", html)) == 1 and "<main" in html
    host = digest_env.settings.web.public_url.split("://")[1]
    assert f'href="webcal://{host}/calendar.ics"' in html
    assert f'href="webcal://{host}/calendar/cohort/smart-spaces.ics"' in html
    assert "<script" not in html


def _candidate(**kw: object) -> CalendarCandidate:
    from network.storage.records import Item

    base = Item(
        id=7, feed_id="webinars", key="k", kind="webinar", title="Talk", link=None,
        published=None, author=None, categories=(), summary_html="", enclosures=(),
        event_start=SOON, content_hash="h", version=1, first_seen=START, updated_at=START,
    )  # fmt: skip
    published = kw.pop("published", None)
    withdrawn = bool(kw.pop("withdrawn", False))
    return CalendarCandidate(replace(base, **kw), published, withdrawn)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "cancelled"),
    [
        ({}, False),
        ({"withdrawn": True}, True),  # a member withdrew it (or it is not active: held)
        ({"kind": "news"}, True),  # no longer a webinar
        ({"title": "Canceled - Talk"}, True),
        ({"title": "Cancelado: charla"}, True),
        ({"title": "Cancellation policies for library rooms"}, False),
    ],
)
def test_which_events_are_cancelled(kw: dict[str, object], cancelled: bool) -> None:
    revised = revise(_candidate(**kw), host="h", duration=timedelta(hours=1), description="")
    assert revised is not None and revised[0].cancelled is cancelled


def test_sequence_rises_only_when_what_is_shown_changes() -> None:
    first = revise(_candidate(), host="h", duration=timedelta(hours=1), description="d")
    assert first is not None and first[1] is not None and first[1].sequence == 0
    shown = Published(0, first[1].fingerprint, SOON, "confirmed", removed=False)
    same = revise(
        _candidate(published=shown), host="h", duration=timedelta(hours=1), description="d"
    )
    assert same is not None and same[1] is None and same[0].sequence == 0
    moved = revise(
        _candidate(published=shown, event_start=SOON + timedelta(hours=1)),
        host="h",
        duration=timedelta(hours=1),
        description="d",
    )
    assert moved is not None and moved[1] is not None and moved[0].sequence == 1


async def test_the_digest_links_to_the_calendar_subscription(digest_env: DigestEnv) -> None:
    svc, clock, sink = digest_env.service, digest_env.clock, digest_env.sink
    await subscriber(svc, "ana@example.org", now=clock.now)
    await subscriber(svc, "news@example.org", topics=("kind:news",), now=clock.now)
    talk = webinar("w9", "Wi-Fi after hours", datetime(2026, 11, 30, 18, 0, tzinfo=UTC))
    await publish(svc, "webinars", [talk], clock.now)
    await publish(svc, "news", [item("n9", "Hotspot lending expands")], clock.now)
    clock.advance(hours=2)  # 08:00 in Chicago, their hour
    assert (await svc.digests.run_once()).sent == 2
    text, html = parts(sink.to("ana@example.org")[0])
    webcal = "webcal://" + digest_env.settings.web.public_url.split("://")[1] + "/calendar.ics"
    assert webcal in text and f'href="{webcal}"' in html
    # A digest without webinars does not offer the calendar.
    text, _ = parts(sink.to("news@example.org")[0])
    assert "webcal://" not in text


def test_a_webinar_post_in_matrix_links_to_its_file_and_the_calendars() -> None:
    from network.routing.render import matrix_content
    from network.storage.records import Item

    talk = Item(
        id=7, feed_id="webinars", key="k", kind="webinar", title="Talk", link=None,
        published=None, author=None, categories=(), summary_html="", enclosures=(),
        event_start=SOON, content_hash="h", version=1, first_seen=START, updated_at=START,
    )  # fmt: skip
    links = webinar_calendar_links("https://hub.example.org/", talk)
    assert links == ("https://hub.example.org/webinars/7.ics", "https://hub.example.org/calendar")
    content = matrix_content(talk, feed_title="Network webinars", calendar=links)
    assert "https://hub.example.org/webinars/7.ics" in content["body"]
    assert "https://hub.example.org/calendar" in content["body"]
    assert 'href="https://hub.example.org/calendar"' in content["formatted_body"]
    news = replace(talk, kind="news", event_start=None)
    assert webinar_calendar_links("https://hub.example.org", news) is None
