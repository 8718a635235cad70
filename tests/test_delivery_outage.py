"""Delivery against a homeserver that pushes back, on a Synapse of this module's own (the
session's server is never stopped or limited): a low message rate limit, then a 30-second
outage in the middle of delivery. Everything arrives; nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from tests.conftest import new_user
from tests.matrixkit import MatrixReader
from tests.publisher import FeedItem, Publisher, rss
from tests.test_delivery_kit import BOT_ENV, by_url, drain, settings_for, started
from tests.waiting import eventually

pytestmark = [pytest.mark.synapse, pytest.mark.slow]


@pytest.fixture(scope="module")
async def limited(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevHomeserver]:
    """Synapse allowing 5 messages a second (burst 3) to every account not exempted."""
    server = DevHomeserver(
        tmp_path_factory.mktemp("limited") / "synapse",
        rate_limited=True,
        message_rate=5,
        message_burst=3,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="module")
async def limited_admin(limited: DevHomeserver) -> DevUser:
    return await limited.register("admin", "admin-password", admin=True)


@pytest.fixture
async def publisher() -> AsyncIterator[Publisher]:
    pub = await Publisher().start()
    try:
        yield pub
    finally:
        await pub.close()


async def test_low_rate_limit_everything_arrives_once(
    limited: DevHomeserver,
    limited_admin: DevUser,
    publisher: Publisher,
    tmp_path: Path,
    bot_env: dict[str, str],
) -> None:
    bot = await new_user(limited, "slowbot")  # keeps the server's limit
    bot_env[BOT_ENV] = bot.password
    async with MatrixReader(limited.url, await new_user(limited, "r", limited_admin)) as reader:
        rooms = [await reader.create_room() for _ in range(2)]
        publisher.documents["f.xml"] = rss(
            "F", [FeedItem(f"r{i}", f"Rate item {i}") for i in range(15)]
        )
        settings = settings_for(
            tmp_path,
            limited.url,
            bot,
            publisher.url("f.xml"),
            rooms,
            delivery="group_threshold = 100",
        )
        service = await started(settings)
        try:
            await service.poller.poll_due()
            await drain(service)
            waits = service.delivery.rate_limit_waits
            counts = await service.storage.outbox_counts()
        finally:
            await service.close()
        assert waits > 0, "the homeserver never limited the bot: the test proves nothing"
        assert counts == {"pending": 0, "sent": 30, "failed": 0, "skipped": 0}
        expected = {f"http://example.org/r{i}" for i in range(15)}
        for room in rooms:
            posted = by_url(await reader.messages(room, sender=bot.user_id))
            assert set(posted) == expected and set(posted.values()) == {1}, posted


async def test_homeserver_down_for_30_seconds_everything_arrives_once(
    limited: DevHomeserver,
    limited_admin: DevUser,
    publisher: Publisher,
    tmp_path: Path,
    bot_env: dict[str, str],
) -> None:
    bot = await new_user(limited, "outagebot", limited_admin)
    bot_env[BOT_ENV] = bot.password
    total = 40
    async with MatrixReader(limited.url, await new_user(limited, "r", limited_admin)) as reader:
        rooms = [await reader.create_room() for _ in range(2)]
        publisher.documents["f.xml"] = rss(
            "F", [FeedItem(f"o{i:02d}", f"Outage item {i}") for i in range(total)]
        )
        settings = settings_for(
            tmp_path,
            limited.url,
            bot,
            publisher.url("f.xml"),
            rooms,
            delivery="group_threshold = 100\nroom_pace = 0.1",
        )
        service = await started(settings)
        delivery = service.delivery
        delivery.policy = replace(delivery.policy, base_backoff=0.5, max_backoff=3.0)
        stop = asyncio.Event()
        try:
            await service.poller.poll_due()
            task = asyncio.create_task(delivery.run(stop))

            async def a_third() -> bool:
                n = [len(await reader.messages(r, sender=bot.user_id)) for r in rooms]
                return sum(n) >= 2 * total // 3

            await eventually(a_third, within=60, every=0.1, what="a third of the messages")
            await limited.stop()
            await asyncio.sleep(1)  # a send answered just before the stop is counted by now
            sent_before = delivery.sent["matrix"]
            await asyncio.sleep(30)
            assert delivery.sent["matrix"] == sent_before  # nothing got through meanwhile
            assert (await service.storage.outbox_counts())["pending"] > 0
            await limited.start()

            async def empty() -> bool:
                return (await service.storage.outbox_counts())["pending"] == 0

            await eventually(empty, within=60, what="the outbox to empty")
            stop.set()
            await asyncio.wait_for(task, 10)
            counts = await service.storage.outbox_counts()
        finally:
            stop.set()
            await service.close()
            if not limited.running:
                await limited.start()
        assert counts == {"pending": 0, "sent": 2 * total, "failed": 0, "skipped": 0}
        expected = {f"http://example.org/o{i:02d}" for i in range(total)}
        for room in rooms:
            posted = by_url(await reader.messages(room, sender=bot.user_id))
            assert set(posted) == expected, f"{len(posted)} of {total} items in {room}"
            assert set(posted.values()) == {1}, {u: n for u, n in posted.items() if n > 1}
