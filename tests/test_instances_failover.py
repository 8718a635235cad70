"""Failover: two libhub instances on one PostgreSQL and a real Synapse; the leader (the
one that syncs and runs the bot) is SIGKILLed and the other answers a question asked in a
direct chat right after the kill.

The Matrix session is shared through the database (the stored access token and device),
and both instances name the same crypto store directory (the default, beside the
configuration): only the leader syncs and opens it, so the one that takes over opens the
store the dead one left and keeps its device keys. Instances on several machines need
that directory on shared storage, or ``[matrix] encryption = false``.
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from tests.conftest import new_user
from tests.instancekit import leader_pid, logs, make_instances, on_postgres
from tests.matrixkit import MatrixReader
from tests.pgkit import PgServer
from tests.test_bot_assistant import KIOSK, WIFI
from tests.test_bot_support import bot_settings_text, direct_chat, replies_to, reply_to
from tests.waiting import eventually

pytestmark = [pytest.mark.synapse, pytest.mark.slow]


async def test_the_other_instance_answers_in_a_dm_after_the_leader_is_killed(
    synapse: DevHomeserver,
    admin: DevUser,
    reader: MatrixReader,
    postgres: PgServer,
    tmp_path: Path,
) -> None:
    bot = await new_user(synapse, "failbot", admin)
    url = await postgres.new_database()
    text = on_postgres(bot_settings_text(tmp_path, synapse, bot), url)
    instances = make_instances(tmp_path, "libhub", text, 2, {"BOT_TEST_PASSWORD": bot.password})
    first, second = instances
    try:
        async with aiohttp.ClientSession() as http:
            await first.start()
            await eventually(
                lambda: leader_pid(http, [first]), within=60, what="the first instance to lead"
            )
            await second.start()

            async def both_listed() -> bool:
                report = await second.report(http)
                return len((report or {}).get("instances", [])) == 2

            await eventually(both_listed, within=60, what="both instances to beat")
            dm = await direct_chat(reader, bot.user_id)
            asked = await reader.say(dm, WIFI)
            await reader.wait_for(dm, replies_to(asked), sender=bot.user_id, within=60)

            await first.kill()
            killed = time.monotonic()
            question = await reader.say(dm, KIOSK)
            msgs = await reader.wait_for(dm, replies_to(question), sender=bot.user_id, within=180)
            seconds = time.monotonic() - killed
            print(f"answered {seconds:.1f} s after the leader was killed")
            answer = reply_to(msgs, question)
            assert answer["content"]["msgtype"] == "m.notice", logs(instances)
            assert await leader_pid(http, [second]) == second.pid
            # One answer per question, whoever led when it was asked.
            both = await reader.messages(dm, sender=bot.user_id)
            assert sum(1 for m in both if replies_to(question)([m])) == 1
            assert sum(1 for m in both if replies_to(asked)([m])) == 1
    finally:
        for inst in instances:
            await inst.stop()
