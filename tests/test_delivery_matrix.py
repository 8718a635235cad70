"""Delivery into real Matrix rooms (the session's Synapse; a second account reads): sanitized
HTML, edits within the window only, grouped bursts that stay one message when retried, route
templates, room upgrades, and permanent failures reported on /healthz and by `libhub status`."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import nio
import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from network.routing.render import grouped_content
from network.settings.model import load_settings
from network.web.app import health_report
from tests.conftest import new_user
from tests.matrixkit import MatrixReader
from tests.publisher import FeedItem, Publisher, rss
from tests.test_delivery_kit import (
    BOT_ENV,
    by_url,
    config_text,
    drain,
    poll_and_deliver,
    settings_for,
    started,
)
from tests.waiting import eventually

pytestmark = pytest.mark.synapse

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def publisher() -> AsyncIterator[Publisher]:
    pub = await Publisher().start()
    try:
        yield pub
    finally:
        await pub.close()


@pytest.fixture
async def bot(synapse: DevHomeserver, admin: DevUser, bot_env: dict[str, str]) -> DevUser:
    user = await new_user(synapse, "dbot", admin)
    bot_env[BOT_ENV] = user.password
    return user


class _Balance(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.ok = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("br", "hr", "img"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.ok = False


async def test_hostile_feed_html_arrives_sanitized(
    synapse: DevHomeserver, bot: DevUser, reader: MatrixReader, publisher: Publisher, tmp_path: Path
) -> None:
    room = await reader.create_room()
    hostile = (
        "<p>Intro <b>bold <i>nested</p>"
        '<script>alert("x")</script>'
        '<img src="https://evil.example/x.png" onerror="alert(1)">'
        '<a href="javascript:alert(2)">click me</a> '
        '<a href="https://libraries.example.org/ok" onclick="steal()">safe link</a>'
        "<div><span>unclosed"
    )
    publisher.documents["f.xml"] = rss(
        "F", [FeedItem("h1", "Hostile <em>title</em>", summary=hostile)]
    )
    await poll_and_deliver(settings_for(tmp_path, synapse.url, bot, publisher.url("f.xml"), [room]))
    [msg] = await reader.messages(room, sender=bot.user_id)
    content = msg["content"]
    formatted = content["formatted_body"]
    for bad in ("<script", "alert(", "onerror", "onclick", "javascript:", "<img"):
        assert bad not in formatted, (bad, formatted)
    checker = _Balance()
    checker.feed(formatted)
    assert checker.ok and not checker.stack, formatted
    assert '<a href="https://libraries.example.org/ok">safe link</a>' in formatted
    assert "click me" in formatted and "bold" in formatted and "unclosed" in formatted
    assert "<script" not in content["body"] and "Hostile" in content["body"]
    assert content["msgtype"] == "m.notice" and content["external_url"] == "http://example.org/h1"


async def test_update_within_window_is_an_edit_and_outside_it_nothing(
    synapse: DevHomeserver, bot: DevUser, reader: MatrixReader, publisher: Publisher, tmp_path: Path
) -> None:
    room = await reader.create_room()
    publisher.documents["f.xml"] = rss("F", [FeedItem("e1", "Branch hours", summary="Open 9-5.")])
    service = await started(
        settings_for(tmp_path, synapse.url, bot, publisher.url("f.xml"), [room])
    )
    try:
        await service.poller.poll_due()
        await drain(service)
        [original] = await reader.messages(room, sender=bot.user_id)

        publisher.documents["f.xml"] = rss(
            "F", [FeedItem("e1", "Branch hours", summary="Open 9-8.")]
        )
        [outcome] = await service.poller.poll_due(force=True)
        assert (outcome.updated, outcome.queued) == (1, 1)
        await drain(service)
        msgs = await reader.messages(room, sender=bot.user_id)
        assert len(msgs) == 2
        edit = msgs[1]["content"]
        assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": original["event_id"]}
        assert "Open 9-8." in edit["m.new_content"]["body"]
        assert edit["m.new_content"]["msgtype"] == "m.notice"

        # Three days later (edit_window is 2 days) the publisher changes it again: no edit.
        later = service.poller.clock() + timedelta(days=3)
        service.poller.clock = lambda: later
        publisher.documents["f.xml"] = rss("F", [FeedItem("e1", "Branch hours", summary="Closed.")])
        [outcome] = await service.poller.poll_due(force=True)
        assert (outcome.updated, outcome.queued) == (1, 0)
        await drain(service)
        assert len(await reader.messages(room, sender=bot.user_id)) == 2
    finally:
        await service.close()


async def test_a_view_counter_makes_no_edits_and_a_real_change_one(
    synapse: DevHomeserver, bot: DevUser, reader: MatrixReader, publisher: Publisher, tmp_path: Path
) -> None:
    def page(views: str, text: str = "The branch opens late on Monday.") -> bytes:
        summary = f"<p>{text}</p><p><small>Viewed {views} times · 3 comments</small></p>"
        return rss("F", [FeedItem("v1", "Branch hours", summary=summary)])

    room = await reader.create_room()
    publisher.documents["f.xml"] = page("998")
    service = await started(
        settings_for(tmp_path, synapse.url, bot, publisher.url("f.xml"), [room])
    )
    try:
        await service.poller.poll_due()
        await drain(service)
        # Every poll of the next two days sees another count: the item is stored anew, no edit.
        for views in ("999", "1,000", "1,001", "12,345"):
            publisher.documents["f.xml"] = page(views)
            [outcome] = await service.poller.poll_due(force=True)
            assert (outcome.updated, outcome.queued) == (1, 0), views
            await drain(service)
        [original] = await reader.messages(room, sender=bot.user_id)
        assert "Viewed 998 times" in original["content"]["body"]
        # A change a reader would notice: one edit, with the text of the day.
        publisher.documents["f.xml"] = page("12,346", "The branch is closed on Monday.")
        [outcome] = await service.poller.poll_due(force=True)
        assert (outcome.updated, outcome.queued) == (1, 1)
        await drain(service)
        msgs = await reader.messages(room, sender=bot.user_id)
        assert len(msgs) == 2
        edit = msgs[1]["content"]
        assert edit["m.relates_to"]["event_id"] == original["event_id"]
        assert "closed on Monday" in edit["m.new_content"]["body"]
        assert "Viewed 12,346 times" in edit["m.new_content"]["body"]
    finally:
        await service.close()


async def test_edit_queued_before_its_post_went_out_is_not_a_second_post(
    synapse: DevHomeserver, bot: DevUser, reader: MatrixReader, publisher: Publisher, tmp_path: Path
) -> None:
    room = await reader.create_room()
    publisher.documents["f.xml"] = rss("F", [FeedItem("w1", "Story time", summary="At 10.")])
    service = await started(
        settings_for(tmp_path, synapse.url, bot, publisher.url("f.xml"), [room])
    )
    storage, clock = service.storage, service.delivery.clock
    try:
        # Updated before its first try: the post shows the new text; the edit is dropped.
        await service.poller.poll_due()
        publisher.documents["f.xml"] = rss("F", [FeedItem("w1", "Story time", summary="At 11.")])
        [outcome] = await service.poller.poll_due(force=True)
        assert (outcome.updated, outcome.queued) == (1, 1)
        await drain(service)
        [only] = await reader.messages(room, sender=bot.user_id)
        assert "At 11." in only["content"]["body"]
        assert await storage.outbox_counts() == {"pending": 0, "sent": 1, "failed": 0, "skipped": 1}

        # A post whose first try failed (it may have reached the server with the old text)
        # and an edit queued meanwhile: the edit waits for the post, then replaces it.
        publisher.documents["f.xml"] = rss(
            "F",
            [
                FeedItem("w2", "Craft club", summary="Bring glue."),
                FeedItem("w1", "Story time", summary="At 11."),
            ],
        )
        await service.poller.poll_due(force=True)
        [post] = await storage.claim_due(clock())
        await storage.mark_retry(
            post.id, error="HTTP 502", next_attempt=clock() + timedelta(minutes=1)
        )
        publisher.documents["f.xml"] = rss(
            "F",
            [
                FeedItem("w2", "Craft club", summary="Bring scissors."),
                FeedItem("w1", "Story time", summary="At 11."),
            ],
        )
        [outcome] = await service.poller.poll_due(force=True)
        assert (outcome.updated, outcome.queued) == (1, 1)
        await drain(service)  # only the edit is due: it must not go out as a post
        assert len(await reader.messages(room, sender=bot.user_id)) == 1
        await storage.release([post.id], next_attempt=clock())
        await drain(service)
        await storage.release([post.id + 1], next_attempt=clock())  # the edit's wait is over
        await drain(service)
        msgs = await reader.messages(room, sender=bot.user_id)
        assert by_url(msgs) == {"http://example.org/w1": 1, "http://example.org/w2": 1}
        craft, edit = msgs[1], msgs[2]
        assert "Bring scissors." in craft["content"]["body"]
        assert edit["content"]["m.relates_to"]["event_id"] == craft["event_id"]
        assert (await storage.outbox_counts())["pending"] == 0
    finally:
        await service.close()


async def test_burst_is_one_grouped_message_even_when_its_first_send_was_lost(
    synapse: DevHomeserver, bot: DevUser, reader: MatrixReader, publisher: Publisher, tmp_path: Path
) -> None:
    room = await reader.create_room()
    publisher.documents["f.xml"] = rss(
        "F", [FeedItem(f"b{i}", f"Burst item {i}") for i in range(15)]
    )
    settings = settings_for(
        tmp_path, synapse.url, bot, publisher.url("f.xml"), [room], delivery="group_threshold = 10"
    )
    service = await started(settings)
    try:
        [outcome] = await service.poller.poll_due()
        assert outcome.queued == 15
        await drain(service)
        [grouped] = await reader.messages(room, sender=bot.user_id)
        assert grouped["content"]["body"].startswith("15 new items:")
        assert all(f"Burst item {i}" in grouped["content"]["body"] for i in range(15))
        assert await service.storage.outbox_counts() == {
            "pending": 0, "sent": 1, "failed": 0, "skipped": 14
        }  # fmt: skip

        # The next burst's first send reaches the server but the answer is lost (the
        # process dies, or the connection drops): every row is still pending, tried once.
        publisher.documents["f.xml"] = rss(
            "F", [FeedItem(f"c{i}", f"Second burst {i}") for i in range(12)]
        )
        await service.poller.poll_due(force=True)
        storage = service.storage
        claimed = await storage.claim_due(service.delivery.clock(), limit=100)
        assert len(claimed) == 12
        items = await storage.items_by_id([r.item_id for r in claimed])
        lost = grouped_content(
            [items[r.item_id] for r in claimed], feed_titles={"news": "Network news"}
        )
        room_id = await service.matrix.resolve_room(room)
        await service.matrix.send(room_id, lost, txn_id=claimed[0].txn_id)
        await storage.release(
            [r.id for r in claimed], next_attempt=service.delivery.clock(), untried=()
        )

        await drain(service)
        msgs = await reader.messages(room, sender=bot.user_id)
        assert len(msgs) == 2, [m["content"]["body"][:40] for m in msgs]
        assert msgs[1]["content"]["body"].startswith("12 new items:")
        counts = await storage.outbox_counts()
        assert (counts["pending"], counts["sent"], counts["skipped"]) == (0, 2, 25)
    finally:
        await service.close()


async def test_route_template_shapes_its_room_only(
    synapse: DevHomeserver, bot: DevUser, reader: MatrixReader, publisher: Publisher, tmp_path: Path
) -> None:
    plain = await reader.create_room()
    styled = await reader.create_room()
    publisher.documents["f.xml"] = rss(
        "F",
        [FeedItem("t1", "Webinar: Makerspace <basics>", summary="<p>Bring <b>ideas</b>.</p>")],
    )
    template = (
        "<h3>{{ title }}</h3>{{ summary }}"
        '<p><a href="{{ link }}">Register</a> · {{ feed_title }} · {{ kind }}</p>'
    )
    routes = f"""
