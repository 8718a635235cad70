"""The first end-to-end path: a feed on a real HTTP server, one poll, and a second Matrix
account (not the bot) reads the item in the room of a real Synapse; nothing is posted twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from network.devtools.devserver import DevHomeserver, DevUser, free_port
from network.service import Service
from network.settings.model import Settings, parse_settings
from tests.conftest import new_user
from tests.matrixkit import MatrixReader
from tests.publisher import FeedItem, Publisher, rss
from tests.test_delivery_kit import drain

pytestmark = pytest.mark.synapse


def settings_for(
    tmp: Path, homeserver: str, bot: DevUser, feed_url: str, room: str, *, extra: str = ""
) -> Settings:
    text = f"""
[database]
path = "{tmp / "libhub.db"}"
[matrix]
homeserver = "{homeserver}"
user_id = "{bot.user_id}"
password_env = "E2E_BOT_PASSWORD"
[web]
listen = "127.0.0.1:{free_port()}"
[polling]
initial_posts = 10
max_age = "3650d"
[[feeds]]
id = "news"
title = "Network news"
url = "{feed_url}"
rooms = ["{room}"]
{extra}
"""
    return parse_settings(text, base_dir=tmp)


async def test_feed_item_reaches_the_room_once(
    synapse: DevHomeserver,
    admin: DevUser,
    reader: MatrixReader,
    tmp_path: Path,
    bot_env: dict[str, str],
) -> None:
    bot = await new_user(synapse, "bot", admin)
    bot_env["E2E_BOT_PASSWORD"] = bot.password
    room_alias = f"news{bot.user_id[4:].split(':')[0]}"
    room_id = await reader.create_room(room_alias, invite=[bot.user_id])
    pub = await Publisher().start()
    try:
        pub.documents["news.xml"] = rss(
            "Network news",
            [FeedItem("a1", "Hotspot lending expands", summary="<b>Twelve</b> branches join.")],
        )
        settings = settings_for(
            tmp_path, synapse.url, bot, pub.url("news.xml"), f"#{room_alias}:{synapse.server_name}"
        )
        service = await Service.create(settings)
        try:
            await service.matrix.login()
            await service.poller.prepare()
            [first] = await service.poller.poll_due()
            assert (first.status, first.new, first.queued) == ("ok", 1, 1)
            await drain(service)
            msgs = await reader.messages(room_id, sender=bot.user_id)
            assert len(msgs) == 1
            content = msgs[0]["content"]
            assert content["msgtype"] == "m.notice"
            assert "Hotspot lending expands" in content["body"]
            assert content["format"] == "org.matrix.custom.html"
            assert "<b>Twelve</b>" in content["formatted_body"]
            assert content["external_url"] == "http://example.org/a1"

            # A second poll: the server answers 304, nothing new is posted.
            [second] = await service.poller.poll_due(force=True)
            assert second.status in ("not-modified", "unchanged")
            await drain(service)
            assert len(await reader.messages(room_id, sender=bot.user_id)) == 1

            # A new item appears: exactly one more message.
            pub.documents["news.xml"] = rss(
                "Network news",
                [
                    FeedItem("a2", "Webinar: Wi-Fi after hours"),
                    FeedItem(
                        "a1", "Hotspot lending expands", summary="<b>Twelve</b> branches join."
                    ),
                ],
            )
            [third] = await service.poller.poll_due(force=True)
            assert (third.new, third.queued) == (1, 1)
            await drain(service)
            bodies = [
                m["content"]["body"] for m in await reader.messages(room_id, sender=bot.user_id)
            ]
            assert len(bodies) == 2 and "Wi-Fi after hours" in bodies[1]
        finally:
            await service.close()
    finally:
        await pub.close()


async def test_initial_sync_stores_history_without_posting(
    synapse: DevHomeserver,
    admin: DevUser,
    reader: MatrixReader,
    tmp_path: Path,
    bot_env: dict[str, str],
) -> None:
    bot = await new_user(synapse, "bot", admin)
    bot_env["E2E_BOT_PASSWORD"] = bot.password
    room_id = await reader.create_room(invite=[bot.user_id])
    pub = await Publisher().start()
    try:
        pub.documents["f.xml"] = rss("F", [FeedItem(f"g{i}", f"Old item {i}") for i in range(5)])
        settings = settings_for(tmp_path, synapse.url, bot, pub.url("f.xml"), room_id)
        from dataclasses import replace

        settings = replace(settings, polling=replace(settings.polling, initial_posts=0))
        service = await Service.create(settings)
        try:
            await service.matrix.login()
            await service.poller.prepare()
            [outcome] = await service.poller.poll_due()
            assert (outcome.new, outcome.queued) == (5, 0)
            pub.documents["f.xml"] = rss(
                "F",
                [FeedItem("new", "Fresh item")]
                + [FeedItem(f"g{i}", f"Old item {i}") for i in range(5)],
            )
            [outcome] = await service.poller.poll_due(force=True)
            assert (outcome.new, outcome.queued) == (1, 1)
            await drain(service)
            msgs = await reader.messages(room_id, sender=bot.user_id)
            assert [("Fresh item" in m["content"]["body"]) for m in msgs] == [True]
        finally:
            await service.close()
    finally:
        await pub.close()


async def test_homeserver_down_service_keeps_running_and_reports_it(
    tmp_path: Path, bot_env: dict[str, str]
) -> None:
    bot_env["E2E_BOT_PASSWORD"] = "irrelevant"
    dead = f"http://127.0.0.1:{free_port()}"
    fake_bot = DevUser("@bot:localhost", "x", "", "")
    settings = settings_for(tmp_path, dead, fake_bot, "http://127.0.0.1:9/none.xml", "!r:localhost")
    service = await Service.create(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await asyncio.wait_for(service.started.wait(), 10)
        url = f"http://{settings.web.listen}/healthz"
        async with aiohttp.ClientSession() as http:
            for _ in range(50):
                async with http.get(url) as resp:
                    report = await resp.json()
                if report["matrix"]["last_error"]:
                    break
                await asyncio.sleep(0.1)
        assert resp.status == 200
        assert report["database"] is True
        assert report["matrix"]["logged_in"] is False
        assert "cannot reach" in report["matrix"]["last_error"]
        assert not task.done(), "the service must keep running while the homeserver is down"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await service.close()


async def test_a_reused_guid_leaves_the_old_post_alone_and_posts_the_new_item_once(
    synapse: DevHomeserver,
    admin: DevUser,
    reader: MatrixReader,
    tmp_path: Path,
    bot_env: dict[str, str],
) -> None:
    bot = await new_user(synapse, "bot", admin)
    bot_env["E2E_BOT_PASSWORD"] = bot.password
    room_id = await reader.create_room(invite=[bot.user_id])
    old = FeedItem("p-17", "Budget approved", link="http://example.org/budget", summary="Yes.")
    new = FeedItem("p-17", "Branch closes for repairs", link="http://example.org/repairs")
    pub = await Publisher().start()
    try:
        pub.documents["f.xml"] = rss("F", [old])
        service = await Service.create(
            settings_for(tmp_path, synapse.url, bot, pub.url("f.xml"), room_id)
        )
        try:
            await service.matrix.login()
            await service.poller.prepare()
            await service.poller.poll_due()
            await drain(service)
            # The publisher gives the old guid to a new item and lists newest first.
            pub.documents["f.xml"] = rss("F", [new, old])
            await service.poller.poll_due(force=True)
            await drain(service)
            await service.poller.poll_due(force=True)  # and once more: nothing changes
            await drain(service)
            msgs = await reader.messages(room_id, sender=bot.user_id)
            assert not [m for m in msgs if "m.relates_to" in m["content"]], "a post was edited"
            assert [m["content"]["body"].splitlines()[0] for m in msgs] == [
                "News · Network news: Budget approved",
                "News · Network news: Branch closes for repairs",
            ]
            assert [m["content"].get("external_url") for m in msgs] == [
                "http://example.org/budget",
                "http://example.org/repairs",
            ]
        finally:
            await service.close()
    finally:
        await pub.close()
