"""Two libhub instances on one PostgreSQL and a real Synapse: the leader is SIGKILLed while
300 items go into 3 rooms and started again later; every item reaches every room exactly
once, in the outbox's order."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from tests.conftest import new_user
from tests.instancekit import leader_pid, logs, make_instances, on_postgres
from tests.matrixkit import MatrixReader
from tests.pgkit import PgServer
from tests.publisher import FeedItem, Publisher, rss
from tests.test_delivery_kit import BOT_ENV, by_url, config_text
from tests.waiting import eventually

pytestmark = [pytest.mark.synapse, pytest.mark.slow]

ITEMS = 300


async def _outbox_order(url: str) -> dict[str, list[str]]:
    """Each room's item links in the order the outbox queued them."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT o.target, i.link FROM outbox o JOIN items i ON i.id = o.item_id "
            "WHERE o.action = 'post' ORDER BY o.id"
        )
    finally:
        await conn.close()
    order: dict[str, list[str]] = {}
    for r in rows:
        order.setdefault(str(r["target"]), []).append(str(r["link"]))
    return order


async def _sent(url: str, room: str) -> str:
    """When each row of ``room`` was sent, in sending order (for a failure message)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT o.id, i.link, o.attempts, o.sent_at FROM outbox o JOIN items i "
            "ON i.id = o.item_id WHERE o.target = $1 ORDER BY o.sent_at, o.id",
            room,
        )
    finally:
        await conn.close()
    return "\n".join(" ".join(str(v) for v in r.values()) for r in rows)


async def test_leader_sigkilled_mid_delivery_each_item_once_in_order(
    synapse: DevHomeserver,
    admin: DevUser,
    reader: MatrixReader,
    postgres: PgServer,
    tmp_path: Path,
) -> None:
    bot = await new_user(synapse, "twobot", admin)
    rooms = [await reader.create_room(name=f"two instances {i}") for i in range(3)]
    pub = await Publisher().start()
    pub.documents["f.xml"] = rss(
        "F", [FeedItem(f"k{i:03d}", f"Two instances item {i}") for i in range(ITEMS)]
    )
    url = await postgres.new_database()
    text = config_text(
        tmp_path,
        synapse.url,
        bot,
        pub.url("f.xml"),
        rooms,
        initial_posts=ITEMS,
        # Individual messages, a little paced so the kill lands in the middle.
        delivery="group_threshold = 1000\nroom_pace = 0.03",
    )
    instances = make_instances(
        tmp_path, "libhub", on_postgres(text, url), 2, {BOT_ENV: bot.password}
    )

    async def arrived() -> list[int]:
        return [len(await reader.messages(r, sender=bot.user_id)) for r in rooms]

    first, second = instances
    try:
        async with aiohttp.ClientSession() as http:
            await first.start()
            await eventually(
                lambda: leader_pid(http, [first]), within=60, what="the first instance to lead"
            )
            await second.start()

            async def a_third() -> bool:
                return sum(await arrived()) >= ITEMS

            await eventually(a_third, within=120, every=0.1, what="a third of the messages")
            lead = await leader_pid(http, instances)
            leader = next(i for i in instances if i.pid == lead)
            await leader.kill()
            killed = time.monotonic()
            at_kill = sum(await arrived())
            print(f"leader {leader.name} SIGKILLed with {at_kill} of {ITEMS * 3} posted")
            assert at_kill < ITEMS * 3, "the kill came too late to prove anything"
            survivor = next(i for i in instances if i is not leader)

            async def took_over() -> bool:
                return await leader_pid(http, [survivor]) == survivor.pid

            await eventually(took_over, within=60, what="the other instance to lead")
            print(f"{survivor.name} leads {time.monotonic() - killed:.1f} s after the kill")
            await leader.start()  # restarted later: it joins as a follower

            async def done() -> bool:
                report = await survivor.report(http)
                outbox = (report or {}).get("outbox", {})
                return bool(outbox.get("pending") == 0 and outbox.get("sent"))

            await eventually(done, within=240, every=0.25, what="the outbox to empty")
            print(f"outbox empty {time.monotonic() - killed:.1f} s after the kill")
    finally:
        for inst in instances:
            await inst.stop()
        await pub.close()
    queued = await _outbox_order(url)
    for room in rooms:
        messages = await reader.messages(room, sender=bot.user_id)
        counts = by_url(messages)
        assert len(counts) == ITEMS, f"room {room}: {len(counts)} distinct items\n{logs(instances)}"
        twice = {link: n for link, n in counts.items() if n != 1}
        assert not twice, f"room {room} has duplicates: {twice}\n{logs(instances)}"
        shown = [
            str(m["content"]["external_url"])
            for m in messages
            if "m.relates_to" not in m["content"] and "external_url" in m["content"]
        ]
        if shown != queued[room]:
            at = next(i for i, (a, b) in enumerate(zip(shown, queued[room], strict=True)) if a != b)
            raise AssertionError(
                f"room {room} is out of order from {at}: shown {shown[at - 2 : at + 8]}, "
                f"queued {queued[room][at - 2 : at + 8]}\n{await _sent(url, room)}"
            )