[[routes]]
kinds = ["webinar"]
rooms = ["{styled}"]
matrix_template = '''{template}'''
"""
    settings = settings_for(
        tmp_path, synapse.url, bot, publisher.url("f.xml"), [plain, styled], extra=routes
    )
    await poll_and_deliver(settings)
    [default] = await reader.messages(plain, sender=bot.user_id)
    [shaped] = await reader.messages(styled, sender=bot.user_id)
    assert default["content"]["body"].startswith("Webinar · Network news: Webinar: Makerspace")
    c = shaped["content"]
    assert c["formatted_body"] == (
        "<h3>Webinar: Makerspace &lt;basics&gt;</h3><p>Bring <b>ideas</b>.</p>"
        '<p><a href="http://example.org/t1">Register</a> · Network news · webinar</p>'
    )
    assert c["body"] == (
        "Webinar: Makerspace <basics>\n\nBring ideas.\n\nRegister · Network news · webinar"
    )
    assert c["msgtype"] == "m.notice" and c["external_url"] == "http://example.org/t1"


async def test_webinar_post_shows_the_start_in_the_network_zone(
    synapse: DevHomeserver, bot: DevUser, reader: MatrixReader, publisher: Publisher, tmp_path: Path
) -> None:
    room = await reader.create_room()
    publisher.documents["f.xml"] = rss(
        "F",
        [FeedItem("w1", "Webinar: Budget basics", summary="<p>Live on 2026-12-01T15:00:00Z.</p>")],
    )
    # No [network] timezone in this config: the default, America/New_York (EST in December).
    await poll_and_deliver(settings_for(tmp_path, synapse.url, bot, publisher.url("f.xml"), [room]))
    [post] = await reader.messages(room, sender=bot.user_id)
    assert "When: Tue 01 Dec 2026, 10:00 EST (15:00 UTC)" in post["content"]["body"]


async def test_a_dead_token_fails_no_message_and_delivery_resumes_after_login(
    synapse: DevHomeserver, bot: DevUser, reader: MatrixReader, publisher: Publisher, tmp_path: Path
) -> None:
    alias_name = f"tok{bot.user_id[5:].split(':')[0]}"
    room_id = await reader.create_room(alias_name)
    alias = f"#{alias_name}:{synapse.server_name}"
    publisher.documents["f.xml"] = rss("F", [FeedItem("t1", "After the new login")])
    service = await started(
        settings_for(tmp_path, synapse.url, bot, publisher.url("f.xml"), [alias])
    )
    try:
        await service.poller.poll_due()
        # The bot's token dies (an admin logged its devices out) before the room is joined.
        # (Synapse answers alias lookups without a token; the 401 on a lookup that other
        # servers give is covered by the test below.)
        token = service.matrix.client.access_token
        async with aiohttp.ClientSession() as http:
            await http.post(
                f"{synapse.url}/_matrix/client/v3/logout/all",
                headers={"Authorization": f"Bearer {token}"},
            )
        await service.delivery.run_once()
        counts = await service.storage.outbox_counts()
        assert counts["failed"] == 0, "a dead token must not fail the room's messages"
        assert not service.matrix.logged_in
        await service.matrix.login()  # what the sync loop does next
        await eventually(lambda: _delivered(service), within=60, what="the message after login")
    finally:
        await service.close()
    msgs = await reader.messages(room_id, sender=bot.user_id)
    assert [m["content"]["body"].count("After the new login") for m in msgs] == [1]


async def _delivered(service: Any) -> bool:
    await drain(service)
    return bool((await service.storage.outbox_counts())["sent"] == 1)


async def test_room_upgrade_is_followed(
    synapse: DevHomeserver, bot: DevUser, reader: MatrixReader, publisher: Publisher, tmp_path: Path
) -> None:
    old_room = await reader.create_room()
    publisher.documents["f.xml"] = rss("F", [FeedItem("u1", "Before the upgrade")])
    service = await started(
        settings_for(tmp_path, synapse.url, bot, publisher.url("f.xml"), [old_room])
    )
    try:
        await service.poller.poll_due()
        await drain(service)
        assert len(await reader.messages(old_room, sender=bot.user_id)) == 1

        create = await reader.call(
            "GET", f"/_matrix/client/v3/rooms/{old_room}/state/m.room.create/"
        )
        version = {"new_version": create.get("room_version", "1")}
        answer = await reader.call("POST", f"/_matrix/client/v3/rooms/{old_room}/upgrade", version)
        new_room = answer["replacement_room"]
        publisher.documents["f.xml"] = rss(
            "F", [FeedItem("u2", "After the upgrade"), FeedItem("u1", "Before the upgrade")]
        )
        await service.poller.poll_due(force=True)
        await drain(service)
        [moved] = await reader.messages(new_room, sender=bot.user_id)
        assert "After the upgrade" in moved["content"]["body"]
        assert len(await reader.messages(old_room, sender=bot.user_id)) == 1
        assert (await service.storage.rooms())[old_room] == new_room
        assert (await service.storage.outbox_counts())["failed"] == 0

        # Upgraded again; this time the sync loop's tombstone event moves the bot at once.
        answer = await reader.call("POST", f"/_matrix/client/v3/rooms/{new_room}/upgrade", version)
        newest = answer["replacement_room"]
        [tombstone] = [e for e in await reader.events(new_room) if e["type"] == "m.room.tombstone"]
        await service.delivery.on_room_event(new_room, nio.Event.parse_event(tombstone))
        assert (await service.storage.rooms())[old_room] == newest
        members = await reader.call("GET", f"/_matrix/client/v3/rooms/{newest}/joined_members")
        assert bot.user_id in members["joined"]
    finally:
        await service.close()


async def test_permanent_failures_stop_and_are_reported(
    synapse: DevHomeserver, bot: DevUser, reader: MatrixReader, publisher: Publisher, tmp_path: Path
) -> None:
    forbidden = await reader.create_room(public=False)  # the bot is never invited
    missing = f"#no-such-room-{bot.user_id[1:].split(':')[0]}:{synapse.server_name}"
    publisher.documents["f.xml"] = rss(
        "F", [FeedItem("p1", "Nowhere to go"), FeedItem("p2", "Nor this one")]
    )
    extra = '[channels.broken]\nurls = ["nosuchscheme://token@host/path"]\n'
    text = config_text(
        tmp_path,
        synapse.url,
        bot,
        publisher.url("f.xml"),
        [forbidden, missing],
        extra=extra,
        feed_extra='channels = ["broken"]',
    )
    (tmp_path / "libhub.toml").write_text(text)
    service = await started(load_settings(tmp_path / "libhub.toml"))
    try:
        await service.poller.poll_due()
        await drain(service)
        assert await service.delivery.run_once() is False  # nothing left to retry
        ok, report = await health_report(service.web)
        # 2 items x (forbidden room, missing room, broken URL): the rest of a room (or URL)
        # fails with the first, without trying each message.
        assert ok and report["outbox"]["failed"] == 6 and report["outbox"]["pending"] == 0
        errors = {f["target"]: f["error"] for f in report["failed_deliveries"]}
        assert "does not exist" in errors[missing]
        assert errors[forbidden].startswith(f"cannot post to {forbidden}: ")
        assert "not a valid apprise URL" in errors["nosuchscheme://host/…"]
        assert "token" not in json.dumps(report)  # channel secrets stay out of the report
    finally:
        await service.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "network.cli", "status", "-c", str(tmp_path / "libhub.toml"),
        "--json", cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    status = json.loads(out)
    assert status["outbox"]["failed"] == 6
    targets = {f["target"] for f in status["failed_deliveries"]}
    assert {forbidden, missing, "broken"} <= targets


async def test_a_rejected_token_on_an_alias_lookup_stays_an_auth_error(tmp_path: Path) -> None:
    """Servers that check the token on directory lookups answer 401 there: that is a login
    to redo, never "the room does not exist" (which would fail the room's messages)."""
    from network.errors import MatrixAuthError
    from network.matrix.gateway import MatrixGateway, _error_from
    from network.settings.model import parse_settings
    from network.storage import Storage

    storage = await Storage.open(tmp_path / "db.sqlite")
    settings = parse_settings(
        '[matrix]\nhomeserver = "http://127.0.0.1:9"\nuser_id = "@bot:localhost"\n'
        'password_env = "UNUSED"\n',
        base_dir=tmp_path,
    )
    gateway = MatrixGateway(settings.matrix, storage, password=None, access_token=None)

    async def rejected(*_args: Any, what: str, **_kwargs: Any) -> dict[str, Any]:
        raise _error_from(401, {"errcode": "M_UNKNOWN_TOKEN", "error": "expired"}, None, what)

    gateway._request = rejected  # type: ignore[method-assign]
    try:
        with pytest.raises(MatrixAuthError):
            await gateway.resolve_room("#news:localhost")
        with pytest.raises(MatrixAuthError):
            await gateway.room_state("!r:localhost", "m.room.tombstone")
    finally:
        await gateway.close()
        await storage.close()
