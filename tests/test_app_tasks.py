"""The service's background loops: one that dies with an error stops the service, which
then fails (so `libhub run` exits non-zero and systemd restarts it)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from network.devtools.devserver import free_port
from network.errors import ServiceFailed
from network.service import Service
from network.settings.model import parse_settings


async def test_a_background_task_that_raises_stops_the_service(
    tmp_path: Path, bot_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    bot_env["APP_TASKS_PW"] = "unused"
    port = free_port()
    settings = parse_settings(
        f"""
[database]
path = "{tmp_path / "libhub.db"}"
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@bot:example.org"
password_env = "APP_TASKS_PW"
[web]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
""",
        base_dir=tmp_path,
    )
    service = await Service.create(settings)

    async def idle(*_args: Any, stop: asyncio.Event, **_kwargs: Any) -> None:
        await stop.wait()  # no homeserver here: the sync loop just waits

    async def broken(stop: asyncio.Event) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("poller broke")

    service.matrix.sync_forever = idle  # type: ignore[method-assign,assignment]
    service.poller.run = broken  # type: ignore[method-assign]
    stop = asyncio.Event()
    try:
        with caplog.at_level(logging.ERROR, logger="network.service"):
            assert ServiceFailed.exit_code == 1  # `libhub run` exits 1: not a config error
            with pytest.raises(ServiceFailed, match=r"poller: RuntimeError\('poller broke'\)"):
                async with asyncio.timeout(60):  # a safety net, not an assertion on time
                    await service.run(stop)
    finally:
        await service.close()
    assert stop.is_set()
    assert "background task poller failed" in caplog.text
