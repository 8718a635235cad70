"""Start-up's objects are set aside from the garbage collector while the service runs
(fewer objects for each full collection to walk: shorter event-loop stalls at 5,000
feeds), and given back when it closes."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

from network.devtools.devserver import free_port
from network.service import Service
from network.settings.model import parse_settings


async def test_the_running_service_freezes_its_start_up_objects_and_closing_releases_them(
    tmp_path: Path, bot_env: dict[str, str]
) -> None:
    bot_env["HEAP_PW"] = "unused"
    port = free_port()
    feeds = "".join(
        f'[[feeds]]\nid = "f{i}"\nurl = "http://127.0.0.1:9/f{i}.xml"\n' for i in range(200)
    )
    settings = parse_settings(
        f"""
[database]
path = "{tmp_path / "libhub.db"}"
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@bot:example.org"
password_env = "HEAP_PW"
[web]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
"""
        + feeds,
        base_dir=tmp_path,
    )
    gc.unfreeze()
    service = await Service.create(settings)
    stop = asyncio.Event()

    async def idle(*_args: Any, stop: asyncio.Event, **_kwargs: Any) -> None:
        await stop.wait()

    service.matrix.sync_forever = idle  # type: ignore[method-assign,assignment]
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
