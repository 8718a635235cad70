"""A message whose room key reaches the bot late: the encrypted event is kept (in the
database, so a restart does not lose it), and once the key arrives the bot answers it,
once. The key is held back for real: while the bot is stopped, the to-device messages
its device was sent are taken off the homeserver queue, and given back later."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from network.storage import Storage
from tests.conftest import new_user
from tests.e2ekit import JsClient
from tests.matrixkit import MatrixReader
from tests.test_bot_support import world
from tests.test_e2e_encrypted import WIFI, plain_from
from tests.waiting import eventually

pytestmark = [pytest.mark.synapse, pytest.mark.slow]

ANSWER = "Wi-Fi access after hours"


class ToDeviceTap:
    """Takes what is queued for one device off the homeserver (a sync from the last token,
    then a sync from the new one, which acknowledges it): the device never gets it."""

    def __init__(self, homeserver: str, token: str) -> None:
        self.homeserver = homeserver
        self.headers = {"Authorization": f"Bearer {token}"}
        self.since = ""

    async def take(self) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession(headers=self.headers) as http:
            events: list[dict[str, Any]] = []
            for _ in range(2):
                url = f"{self.homeserver}/_matrix/client/v3/sync?timeout=0"
                if self.since:
                    url += f"&since={self.since}"
                async with http.get(url) as resp:
                    assert resp.status == 200, await resp.text()
                    answer = await resp.json()
                events.extend((answer.get("to_device") or {}).get("events", []))
                self.since = answer["next_batch"]
        return events


async def give_back(sender: MatrixReader, user_id: str, device_id: str, ev: dict[str, Any]) -> None:
    """Send one taken to-device message again, from its original sender."""
    path = f"/_matrix/client/v3/sendToDevice/{ev['type']}/{uuid.uuid4().hex}"
    await sender.call("PUT", path, {"messages": {user_id: {device_id: ev["content"]}}})


async def test_a_message_sent_before_its_key_arrives_is_answered_once_the_key_comes_even_after_a_restart(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    librarian = await new_user(synapse, "librarian", admin)
    async with (
        world(synapse, admin, tmp_path, bot_env) as w,
        JsClient() as js,
        MatrixReader(synapse.url, librarian) as raw,
    ):
        await js.login(synapse.url, librarian.user_id, librarian.password)
        await js.key_forwarding(False)  # her device does not answer the bot's key request
        service = await w.start()
        bot, device = w.bot.user_id, str(service.matrix.client.device_id)
        token = str(service.matrix.client.access_token)
        dm = await js.create_room(invite=[bot], is_direct=True)
        await js.wait_message(dm, sender=bot, contains="Hello!")

        # The bot is away when she asks; the room key her client sends its device is
        # taken off the queue, so the bot finds the question without its key.
        await w.running.pop().close()
        tap = ToDeviceTap(synapse.url, token)
        await tap.take()
        first_since = tap.since
        question = await js.say(dm, WIFI)
        keys: list[dict[str, Any]] = []

        async def key_taken() -> bool:
            keys.extend(
                ev
                for ev in await tap.take()
                if ev["type"] == "m.room.encrypted" and ev["sender"] == librarian.user_id
            )
            return bool(keys)

        await eventually(key_taken, within=30, every=0.2, what="the room key sent to the bot")
        # The bot resumes from before her question, but past the key. Synapse still handed
        # the taken messages to a sync from an older token (the tap's acknowledgement did
        # not remove them), so the token is spliced: its rooms position from before the
        # question, its to-device position (field 7 of Synapse's token) from after the key.
        rooms_at, to_device_at = first_since.split("_"), tap.since.split("_")
        rooms_at[6] = to_device_at[6]
        storage = await Storage.open(tmp_path / "libhub.db")
        await storage.set_state("matrix.next_batch", "_".join(rooms_at))
        await storage.close()
        service = await w.start()

        async def parked() -> bool:
            kept = await service.storage.undecrypted_events()
            return [e.event_id for e in kept] == [question]

        await eventually(parked, within=30, every=0.1, what="the question kept undecrypted")

        # Still kept after a restart (in the database, not in memory).
        service = await w.restart()
        assert service.matrix.crypto.waiting_for_keys == 1
        assert not [m for m in await js.events(dm) if ANSWER in str(m["content"].get("body"))]

        for ev in keys:
            await give_back(raw, bot, device, ev)
        await js.wait_message(dm, sender=bot, contains=ANSWER)

        # Answered once: a later question is answered, and the first answer is not repeated.
        await js.say(dm, "where would a book kiosk go?")
        await js.wait_message(dm, sender=bot, contains="Book vending")
        answers = [
            m
            for m in await js.events(dm)
            if m["sender"] == bot and ANSWER in str(m["content"].get("body"))
        ]
        assert len(answers) == 1 and answers[0]["encrypted"] is True
        assert await service.storage.undecrypted_events() == []
        assert await plain_from(raw, dm, bot) == []
    storage = await Storage.open(tmp_path / "libhub.db")
    try:
        assert await storage.undecrypted_events() == []
    finally:
        await storage.close()
