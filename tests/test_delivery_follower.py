"""Delivery by an instance that does not lead (a real Synapse; SQLite stands for the shared
database): it has no crypto store, so it leaves an encrypted room's messages to the leader at
once, without counting a failed try, and claims none of that room's rows again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from network.service import Service
from tests.conftest import new_user
from tests.matrixkit import MatrixReader
from tests.publisher import FeedItem, Publisher, rss
from tests.test_delivery_kit import BOT_ENV, drain, settings_for, started

pytestmark = pytest.mark.synapse


@pytest.fixture
async def publisher() -> AsyncIterator[Publisher]:
    pub = await Publisher().start()
    try:
        yield pub
    finally:
        await pub.close()


@pytest.fixture
async def bot(synapse: DevHomeserver, admin: DevUser, bot_env: dict[str, str]) -> DevUser:
    user = await new_user(synapse, "fbot", admin)
    bot_env[BOT_ENV] = user.password
    return user


async def test_a_follower_leaves_an_encrypted_room_to_the_leader_without_a_failed_try(
    synapse: DevHomeserver, bot: DevUser, reader: MatrixReader, publisher: Publisher, tmp_path: Path
) -> None:
    room = await reader.create_room(encrypted=True)
    publisher.documents["f.xml"] = rss("F", [FeedItem("s1", "Members only")])
    settings = settings_for(tmp_path, synapse.url, bot, publisher.url("f.xml"), [room])
    leader = await started(settings)  # logs in and stores the session followers use
    try:
        await leader.poller.poll_due()
    finally:
        await leader.close()

    follower = await Service.create(settings)
    try:
        assert await follower.matrix.adopt_session()
        assert not follower.matrix.may_encrypt
        assert await follower.delivery.run_once()  # claims the row, finds the room encrypted
        [row] = await follower.storage.fetchall("SELECT status, attempts, next_attempt FROM outbox")
        assert (row["status"], row["attempts"]) == ("pending", 0)
        assert datetime.fromisoformat(row["next_attempt"]) <= datetime.now(UTC)
        assert not await follower.delivery.run_once()  # the room is the leader's now
    finally:
        await follower.close()

    leader = await started(settings)
    try:
        await drain(leader)
        assert (await leader.storage.outbox_counts())["sent"] == 1
    finally:
        await leader.close()
    sent = [e for e in await reader.events(room) if e.get("sender") == bot.user_id]
    assert [e["type"] for e in sent if e["type"] != "m.room.member"] == ["m.room.encrypted"]
