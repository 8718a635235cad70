"""Shared helpers of the delivery tests (no tests here): config text, service start,
draining the outbox and counting what arrived in a room."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from network.devtools.devserver import DevUser, free_port
from network.service import Service
from network.settings.model import Settings, parse_settings

BOT_ENV = "DELIVERY_BOT_PASSWORD"


def config_text(
    tmp: Path,
    homeserver: str,
    bot: DevUser,
    feed_url: str,
    rooms: Sequence[str],
    *,
    initial_posts: int = 50,
    delivery: str = "",
    extra: str = "",
    feed_extra: str = "",
) -> str:
    room_list = ", ".join(f'"{r}"' for r in rooms)
    return f"""
[database]
path = "{tmp / "libhub.db"}"
[matrix]
homeserver = "{homeserver}"
user_id = "{bot.user_id}"
password_env = "{BOT_ENV}"
sync_timeout = "2s"
[web]
listen = "127.0.0.1:{free_port()}"
[polling]
initial_posts = {initial_posts}
max_age = "3650d"
[delivery]
{delivery}
[[feeds]]
id = "news"
title = "Network news"
url = "{feed_url}"
rooms = [{room_list}]
{feed_extra}
{extra}
"""


def settings_for(tmp: Path, *args: Any, **kwargs: Any) -> Settings:
    return parse_settings(config_text(tmp, *args, **kwargs), base_dir=tmp)


async def started(settings: Settings) -> Service:
    """A service that is logged in and knows its feeds, without its background loops."""
    service = await Service.create(settings)
    await service.matrix.login()
    await service.poller.prepare()
    return service


async def drain(service: Service) -> None:
    while await service.delivery.run_once():
        pass


async def poll_and_deliver(settings: Settings) -> None:
    """One poll of every feed and everything it queued delivered, by a fresh service."""
    service = await started(settings)
    try:
        await service.poller.poll_due()
        await drain(service)
    finally:
        await service.close()


def by_url(messages: Sequence[dict[str, Any]]) -> Counter[str]:
    """How many times each item (by its link) was posted. Edits are not posts, and notices
    without a link (the assistant's greeting when it joins a room) are not items."""
    return Counter(
        str(m["content"]["external_url"])
        for m in messages
        if "m.relates_to" not in m["content"] and "external_url" in m["content"]
    )
