"""Encrypted rooms against an independent client with real crypto and Element's 2026
defaults (matrix-js-sdk, Rust crypto, own cross-signing, exclude insecure devices): the
librarian's questions in an encrypted direct chat are answered and her client decrypts the
answers; the bot's device is cross-signed; nothing the bot posts there is plain text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from network.errors import MatrixEncryptionUnavailable
from network.storage import Storage
from tests.conftest import new_user
from tests.e2ekit import JsClient
from tests.matrixkit import MatrixReader
from tests.publisher import FeedItem, Publisher, rss
from tests.test_bot_support import world

pytestmark = [pytest.mark.synapse, pytest.mark.slow]

WIFI = "how do we keep Wi-Fi on after closing?"


async def plain_from(reader: MatrixReader, room: str, sender: str) -> list[dict[str, Any]]:
    """The bot's events in the raw timeline that are not encrypted."""
    return [
        e
        for e in await reader.events(room)
        if e.get("sender") == sender and e.get("type") == "m.room.message"
    ]


async def test_librarian_gets_decrypted_answers_from_a_cross_signed_bot(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    async with world(synapse, admin, tmp_path, bot_env) as w:
        service = await w.start()
        bot = w.bot.user_id
        librarian = await new_user(synapse, "librarian", admin)
        async with JsClient() as js, MatrixReader(synapse.url, librarian) as raw:
            await js.login(synapse.url, librarian.user_id, librarian.password)
            dm = await js.create_room(invite=[bot], is_direct=True)
            greeting = await js.wait_message(dm, sender=bot, contains="Hello!")
            assert greeting["encrypted"] is True
            status = await js.device_status(bot, str(service.matrix.client.device_id))
            assert status.get("signedByOwner") is True, (
                status,
                service.matrix.crypto.error,
                service.matrix.cross_signing.problem,
            )

            await js.say(dm, WIFI)
            answer = await js.wait_message(dm, sender=bot, contains="Wi-Fi access after hours")
            assert answer["encrypted"] is True and answer["decryption_failure"] is None

            assert await plain_from(raw, dm, bot) == []
            wire = [e for e in await raw.events(dm) if e.get("sender") == bot]
            assert {e["type"] for e in wire} >= {"m.room.encrypted"}


async def test_feed_items_in_an_encrypted_room_reach_the_librarian_encrypted(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    librarian = await new_user(synapse, "librarian", admin)
    pub = await Publisher().start()
    try:
        pub.documents["news.xml"] = rss(
            "Cohort news",
            [FeedItem(f"n{i}", f"Makerspace update {i}") for i in range(3)],
        )
        async with world(synapse, admin, tmp_path, bot_env) as w, JsClient() as js:
            await js.login(synapse.url, librarian.user_id, librarian.password)
            bot = w.bot.user_id
            room = await js.create_room(invite=[bot])
            extra = (
                f'[[feeds]]\nid = "cohort"\ntitle = "Cohort news"\n'
                f'url = "{pub.url("news.xml")}"\nrooms = ["{room}"]\n'
                '[polling]\ninitial_posts = 10\nmax_age = "3650d"\n'
            )
            service = await w.start(extra=extra)
            await service.poller.poll_due(force=True)
            for i in range(3):
                ev = await js.wait_message(room, sender=bot, contains=f"Makerspace update {i}")
                assert ev["encrypted"] is True and ev["decryption_failure"] is None
            async with MatrixReader(synapse.url, librarian) as raw:
                assert await plain_from(raw, room, bot) == []
            rows = await service.storage.outbox_counts()
            assert rows.get("sent") == 3, rows
    finally:
        await pub.close()


async def test_restart_keeps_the_device_and_its_sessions_and_a_new_device_is_signed_from_secret_storage(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    librarian = await new_user(synapse, "librarian", admin)
    async with world(synapse, admin, tmp_path, bot_env) as w, JsClient() as js:
        await js.login(synapse.url, librarian.user_id, librarian.password)
        service = await w.start()
        bot, device = w.bot.user_id, str(service.matrix.client.device_id)
        store = tmp_path / "crypto"
        assert store.stat().st_mode & 0o777 == 0o700
        assert all(f.stat().st_mode & 0o077 == 0 for f in store.iterdir())
        key_file = store / "recovery-key.txt"
        recovery_key = key_file.read_text().strip()
        assert len(recovery_key.replace(" ", "")) == 48

        dm = await js.create_room(invite=[bot], is_direct=True)
        await js.wait_message(dm, sender=bot, contains="Hello!")
        await js.say(dm, WIFI)
        await js.wait_message(dm, sender=bot, contains="Wi-Fi access after hours")

        # Restart with the store kept: same device, and the librarian's session (which her
        # client keeps using) still decrypts on the bot's side.
        service = await w.restart()
        assert service.matrix.client.device_id == device
        await js.say(dm, "where would a book kiosk go?")
        await js.wait_message(dm, sender=bot, contains="Book vending")

        # A new device (the store lost and the session forgotten): signed with the
        # self-signing key from secret storage, unlocked by the recovery key from the
        # environment (the file is gone).
        await w.running.pop().close()
        key_file.unlink()
        bot_env["LIBHUB_RECOVERY_KEY"] = recovery_key
        storage = await Storage.open(tmp_path / "libhub.db")
        await storage.set_state("matrix.token", "")
        await storage.set_state("matrix.device_id", "")
        await storage.close()
        service = await w.start()
        new_device = str(service.matrix.client.device_id)
        assert new_device != device
        assert service.matrix.cross_signing.problem is None
        status = await js.device_status(bot, new_device)
        assert status.get("signedByOwner") is True, status
        await js.say(dm, WIFI)
        await js.wait_message(dm, sender=bot, contains="Wi-Fi access after hours")


async def test_a_lost_crypto_store_holds_encrypted_sends_and_says_how_to_recover(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    librarian = await new_user(synapse, "librarian", admin)
    async with world(synapse, admin, tmp_path, bot_env) as w, JsClient() as js:
        await js.login(synapse.url, librarian.user_id, librarian.password)
        service = await w.start()
        bot = w.bot.user_id
        await w.running.pop().close()
        for f in (tmp_path / "crypto").iterdir():
            if f.name.endswith(".db"):
                f.unlink()
        service = await w.start()
        error = service.matrix.crypto.error or ""
        assert "does not hold the keys of device" in error
        assert "libhub matrix new-device" in error
        room = await js.create_room(invite=[bot])
        await service.matrix.join(room)
        with pytest.raises(MatrixEncryptionUnavailable):
            await service.matrix.send(room, {"msgtype": "m.notice", "body": "hi"}, txn_id="t1")
        async with MatrixReader(synapse.url, librarian) as raw:
            assert [
                e
                for e in await raw.events(room)
                if e.get("sender") == bot and e["type"] in ("m.room.message", "m.room.encrypted")
            ] == []


async def test_a_message_that_never_decrypts_is_reported_to_its_sender_once(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    librarian = await new_user(synapse, "librarian", admin)
    async with world(synapse, admin, tmp_path, bot_env) as w, JsClient() as js:
        await js.login(synapse.url, librarian.user_id, librarian.password)
        service = await w.start()
        service.matrix.crypto.late_key_notice = 0.0  # tell at the next sync
        bot = w.bot.user_id
        dm = await js.create_room(invite=[bot], is_direct=True)
        await js.wait_message(dm, sender=bot, contains="Hello!")
        bogus = {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": "AwgAEhCg",
            "sender_key": "k" * 43,
            "session_id": "s" * 43,
            "device_id": "NOSUCHDEVICE",
        }
        async with MatrixReader(synapse.url, librarian) as raw:
            for _ in range(2):
                await raw.send(dm, bogus, "m.room.encrypted")
            await js.wait_message(dm, sender=bot, contains="did not reach me")
            # The bot keeps working, and a question after them is answered.
            await js.say(dm, WIFI)
            await js.wait_message(dm, sender=bot, contains="Wi-Fi access after hours")
            notices = [
                e
                for e in await js.events(dm)
                if e["sender"] == bot and "did not reach me" in str(e["content"].get("body"))
            ]
            assert len(notices) == 1
            assert await plain_from(raw, dm, bot) == []
