"""A feed publisher for tests: a real aiohttp server whose documents tests can change."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from html import escape

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class FeedItem:
    guid: str
    title: str
    link: str = ""
    summary: str = ""
    published: datetime | None = None
    categories: Sequence[str] = ()


def rss(title: str, items: Sequence[FeedItem], *, link: str = "http://example.org/") -> bytes:
    parts = [
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>',
        f"<title>{escape(title)}</title><link>{escape(link)}</link><description>test</description>",
    ]
    for it in items:
        when = format_datetime(
            it.published or datetime(2026, 11, 20, 12, 0, tzinfo=UTC), usegmt=True
        )
        cats = "".join(f"<category>{escape(c)}</category>" for c in it.categories)
        parts.append(
            f"<item><title>{escape(it.title)}</title><link>{escape(it.link or link + it.guid)}</link>"
            f'<guid isPermaLink="false">{escape(it.guid)}</guid><pubDate>{when}</pubDate>{cats}'
            f"<description>{escape(it.summary)}</description></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


@dataclass
class Scripted:
    """One scripted answer: used once, in order, before ``documents`` is consulted."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    endless: bool = False
    content_type: str = "application/rss+xml"


@dataclass
class Publisher:
    """Serves ``documents[path]`` with an ETag; counts requests per path.

    ``script[path]`` holds answers to give first (errors, redirects, slow or endless
    bodies), so a test can play every misbehaving publisher with one server.
    """

    documents: dict[str, bytes] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    script: dict[str, list[Scripted]] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    server: TestServer | None = None

    async def start(self) -> Publisher:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._serve)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url("/" + path.lstrip("/")))

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.hits[path] = self.hits.get(path, 0) + 1
        self.requests.append(dict(request.headers))
        queue = self.script.get(path)
        if queue:
            answer = queue.pop(0)
            if answer.delay:
                await asyncio.sleep(answer.delay)
            if answer.endless:
                stream = web.StreamResponse(headers={"Content-Type": answer.content_type})
                await stream.prepare(request)
                chunk = b"<!-- " + b"x" * 65536 + b" -->"
                try:
                    for _ in range(100_000):  # bounded: stops by itself after ~6 GB
                        await stream.write(chunk)
                except (ConnectionResetError, RuntimeError):
                    pass
                return stream
            return web.Response(
                status=answer.status,
                body=answer.body,
                headers={"Content-Type": answer.content_type, **answer.headers},
            )
        body = self.documents.get(path)
        if body is None:
            return web.Response(status=404, text="not found")
        etag = '"' + hashlib.sha1(body).hexdigest() + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type="application/rss+xml", headers={"ETag": etag})
