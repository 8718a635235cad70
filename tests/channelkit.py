"""A channel at the other end of apprise's ``json://``: a local aiohttp server that keeps
every notification it is sent, for the tests of what reaches a social or notification
channel (moderation, webhooks, live feeds and routes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


class JsonReceiver:
    """Keeps each JSON payload apprise posts, in order."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    @property
    def messages(self) -> list[str]:
        """The text of each notification (apprise's ``message`` field)."""
        return [str(p["message"]) for p in self.payloads]

    async def handle(self, request: web.Request) -> web.Response:
        self.payloads.append(await request.json())
        return web.json_response({"ok": True})


@asynccontextmanager
async def json_receiver() -> AsyncIterator[tuple[JsonReceiver, int]]:
    """A running receiver on loopback and its port (``json://127.0.0.1:PORT/any/path``)."""
    got = JsonReceiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", got.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield got, server.port or 0
    finally:
        await server.close()
