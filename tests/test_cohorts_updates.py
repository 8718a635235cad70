"""Cohort updates and welcomes: `!update` parsing (pure), and on a real Synapse with the
service running in-process: rooms made at start, a welcome with the pinned resources for
each new member (once), an update routed to another room attributed to the member's
library, then edited and withdrawn within the window."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nio
import pytest

from network.community.updates import (
    CohortUpdates,
    UpdateCommand,
    cohort_of_feed,
    parse_update,
    prompt_week,
    update_item,
)
from network.devtools.devserver import DevHomeserver, DevUser
from network.service import Service
from network.settings.model import parse_settings
from tests.conftest import new_user
from tests.matrixkit import MatrixReader
from tests.test_cohorts_synapse import community_config
from tests.waiting import eventually

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("!update We lent 12 hotspots", UpdateCommand("post", "We lent 12 hotspots")),
        ("!update\nLine one\nLine two", UpdateCommand("post", "Line one\nLine two")),
        ("!UPDATE edit  New text", UpdateCommand("edit", "New text")),
        ("!update edit\nNew text", UpdateCommand("edit", "New text")),
        ("!update edit", UpdateCommand("help")),
        ("!update withdraw", UpdateCommand("withdraw")),
        (
            "!update withdraw our old kiosk plan",
            UpdateCommand("post", "withdraw our old kiosk plan"),
        ),
        ("!update", UpdateCommand("help")),
        ("!update help", UpdateCommand("help")),
        ("!updates are nice", None),
        ("we did an !update", None),
    ],
)
def test_parse_update(body: str, expected: UpdateCommand | None) -> None:
    assert parse_update(body) == expected


def test_update_item_is_attributed_and_escaped() -> None:
    s = parse_settings(
        '[matrix]\nhomeserver = "http://h"\nuser_id = "@b:h"\npassword_env = "P"\n'
        '[[cohorts]]\nid = "smart"\nname = "Smart Spaces"\nroom = "#s:h"\n'
    )
    item = update_item(
        event_id="$ev1",
        text="We built a <maker> cart!\nIt rolls.\n\nNext: 3D printer " + "x" * 100,
        name="Ana",
        library="Ignacio Community Library",
        cohort=s.cohorts[0],
        link="https://matrix.to/#/!r/$ev1",
        published=NOW,
    )
    assert item.kind == "cohort-update" and item.key == "$ev1"
    assert item.title == "Ignacio Community Library: We built a <maker> cart!"
    assert item.author == "Ana (Ignacio Community Library)"
    assert item.summary_html.startswith("<p>We built a &lt;maker&gt; cart!<br>It rolls.</p><p>")
    assert item.categories == ("Smart Spaces", "Ignacio Community Library")
    same = update_item(
        event_id="$ev1", text="We built a <maker> cart!\nIt rolls.\n\nNext: 3D printer " + "x" * 100,
        name="Ana", library="Ignacio Community Library", cohort=s.cohorts[0],
        link=None, published=NOW,
    )  # fmt: skip
    assert same.content_hash == item.content_hash
    assert cohort_of_feed("cohort:smart") == "smart" and cohort_of_feed("news") is None


class _Room:
    """The bot, its storage and the community, as far as the prompt-reply hook needs them."""

    user_id = "@bot:x"

    async def prompt_cohort(self, event_id: str) -> str | None:
        return "smart" if event_id == "$prompt" else None

    async def cohort_for_room(self, room_id: str) -> object:
        return object()


def _message(event_id: str, body: str, relates_to: dict[str, Any]) -> nio.Event:
    return nio.RoomMessageText.from_dict(
        {
            "type": "m.room.message", "event_id": event_id, "sender": "@ana:x",
            "origin_server_ts": 1,
            "content": {"msgtype": "m.text", "body": body, "m.relates_to": relates_to},
        }
    )  # fmt: skip


def _in_prompt_thread(latest: str) -> dict[str, Any]:
    return {
        "rel_type": "m.thread", "event_id": "$prompt", "is_falling_back": True,
        "m.in_reply_to": {"event_id": latest},
    }  # fmt: skip


async def test_every_reply_to_the_prompt_becomes_an_update() -> None:
    s = parse_settings(
        '[matrix]\nhomeserver = "http://h"\nuser_id = "@bot:x"\npassword_env = "P"\n'
    )
    room = _Room()
    # As in the service: the bot's registry runs !update.
    updates = CohortUpdates(s, room, room, None, room, handle_commands=False)  # type: ignore[arg-type]
    handled: list[tuple[str, str]] = []

    async def handle(
        room_id: str, sender: str, event_id: str, text: str, *, reply_to: str | None = None
    ) -> str:
        handled.append((event_id, text))
        return "Thanks"

    async def reply(*args: Any) -> None:
        pass

    updates.handle, updates._reply = handle, reply  # type: ignore[method-assign,assignment]
    quoted = "> <@bot:x> What did your library try this week?\n\nA book kiosk."
    events = [
        _message("$reply", quoted, {"m.in_reply_to": {"event_id": "$prompt"}}),
        _message("$first", "A seed library.", _in_prompt_thread("$prompt")),
        # A threaded client points m.in_reply_to at the thread's latest message.
        _message("$second", "> we quote ourselves\nIt went well.", _in_prompt_thread("$first")),
        _message("$other", "Unrelated.", {"m.in_reply_to": {"event_id": "$elsewhere"}}),
        _message("$cmd", "!update We lent laptops.", {"m.in_reply_to": {"event_id": "$prompt"}}),
    ]
    for event in events:
        await updates.on_event("!smart:x", event)
    assert handled == [
        ("$reply", "A book kiosk."),
        ("$first", "A seed library."),
        ("$second", "> we quote ourselves\nIt went well."),  # not a reply: no fallback to cut
    ]


@pytest.mark.parametrize(
    ("now", "tz", "expected"),
    [
        (datetime(2026, 11, 20, 15, 59, tzinfo=UTC), "America/Chicago", None),  # 9:59 local
        (datetime(2026, 11, 20, 16, 0, tzinfo=UTC), "America/Chicago", "2026-W47"),  # Fri 10:00
        (datetime(2026, 11, 21, 5, 59, tzinfo=UTC), "America/Chicago", "2026-W47"),  # Fri 23:59
        (datetime(2026, 11, 21, 6, 0, tzinfo=UTC), "America/Chicago", None),  # Saturday
        (datetime(2026, 11, 20, 9, 0, tzinfo=UTC), "Europe/Berlin", "2026-W47"),  # Fri 10:00
        (datetime(2026, 11, 19, 23, 30, tzinfo=UTC), "Pacific/Auckland", "2026-W47"),  # Fri 12:30
    ],
)
def test_weekly_prompt_is_due_on_its_local_day(
    now: datetime, tz: str, expected: str | None
) -> None:
    assert prompt_week(now, tz, "friday", 10) == expected


async def _invited(service: Service, room_id: str, user: str) -> bool:
    return user in await service.storage.invited_users(room_id)


@pytest.mark.synapse
async def test_welcome_update_edit_withdraw_in_running_service(
    synapse: DevHomeserver,
    admin: DevUser,
    reader: MatrixReader,
    tmp_path: Path,
    bot_env: dict[str, str],
) -> None:
    bot = await new_user(synapse, "ubot", admin)
    bot_env["COHORT_BOT_PASSWORD"] = bot.password
    bot_env["LIBHUB_SECRET"] = "a-test-secret-of-enough-length"
    fac = await new_user(synapse, "ufac", admin)
    text = community_config(
        tmp_path,
        synapse,
        bot,
        members=[],
        facilitator=fac.user_id,
        community='sync_on_start = true\nwelcome = "Welcome to {cohort}, {name} of {library}!"\n'
        'update_window = "1h"',
        extra=f'[[cohorts.libraries]]\nname = "Ignacio Community Library"\n'
        f'members = ["{reader.user_id}"]\n',
    )
    announce = text.split("[[community.rooms]]\nroom = ")[1].split("\n")[0].strip('"')
    text += f'[[routes]]\ncohorts = ["smart"]\nrooms = ["{announce}"]\n'
    settings = parse_settings(text, base_dir=tmp_path)
    service = await Service.create(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        smart = await eventually(
            lambda: service.storage.room_id_for(settings.cohorts[0].room), what="the cohort room"
        )
        announce_id = await eventually(
            lambda: service.storage.room_id_for(announce), what="announcements"
        )
        await eventually(
            lambda: service.storage.get_state("matrix.next_batch"), what="the first sync"
        )

        # Joining the cohort room brings one welcome that names the library and resources.
        # (a knock room: joining works only because libhub invited the member)
        await eventually(lambda: _invited(service, smart, reader.user_id), what="the invitation")
        await reader.join(smart)
        msgs = await reader.wait_for(
            smart, lambda ms: any("Welcome to" in m["content"]["body"] for m in ms),
            sender=bot.user_id,
        )  # fmt: skip
        [welcome] = [m for m in msgs if "Welcome to" in m["content"]["body"]]
        assert "Welcome to Smart Spaces" in welcome["content"]["body"]
        assert "of Ignacio Community Library!" in welcome["content"]["body"]
        assert "https://example.org/toolbox/smart-spaces" in welcome["content"]["body"]
        assert welcome["content"]["m.mentions"] == {"user_ids": [reader.user_id]}

        # An update: acknowledged in the cohort room, posted to the routed room.
        await reader.join(announce_id)
        update_id = await reader.say(smart, "!update We started lending 12 hotspots.")
        await reader.wait_for(
            smart, lambda ms: any("Thanks" in m["content"]["body"] for m in ms),
            sender=bot.user_id,
        )  # fmt: skip
        posted = await reader.wait_for(
            announce_id, lambda ms: any("12 hotspots" in m["content"]["body"] for m in ms),
            sender=bot.user_id,
        )  # fmt: skip
        [post] = [m for m in posted if "12 hotspots" in m["content"]["body"]]
        assert "Ignacio Community Library" in post["content"]["body"]
        assert "Smart Spaces" in post["content"]["body"]  # the feed title is the cohort's name
        stored = await service.storage.cohort_update(update_id)
        assert stored is not None and stored.library == "Ignacio Community Library"
        item = await service.storage.item(stored.item_id)
        assert item is not None and item.kind == "cohort-update"
        assert item.feed_id == "cohort:smart"

        # Edit: the routed post is edited in place (m.replace), not posted again.
        await reader.say(smart, "!update edit We started lending 20 hotspots.")
        edited = await reader.wait_for(
            announce_id,
            lambda ms: any("20 hotspots" in m["content"]["body"] for m in ms),
            sender=bot.user_id,
        )
        [edit] = [m for m in edited if "20 hotspots" in m["content"]["body"]]
        assert edit["content"]["m.relates_to"] == {
            "rel_type": "m.replace", "event_id": post["event_id"],
        }  # fmt: skip

        # Withdraw: the post is redacted and the update marked withdrawn.
        await reader.say(smart, "!update withdraw")

        async def redacted() -> bool:
            events = await reader.events(announce_id)
            return any(e["event_id"] == post["event_id"] and not e.get("content") for e in events)

        await eventually(redacted, what="the withdrawn update's post to be redacted")
        withdrawn = await service.storage.cohort_update(update_id)
        assert withdrawn is not None and withdrawn.status == "withdrawn"
        assert await service.storage.withdrawn_item_ids([stored.item_id]) == {stored.item_id}
        # The reply comes after the redactions: wait for it, not only for them.
        await reader.wait_for(
            smart, lambda ms: any("withdrawn" in m["content"]["body"] for m in ms),
            sender=bot.user_id,
        )  # fmt: skip

        # A profile change (a member event "join" -> "join") brings no second welcome.
        await reader.call(
            "PUT", f"/_matrix/client/v3/profile/{reader.user_id}/displayname",
            {"displayname": "Ana from Ignacio"},
        )  # fmt: skip
        await reader.say(smart, "!update help")
        await reader.wait_for(
            smart, lambda ms: any("!update edit NEW TEXT" in m["content"]["body"]
                                  and "Share what" in m["content"]["body"] for m in ms),
            sender=bot.user_id,
        )  # fmt: skip
        bodies = [m["content"]["body"] for m in await reader.messages(smart, sender=bot.user_id)]
        assert sum("Welcome to" in b for b in bodies) == 1
        assert sum("Thanks" in b for b in bodies) == 1

        # The weekly prompt (Friday 10:00 in the network's time zone), once per week; a
        # reply to it becomes an update.
        weekly = replace(settings, community=replace(settings.community, weekly_prompt=True))
        friday = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)  # 10:30 in New York
        prompter = CohortUpdates(
            weekly, service.matrix, service.storage, service.router, service.community,
            clock=lambda: friday,
        )  # fmt: skip
        assert await prompter.prompt_once() == 1
        assert await prompter.prompt_once() == 0
        [prompt] = [
            m for m in await reader.messages(smart, sender=bot.user_id)
            if m["content"]["body"] == weekly.community.prompt_text
        ]  # fmt: skip
        reply_id = await reader.say(
            smart,
            f"> <{bot.user_id}> {weekly.community.prompt_text}\n\nWe tried a seed library.",
            **{"m.relates_to": {"m.in_reply_to": {"event_id": prompt["event_id"]}}},
        )
        await reader.wait_for(
            smart, lambda ms: sum("Thanks" in m["content"]["body"] for m in ms) == 2,
            sender=bot.user_id,
        )  # fmt: skip
        from_prompt = await service.storage.cohort_update(reply_id)
        assert from_prompt is not None
        prompt_item = await service.storage.item(from_prompt.item_id)
        assert prompt_item is not None
        assert prompt_item.title == "Ignacio Community Library: We tried a seed library."

        # In the prompt's thread every message is an update (a threaded client points
        # m.in_reply_to at the thread's latest message), and so is !update sent as a reply
        # to the prompt (the bot runs the command, the cohort hook leaves it alone).
        def in_thread(latest: str) -> dict[str, Any]:
            return {"m.relates_to": {
                "rel_type": "m.thread", "event_id": prompt["event_id"], "is_falling_back": True,
                "m.in_reply_to": {"event_id": latest},
            }}  # fmt: skip

        first = await reader.say(smart, "A makerspace night.", **in_thread(prompt["event_id"]))
        second = await reader.say(smart, "And a tool library.", **in_thread(first))
        command = await reader.say(
            smart, "!update We lent 5 laptops.",
            **{"m.relates_to": {"m.in_reply_to": {"event_id": prompt["event_id"]}}},
        )  # fmt: skip
        msgs = await reader.wait_for(
            smart, lambda ms: sum("Thanks" in m["content"]["body"] for m in ms) >= 5,
            sender=bot.user_id,
        )  # fmt: skip
        for event_id in (first, second, command):
            assert await service.storage.cohort_update(event_id) is not None, event_id
        assert sum("Thanks" in m["content"]["body"] for m in msgs) == 5
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await service.close()
