"""``libhub demo``: the whole service on loopback with nothing installed by hand.

Starts a real Synapse (network/devtools/devserver.py), a mail sink that keeps what it receives,
an HTTP server for the sample feeds in ``config/demo-feeds/``, creates the bot and a
demo librarian with the demo rooms, then runs the service with ``config/demo.toml``.
Ctrl-C stops everything in reverse order.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import aiohttp
from aiohttp import web
from rich.console import Console

from network.devtools.demofeeds import feed_site
from network.devtools.demosecrets import DEMO_CONFIG, demo_secrets
from network.devtools.devserver import DevHomeserver, DevUser, free_port
from network.devtools.mailsink import MailSink
from network.service import Service
from network.settings.model import Settings, load_settings
from network.storage.subscribers import Preferences
from network.subscriptions.topics import next_due, parse_address
from network.web.dashboard import issue_login_token, login_url

REPO = Path(__file__).resolve().parents[2]
CONFIG = DEMO_CONFIG
FEEDS_DIR = REPO / "config" / "demo-feeds"
LIBRARIAN = ("librarian", "librarian-demo")
# A second Need Assistance team member, so a case can be claimed by someone other than the
# librarian who asked the bot.
TEAM_MEMBER = ("helper", "helper-demo")
# A subscriber who reads only email: each new item reaches the mail sink as a notice.
READER = "reader@libhub.localhost"
DEMO_ROOMS = {
    "announcements": "Network announcements",
    "webinars": "Webinars",
    "smart-spaces": "Small Libraries Create Smart Spaces",
    "help": "Ask the toolbox bot",
    "need-assistance": "Need Assistance team",
    "ops": "libhub operations",
}

console = Console()


def _port_or_free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


async def serve_feeds(port: int) -> web.AppRunner:
    app = await asyncio.to_thread(feed_site, FEEDS_DIR)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def create_rooms(server: DevHomeserver, librarian: DevUser, bot_id: str) -> None:
    """The librarian owns the demo rooms (public, so the bot joins by alias).

    The bot gets the same power level: it links the rooms to the network's space
    (``[community]`` in config/demo.toml), which takes a state event in each room.
    """
    headers = {"Authorization": f"Bearer {librarian.access_token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for alias, name in DEMO_ROOMS.items():
            full = f"#{alias}:{server.server_name}"
            async with http.get(
                f"{server.url}/_matrix/client/v3/directory/room/{full.replace('#', '%23')}"
            ) as resp:
                if resp.status == 200:
                    continue
            body = {
                "room_alias_name": alias,
                "name": name,
                "preset": "public_chat",
                "invite": [bot_id],
                # Only the bot: a room's creator already has the top level (room
                # version 12 refuses to list the creator here at all).
                "power_level_content_override": {"users": {bot_id: 100}},
            }
            async with http.post(f"{server.url}/_matrix/client/v3/createRoom", json=body) as resp:
                resp.raise_for_status()


def demo_settings(
    data_dir: Path, hs_url: str, smtp_port: int, feeds_port: int, web_port: int
) -> Settings:
    settings = load_settings(CONFIG)
    feeds = tuple(
        replace(f, url=f.url.replace("127.0.0.1:8090", f"127.0.0.1:{feeds_port}"))
        for f in settings.feeds
    )
    return replace(
        settings,
        database=replace(settings.database, path=str((data_dir / "libhub.db").resolve())),
        matrix=replace(settings.matrix, homeserver=hs_url),
        email=replace(settings.email, smtp_url=f"smtp://127.0.0.1:{smtp_port}"),
        web=replace(
            settings.web,
            listen=f"127.0.0.1:{web_port}",
            public_url=f"http://127.0.0.1:{web_port}",
        ),
        feeds=feeds,
    )


async def join_team_room(server: DevHomeserver, member: DevUser) -> None:
    """The second team member sits in the Need Assistance room (public: joined by alias)."""
    alias = quote(f"#need-assistance:{server.server_name}", safe="")
    headers = {"Authorization": f"Bearer {member.access_token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{server.url}/_matrix/client/v3/join/{alias}", json={}) as resp:
            resp.raise_for_status()


async def add_reader(service: Service) -> None:
    """The demo's email-only subscriber (already there after the first run)."""
    address = parse_address(READER, schemes=None)
    topics = tuple(f"kind:{k}" for k in ("news", "webinar", "cohort-update"))
    await service.storage.add_subscriber(
        address=address.value,
        address_key=address.key,
        channel=address.channel,
        prefs=Preferences(topics, "immediate", service.settings.network.timezone, 8, 0),
        source="demo",
        consent="the demo's sample subscriber",
        now=datetime.now(UTC),
        next_due=next_due,
    )


