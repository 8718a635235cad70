"""Helpers for the assistance-bot tests (no tests here): a real Synapse world with an asker, a
Need Assistance team member, an outsider and the bot, and the service running in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from network.devtools.devserver import DevHomeserver, DevUser, free_port
from network.devtools.mailsink import MailSink
from network.service import Service
from network.settings.model import Settings, parse_settings
from tests.conftest import new_user
from tests.matrixkit import MatrixReader
from tests.waiting import eventually

Msgs = list[dict[str, Any]]


def bot_settings(tmp: Path, *args: Any, **kw: Any) -> Settings:
    return parse_settings(bot_settings_text(tmp, *args, **kw), base_dir=tmp)


def bot_settings_text(
    tmp: Path,
    synapse: DevHomeserver,
    bot: DevUser,
    *,
    team_room: str = "",
    team: tuple[str, ...] = (),
    help_rooms: tuple[str, ...] = (),
    smtp_url: str = "",
    unsure_escalates: bool = True,
    extra: str = "",
) -> str:
    email = f'[email]\nsmtp_url = "{smtp_url}"\nfrom = "libhub@example.org"\n' if smtp_url else ""
    quoted = ", ".join(f'"{m}"' for m in team)
    helps = ", ".join(f'"{r}"' for r in help_rooms)
    return f"""
[database]
path = "{tmp / "libhub.db"}"
[matrix]
homeserver = "{synapse.url}"
user_id = "{bot.user_id}"
password_env = "BOT_TEST_PASSWORD"
invite_allow = ["{synapse.server_name}"]
sync_timeout = "5s"
[web]
listen = "127.0.0.1:{free_port()}"
{email}
[assistance]
team_room = "{team_room}"
team_members = [{quoted}]
coordinators = [{quoted}]
team_email = "need-assistance@example.org"
help_rooms = [{helps}]
escalate_when_unsure = {str(unsure_escalates).lower()}
timezone = "UTC"
hours = "09:00-17:00"
workdays = ["mon", "tue", "wed", "thu", "fri"]
remind_unclaimed_after = 2.0
remind_unanswered_after = 4.0
max_reminders = 2
auto_close_days = 3.0
check_every = "1h"
[[feeds]]
id = "news"
title = "Network news"
url = "http://127.0.0.1:9/news.xml"
interval = "1d"
{extra}
"""


@dataclass
class Running:
    service: Service
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 20)
        await self.service.close()


async def start(settings: Settings) -> Running:
    """Run the whole service in-process until its first sync is done."""
    service = await Service.create(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))

    def synced() -> bool:
        if task.done():
            task.result()  # the service stopped: raise what stopped it
            raise AssertionError("the service stopped before its first sync")
        return service.matrix.last_sync_ok is not None

    try:
        await eventually(synced, within=60, every=0.05, what="the service's first sync")
    except AssertionError as e:
        raise AssertionError(f"{e} (last error: {service.matrix.last_error})") from e
    return Running(service, stop, task)


@dataclass
class World:
    synapse: DevHomeserver
    bot: DevUser
    asker: MatrixReader
    team: MatrixReader
    outsider: MatrixReader
    team_room: str
    tmp: Path
    mail: MailSink | None = None
    running: list[Running] = field(default_factory=list)

    def settings(self, **kw: Any) -> Settings:
        return bot_settings(
            self.tmp,
            self.synapse,
            self.bot,
            team_room=self.team_room,
            team=(self.team.user_id,),
            smtp_url=self.mail.url if self.mail else "",
            **kw,
        )

    def config_file(self, **kw: Any) -> Path:
        """The settings as a file, for the command line."""
        path = self.tmp / "libhub.toml"
        text = bot_settings_text(
            self.tmp,
            self.synapse,
            self.bot,
            team_room=self.team_room,
            team=(self.team.user_id,),
            smtp_url=self.mail.url if self.mail else "",
            **kw,
        )
        path.write_text(text, encoding="utf-8")
        return path

    async def start(self, **kw: Any) -> Service:
        run = await start(self.settings(**kw))
        self.running.append(run)
        return run.service

    async def restart(self, **kw: Any) -> Service:
        await self.running.pop().close()
        return await self.start(**kw)


@asynccontextmanager
async def world(
    synapse: DevHomeserver, admin: DevUser, tmp: Path, env: Any, *, mail: bool = False
) -> AsyncIterator[World]:
    """Four accounts: the bot, an asker, a team member (who made the team room) and an
    outsider who is in the team room but not on the team."""
    bot = await new_user(synapse, "bot", admin)
    env["BOT_TEST_PASSWORD"] = bot.password
    env["LIBHUB_SECRET"] = "bot-tests-signing-secret-0123456789"
    async with AsyncExitStack() as stack:
        readers = []
        for prefix in ("asker", "team", "outsider"):
            user = await new_user(synapse, prefix, admin)
            readers.append(await stack.enter_async_context(MatrixReader(synapse.url, user)))
        asker, team, outsider = readers
        team_room = await team.create_room(
            invite=[bot.user_id, outsider.user_id], public=False, name="Need Assistance"
        )
        await outsider.join(team_room)
        sink = None
        if mail:
            sink = MailSink(port=0)
            sink.start()
            stack.callback(sink.stop)
        w = World(synapse, bot, asker, team, outsider, team_room, tmp, sink)
        try:
            yield w
        finally:
            for run in reversed(w.running):
                await run.close()


async def direct_chat(person: MatrixReader, bot_id: str) -> str:
    """A direct chat with the bot, once the bot has joined and greeted."""
    data = await person.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        {"preset": "trusted_private_chat", "is_direct": True, "invite": [bot_id]},
    )
    room_id = str(data["room_id"])
    await person.wait_for(room_id, lambda ms: any("Hello!" in body(m) for m in ms), sender=bot_id)
    return room_id


def body(m: dict[str, Any]) -> str:
    return str(m.get("content", {}).get("body", ""))


def replies_to(event_id: str) -> Callable[[Msgs], bool]:
    return lambda ms: any(in_reply_to(m) == event_id for m in ms)


def in_reply_to(m: dict[str, Any]) -> str | None:
    rel = m.get("content", {}).get("m.relates_to") or {}
    return (rel.get("m.in_reply_to") or {}).get("event_id")


def reply_to(ms: Msgs, event_id: str) -> dict[str, Any]:
    [found] = [m for m in ms if in_reply_to(m) == event_id]
    return found


def containing(text: str, count: int = 1) -> Callable[[Msgs], bool]:
    return lambda ms: sum(text in body(m) for m in ms) >= count


async def joined(reader: MatrixReader, room: str, user: str) -> bool:
    members = await reader.call("GET", f"/_matrix/client/v3/rooms/{room}/joined_members")
    return user in members.get("joined", {})
