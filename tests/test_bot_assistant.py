"""The assistance bot on a real Synapse: answers in direct chats (threaded replies with the
asker mentioned and the source page), where it stays quiet, commands, reactions,
and answering exactly once across restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from tests.test_bot_support import (
    body,
    containing,
    direct_chat,
    in_reply_to,
    joined,
    replies_to,
    reply_to,
    world,
)
from tests.waiting import eventually

pytestmark = pytest.mark.synapse

WIFI = "how do we keep Wi-Fi on after closing?"
KIOSK = "where would a book kiosk go?"


async def test_direct_chat_answers_commands_and_reactions(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    async with world(synapse, admin, tmp_path, bot_env) as w:
        service = await w.start()
        bot, asker = w.bot.user_id, w.asker
        dm = await direct_chat(asker, bot)

        q1 = await asker.say(dm, WIFI)
        msgs = await asker.wait_for(dm, replies_to(q1), sender=bot)
        answer = reply_to(msgs, q1)
        c = answer["content"]
        assert c["msgtype"] == "m.notice"
        assert c["m.mentions"] == {"user_ids": [asker.user_id]}
        assert "Wi-Fi access after hours" in c["body"]
        assert (
            'href="https://smartcommunitytoolbox.ctg.albany.edu/wi-fi-access-after-hours"'
            in (c["formatted_body"])
        )
        assert "m.thread" not in str(c["m.relates_to"])

        # A question inside a thread is answered inside that thread.
        q2 = await asker.say(
            dm,
            KIOSK,
            **{
                "m.relates_to": {
                    "rel_type": "m.thread",
                    "event_id": q1,
                    "is_falling_back": True,
                    "m.in_reply_to": {"event_id": q1},
                }
            },
        )
        msgs = await asker.wait_for(dm, replies_to(q2), sender=bot)
        rel = reply_to(msgs, q2)["content"]["m.relates_to"]
        assert rel["rel_type"] == "m.thread" and rel["event_id"] == q1
        assert rel["is_falling_back"] is False
        assert "Book vending" in body(reply_to(msgs, q2))

        # Notices and edits are never answered.
        notice = await asker.send(dm, {"msgtype": "m.notice", "body": WIFI})
        edit = await asker.send(
            dm,
            {
                "msgtype": "m.text",
                "body": f"* {KIOSK}",
                "m.new_content": {"msgtype": "m.text", "body": KIOSK},
                "m.relates_to": {"rel_type": "m.replace", "event_id": q1},
            },
        )

        # Reactions on an answer are recorded; a thumbs-down offers a person.
        await asker.send(
            dm,
            {
                "m.relates_to": {
                    "rel_type": "m.annotation",
                    "event_id": answer["event_id"],
                    "key": "👍",
                }
            },
            "m.reaction",
        )
        kiosk_answer = reply_to(msgs, q2)["event_id"]
        await asker.send(
            dm,
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": kiosk_answer, "key": "👎🏽"}},
            "m.reaction",
        )
        msgs = await asker.wait_for(dm, replies_to(kiosk_answer), sender=bot)
        assert "!human" in body(reply_to(msgs, kiosk_answer))
        storage = service.storage
        assert await storage.feedback_for(answer["event_id"]) == [(asker.user_id, "up")]
        assert await storage.feedback_for(kiosk_answer) == [(asker.user_id, "down")]

        # Commands: unknown ones get help, !status is for coordinators only.
        replies: dict[str, dict[str, Any]] = {}
        for text in ("!frobnicate now", "!status", "!help", "!feeds", "!subscribe", "!ask"):
            eid = await asker.say(dm, text)
            msgs = await asker.wait_for(dm, replies_to(eid), sender=bot)
            replies[text] = reply_to(msgs, eid)
        assert "I don't know the command !frobnicate" in body(replies["!frobnicate now"])
        assert "!ask QUESTION" in body(replies["!frobnicate now"])
        assert body(replies["!status"]) == "Sorry, !status is only for network coordinators."
        help_text = body(replies["!help"])
        for usage in ("!help", "!ask QUESTION", "!human [QUESTION]", "!subscribe", "!feeds"):
            assert usage in help_text
        assert "!status" not in help_text and "!claim" not in help_text
        assert "Network news: " in body(replies["!feeds"])
        assert "subscribe" in body(replies["!subscribe"]).lower()
        assert "Put your question after !ask" in body(replies["!ask"])

        # The coordinator (also on the team) gets the status, in any room the bot is in.
        team_dm = await direct_chat(w.team, bot)
        eid = await w.team.say(team_dm, "!status")
        msgs = await w.team.wait_for(team_dm, replies_to(eid), sender=bot)
        status = body(reply_to(msgs, eid))
        assert "Knowledge base: " in status and "Cases: " in status
        assert "1 👍, 1 👎" in status

        # Each question got exactly one answer.
        msgs = await asker.messages(dm, sender=bot)
        assert sum(in_reply_to(m) == q1 for m in msgs) == 1
        assert sum(in_reply_to(m) == q2 for m in msgs) == 1
        assert not {notice, edit} & {in_reply_to(m) for m in msgs}


async def test_quiet_in_other_rooms_unless_mentioned(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    async with world(synapse, admin, tmp_path, bot_env) as w:
        bot, asker = w.bot.user_id, w.asker
        help_room = await asker.create_room(invite=[bot], name="Help")
        await w.start(help_rooms=(help_room,), unsure_escalates=False)
        group = await asker.create_room(invite=[bot, w.outsider.user_id], name="Chat")
        await w.outsider.join(group)
        await eventually(lambda: joined(asker, group, bot))
        await eventually(lambda: joined(asker, help_room, bot))

        plain = await asker.say(group, WIFI)
        mention = await asker.say(group, f"{bot}: {KIOSK}", **{"m.mentions": {"user_ids": [bot]}})
        other_bots_command = await asker.say(group, "!weather tomorrow")
        by_name = await asker.say(group, f"{bot.split(':')[0][1:]}, {WIFI}")
        # Not confident, and configured not to escalate by itself: it offers a person.
        unsure = await asker.say(
            group,
            f"{bot} what are your opening hours on Saturday?",
            **{"m.mentions": {"user_ids": [bot]}},
        )
        msgs = await asker.wait_for(group, replies_to(unsure), sender=bot)
        assert "Book vending" in body(reply_to(msgs, mention))
        assert "Wi-Fi" in body(reply_to(msgs, by_name))
        assert body(reply_to(msgs, unsure)).startswith("I'm not sure the toolbox covers that.")
        assert "!human" in body(reply_to(msgs, unsure))
        answered = {in_reply_to(m) for m in msgs}
        assert plain not in answered and other_bots_command not in answered
        assert len(msgs) == 3
        assert not await w.team.messages(w.team_room, sender=bot)  # no case was opened

        # In a help room every question is answered, chatter is not.
        chatter = await asker.say(help_room, "thanks everyone, see you tomorrow")
        question = await asker.say(help_room, KIOSK)
        msgs = await asker.wait_for(help_room, replies_to(question), sender=bot)
        assert chatter not in {in_reply_to(m) for m in msgs}


async def test_restart_between_question_and_answer_answers_once(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    async with world(synapse, admin, tmp_path, bot_env) as w:
        service = await w.start()
        bot, asker = w.bot.user_id, w.asker
        dm = await direct_chat(asker, bot)
        first = await asker.say(dm, WIFI)
        await asker.wait_for(dm, replies_to(first), sender=bot)

        # The bot is down while the question is asked: the next start answers it.
        await w.running.pop().close()
        token_before = await _state(w, "matrix.next_batch")
        asked_while_down = await asker.say(dm, KIOSK)
        service = await w.start()
        msgs = await asker.wait_for(dm, replies_to(asked_while_down), sender=bot)
        answer = reply_to(msgs, asked_while_down)

        # A crash after sending but before recording: the event comes again from the
        # homeserver and is handled again, but the homeserver returns the same answer.
        await w.running.pop().close()
        await _forget(w, asked_while_down, token_before)
        service = await w.start()
        later = await asker.say(dm, "!help")
        await asker.wait_for(dm, replies_to(later), sender=bot)
        assert await service.storage.event_processed(asked_while_down)
        msgs = await asker.messages(dm, sender=bot)
        assert [m["event_id"] for m in msgs if in_reply_to(m) == asked_while_down] == [
            answer["event_id"]
        ]
        assert sum(in_reply_to(m) == first for m in msgs) == 1


async def _state(w: Any, key: str) -> str:
    from network.storage import Storage

    storage = await Storage.open(w.tmp / "libhub.db")
    try:
        value = await storage.get_state(key)
    finally:
        await storage.close()
    assert value
    return value


async def _forget(w: Any, event_id: str, next_batch: str) -> None:
    """Make the database look as if the bot died right after sending its answer."""
    import sqlite3

    with sqlite3.connect(w.tmp / "libhub.db") as db:
        db.execute("DELETE FROM processed_events WHERE event_id = ?", (event_id,))
        db.execute("DELETE FROM bot_answers WHERE question_event_id = ?", (event_id,))
        db.execute("UPDATE state SET value = ? WHERE key = 'matrix.next_batch'", (next_batch,))
    await asyncio.sleep(0)


async def test_a_direct_chat_opened_before_libhub_first_started_is_joined_and_greeted(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    # A coordinator invites the bot, then starts libhub for the very first time: the
    # invite is in the first sync, which used to be skipped, so it waited for ever.
    async with world(synapse, admin, tmp_path, bot_env) as w:
        made = await w.asker.call(
            "POST",
            "/_matrix/client/v3/createRoom",
            {"preset": "trusted_private_chat", "is_direct": True, "invite": [w.bot.user_id]},
        )
        room = str(made["room_id"])
        await w.start()
        greeted = await w.asker.wait_for(room, containing("Hello!"), sender=w.bot.user_id)
        assert sum("Hello!" in body(m) for m in greeted) == 1
        question = await w.asker.say(room, "how do we start a makerspace?")
        answers = await w.asker.wait_for(room, replies_to(question), sender=w.bot.user_id)
        assert "makerspace" in body(reply_to(answers, question)).lower()
