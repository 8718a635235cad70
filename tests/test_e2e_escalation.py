"""A Need Assistance case end to end in encrypted rooms, everyone on an independent client
with real crypto (matrix-js-sdk, exclude-insecure-devices mode): the asker's question in an
encrypted direct chat becomes a thread in the encrypted team room, a team member answers in
the thread, and the asker's client decrypts the relayed answer. The bot posts nothing
plain in either room."""

from __future__ import annotations

from pathlib import Path

import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from tests.e2ekit import JsClient
from tests.test_bot_support import world
from tests.test_e2e_encrypted import plain_from
from tests.test_escalation import OUT_OF_SCOPE, in_thread, thread_of
from tests.waiting import eventually

pytestmark = [pytest.mark.synapse, pytest.mark.slow]


async def test_team_answer_in_an_encrypted_thread_reaches_the_asker_decrypted(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    async with (
        world(synapse, admin, tmp_path, bot_env) as w,
        JsClient() as team,
        JsClient() as asker,
    ):
        bot = w.bot.user_id
        await team.login(synapse.url, w.team.user.user_id, w.team.user.password)
        await asker.login(synapse.url, w.asker.user.user_id, w.asker.user.password)
        # The team room is one a team member made in her client: encrypted.
        w.team_room = await team.create_room(invite=[bot])
        service = await w.start()

        dm = await asker.create_room(invite=[bot], is_direct=True)
        await asker.wait_message(dm, sender=bot, contains="Hello!")
        await asker.say(dm, OUT_OF_SCOPE)
        ack = await asker.wait_message(dm, sender=bot, contains="passed your question")
        assert ack["encrypted"] is True

        root = await team.wait_message(w.team_room, sender=bot, contains="New question from")
        assert root["encrypted"] is True and OUT_OF_SCOPE in root["content"]["body"]
        answer = "You can renew it at any branch desk."
        await team.say(w.team_room, answer, **in_thread(root["event_id"]))

        name = w.team.user_id[1:].split(":")[0]  # Synapse's default display name
        head = f"Need Assistance team ({name}):"
        relayed = await asker.wait_message(dm, sender=bot, contains=head)
        assert relayed["encrypted"] is True and relayed["decryption_failure"] is None
        assert relayed["content"]["body"] == f"{head} {answer}"

        # The case records the answer once the relay is sent: the asker may read it first.
        async def answered() -> bool:
            case = await service.storage.case_by_thread_root(root["event_id"])
            return case is not None and case.state == "answered"

        await eventually(answered, what="the case marked answered")
        in_room = [
            e
            for e in await team.events(w.team_room)
            if e["sender"] == bot and e["event_id"] != root["event_id"]
        ]
        assert all(
            thread_of(e) == root["event_id"] for e in in_room if "m.relates_to" in e["content"]
        )
        assert await plain_from(w.asker, dm, bot) == []
        assert await plain_from(w.team, w.team_room, bot) == []
