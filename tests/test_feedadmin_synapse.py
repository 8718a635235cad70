"""!feed in a real room on a real Synapse: a member with power level 50 adds a feed served
by a local HTTP server (its current items are not posted, the next new one is); a member
with power level 0 is refused; a catastrophic filter is refused; removal stops posting."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from network.service import Service
from tests.matrixkit import MatrixReader
from tests.publisher import FeedItem, Publisher, rss
from tests.test_bot_support import body, containing, joined, replies_to, reply_to, world
from tests.test_delivery_kit import drain
from tests.waiting import eventually

pytestmark = pytest.mark.synapse

OLD = [FeedItem(f"old{i}", f"Old story {i}") for i in range(3)]


async def _room(owner: MatrixReader, moderator: str, others: list[str]) -> str:
    data = await owner.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        {
            "preset": "public_chat",
            "name": "Riverside cohort",
            "invite": [moderator, *others],
            "power_level_content_override": {"users": {moderator: 50}},
        },
    )
    return str(data["room_id"])


async def _ask(person: MatrixReader, room: str, text: str, bot: str) -> dict[str, Any]:
    eid = await person.say(room, text)
    msgs = await person.wait_for(room, replies_to(eid), sender=bot, within=60)
    return reply_to(msgs, eid)


async def test_feed_managed_from_the_room(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    pub = await Publisher().start()
    pub.documents["news.xml"] = rss("Riverside news", OLD)
    try:
        async with world(synapse, admin, tmp_path, bot_env) as w:
            service: Service = await w.start(extra="[feeds_admin]\nallow_private = true\n")
            bot = w.bot.user_id
            room = await _room(w.team, w.asker.user_id, [bot, w.outsider.user_id])
            await w.asker.join(room)
            await w.outsider.join(room)

            async def bot_joined() -> bool:
                return await joined(w.team, room, bot)

            await eventually(bot_joined, within=60, what="the bot joins the room")
            url = pub.url("news.xml")

            # Power level 0: refused, nothing stored.
            refused = await _ask(w.outsider, room, f"!feed add {url}", bot)
            assert "needs power level 50" in body(refused) and "you have 0" in body(refused)
            assert await service.storage.live_feeds() == []

            # Power level 50: added; the answer shows the current items, none is posted.
            added = await _ask(w.asker, room, f"!feed add {url} news Riverside news", bot)
            text = body(added)
            assert "Added feed 127-0-0-1" in text, text
            assert "3 current item(s) are marked as seen" in text
            assert "Old story 0" in text
            [live] = await service.storage.live_feeds()
            assert live.rooms == (room,) and live.added_by == w.asker.user_id
            await drain(service)
            posted = [m for m in await w.team.messages(room, sender=bot) if m not in [added]]
            assert not [m for m in posted if body(m).startswith("Old story")]

            # The next new item arrives in the room.
            pub.documents["news.xml"] = rss(
                "Riverside news", [FeedItem("new1", "Hotspots at every branch"), *OLD]
            )
            await service.poller.poll_due(force=True)
            await drain(service)
            await w.team.wait_for(room, containing("Hotspots at every branch"), sender=bot)

            # A catastrophic pattern is refused at once; nothing is stored.
            started = time.perf_counter()
            bad = await _ask(w.asker, room, "!feed filter 127-0-0-1 keep (a+)+$", bot)
            assert "repeat inside a repeat" in body(bad)
            assert (await service.storage.live_feeds())[0].filters == ()
            print(f"catastrophic filter refused in {time.perf_counter() - started:.2f}s round trip")

            listed = await _ask(w.outsider, room, "!feed list", bot)
            assert "127-0-0-1: Riverside news (news, live)" in body(listed)

            # Removal stops posting.
            gone = await _ask(w.asker, room, "!feed remove 127-0-0-1", bot)
            assert "Removed feed 127-0-0-1" in body(gone)
            pub.documents["news.xml"] = rss(
                "Riverside news",
                [FeedItem("new2", "Never posted"), FeedItem("new1", "Hotspots at every branch")],
            )
            hits = pub.hits.get("news.xml", 0)
            await service.poller.poll_due(force=True)
            await drain(service)
            assert pub.hits.get("news.xml", 0) == hits  # not even fetched
            assert not [
                m for m in await w.team.messages(room, sender=bot) if "Never posted" in body(m)
            ]
            log = await service.storage.audit_entries()
            assert [(e.action, e.actor) for e in reversed(log)] == [
                ("feed.add", w.asker.user_id),
                ("feed.remove", w.asker.user_id),
            ]
    finally:
        await pub.close()
