"""Need Assistance cases on a real Synapse and a real SMTP sink: an out-of-scope question
becomes a thread in the team room and an email; the team claims and answers and the asker
gets the answer; the outsider can do none of that; follow-ups, closing and reopening;
reminders in business hours and auto-closing at fixed instants; KB candidates on the CLI."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bots.cases.escalation import Question
from network.devtools.devserver import DevHomeserver, DevUser
from network.service import Service
from tests.matrixkit import MatrixReader
from tests.test_bot_support import (
    Msgs,
    World,
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

OUT_OF_SCOPE = "How do I renew my library card?"
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def in_thread(root: str) -> dict[str, Any]:
    return {
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": root},
        }
    }


def thread_of(m: dict[str, Any]) -> str | None:
    rel = m.get("content", {}).get("m.relates_to") or {}
    return rel.get("event_id") if rel.get("rel_type") == "m.thread" else None


async def react(reader: MatrixReader, room: str, event_id: str, key: str) -> str:
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
    return await reader.send(room, content, "m.reaction")


async def case_root(w: World, text: str) -> dict[str, Any]:
    """The bot's root message of the newest case about ``text`` in the team room."""
    msgs = await w.team.wait_for(
        w.team_room,
        lambda ms: any("New question from" in body(m) and text in body(m) for m in ms),
        sender=w.bot.user_id,
    )
    return [m for m in msgs if "New question from" in body(m) and text in body(m)][-1]


async def ask_out_of_scope(w: World, dm: str, text: str = OUT_OF_SCOPE) -> tuple[str, str]:
    question = await w.asker.say(dm, text)
    await w.asker.wait_for(dm, replies_to(question), sender=w.bot.user_id)
    return question, (await case_root(w, text))["event_id"]


