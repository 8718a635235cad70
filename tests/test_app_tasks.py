"""The service's background loops: one that dies with an error stops the service, which
then fails (so `libhub run` exits non-zero and systemd restarts it). And the running
service's heap: start-up's objects are set aside from the garbage collector (fewer objects
for each full collection to walk: shorter event-loop stalls at 5,000 feeds) and given back
when it closes."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any

import pytest

from network.devtools.devserver import free_port
from network.errors import ServiceFailed
from network.service import Service
from network.settings.model import Settings, parse_settings


def _settings(tmp_path: Path, bot_env: dict[str, str], extra: str = "") -> Settings:
    """A service with no homeserver to reach (its sync loop is replaced by `_idle`)."""
    bot_env["APP_TASKS_PW"] = "unused"
    port = free_port()
    return parse_settings(
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
"""
        + extra,
        base_dir=tmp_path,
    )


async def _idle(*_args: Any, stop: asyncio.Event, **_kwargs: Any) -> None:
    await stop.wait()  # no homeserver here: the sync loop just waits


async def test_a_background_task_that_raises_stops_the_service(
    tmp_path: Path, bot_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    service = await Service.create(_settings(tmp_path, bot_env))

    async def broken(stop: asyncio.Event) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("poller broke")

    service.matrix.sync_forever = _idle  # type: ignore[method-assign,assignment]
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


async def test_the_running_service_freezes_its_start_up_objects_and_closing_releases_them(
    tmp_path: Path, bot_env: dict[str, str]
) -> None:
    feeds = "".join(
        f'[[feeds]]\nid = "f{i}"\nurl = "http://127.0.0.1:9/f{i}.xml"\n' for i in range(200)
    )
    settings = _settings(tmp_path, bot_env, feeds)
    gc.unfreeze()
    service = await Service.create(settings)
    stop = asyncio.Event()
    service.matrix.sync_forever = _idle  # type: ignore[method-assign,assignment]
    running = asyncio.create_task(service.run(stop))
    try:
        await asyncio.wait_for(service.started.wait(), 30)
        # Every feed's settings among them: a full collection no longer walks them.
        assert gc.get_freeze_count() > 0
        walked = {id(o) for o in gc.get_objects()}  # what a collection walks
        assert id(settings.feeds[0]) not in walked
    finally:
        stop.set()
        await running
        await service.close()
    assert gc.get_freeze_count() == 0
    assert id(settings.feeds[0]) in {id(o) for o in gc.get_objects()}
