"""``!subscribe`` on a real Synapse is limited per sender and per sender's server, with the
web forms' numbers: one account cannot make libhub mail hundreds of inboxes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from network.settings.loading import Duration
from tests.test_bot_support import body, direct_chat, replies_to, reply_to, start, world
from tests.waiting import eventually

pytestmark = pytest.mark.synapse


async def test_subscribe_in_matrix_is_limited_per_sender_and_per_server(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    async with world(synapse, admin, tmp_path, bot_env, mail=True) as w:
        assert w.mail is not None
        mail = w.mail
        settings = w.settings()
        web = replace(settings.web, forms_per_client=2, forms_window=Duration(hours=1))
        run = await start(replace(settings, web=web))
        w.running.append(run)
        bot = w.bot.user_id

        async def subscribe(who: str, address: str) -> str:
            person = w.asker if who == "asker" else w.outsider
            dm = rooms[who]
            eid = await person.say(dm, f"!subscribe weekly news {address}")
            msgs = await person.wait_for(dm, replies_to(eid), sender=bot)
            return body(reply_to(msgs, eid))

        rooms = {
            "asker": await direct_chat(w.asker, bot),
            "outsider": await direct_chat(w.outsider, bot),
        }
        for n in range(2):
            assert "I've sent a confirmation" in await subscribe("asker", f"a{n}@example.org")
        await eventually(lambda: len(mail.received) == 2, what="two confirmations")
        refused = await subscribe("asker", "a2@example.org")
        assert "try again in 60 minutes" in refused
        # Another account on the same server: the server has used up the limit too.
        assert "try again in 60 minutes" in await subscribe("outsider", "o@example.org")
        assert [r.rcpt_tos for r in w.mail.received] == [
            ("a0@example.org",),
            ("a1@example.org",),
        ]