def admin_token_command(data_dir: Path) -> str:
    """The command that prints a new dashboard link while the demo runs.

    With the default data dir it is the plain command (the CLI finds the demo's secrets
    beside the database config/demo.toml names); otherwise it reads the secret from this
    data dir's file, without showing it on screen.
    """
    config = os.path.relpath(CONFIG) if Path.cwd() in CONFIG.parents else str(CONFIG)
    plain = f"libhub admin token -c {shlex.quote(config)}"
    settings = load_settings(CONFIG)
    if data_dir.resolve() == settings.database_path.parent.resolve():
        return plain
    secret_file = shlex.quote(str(data_dir.resolve() / "secrets"))
    return f"{settings.web.secret_env}=$(sed -n 2p {secret_file}) {plain}"


async def run_demo(data_dir: Path) -> int:
    bot_password, web_secret = await asyncio.to_thread(demo_secrets, data_dir)
    os.environ["LIBHUB_DEMO_BOT_PASSWORD"] = bot_password
    os.environ.setdefault("LIBHUB_DEMO_SECRET", web_secret)

    hs_port, smtp_port = _port_or_free(8008), _port_or_free(8025)
    feeds_port, web_port = _port_or_free(8090), _port_or_free(8080)
    server = DevHomeserver(data_dir / "synapse", port=hs_port)
    sink = MailSink(port=smtp_port, folder=data_dir / "mail")
    sink_started = False
    feeds_runner: web.AppRunner | None = None
    service: Service | None = None
    # Everything starts inside the try: a failure half-way stops what already started.
    try:
        with console.status("starting the local homeserver (Synapse)…"):
            await server.start()
        sink.start()
        sink_started = True
        feeds_runner = await serve_feeds(feeds_port)
        bot = await server.register("libhub", bot_password)
        librarian = await server.register(*LIBRARIAN, admin=True, displayname="Demo Librarian")
        await server.lift_ratelimit(bot.user_id, librarian.access_token)
        helper = await server.register(*TEAM_MEMBER, displayname="Demo Team Member")
        await create_rooms(server, librarian, bot.user_id)
        await join_team_room(server, helper)
        settings = demo_settings(data_dir, server.url, smtp_port, feeds_port, web_port)
        service = await Service.create(settings)
        await add_reader(service)
        login = login_url(settings, issue_login_token(settings, "demo", now=datetime.now(UTC)))
        again = admin_token_command(data_dir)
        console.print(
            f"""
[bold]libhub demo is running[/bold]  (Ctrl-C stops everything)

  Homeserver   {server.url}   (log in with any Matrix client, e.g. Element, "custom server")
  Librarian    user [bold]{LIBRARIAN[0]}[/bold]  password [bold]{LIBRARIAN[1]}[/bold]
  Team member  user [bold]{TEAM_MEMBER[0]}[/bold]  password [bold]{TEAM_MEMBER[1]}[/bold]
               (Need Assistance team: claims the questions the bot passes on)
  Space        {settings.community.space}  (the demo rooms below are in it)
  Rooms        {", ".join(f"#{a}:{server.server_name}" for a in DEMO_ROOMS)}
  Web          {settings.web.public_url}/subscribe   (and /healthz, /metrics)
  Dashboard    {login}
               (works once; a new link: {again})
  Feeds        http://127.0.0.1:{feeds_port}/
  Mail sink    {sink.url}  (messages saved in {data_dir / "mail"})
  Subscriber   {READER} gets new items by email as they arrive

The sample items arrive in the rooms, and as mail in {data_dir / "mail"}, within a minute.
""",
            soft_wrap=True,  # long URLs stay on one line, so they can be copied
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await service.run(stop)
    finally:
        console.print("stopping…")
        if service is not None:
            await service.close()
        if feeds_runner is not None:
            await feeds_runner.cleanup()
        if sink_started:
            sink.stop()
        await server.stop()
    return 0
