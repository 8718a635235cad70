"""Moderation and trends in headless Chromium, with a real Synapse and the public channel an
apprise ``json://`` receiver: two webhook items are held on a moderated route and announced
in the ops room; a coordinator approves one on the dashboard and it reaches the channel once;
another coordinator approves the other with a ✅ reaction on the bot's notice (a member
who is not a coordinator cannot reject it); the audit log
shows both decisions; the trends page shows accessible charts and their table."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright, expect

from network.devtools.devserver import DevHomeserver, DevUser, free_port
from network.service import Service
from network.settings.model import parse_settings
from network.tokens import hook_token
from network.web.dashboard import issue_login_token, login_url
from tests.channelkit import JsonReceiver
from tests.conftest import new_user
from tests.matrixkit import MatrixReader
from tests.test_dashboard_browser import CHROMIUM_ARGS
from tests.waiting import eventually

pytestmark = [
    pytest.mark.synapse,
    pytest.mark.browser,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium"),
]

SECRET = "moderation-browser-secret-0123456789"


async def test_held_items_are_approved_on_the_dashboard_and_by_reaction(
    synapse: DevHomeserver,
    admin: DevUser,
    reader: MatrixReader,
    tmp_path: Path,
    bot_env: dict[str, str],
) -> None:
    bot = await new_user(synapse, "mbot", admin)
    bot_env["MOD_BOT_PW"] = bot.password
    bot_env["LIBHUB_SECRET"] = SECRET
    coordinator = reader.user_id
    stranger = await new_user(synapse, "mstranger", admin)
    ops_room = await reader.create_room(public=True, name="Ops")
    got = JsonReceiver()
    channel_app = web.Application()
    channel_app.router.add_post("/{tail:.*}", got.handle)
    channel = TestServer(channel_app, host="127.0.0.1")
    await channel.start_server()
    port = free_port()
    settings = parse_settings(
        f"""
[network]
name = "Test Library Network"
ops_room = "{ops_room}"
[database]
path = "{tmp_path / "libhub.db"}"
[matrix]
homeserver = "{synapse.url}"
user_id = "{bot.user_id}"
password_env = "MOD_BOT_PW"
[web]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[assistance]
coordinators = ["{coordinator}"]
[channels.public]
urls = ["json://127.0.0.1:{channel.port}/public"]
[[hooks]]
id = "calendar"
title = "Events calendar"
[[routes]]
feeds = ["hook:calendar"]
channels = ["public"]
moderation = "hold"
channel_template = "{{{{ title }}}}"
[moderation]
notice_every = "1s"
""",
        base_dir=tmp_path,
    )
    service = await Service.create(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    base = f"http://127.0.0.1:{port}"
    hook_url = f"{base}/hooks/" + hook_token(SECRET.encode(), "calendar")
    try:
        await asyncio.wait_for(service.started.wait(), 10)
        async with aiohttp.ClientSession() as http:
            for n, title in enumerate(["Seed swap Saturday", "Teen coding club"]):
                async with http.post(hook_url, json={"id": str(n), "title": title}) as resp:
                    assert resp.status == 202, await resp.text()

        def notices(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [m for m in ms if m["content"]["body"].startswith("Held for review")]

        msgs = await reader.wait_for(ops_room, lambda ms: len(notices(ms)) == 2, sender=bot.user_id)
        [seed_notice, teen_notice] = notices(msgs)
        assert "Seed swap Saturday (from Events calendar)" in seed_notice["content"]["body"]
        assert "React ✅ to approve" in seed_notice["content"]["body"]
        [seed, teen] = await service.storage.held_items()
        assert got.messages == []

        token = issue_login_token(settings, "dana", now=datetime.now(UTC))
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page()
                await page.goto(login_url(settings, token))
                await page.get_by_role("button", name="Log in", exact=True).click()
                await page.get_by_role("link", name="Moderation").click()
                await expect(page.get_by_role("heading", level=1)).to_have_text("Moderation")
                await expect(page.locator(f"#held-{seed.item.id}")).to_contain_text(
                    "Events calendar"
                )
                await page.get_by_role("button", name=f"Approve item {seed.item.id}").click()
                await expect(page.get_by_role("status")).to_contain_text(
                    f"Item #{seed.item.id} is approved"
                )
                await expect(page.locator(f"#held-{seed.item.id}")).to_have_count(0)
                await eventually(
                    lambda: "Seed swap Saturday" in got.messages, what="the approved item"
                )

                # The other one by reactions in the ops room: a member who is not a
                # coordinator rejects it first, which is ignored (events are handled in
                # order, so the later approval would change nothing if it had counted).
                async with MatrixReader(synapse.url, stranger) as other:
                    await other.join(ops_room)
                    await other.send(
                        ops_room,
                        {
                            "m.relates_to": {
                                "rel_type": "m.annotation",
                                "event_id": teen_notice["event_id"],
                                "key": "❌",
                            }
                        },
                        event_type="m.reaction",
                    )
                await reader.send(
                    ops_room,
                    {
                        "m.relates_to": {
                            "rel_type": "m.annotation",
                            "event_id": teen_notice["event_id"],
                            "key": "✅",
                        }
                    },
                    event_type="m.reaction",
                )
                await eventually(
                    lambda: "Teen coding club" in got.messages, what="the item approved by ✅"
                )
                await reader.wait_for(
                    ops_room,
                    lambda ms: any(
                        m["content"]["body"].startswith(f"Approved by {coordinator}") for m in ms
                    ),
                    sender=bot.user_id,
                )

                await page.get_by_role("link", name="Audit log", exact=True).click()
                audit = page.locator("#audit tbody")
                await expect(audit.locator("tr")).to_have_count(2)
                for n, (who, item_id) in enumerate(
                    [(coordinator, teen.item.id), ("dana", seed.item.id)]
                ):
                    cells = audit.locator("tr").nth(n).locator("td")
                    await expect(cells.nth(1)).to_have_text(who)
                    await expect(cells.nth(2)).to_have_text("approve")
                    await expect(cells.nth(3)).to_have_text(f"item:{item_id}")

                await page.get_by_role("link", name="Trends").click()
                await expect(page.locator("svg[role=img]")).to_have_count(8)
                chart = page.get_by_role("img", name="Items delivered")
                await expect(chart).to_be_visible()
                table = page.locator("#trends-table")
                await expect(table.locator("tbody tr")).to_have_count(90)
                # Today's row (first) counts the two deliveries.
                await expect(table.locator("tbody tr").nth(0).locator("td").nth(0)).to_have_text(
                    "2"
                )
            finally:
                await browser.close()
        # Nothing more arrives: each approved item reached the channel once.
        await asyncio.sleep(0)
        assert sorted(got.messages) == ["Seed swap Saturday", "Teen coding club"]
        counts = await service.storage.outbox_counts()
        assert counts["sent"] == 2 and counts.get("held", 0) == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await service.close()
        await channel.close()
