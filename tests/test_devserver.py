"""The development homeserver: a real Synapse that users, rooms and rate limits behave on."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import aiohttp
import pytest
from nio import (
    AsyncClient,
    JoinResponse,
    LoginResponse,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

from network.devtools.devserver import DevHomeserver, DevServerError, DevUser, registration_mac


def _client(hs: DevHomeserver, user: DevUser) -> AsyncClient:
    client = AsyncClient(hs.url)
    client.restore_login(user.user_id, user.device_id, user.access_token)
    return client


async def _texts(client: AsyncClient, room_id: str) -> list[str]:
    sync = await client.sync(timeout=0)
    assert isinstance(sync, SyncResponse), sync
    resp = await client.room_messages(room_id, start=sync.next_batch, limit=50)
    assert isinstance(resp, RoomMessagesResponse), resp
    return [ev.body for ev in resp.chunk if isinstance(ev, RoomMessageText)]


async def _send_raw(
    session: aiohttp.ClientSession, hs: DevHomeserver, user: DevUser, room_id: str, txn: str
) -> tuple[int, str | None]:
    url = f"{hs.url}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}"
    headers = {"Authorization": f"Bearer {user.access_token}"}
    body = {"msgtype": "m.text", "body": txn}
    async with session.put(url, json=body, headers=headers) as resp:
        data = await resp.json()
        return resp.status, data.get("errcode")


def test_registration_mac_matches_synapse_documented_example() -> None:
    # Example from Synapse's admin_api/register_api docs (generate_mac with the same fields).
    import hashlib
    import hmac

    expected = hmac.new(b"secret", digestmod=hashlib.sha1)
    expected.update(b"abc\x00alice\x00pw\x00admin")
    assert registration_mac("secret", "abc", "alice", "pw", True) == expected.hexdigest()


async def test_users_talk_and_everything_survives_a_restart(tmp_path: Path) -> None:
    hs = DevHomeserver(tmp_path / "hs")
    began = time.monotonic()
    await hs.start()
    print(f"\nSynapse first start took {time.monotonic() - began:.2f} s")
    try:
        alice = await hs.register("alice", "alice-pw", admin=True, displayname="Alice")
        bob = await hs.register("bob", "bob-pw")
        assert alice.user_id == "@alice:localhost" and bob.user_id == "@bob:localhost"
        assert alice.access_token and alice.device_id

        a, b = _client(hs, alice), _client(hs, bob)
        try:
            created = await a.room_create(name="Branch news", invite=[bob.user_id])
            assert isinstance(created, RoomCreateResponse), created
            room_id = created.room_id
            assert isinstance(await b.join(room_id), JoinResponse)
            sent = await a.room_send(
                room_id, "m.room.message", {"msgtype": "m.text", "body": "hello from alice"}
            )
            assert isinstance(sent, RoomSendResponse), sent
            assert "hello from alice" in await _texts(b, room_id)
        finally:
            await a.close()
            await b.close()

        # Registering an existing user logs in instead and hands out a fresh token.
        again = await hs.register("bob", "bob-pw")
        assert again.user_id == bob.user_id and again.access_token != bob.access_token
        with pytest.raises(DevServerError, match="wrong password"):
            await hs.register("bob", "not-bob-pw")

        url_before = hs.url
        began = time.monotonic()
        await hs.restart()
        print(f"Synapse restart took {time.monotonic() - began:.2f} s")
        assert hs.url == url_before

        b2 = AsyncClient(hs.url, bob.user_id)
        try:
            login = await b2.login("bob-pw")
            assert isinstance(login, LoginResponse), login
            joined = await b2.joined_rooms()
            assert room_id in joined.rooms
            assert "hello from alice" in await _texts(b2, room_id)
        finally:
            await b2.close()
        # The token issued before the restart still works: same signing key and database.
        a2 = _client(hs, alice)
        try:
            assert "hello from alice" in await _texts(a2, room_id)
        finally:
            await a2.close()
    finally:
        await hs.stop()
    await hs.stop()  # idempotent
    assert not (tmp_path / "hs" / "homeserver.pid").exists()


async def test_rate_limit_is_enforced_and_can_be_lifted(tmp_path: Path) -> None:
    async with DevHomeserver(
        tmp_path / "hs", rate_limited=True, message_rate=1, message_burst=3
    ) as hs:
        admin = await hs.register("admin", "admin-pw", admin=True)
        poster = await hs.register("poster", "poster-pw")
        client = _client(hs, poster)
        try:
            created = await client.room_create(name="Flood")
            assert isinstance(created, RoomCreateResponse), created
        finally:
            await client.close()
        room_id = created.room_id

        async with aiohttp.ClientSession() as session:
            # Synapse holds every 429 for 0.5 s, so stop flooding at the first one.
            results = []
            for i in range(20):
                results.append(await _send_raw(session, hs, poster, room_id, f"t{i}"))
                if results[-1][0] == 429:
                    break
            assert results[-1] == (429, "M_LIMIT_EXCEEDED"), results

            await hs.lift_ratelimit(poster.user_id, admin.access_token)
            results = [await _send_raw(session, hs, poster, room_id, f"u{i}") for i in range(20)]
            assert all(status == 200 for status, _ in results), results

        with pytest.raises(DevServerError, match="lifting the rate limit"):
            await hs.lift_ratelimit(poster.user_id, poster.access_token)


async def test_start_failure_reports_the_synapse_log(tmp_path: Path) -> None:
    # Hold the port so Synapse cannot bind it: it must fail fast with an actionable message.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        hs = DevHomeserver(tmp_path / "hs", port=port)
        with pytest.raises(DevServerError) as err:
            await hs.start(timeout=60)
    message = str(err.value)
    assert "Synapse exited" in message
    assert str(hs.log_path) in message
    assert "Address already in use" in message or "CannotListen" in message
    assert not hs.running


async def test_operations_need_a_running_server(tmp_path: Path) -> None:
    hs = DevHomeserver(tmp_path / "hs")
    with pytest.raises(DevServerError, match="not running"):
        await hs.register("alice", "pw")
    await hs.stop()  # stopping a never-started server is harmless
    assert hs.url.startswith("http://127.0.0.1:")
