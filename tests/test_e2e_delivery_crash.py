"""Crash safety in encrypted rooms: the service (``libhub run``, a real process) is killed
with SIGKILL while posting into rooms a librarian made encrypted, and started again with
its crypto store. In the end her client (matrix-js-sdk, Rust crypto) decrypts every item,
each exactly once, and the bot's store, kept through the kill, still decrypts what she
wrote before it."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import nio
import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from network.settings.model import load_settings
from network.storage import Storage
from tests.conftest import new_user
from tests.e2ekit import JsClient
from tests.matrixkit import MatrixReader
from tests.publisher import FeedItem, Publisher, rss
from tests.test_delivery_crash import _start
from tests.test_delivery_kit import BOT_ENV, config_text
from tests.waiting import eventually

pytestmark = [pytest.mark.synapse, pytest.mark.slow]

ITEMS = 90
ROOMS = 2
MESSAGES = ("m.room.message", "m.room.encrypted")


def bot_events(events: list[dict[str, Any]], bot: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("sender") == bot and e["type"] in MESSAGES]


async def decrypt_with_store(store: Path, homeserver: str, bot: str, device: str, ev: Any) -> Any:
    """Open the bot's crypto store as a new process would and decrypt one event."""
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    client = nio.AsyncClient(
        homeserver, bot, device_id=device, store_path=str(store), config=config
    )
    client.user_id, client.device_id = bot, device
    try:
        client.load_store()
        return client.decrypt_event(ev)
    finally:
        await client.close()


async def test_sigkill_mid_delivery_into_encrypted_rooms_each_item_once_and_decryptable(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path
) -> None:
    bot = await new_user(synapse, "crashbot", admin)
    librarian = await new_user(synapse, "librarian", admin)
    pub = await Publisher().start()
    pub.documents["f.xml"] = rss(
        "F", [FeedItem(f"k{i:03d}", f"Encrypted crash item {i}") for i in range(ITEMS)]
    )
    async with JsClient() as js, MatrixReader(synapse.url, librarian) as raw:
        await js.login(synapse.url, librarian.user_id, librarian.password)
        rooms = [await js.create_room(invite=[bot.user_id]) for _ in range(ROOMS)]
        text = config_text(
            tmp_path,
            synapse.url,
            bot,
            pub.url("f.xml"),
            rooms,
            initial_posts=ITEMS,
            delivery="group_threshold = 1000\nroom_pace = 0.05",
        )
        config = tmp_path / "libhub.toml"
        config.write_text(text)
        health = f"http://{load_settings(config).web.listen}/healthz"
        env = {**os.environ, BOT_ENV: bot.password}
        log = tmp_path / "service.log"

        async def arrived() -> int:
            return sum([len(bot_events(await raw.events(r), bot.user_id)) for r in rooms])

        async def a_third() -> bool:
            return await arrived() >= ITEMS * ROOMS // 3

        proc = await _start(config, log, env)
        try:
            await eventually(a_third, within=120, every=0.1, what="a third of the items")
            # She writes while the bot is posting: the bot's store gets her room key.
            before = await js.say(rooms[0], "written before the crash")
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            at_kill = await arrived()
            assert at_kill < ITEMS * ROOMS, "the kill came too late to prove anything"
            storage = await Storage.open(tmp_path / "libhub.db")
            try:
                assert (await storage.outbox_counts())["pending"] > 0
            finally:
                await storage.close()

            proc = await _start(config, log, env)
            async with aiohttp.ClientSession() as http:

                async def done() -> bool:
                    try:
                        async with http.get(health) as resp:
                            report = await resp.json()
                    except aiohttp.ClientError:
                        return False
                    outbox = report["outbox"]
                    return bool(outbox["pending"] == 0 and outbox["sent"] > 0)

                await eventually(done, within=180, every=0.25, what="the outbox to empty")
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await pub.close()

        expected = {f"http://example.org/k{i:03d}" for i in range(ITEMS)}
        tail = log.read_text()[-3000:]
        for room in rooms:
            wire = bot_events(await raw.events(room), bot.user_id)
            assert [e for e in wire if e["type"] == "m.room.message"] == [], "plain text sent"
            seen = await js.decrypt(room, wire)
            failures = [e for e in seen if e["decryption_failure"]]
            assert not failures, f"{room}: {len(failures)} do not decrypt: {failures[:3]}\n{tail}"
            counts = Counter(
                str(e["content"]["external_url"])
                for e in seen
                if "external_url" in e["content"] and "m.relates_to" not in e["content"]
            )
            assert set(counts) == expected, f"{room}: {len(counts)} distinct items\n{tail}"
            twice = {url: n for url, n in counts.items() if n != 1}
            assert not twice, f"{room} has duplicates: {twice}\n{tail}"

    # The store kept through the kill still decrypts what she wrote before it.
    storage = await Storage.open(tmp_path / "libhub.db")
    try:
        device = await storage.get_state("matrix.device_id")
    finally:
        await storage.close()
    assert device
    async with MatrixReader(synapse.url, librarian) as raw:
        [event] = [e for e in await raw.events(rooms[0]) if e["event_id"] == before]
    megolm = nio.MegolmEvent.from_dict({**event, "room_id": rooms[0]})
    megolm.room_id = rooms[0]
    clear = await decrypt_with_store(tmp_path / "crypto", synapse.url, bot.user_id, device, megolm)
    assert getattr(clear, "body", None) == "written before the crash"
