"""Moderation and trends without a homeserver: webhook items on a holding route wait in the
outbox until a coordinator decides, are delivered once after approval (apprise ``json://``
to a local receiver) and never after rejection; flag words hold items on unmoderated routes;
every decision is audited once. Trends: seeded activity comes back per day in the CSV the
dashboard exports, and the page draws accessible SVG charts with a table."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from network.devtools.devserver import free_port
from network.routing.router import Router
from network.service import Service
from network.settings.model import Settings, parse_settings
from network.storage import ItemInput, Storage, Target
from network.tokens import hook_token
from network.web.dashboard import issue_login_token
from tests.channelkit import JsonReceiver, json_receiver
from tests.test_delivery_kit import drain

SECRET = "moderation-test-secret-0123456789"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[JsonReceiver, int]]:
    async with json_receiver() as running:
        yield running


@pytest.fixture(autouse=True)
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBHUB_SECRET", SECRET)


def _settings(tmp_path: Path, receiver_port: int, web_port: int) -> Settings:
    return parse_settings(
        f"""
[database]
path = "{tmp_path / "libhub.db"}"
[matrix]
homeserver = "http://127.0.0.1:{free_port()}"
user_id = "@bot:localhost"
password_env = "UNUSED_PW"
[web]
listen = "127.0.0.1:{web_port}"
public_url = "http://127.0.0.1:{web_port}"
[channels.public]
urls = ["json://127.0.0.1:{receiver_port}/public"]
[channels.staff]
urls = ["json://127.0.0.1:{receiver_port}/staff"]
[[hooks]]
id = "forms"
[[routes]]
feeds = ["hook:forms"]
channels = ["public"]
moderation = "hold"
channel_template = "{{{{ title }}}}"
[[routes]]
feeds = ["hook:forms"]
channels = ["staff"]
channel_template = "staff: {{{{ title }}}}"
[moderation]
flag_words = ["free money"]
""",
        base_dir=tmp_path,
    )


async def _post(port: int, payload: dict[str, Any]) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/hooks/" + hook_token(SECRET.encode(), "forms")
    async with aiohttp.ClientSession() as http, http.post(url, json=payload) as resp:
        assert resp.status == 202
        body: dict[str, Any] = await resp.json()
        return body


async def test_held_items_wait_then_approved_ones_are_delivered_once(
    tmp_path: Path, receiver: tuple[JsonReceiver, int]
) -> None:
    got, receiver_port = receiver
    port = free_port()
    service = await Service.create(_settings(tmp_path, receiver_port, port))
    try:
        await service.start_web()
        first = await _post(port, {"id": "1", "title": "Seed library opens"})
        second = await _post(port, {"id": "2", "title": "Book sale on Friday"})
        assert first["held"] == 1 and "waits for a coordinator" in first["message"]
        assert second["held"] == 1
        await drain(service)
        # The unmoderated staff channel has both; the public one nothing yet.
        assert sorted(got.messages) == ["staff: Book sale on Friday", "staff: Seed library opens"]
        held = await service.storage.held_items()
        assert [h.item.title for h in held] == ["Seed library opens", "Book sale on Friday"]
        one, two = (h.item.id for h in held)
        # Held items stay out of subscribers' digests too.
        assert await service.storage.queue_entries(0, 100) == []

        assert await service.moderation.decide(one, approve=True, actor="dana") == 1
        assert await service.moderation.decide(two, approve=False, actor="dana") == 1
        # A second decision changes nothing and records nothing.
        assert await service.moderation.decide(one, approve=True, actor="lee") == 0
        assert await service.moderation.decide(two, approve=True, actor="lee") == 0
        await drain(service)
        await drain(service)
        audit = await service.storage.audit_entries()
        counts = await service.storage.outbox_counts()
        digest_items = [e.item_id for e in await service.storage.queue_entries(0, 100)]
    finally:
        await service.close()
    assert got.messages.count("Seed library opens") == 1
    assert "Book sale on Friday" not in got.messages
    assert [(a.actor, a.action, a.subject) for a in reversed(audit)] == [
        ("dana", "approve", f"item:{one}"),
        ("dana", "reject", f"item:{two}"),
    ]
    assert digest_items == [one]  # approved: queued once; rejected: never
    assert counts.get("held", 0) == 0 and counts["rejected"] == 1 and counts["pending"] == 0


async def test_flag_words_hold_items_even_on_unmoderated_routes(
    tmp_path: Path, receiver: tuple[JsonReceiver, int]
) -> None:
    got, receiver_port = receiver
    port = free_port()
    service = await Service.create(_settings(tmp_path, receiver_port, port))
    try:
        await service.start_web()
        body = await _post(port, {"id": "9", "title": "Win FREE money today"})
        assert body["held"] == 2  # the staff route does not moderate, but the word flags it
        await drain(service)
        assert got.messages == []
        [held] = await service.storage.held_items()
        assert await service.moderation.edit_title(held.item.id, "Grant info", actor="dana")
        assert await service.moderation.decide(held.item.id, approve=True, actor="dana") == 2
        await drain(service)
        audit = await service.storage.audit_entries()
    finally:
        await service.close()
    assert sorted(got.messages) == ["Grant info", "staff: Grant info"]
    assert [a.action for a in reversed(audit)] == ["edit", "approve"]
    assert "Win FREE money today -> Grant info" in audit[1].detail


async def _seed(storage: Storage, now: datetime) -> None:
    """Two days of activity: yesterday 2 deliveries, 1 failure, 2 joins, 1 digest, a case
    answered after 2 h and closed after 6 h; today 1 delivery, 1 leave, 1 case."""
    yesterday = now - timedelta(days=1)

    def item(key: str) -> ItemInput:
        return ItemInput(
            key=key, kind="news", title=key, link=None, published=None, author=None,
            categories=(), summary_html="", enclosures=(), event_start=None, content_hash=key,
        )  # fmt: skip

    await storage.store_items(
        "news", [item("a"), item("b"), item("c"), item("d")],
        targets=lambda _i: [Target("apprise", "json://127.0.0.1:1/x", "x")],
        post=lambda _i: True, edit_window=timedelta(days=1), now=yesterday,
    )  # fmt: skip
    rows = await storage.claim_due(yesterday + timedelta(minutes=1), limit=10)
    a, b, c, d = sorted(r.id for r in rows)
    await storage.mark_sent(a, event_id=None, now=yesterday)
    await storage.mark_sent(b, event_id=None, now=yesterday)
    await storage.mark_failed(c, error="forbidden")
    await storage.mark_sent(d, event_id=None, now=now)

    def iso(t: datetime) -> str:
        return t.isoformat(timespec="seconds")

    for n, (confirmed, left) in enumerate(
        [(yesterday, None), (yesterday, now), (yesterday - timedelta(days=200), None)]
    ):
        await storage.execute(
            "INSERT INTO subscribers (address, address_key, channel, topics, frequency, tz, "
            "hour, created_at, confirmed_at, updated_at, unsubscribed_at, status) "
            "VALUES (?, ?, 'email', '[]', 'daily', 'UTC', 8, ?, ?, ?, ?, ?)",
            (f"s{n}@example.org", f"s{n}@example.org", iso(confirmed), iso(confirmed),
             iso(confirmed), iso(left) if left else None, "unsubscribed" if left else "active"),
        )  # fmt: skip
    await storage.execute(
        "INSERT INTO digest_runs (subscriber_id, period, kind, frequency, from_seq, upto_seq, "
        "status, next_attempt, created_at, sent_at) "
        "VALUES (1, 'p1', 'digest', 'daily', 0, 1, 'sent', ?, ?, ?)",
        (iso(yesterday), iso(yesterday), iso(yesterday)),
    )
    for n, (opened, answered, closed) in enumerate(
        [
            (yesterday, yesterday + timedelta(hours=2), yesterday + timedelta(hours=6)),
            (now, None, None),
        ]
    ):
        await storage.execute(
            "INSERT INTO cases (question_event_id, question, asker, asker_room, "
            "asker_is_direct, team_room, thread_root, state, opened_at, last_activity_at, "
            "answered_at, closed_at) VALUES (?, 'q', '@a:x', '!r:x', 1, '!t:x', ?, 'open', "
            "?, ?, ?, ?)",
            (f"$q{n}", f"$t{n}", iso(opened), iso(opened),
             iso(answered) if answered else None, iso(closed) if closed else None),
        )  # fmt: skip


async def test_trends_csv_and_page_count_seeded_activity_per_day(
    tmp_path: Path, receiver: tuple[JsonReceiver, int]
) -> None:
    _, receiver_port = receiver
    port = free_port()
    settings = _settings(tmp_path, receiver_port, port)
    service = await Service.create(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    if now.hour < 7:
        now = now.replace(hour=12)  # keep "yesterday + 6 h" on yesterday's date
    base = f"http://127.0.0.1:{port}"
    try:
        await _seed(service.storage, now)
        await service.start_web()
        token = issue_login_token(settings, "dana", now=datetime.now(UTC))
        # unsafe: the cookie jar keeps cookies of an IP address (the loopback server).
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.post(f"{base}/dashboard/login", data={"token": token}) as resp:
                assert resp.status == 200 and resp.url.path == "/dashboard"
            async with http.get(f"{base}/dashboard/trends.csv") as resp:
                assert resp.status == 200
                assert resp.content_type == "text/csv"
                assert "attachment" in resp.headers["Content-Disposition"]
                text = await resp.text()
            async with http.get(f"{base}/dashboard/trends") as resp:
                page = await resp.text()
    finally:
        await service.close()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 90
    by_day = {r["day"]: r for r in rows}
    y = by_day[(now - timedelta(days=1)).date().isoformat()]
    t = by_day[now.date().isoformat()]
    assert (y["delivered"], y["failed"], y["joined"], y["left"], y["digests"]) == (
        "2", "1", "2", "0", "1",
    )  # fmt: skip
    assert (y["cases_opened"], y["hours_to_answer"], y["hours_to_close"]) == ("1", "2.0", "6.0")
    assert (t["delivered"], t["left"], t["cases_opened"], t["hours_to_answer"]) == (
        "1", "1", "1", "",
    )  # fmt: skip
    # The subscriber confirmed 200 days ago is outside the window.
    assert sum(int(r["joined"]) for r in rows) == 2
    assert page.count('role="img"') == 8
    assert 'aria-labelledby="chart-delivered-title chart-delivered-desc"' in page
    assert "Items delivered, " in page and "3 deliveries in 90 days" in page
    assert '<table id="trends-table">' in page


ROUTING = """
[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@bot:localhost"
password_env = "PW"
[channels.public]
urls = ["json://127.0.0.1:9/public"]
[[feeds]]
id = "vetted"
url = "https://example.org/vetted.xml"
[[feeds]]
id = "new-branch"
url = "https://example.org/new.xml"
reviewed = false
[[cohorts]]
id = "makers"
name = "Makers"
room = "#makers:localhost"
[[routes]]
channels = ["public"]
rooms = ["#staff:localhost"]
moderation = "hold"
[[routes]]
rooms = ["#everyone:localhost"]
"""


@pytest.mark.parametrize(
    ("feed_id", "cohort", "held"),
    [
        ("vetted", None, set()),
        ("new-branch", None, {"public", "#staff:localhost"}),
        ("cohort:makers", "makers", {"public", "#staff:localhost"}),
    ],
)
def test_holding_routes_hold_unreviewed_sources_only(
    feed_id: str, cohort: str | None, held: set[str]
) -> None:
    router = Router(parse_settings(ROUTING))
    news = ItemInput(
        key="k", kind="news", title="Makerspace opens", link=None, published=None, author=None,
        categories=(), summary_html="", enclosures=(), event_start=None, content_hash="h",
    )  # fmt: skip
    targets = router.targets(feed_id, news, cohort=cohort)
    assert {t.channel or t.target for t in targets} == {
        "public", "#staff:localhost", "#everyone:localhost"
    }  # fmt: skip
    assert {t.channel or t.target for t in targets if t.held} == held


def test_libhub_hooks_prints_each_signed_url(tmp_path: Path) -> None:
    config = tmp_path / "libhub.toml"
    config.write_text(
        '[matrix]\nhomeserver = "http://127.0.0.1:8008"\nuser_id = "@b:localhost"\n'
        'password_env = "PW"\n[web]\npublic_url = "https://hub.example.org"\n'
        '[[hooks]]\nid = "forms"\n'
    )
    env = {**os.environ, "LIBHUB_SECRET": SECRET}
    run = [sys.executable, "-m", "network.cli", "hooks", "-c", str(config)]
    proc = subprocess.run(run, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    url = "https://hub.example.org/hooks/" + hook_token(SECRET.encode(), "forms")
    assert url in proc.stdout.splitlines()
    env.pop("LIBHUB_SECRET")
    proc = subprocess.run(run, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 2
    assert "web.secret_env: webhook URLs are signed with a secret" in proc.stderr


async def test_a_withdrawn_member_update_leaves_the_moderation_queue(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    async with await Storage.open(tmp_path / "libhub.db") as storage:
        update = ItemInput(
            key="$ev1", kind="cohort-update", title="We lent hotspots", link=None,
            published=now, author=None, categories=(), summary_html="", enclosures=(),
            event_start=None, content_hash="h1",
        )  # fmt: skip
        await storage.store_items(
            "cohort:makers", [update],
            targets=lambda _i: [Target("apprise", "json://127.0.0.1:9/p", "public", held=True)],
            post=lambda _i: True, edit_window=timedelta(days=1), now=now,
        )  # fmt: skip
        await storage.record_cohort_update(
            event_id="$ev1", feed_id="cohort:makers", cohort_id="makers", room_id="!r:x",
            sender="@ana:x", library=None, now=now,
        )  # fmt: skip
        assert [h.item.title for h in await storage.held_items()] == ["We lent hotspots"]
        await storage.withdraw_cohort_update("$ev1", now)
        assert await storage.held_items() == []
        assert await storage.held_without_notice() == []
