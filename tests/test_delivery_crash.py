"""Crash safety: the service process is killed with SIGKILL while posting 200 items into 3
rooms and started again; in the end each room holds each item exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from network.settings.model import load_settings
from network.storage import Storage
from tests.conftest import new_user
from tests.matrixkit import MatrixReader
from tests.publisher import FeedItem, Publisher, rss
from tests.test_delivery_kit import BOT_ENV, by_url, config_text
from tests.waiting import eventually

pytestmark = [pytest.mark.synapse, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
ITEMS = 200


async def _start(config: Path, log: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "network.cli", "run", "-c", str(config),
            cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip


async def test_sigkill_mid_delivery_then_restart_posts_each_item_once(
    synapse: DevHomeserver, admin: DevUser, reader: MatrixReader, tmp_path: Path
) -> None:
    bot = await new_user(synapse, "crashbot", admin)
    rooms = [await reader.create_room(name=f"crash {i}") for i in range(3)]
    pub = await Publisher().start()
    pub.documents["f.xml"] = rss(
        "F", [FeedItem(f"k{i:03d}", f"Crash test item {i}") for i in range(ITEMS)]
    )
    text = config_text(
        tmp_path,
        synapse.url,
        bot,
        pub.url("f.xml"),
        rooms,
        initial_posts=ITEMS,
        # Individual messages, a little paced so the kill lands in the middle.
        delivery="group_threshold = 1000\nroom_pace = 0.02",
    )
    config = tmp_path / "libhub.toml"
    config.write_text(text)
    health = f"http://{load_settings(config).web.listen}/healthz"
    env = {**os.environ, BOT_ENV: bot.password}
    log = tmp_path / "service.log"

    async def arrived() -> list[int]:
        return [len(await reader.messages(r, sender=bot.user_id)) for r in rooms]

    async def a_third() -> bool:
        return sum(await arrived()) >= ITEMS

    proc = await _start(config, log, env)
    try:
        await eventually(a_third, within=90, every=0.1, what="a third of the messages")
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        at_kill = sum(await arrived())
        assert at_kill < ITEMS * 3, "the kill came too late to prove anything"
        storage = await Storage.open(tmp_path / "libhub.db")
        try:
            left = (await storage.outbox_counts())["pending"]
        finally:
            await storage.close()
        assert left > 0

        proc = await _start(config, log, env)
        async with aiohttp.ClientSession() as http:

            async def done() -> bool:
                try:
                    async with http.get(health) as resp:
                        report = await resp.json()
                except aiohttp.ClientError:
                    return False
                return bool(report["outbox"]["pending"] == 0 and report["outbox"]["sent"] > 0)

            await eventually(done, within=120, every=0.25, what="the outbox to empty")
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await pub.close()
    expected = {f"http://example.org/k{i:03d}" for i in range(ITEMS)}
    for room in rooms:
        counts = by_url(await reader.messages(room, sender=bot.user_id))
        assert set(counts) == expected, f"room {room}: {len(counts)} distinct items"
        twice = {url: n for url, n in counts.items() if n != 1}
        assert not twice, f"room {room} has duplicates: {twice}\n{log.read_text()[-3000:]}"