async def test_case_from_question_to_answer_and_back(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    async with world(synapse, admin, tmp_path, bot_env, mail=True) as w:
        service = await w.start()
        bot, asker, team, outsider, room = (
            w.bot.user_id,
            w.asker,
            w.team,
            w.outsider,
            w.team_room,
        )
        dm = await direct_chat(asker, bot)
        question = await asker.say(dm, OUT_OF_SCOPE)

        # The asker is told a person will answer; the team gets a thread and an email.
        msgs = await asker.wait_for(dm, replies_to(question), sender=bot)
        ack = reply_to(msgs, question)
        assert "I'm not sure the toolbox covers that." in body(ack)
        assert "passed your question to the Need Assistance team" in body(ack)
        root = await case_root(w, OUT_OF_SCOPE)
        root_id = root["event_id"]
        assert asker.user_id in body(root) and "a direct message" in body(root)
        assert "Bot's best guess" in body(root)
        assert root["content"]["m.mentions"] == {"user_ids": [team.user_id]}
        assert w.mail is not None
        mails = await eventually(lambda: w.mail.to("need-assistance@example.org") if w.mail else [])
        assert len(mails) == 1 and OUT_OF_SCOPE in mails[0]["Subject"]
        mail_text = mails[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert f"https://matrix.to/#/{room}/{root_id}?via=localhost" in mail_text
        # An email reader cannot react in Matrix: the mail says where to go to claim it.
        assert "on this message" not in mail_text
        assert "open the case thread in the team room" in mail_text
        assert "!claim" in mail_text and "👍" in mail_text

        # The outsider can neither claim, answer, note nor close.
        for text in ("!claim", "Just renew it online, it's easy.", "!note hmm", "!close"):
            eid = await outsider.say(room, text, **in_thread(root_id))
            msgs = await team.wait_for(room, replies_to(eid), sender=bot)
            refusal = reply_to(msgs, eid)
            assert "Only Need Assistance team members can" in body(refusal)
            assert thread_of(refusal) == root_id
        await react(outsider, room, root_id, "👍")

        # The team member claims with a reaction, notes, and answers in the thread.
        await react(team, room, root_id, "👍")
        await team.wait_for(room, containing(f"{team.user_id} claimed this case"), sender=bot)
        await team.say(room, "!note checking with the circulation desk", **in_thread(root_id))
        await team.say(room, "You can renew it at any branch desk.", **in_thread(root_id))
        name = team.user_id[1:].split(":")[0]  # Synapse's default display name
        head = f"Need Assistance team ({name}):"
        msgs = await asker.wait_for(dm, containing(head), sender=bot)
        relayed = [m for m in msgs if head in body(m)]
        assert len(relayed) == 1
        assert body(relayed[0]) == f"{head} You can renew it at any branch desk."
        assert relayed[0]["content"]["msgtype"] == "m.text"
        assert relayed[0]["content"]["m.mentions"] == {"user_ids": [asker.user_id]}
        assert in_reply_to(relayed[0]) == question
        everything = " ".join(body(m) for m in await asker.messages(dm))
        assert "circulation desk" not in everything and "renew it online" not in everything
        case = await service.storage.case_by_thread_root(root_id)
        assert case is not None and case.state == "answered"
        assert case.progress.claimed_by == team.user_id

        # A follow-up from the asker goes to the same thread.
        await asker.say(dm, "Thanks! Does it cost anything?")
        msgs = await team.wait_for(room, containing("Does it cost anything?"), sender=bot)
        [followup] = [m for m in msgs if "Does it cost anything?" in body(m)]
        assert thread_of(followup) == root_id and "(the asker) wrote:" in body(followup)
        # A client without threads replies to the relayed message: still an answer.
        reply = {"m.relates_to": {"m.in_reply_to": {"event_id": followup["event_id"]}}}
        await team.say(room, "No, renewing is free.", **reply)
        await asker.wait_for(dm, containing(f"{head} No, renewing is free."), sender=bot)

        # !close closes and tells the asker; a reply to that message reopens the case.
        await team.say(room, "!close", **in_thread(root_id))
        msgs = await asker.wait_for(dm, containing("has closed your question"), sender=bot)
        closed = next(m for m in msgs if "has closed your question" in body(m))
        case = await service.storage.case_by_thread_root(root_id)
        assert case is not None and case.state == "closed"
        await asker.say(
            dm,
            "One more thing: can I renew by phone?",
            **{"m.relates_to": {"m.in_reply_to": {"event_id": closed["event_id"]}}},
        )
        msgs = await team.wait_for(room, containing("can I renew by phone?"), sender=bot)
        assert any("open again" in body(m) and thread_of(m) == root_id for m in msgs)
        case = await service.storage.case_by_thread_root(root_id)
        assert case is not None and case.state == "claimed"

        # The team's answers are kept as knowledge-base candidates.
        rows = await _cli_json(w, "kb", "candidates")
        [row] = [r for r in rows if r["question"] == OUT_OF_SCOPE]
        assert [a["text"] for a in row["answers"]] == [
            "You can renew it at any branch desk.",
            "No, renewing is free.",
        ]
        assert row["asked_by"] == asker.user_id
        assert len(w.mail.to("need-assistance@example.org")) == 1


async def test_long_messages_are_relayed_shortened_and_their_writer_is_told(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    # Synapse refuses events over 64 KiB, so 60,000 characters is about the longest message
    # a person can send; relayed with its HTML copy it would be twice that.
    def long(start: str) -> str:
        filler = "Our makerspace budget, line by line, with every receipt. " * 1100
        return f"{start} {filler}END-OF-{start}"[:60_000]

    async with world(synapse, admin, tmp_path, bot_env) as w:
        await w.start()
        bot, asker, team, room = w.bot.user_id, w.asker, w.team, w.team_room
        dm = await direct_chat(asker, bot)
        question, root_id = await ask_out_of_scope(w, dm)
        await team.say(room, "!claim", **in_thread(root_id))
        await team.wait_for(room, containing("claimed this case"), sender=bot)

        # A follow-up from the asker reaches the team's thread, shortened and marked.
        followup = long("FOLLOWUP")
        assert len(followup) == 60_000
        await asker.say(dm, followup)
        msgs = await team.wait_for(room, containing("FOLLOWUP"), sender=bot)
        [relayed] = [m for m in msgs if "FOLLOWUP" in body(m)]
        assert thread_of(relayed) == root_id and "(the asker) wrote:" in body(relayed)
        assert "END-OF-FOLLOWUP" not in body(relayed)
        assert "[This message was too long for Matrix: the first " in body(relayed)
        assert "of its 60,000 characters are shown.]" in body(relayed)
        # ... and the asker is told how much the team sees.
        msgs = await asker.wait_for(dm, containing("Your message was long"), sender=bot)
        [told] = [m for m in msgs if "Your message was long" in body(m)]
        assert "the team sees the first " in body(told) and "shorter messages" in body(told)
        kept = int(body(told).split("the first ")[1].split(" ")[0].replace(",", ""))
        assert 30_000 < kept < 60_000
        assert followup[:kept].rstrip() in body(relayed)

        # A long answer from the team reaches the asker, shortened; the member is told.
        answer = long("ANSWER")
        await team.say(room, answer, **in_thread(root_id))
        msgs = await asker.wait_for(dm, containing("ANSWER"), sender=bot)
        [got] = [m for m in msgs if "ANSWER" in body(m)]
        assert body(got).startswith("Need Assistance team (") and "END-OF-ANSWER" not in body(got)
        assert "of its 60,000 characters are shown.]" in body(got)
        assert in_reply_to(got) == question
        msgs = await team.wait_for(room, containing("Your answer was long"), sender=bot)
        [note] = [m for m in msgs if "Your answer was long" in body(m)]
        assert thread_of(note) == root_id and "the asker sees the first " in body(note)

        # The bot is out of the asker's room (an admin removed it): the answer cannot be
        # relayed, and the team member is told instead of the answer vanishing.
        async with MatrixReader(synapse.url, w.bot) as as_bot:
            await as_bot.call("POST", f"/_matrix/client/v3/rooms/{dm}/leave", {})
        await team.say(room, "Here is the short version.", **in_thread(root_id))
        msgs = await team.wait_for(room, containing("could not be passed on"), sender=bot)
        [refused] = [m for m in msgs if "could not be passed on" in body(m)]
        assert thread_of(refused) == root_id
        assert refused["content"]["m.mentions"] == {"user_ids": [team.user_id]}


async def _cli_json(w: World, *args: str) -> Any:
    config = w.config_file()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from network.cli.main import main; sys.exit(main())",
        *args,
        "-c",
        str(config),
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def test_group_rooms_and_asking_for_a_person(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    async with world(synapse, admin, tmp_path, bot_env) as w:
        bot, asker, team, room = w.bot.user_id, w.asker, w.team, w.team_room
        help_room = await asker.create_room(invite=[bot], name="Help")
        service = await w.start(help_rooms=(help_room,))
        await eventually(lambda: joined(asker, help_room, bot))

        # Asking for a person in words, in a help room: the case thread is under the question.
        text = "Can I talk to a person about our e-rate paperwork?"
        question = await asker.say(help_room, text)
        msgs = await asker.wait_for(help_room, replies_to(question), sender=bot)
        assert "in this thread" in body(reply_to(msgs, question))
        root_id = (await case_root(w, "e-rate paperwork"))["event_id"]
        await team.say(room, "!claim", **in_thread(root_id))
        await team.say(room, "Send us the form; we'll check it.", **in_thread(root_id))
        msgs = await asker.wait_for(help_room, containing("Send us the form"), sender=bot)
        [relayed] = [m for m in msgs if "Send us the form" in body(m)]
        assert thread_of(relayed) == question

        # "!human" alone hands over the question the bot answered just before.
        dm = await direct_chat(asker, bot)
        kiosk = await asker.say(dm, "where would a book kiosk go?")
        msgs = await asker.wait_for(dm, replies_to(kiosk), sender=bot)
        kiosk_answer = reply_to(msgs, kiosk)["event_id"]
        human = await asker.say(dm, "!human")
        await asker.wait_for(dm, replies_to(human), sender=bot)
        await case_root(w, "where would a book kiosk go?")

        # A 👎 on that answer afterwards does not offer !human again: it is with the team.
        async def escalated() -> bool:
            answer = await service.storage.answer_by_event(kiosk_answer)
            return answer is not None and answer.escalated

        await eventually(escalated, what="the answer to be marked as handed to the team")
        await react(asker, dm, kiosk_answer, "👎")
        marker = await asker.say(dm, "!help")  # handled after the reaction (same room)
        msgs = await asker.wait_for(dm, replies_to(marker), sender=bot)
        assert not [m for m in msgs if in_reply_to(m) == kiosk_answer]
        assert await service.storage.feedback_for(kiosk_answer) == [(asker.user_id, "down")]


async def test_reminders_in_business_hours_and_auto_close(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    async with world(synapse, admin, tmp_path, bot_env) as w:
        service = await w.start()
        bot, team, room = w.bot.user_id, w.team, w.team_room
        dm = await direct_chat(w.asker, bot)
        question, root_id = await ask_out_of_scope(w, dm)
        escalation = service.assistant.escalation
        storage = service.storage
        monday_16 = MONDAY_10 + timedelta(hours=6)
        await _set_times(service, root_id, opened=monday_16)

        def reminders(ms: Msgs) -> list[dict[str, Any]]:
            return [m for m in ms if "Reminder:" in body(m) and thread_of(m) == root_id]

        def at(day: int, hour: int, minute: int = 0) -> datetime:
            return datetime(2026, 11, day, hour, minute, tzinfo=UTC)

        # Unclaimed for 2 business hours (Mon-Fri 09:00-17:00 UTC): the night does not count.
        await escalation.tick(at(23, 17, 30))
        await escalation.tick(at(24, 9, 59))
        case = await storage.case_by_thread_root(root_id)
        assert case is not None and case.progress.reminders_sent == 0
        await escalation.tick(at(24, 10))
        await escalation.tick(at(24, 10, 30))
        msgs = await team.wait_for(room, lambda ms: len(reminders(ms)) >= 1, sender=bot)
        [first] = reminders(msgs)
        assert "unclaimed for 2 business hours (reminder 1 of 2)" in body(first)
        assert first["content"]["msgtype"] == "m.text"
        assert first["content"]["m.mentions"] == {"user_ids": [team.user_id]}
        # The second after 4 business hours, and no more than max_reminders = 2.
        await escalation.tick(at(24, 12))
        await escalation.tick(at(25, 12))
        msgs = await team.wait_for(room, lambda ms: len(reminders(ms)) >= 2, sender=bot)
        assert len(reminders(msgs)) == 2 and "(reminder 2 of 2)" in body(reminders(msgs)[1])

        # Answered, then silence: auto-closed after 3 days, the asker is told.
        await team.say(room, "Any branch desk can renew it.", **in_thread(root_id))
        await w.asker.wait_for(dm, containing("Any branch desk"), sender=bot)

        # The bot stores the answered case after relaying: _set_times must come after that.
        async def is_answered() -> bool:
            case = await storage.case_by_thread_root(root_id)
            return case is not None and case.state == "answered"

        await eventually(is_answered, what="the answered case to be stored")
        answered = MONDAY_10 + timedelta(days=3)
        await _set_times(service, root_id, opened=MONDAY_10, last=answered)
        await escalation.tick(answered + timedelta(days=2, hours=23))
        case = await storage.case_by_thread_root(root_id)
        assert case is not None and case.state == "answered"
        await escalation.tick(answered + timedelta(days=3))
        await escalation.tick(answered + timedelta(days=4))
        msgs = await w.asker.wait_for(dm, containing("closed this request"), sender=bot)
        assert sum("closed this request" in body(m) for m in msgs) == 1
        await team.wait_for(room, containing("Case closed automatically"), sender=bot)
        case = await storage.case_by_thread_root(root_id)
        assert case is not None and case.state == "closed"
        assert question != root_id


async def test_a_spanish_askers_case_speaks_spanish(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    """Asked in Spanish while the team is away: the asker is told when the team is back
    with the weekday and time written by CLDR in Spanish, and the auto-close notice comes
    in Spanish (the case's language is the question's)."""
    async with world(synapse, admin, tmp_path, bot_env) as w:
        service = await w.start()
        bot, team, room = w.bot.user_id, w.team, w.team_room
        dm = await direct_chat(w.asker, bot)
        text = "¿Cómo renuevo mi tarjeta de la biblioteca si vivo en otra ciudad?"
        saturday = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
        # An event id of its own: the bot does not also answer a real message.
        q = Question(w.asker.user_id, dm, "$es-question", text, True, None, "es")
        escalation = service.assistant.escalation
        await escalation.open_case(q, guess=None, suggest=False, intro="", now=saturday)
        msgs = await w.asker.wait_for(dm, containing("no está disponible"), sender=bot)
        [ack] = [m for m in msgs if "no está disponible" in body(m)]
        assert "Pasé su pregunta al equipo de Asistencia" in body(ack)
        assert "después del lunes a las 9:00 (hora de UTC)" in body(ack)
        assert "Monday" not in body(ack)
        root_id = (await case_root(w, text))["event_id"]

        await team.say(room, "Cualquier mostrador puede renovarla.", **in_thread(root_id))
        msgs = await w.asker.wait_for(dm, containing("Cualquier mostrador"), sender=bot)
        [answer] = [m for m in msgs if "Cualquier mostrador" in body(m)]
        assert body(answer).startswith("Equipo de Asistencia (")

        async def is_answered() -> bool:
            case = await service.storage.case_by_thread_root(root_id)
            return case is not None and case.state == "answered"

        await eventually(is_answered, what="the answered case to be stored")
        await _set_times(service, root_id, opened=MONDAY_10, last=MONDAY_10)
        await escalation.tick(MONDAY_10 + timedelta(days=4))
        await w.asker.wait_for(dm, containing("Hace tiempo que no sabemos de usted"), sender=bot)
        # The team keeps reading its own language.
        await team.wait_for(room, containing("Case closed automatically"), sender=bot)


async def _set_times(
    service: Service, root_id: str, *, opened: datetime, last: datetime | None = None
) -> None:
    """Put a case at fixed instants, so business-hour arithmetic does not depend on today."""
    case = await service.storage.case_by_thread_root(root_id)
    assert case is not None
    p = case.progress
    waiting = None if p.waiting_since is None else opened
    fixed = replace(p, opened_at=opened, last_activity_at=last or opened, waiting_since=waiting)
    if p.answered_at is not None:
        fixed = replace(fixed, answered_at=last or opened)
    await service.storage.update_case(case.id, fixed)
