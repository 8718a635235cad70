"""The staff dashboard in headless Chromium against a running service and a real Synapse: a
coordinator logs in with a one-time link, sees a delivery that failed because the bot was
not in the room, fixes the cause (the room invites the bot), retries it with the button and
sees it sent; without logging in the dashboard is refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from network.devtools.devserver import DevHomeserver, DevUser, free_port
from network.service import Service
from network.settings.model import parse_settings
from network.storage import ItemInput, Target
from network.web.dashboard import issue_login_token, login_url
from tests.conftest import new_user
from tests.matrixkit import MatrixReader
from tests.waiting import eventually

pytestmark = pytest.mark.synapse

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def test_coordinator_retries_a_failed_delivery_in_the_browser(
    synapse: DevHomeserver,
    admin: DevUser,
    reader: MatrixReader,
    tmp_path: Path,
    bot_env: dict[str, str],
) -> None:
    bot = await new_user(synapse, "dbot", admin)
    bot_env["DASH_BOT_PW"] = bot.password
    bot_env["LIBHUB_SECRET"] = "browser-test-secret-0123456789"
    room_id = await reader.create_room(public=False, name="Branch news")  # bot not invited
    port = free_port()
    settings = parse_settings(
        f"""
[network]
name = "Test Library Network"
[database]
path = "{tmp_path / "libhub.db"}"
[matrix]
homeserver = "{synapse.url}"
user_id = "{bot.user_id}"
password_env = "DASH_BOT_PW"
[web]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
""",
        base_dir=tmp_path,
    )
    service = await Service.create(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await asyncio.wait_for(service.started.wait(), 10)
        item = ItemInput(
            key="n1", kind="news", title="Hotspot lending expands to 12 branches",
            link="https://example.org/hotspots", published=None, author=None, categories=(),
            summary_html="<p>Twelve branches.</p>", enclosures=(), event_start=None,
            content_hash="n1",
        )  # fmt: skip
        await service.storage.store_items(
            "news", [item], targets=lambda _i: [Target("matrix", room_id)],
            post=lambda _i: True, edit_window=timedelta(days=1), now=datetime.now(UTC),
        )  # fmt: skip
        service.delivery.wake()

        async def failed() -> bool:
            return bool(await service.storage.failed_rows())

        await eventually(failed, what="the delivery to fail")
        [row] = await service.storage.failed_rows()
        base = f"http://127.0.0.1:{port}"
        token = issue_login_token(settings, "dana", now=datetime.now(UTC))

        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            try:
                # Without a session the dashboard sends people to the login page.
                stranger = await browser.new_page()
                await stranger.goto(f"{base}/dashboard/outbox")
                assert stranger.url == f"{base}/dashboard/login"
                await expect(stranger.get_by_role("heading", level=1)).to_have_text(
                    "Log in to the staff dashboard"
                )
                await expect(stranger.get_by_text("Hotspot lending")).to_have_count(0)

                page = await browser.new_page()
                await page.goto(login_url(settings, token))
                await page.get_by_role("button", name="Log in").click()
                await expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
                await expect(page.get_by_text("Logged in as dana")).to_be_visible()
                await page.get_by_role("link", name="Outbox").click()
                failed_row = page.locator(f"#row-{row.id}")
                await expect(failed_row).to_contain_text("Hotspot lending expands")
                await expect(failed_row).to_contain_text("cannot post to")

                # The cause goes away: the room invites the bot. Then retry.
                await reader.call(
                    "POST", f"/_matrix/client/v3/rooms/{room_id}/invite",
                    {"user_id": bot.user_id},
                )  # fmt: skip
                await page.get_by_role("button", name=f"Retry delivery {row.id}").click()
                await expect(page.get_by_role("status")).to_contain_text(
                    f"Delivery #{row.id} is queued again"
                )

                msgs = await reader.wait_for(
                    room_id, lambda ms: any("Hotspot lending" in m["content"]["body"] for m in ms),
                    sender=bot.user_id,
                )  # fmt: skip
                assert sum("Hotspot lending" in m["content"]["body"] for m in msgs) == 1
                await page.reload()
                await expect(page.locator(f"#row-{row.id}")).to_have_count(0)
                await expect(page.get_by_text("No failed deliveries.")).to_be_visible()
                await page.get_by_role("link", name="Overview").click()
                sent = page.locator("dl.counts div", has_text="Sent")
                await expect(sent.locator("dd")).to_have_text("1")

                # The login link cannot be used a second time.
                again = await browser.new_page()
                await again.goto(login_url(settings, token))
                await again.get_by_role("button", name="Log in").click()
                await expect(again.get_by_role("alert")).to_contain_text("already used")
            finally:
                await browser.close()
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await service.close()
