"""Bad input around encryption, on a real Synapse: a room key request from a stranger is
refused; a device carrying a forged cross-signing signature never gets room keys, while
``share_keys_with = "all"`` does share with a plainly unsigned one; a corrupted crypto
store is a clear error and the service keeps working in plain rooms, posting nothing
plain into encrypted ones. The peer devices here are matrix-nio clients the test drives
(its own crypto, not libhub's) and the js-sdk client."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import nio
import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from network.errors import MatrixEncryptionUnavailable
from network.matrix.keys import only_key, unpadded_b64
from network.service import Service
from tests.conftest import new_user
from tests.e2ekit import JsClient
from tests.matrixkit import MatrixReader
from tests.test_bot_support import start, world
from tests.test_e2e_encrypted import plain_from
from tests.waiting import eventually

pytestmark = [pytest.mark.synapse, pytest.mark.slow]

KeyFilter = Callable[[dict[str, Any]], dict[str, Any]]


@asynccontextmanager
async def nio_device(
    homeserver: str, user: DevUser, store: Path, tamper: KeyFilter | None = None
) -> AsyncIterator[nio.AsyncClient]:
    """A device of ``user`` with matrix-nio's own crypto; ``tamper`` rewrites the device
    keys it publishes."""
    await asyncio.to_thread(store.mkdir, parents=True)
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    client = nio.AsyncClient(homeserver, user.user_id, store_path=str(store), config=config)
    try:
        login = await client.login(user.password, device_name="nio test device")
        assert isinstance(login, nio.LoginResponse), login
        olm = client.olm
        assert olm is not None
        if tamper is not None:
            share = olm.share_keys

            def tampered() -> dict[str, Any]:
                keys: dict[str, Any] = share()
                if "device_keys" in keys:
                    keys["device_keys"] = tamper(keys["device_keys"])
                return keys

            olm.share_keys = tampered  # type: ignore[method-assign]
        uploaded = await client.keys_upload()
        assert isinstance(uploaded, nio.KeysUploadResponse), uploaded
        yield client
    finally:
        await client.close()


async def synced(client: nio.AsyncClient) -> list[Any]:
    """One sync; the to-device events it brought."""
    resp = await client.sync(timeout=0, full_state=client.next_batch is None)
    assert isinstance(resp, nio.SyncResponse), resp
    return list(resp.to_device_events)


def has_key(client: nio.AsyncClient, room: str, event: dict[str, Any]) -> bool:
    """Whether ``client`` holds the room key of ``event`` (an m.room.encrypted event)."""
    assert client.olm is not None
    content = event["content"]
    found = client.olm.inbound_group_store.get(room, content["sender_key"], content["session_id"])
    return found is not None


async def raw_event(raw: MatrixReader, room: str, event_id: str) -> dict[str, Any]:
    [event] = [e for e in await raw.events(room) if e["event_id"] == event_id]
    assert event["type"] == "m.room.encrypted"
    return event


async def test_a_room_key_request_from_a_stranger_is_refused(
    synapse: DevHomeserver,
    admin: DevUser,
    tmp_path: Path,
    bot_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    librarian = await new_user(synapse, "librarian", admin)
    stranger = await new_user(synapse, "stranger", admin)
    async with (
        world(synapse, admin, tmp_path, bot_env) as w,
        JsClient() as js,
        MatrixReader(synapse.url, librarian) as raw,
        nio_device(synapse.url, stranger, tmp_path / "stranger") as eve,
    ):
        await js.login(synapse.url, librarian.user_id, librarian.password)
        service = await w.start()
        bot, device = w.bot.user_id, str(service.matrix.client.device_id)
        room = await js.create_room(invite=[bot])
        await service.matrix.join(room)
        secret = {"msgtype": "m.notice", "body": "secret"}
        sent = await service.matrix.send(room, secret, txn_id="t1")
        await js.wait_message(room, sender=bot, contains="secret")
        event = await raw_event(raw, room, sent.event_id)
        await synced(eve)

        body = {
            "algorithm": "m.megolm.v1.aes-sha2",
            "room_id": room,
            "sender_key": event["content"]["sender_key"],
            "session_id": event["content"]["session_id"],
        }
        request = {
            "action": "request",
            "body": body,
            "request_id": uuid.uuid4().hex,
            "requesting_device_id": eve.device_id,
        }
        with caplog.at_level(logging.WARNING, logger="network.matrix.crypto"):
            sent = await eve.to_device(
                nio.ToDeviceMessage("m.room_key_request", bot, device, request)
            )
            assert isinstance(sent, nio.ToDeviceResponse), sent
            await eventually(
                lambda: f"refused a room key request from {stranger.user_id}" in caplog.text,
                within=30,
                what="the request refused",
            )
        # One more whole sync of the bot: anything it would send has been sent by then.
        seen = service.matrix.last_sync_ok
        await eventually(lambda: service.matrix.last_sync_ok != seen, within=30)
        assert service.matrix.client.olm is not None
        assert service.matrix.client.olm.key_request_from_untrusted == {}
        arrived = await synced(eve)
        assert not [e for e in arrived if isinstance(e, nio.ForwardedRoomKeyEvent)]
        assert not has_key(eve, room, event)


async def test_a_forged_device_gets_no_keys_and_share_with_all_reaches_an_unsigned_one(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    librarian = await new_user(synapse, "librarian", admin)
    async with (
        world(synapse, admin, tmp_path, bot_env) as w,
        JsClient() as js,
        MatrixReader(synapse.url, librarian) as raw,
    ):
        await js.login(synapse.url, librarian.user_id, librarian.password)  # cross-signed
        keys = await raw.call(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {librarian.user_id: []}}
        )
        ssk = only_key(keys["self_signing_keys"][librarian.user_id])
        assert ssk is not None

        def forge(device_keys: dict[str, Any]) -> dict[str, Any]:
            """Claim a signature of her self-signing key that is not one."""
            sigs = device_keys["signatures"][librarian.user_id]
            sigs[f"ed25519:{ssk}"] = unpadded_b64(bytes(64))
            return device_keys

        async with (
            nio_device(synapse.url, librarian, tmp_path / "forged", forge) as forged,
            nio_device(synapse.url, librarian, tmp_path / "unsigned") as unsigned,
        ):
            service = await w.start()
            bot = w.bot.user_id
            rooms = []
            for policy in ("cross-signed", "all"):
                if policy == "all":
                    await w.running.pop().close()
                    settings = w.settings()
                    matrix = replace(settings.matrix, share_keys_with="all")
                    run = await start(replace(settings, matrix=matrix))
                    w.running.append(run)
                    service = run.service
                room = await js.create_room(invite=[bot])
                rooms.append(room)
                await service.matrix.join(room)
                content = {"msgtype": "m.notice", "body": f"for {policy}"}
                sent = await service.matrix.send(room, content, txn_id=f"t-{policy}")
                seen = await js.wait_message(room, sender=bot, contains=f"for {policy}")
                assert seen["decryption_failure"] is None
                event = await raw_event(raw, room, sent.event_id)
                for device in (forged, unsigned):
                    await synced(device)
                assert not has_key(forged, room, event), policy
                assert has_key(unsigned, room, event) == (policy == "all"), policy
            for room in rooms:
                assert await plain_from(raw, room, bot) == []


async def test_a_corrupted_crypto_store_is_a_clear_error_and_plain_rooms_keep_working(
    synapse: DevHomeserver,
    admin: DevUser,
    tmp_path: Path,
    bot_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    librarian = await new_user(synapse, "librarian", admin)
    async with (
        world(synapse, admin, tmp_path, bot_env) as w,
        JsClient() as js,
        MatrixReader(synapse.url, librarian) as raw,
    ):
        await js.login(synapse.url, librarian.user_id, librarian.password)
        await w.start()
        bot = w.bot.user_id
        await w.running.pop().close()
        stores = [f for f in (tmp_path / "crypto").iterdir() if f.name.endswith(".db")]
        assert stores
        for f in stores:
            f.write_bytes(b"this is not a database " * 100)

        with caplog.at_level(logging.ERROR, logger="network.matrix.crypto"):
            service: Service = await w.start()
        error = service.matrix.crypto.error or ""
        assert "cannot be opened" in error and "libhub matrix new-device" in error, error
        assert "encrypted rooms are on hold" in caplog.text

        # Plain rooms work: a question in a plain direct chat is answered.
        plain = await raw.call(
            "POST",
            "/_matrix/client/v3/createRoom",
            {"preset": "trusted_private_chat", "is_direct": True, "invite": [bot]},
        )
        dm = str(plain["room_id"])
        await raw.wait_for(
            dm, lambda ms: any("Hello!" in str(m["content"]) for m in ms), sender=bot
        )
        await raw.say(dm, "how do we keep Wi-Fi on after closing?")
        await raw.wait_for(
            dm,
            lambda ms: any("Wi-Fi access after hours" in str(m["content"]) for m in ms),
            sender=bot,
        )

        # An encrypted room gets nothing in plain text, and the service keeps running.
        room = await js.create_room(invite=[bot])
        await service.matrix.join(room)
        with pytest.raises(MatrixEncryptionUnavailable):
            await service.matrix.send(room, {"msgtype": "m.notice", "body": "hi"}, txn_id="t1")
        await js.say(room, "anyone there?")
        seen = service.matrix.last_sync_ok
        await eventually(lambda: service.matrix.last_sync_ok != seen, within=30)
        running = w.running[-1]
        assert not running.task.done()
        assert [
            e
            for e in await raw.events(room)
            if e.get("sender") == bot and e["type"] in ("m.room.message", "m.room.encrypted")
        ] == []
