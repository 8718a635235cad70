"""feeds.fetch against real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from feeds.addresses import IPAddress, is_private_address
from feeds.errors import FetchError, NotAFeedError
from feeds.fetch import Fetcher, make_session
from feeds.parse import parse_feed

DATA = Path(__file__).parent / "data" / "feeds"
FEED = (DATA / "rss2_guardian-us-news_55-items_media-content_dc-date.xml").read_bytes()
GZ_FILE = (DATA / "rss2_nshipster_gzip-compressed-body_113kB-single-item.xml.gz").read_bytes()
HTML_PAGE = (DATA / "not-a-feed_marketwatch-document-moved-html.xml").read_bytes()
UA = "libhub-test/1.0 (+https://lib.example.org/about-the-bot)"
NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
ETAG = '"guardian-v1"'
LAST_MODIFIED = "Wed, 31 Jan 2018 20:15:15 GMT"

ServerFactory = Callable[..., Awaitable[TestServer]]


@dataclass
class Gate:
    """Holds /hold requests until opened, counting how many are held at once."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    full: asyncio.Event = field(default_factory=asyncio.Event)  # `target` requests held
    target: int = 3
    in_flight: int = 0
    max_in_flight: int = 0


@dataclass
class ServerState:
    seen: list[dict[str, str]] = field(default_factory=list)  # request headers, in order
    in_flight: int = 0
    max_in_flight: int = 0


STATE = web.AppKey("state", ServerState)


def build_app(gate: Gate | None = None) -> web.Application:
    """The test feed server; `gate` (shared between servers) holds /hold requests."""
    app = web.Application()
    state = ServerState()
    app[STATE] = state
    seen = state.seen

    async def feed(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        if request.headers.get("If-None-Match") == ETAG or (
            request.headers.get("If-Modified-Since") == LAST_MODIFIED
        ):
            return web.Response(status=304, headers={"ETag": ETAG})
        return web.Response(
            body=FEED,
            content_type="application/rss+xml",
            headers={
                "ETag": ETAG,
                "Last-Modified": LAST_MODIFIED,
                "Cache-Control": "public, max-age=900",
                "Age": "300",
                "Expires": "Tue, 04 Mar 2025 14:00:00 GMT",
            },
        )

    async def status(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        code = int(request.match_info["code"])
        headers = {}
        if "retry" in request.query:
            headers["Retry-After"] = request.query["retry"]
        return web.Response(status=code, text=f"status {code}", headers=headers)

    async def redirect(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        target = request.query.get("to", "/feed")
        return web.Response(status=code, headers={"Location": target})

    async def loop(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/loop"})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=FEED)

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        await response.prepare(request)
        chunk = b"<item><title>more</title></item>" * 512
        while True:  # until the client hangs up
            await response.write(chunk)

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        await response.prepare(request)
        while True:  # one byte at a time: never idle long enough for the read timeout
            await response.write(b" ")
            await asyncio.sleep(0.05)

    async def gzip_encoded(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(FEED),
            headers={"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"},
        )

    async def gz_file(request: web.Request) -> web.Response:
        return web.Response(body=GZ_FILE, content_type="application/xml")

    async def gz_bomb(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b" " * 2**20), content_type="application/xml")

    async def html_page(request: web.Request) -> web.Response:
        return web.Response(body=HTML_PAGE, content_type="text/html")

    async def hold(request: web.Request) -> web.Response:
        assert gate is not None
        for counter in (state, gate):
            counter.in_flight += 1
            counter.max_in_flight = max(counter.max_in_flight, counter.in_flight)
        if gate.in_flight >= gate.target:
            gate.full.set()
        try:
            await gate.opened.wait()
        finally:
            state.in_flight -= 1
            gate.in_flight -= 1
        return web.Response(body=FEED)

    app.router.add_get("/feed", feed)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/redirect/{code}", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/slow", slow)
    app.router.add_get("/endless", endless)
    app.router.add_get("/drip", drip)
    app.router.add_get("/gzip", gzip_encoded)
    app.router.add_get("/feed.xml.gz", gz_file)
    app.router.add_get("/bomb", gz_bomb)
    app.router.add_get("/html", html_page)
    app.router.add_get("/hold", hold)

    async def browsers_only(request: web.Request) -> web.Response:
        # A firewall in front of a publisher that refuses clients not claiming Mozilla.
        seen.append(dict(request.headers))
        if not request.headers.get("User-Agent", "").startswith("Mozilla/5.0"):
            return web.Response(status=403, text="Forbidden")
        return web.Response(body=FEED, content_type="application/rss+xml")

    app.router.add_get("/browsers-only", browsers_only)
    return app


@pytest.fixture
async def server(aiohttp_server: ServerFactory) -> TestServer:
    return await aiohttp_server(build_app())


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session() as s:
        yield s


def fetcher(session: aiohttp.ClientSession, **kwargs: Any) -> Fetcher:
    return Fetcher(session, user_agent=UA, **kwargs)


async def test_full_fetch_then_conditional_get(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    f = fetcher(session)
    url = str(server.make_url("/feed"))
    first = await f.fetch(url, now=NOW)
    assert first.status == "ok" and first.http_status == 200
    assert first.body == FEED
    assert first.etag == ETAG and first.last_modified == LAST_MODIFIED
    assert first.cache_max_age_s == 600  # max-age 900 minus Age 300
    assert first.expires == datetime(2025, 3, 4, 14, 0, tzinfo=UTC)
    assert first.permanent_redirect is None and first.url == url
    assert len(parse_feed(first.body, url=first.url, headers=first.headers).items) == 55

    again = await f.fetch(url, etag=first.etag, last_modified=first.last_modified, now=NOW)
    assert again.status == "not_modified" and again.http_status == 304
    assert again.body is None
    assert again.etag == ETAG and again.last_modified == LAST_MODIFIED  # kept for next time
    sent = server.app[STATE].seen[-1]
    assert sent["If-None-Match"] == ETAG
    assert sent["If-Modified-Since"] == LAST_MODIFIED

    # Last-Modified alone is enough for this server.
    only_date = await f.fetch(url, last_modified=LAST_MODIFIED)
    assert only_date.status == "not_modified"


async def test_user_agent_and_accept_are_sent(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    await fetcher(session).fetch(str(server.make_url("/feed")))
    sent = server.app[STATE].seen[-1]
    assert sent["User-Agent"] == UA
    assert "application/rss+xml" in sent["Accept"]
    assert "gzip" in sent["Accept-Encoding"]
    assert "If-None-Match" not in sent


async def test_same_body_hash_is_unchanged(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    f = fetcher(session)
    url = str(server.make_url("/feed"))
    first = await f.fetch(url)
    second = await f.fetch(url, previous_hash=first.body_hash)
    assert second.status == "unchanged" and second.body is None
    assert second.body_hash == first.body_hash
    third = await f.fetch(url, previous_hash="0" * 64)
    assert third.status == "ok" and third.body == FEED


@pytest.mark.parametrize(
    ("path", "retry_after"),
    [
        ("/status/429?retry=120", 120.0),
        ("/status/429?retry=Tue,%2004%20Mar%202025%2012:02:00%20GMT", 120.0),
        ("/status/503?retry=30", 30.0),
        ("/status/503", None),
        ("/status/502", None),
    ],
)
async def test_transient_http_errors(
    server: TestServer, session: aiohttp.ClientSession, path: str, retry_after: float | None
) -> None:
    with pytest.raises(FetchError) as caught:
        await fetcher(session).fetch(str(server.make_url(path)), now=NOW)
    error = caught.value
    assert error.transient is True
    assert error.status == int(path.split("/")[2][:3])
    assert error.retry_after == retry_after
    assert f"HTTP {error.status}" in str(error)
    if retry_after:
        assert f"wait {retry_after:g} s" in str(error)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (404, "no feed at this address"),
        (401, "login"),
        (403, "refuses access"),
        (410, "removed this feed for good"),
        (400, "rejected the request"),
    ],
)
async def test_permanent_http_errors(
    server: TestServer, session: aiohttp.ClientSession, code: int, words: str
) -> None:
    url = str(server.make_url(f"/status/{code}"))
    with pytest.raises(FetchError, match=words) as caught:
        await fetcher(session).fetch(url)
    error = caught.value
    assert error.transient is False and error.status == code and error.url == url
    assert error.gone is (code == 410)


async def test_403_from_a_browser_only_firewall_is_asked_once_more(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    result = await fetcher(session).fetch(str(server.make_url("/browsers-only")))
    assert result.body == FEED
    first, second = [h["User-Agent"] for h in server.app[STATE].seen]
    assert first == UA
    # The second ask still names libhub and its contact page.
    assert second == f"Mozilla/5.0 (compatible; {UA})"
    # A plain 403 is asked twice, then reported; never more.
    server.app[STATE].seen.clear()
    with pytest.raises(FetchError, match="refuses access"):
        await fetcher(session).fetch(str(server.make_url("/status/403")))
    assert len(server.app[STATE].seen) == 2


async def test_slow_server_hits_read_timeout(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(FetchError, match="time limit") as caught:
        await fetcher(session, read_timeout=0.3).fetch(str(server.make_url("/slow")))
    assert caught.value.transient is True


async def test_dripping_server_hits_total_timeout(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    f = fetcher(session, read_timeout=5, total_timeout=0.5)
    with pytest.raises(FetchError, match=r"total 0.5 s") as caught:
        await f.fetch(str(server.make_url("/drip")))
    assert caught.value.transient is True


async def test_endless_body_stops_at_the_cap(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(FetchError, match=r"larger than 0.25 MiB") as caught:
        await fetcher(session, max_bytes=256 * 1024).fetch(str(server.make_url("/endless")))
    assert caught.value.transient is False


async def test_declared_length_over_the_cap_is_refused(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(FetchError, match="larger than"):
        await fetcher(session, max_bytes=64 * 1024).fetch(str(server.make_url("/feed")))


@pytest.mark.parametrize("code", [301, 308])
async def test_permanent_redirect_is_reported(
    server: TestServer, session: aiohttp.ClientSession, code: int
) -> None:
    result = await fetcher(session).fetch(str(server.make_url(f"/redirect/{code}")))
    assert result.status == "ok" and result.body == FEED
    assert result.permanent_redirect == str(server.make_url("/feed"))
    assert result.url == str(server.make_url("/feed"))


async def test_temporary_redirects_are_not_permanent(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    f = fetcher(session)
    temporary = await f.fetch(str(server.make_url("/redirect/302")))
    assert temporary.permanent_redirect is None and temporary.body == FEED
    # 301 to a 302: only the permanent hop counts, so store the 302's address.
    chained = await f.fetch(str(server.make_url("/redirect/301?to=/redirect/307")))
    assert chained.permanent_redirect == str(server.make_url("/redirect/307"))


async def test_redirect_loop_is_permanent_error(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    url = str(server.make_url("/loop"))
    with pytest.raises(FetchError, match="redirect") as caught:
        await fetcher(session).fetch(url)
    assert caught.value.transient is False


async def test_html_page_with_200_is_fetched_but_not_a_feed(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    result = await fetcher(session).fetch(str(server.make_url("/html")))
    assert result.status == "ok" and result.body is not None
    with pytest.raises(NotAFeedError, match="not a feed: the server returned an HTML page"):
        parse_feed(result.body, url=result.url, headers=result.headers)


async def test_gzip_content_encoding_is_decoded(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    result = await fetcher(session).fetch(str(server.make_url("/gzip")))
    assert result.headers["content-encoding"] == "gzip"
    assert result.body == FEED


async def test_gzip_bytes_without_content_encoding_are_unpacked(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    result = await fetcher(session).fetch(str(server.make_url("/feed.xml.gz")))
    assert result.body is not None and result.body.lstrip().startswith(b"<?xml")
    assert len(parse_feed(result.body, url=result.url).items) == 25
    with pytest.raises(FetchError, match=r"larger than 0\.0625 MiB"):
        await fetcher(session, max_bytes=64 * 1024).fetch(str(server.make_url("/bomb")))


async def test_connection_refused_is_transient(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/feed"
    with pytest.raises(FetchError, match="could not connect") as caught:
        await fetcher(session).fetch(url)
    assert caught.value.transient is True and caught.value.url == url


@pytest.mark.parametrize("url", ["ftp://example.org/feed", "not a url"])
async def test_unfetchable_urls_are_permanent(session: aiohttp.ClientSession, url: str) -> None:
    with pytest.raises(FetchError) as caught:
        await fetcher(session).fetch(url)
    assert caught.value.transient is False


async def test_concurrency_is_bounded_per_host_and_overall(
    aiohttp_server: ServerFactory, session: aiohttp.ClientSession
) -> None:
    gate = Gate()
    one = await aiohttp_server(build_app(gate))
    two = await aiohttp_server(build_app(gate))
    f = fetcher(session, per_host=2, max_concurrency=3)
    urls = [str(s.make_url("/hold")) for _ in range(5) for s in (one, two)]
    fetches = asyncio.gather(*(f.fetch(u) for u in urls))
    # Wait until the global limit is reached, then give the seven other requests a chance to
    # slip through before opening the gate (a correct bound holds however long this takes).
    await asyncio.wait_for(gate.full.wait(), timeout=30)
    await asyncio.sleep(0.1)
    assert gate.in_flight == 3
    assert one.app[STATE].in_flight == 2 and two.app[STATE].in_flight == 1
    gate.opened.set()
    results = await fetches
    assert all(r.status == "ok" for r in results)
    assert gate.max_in_flight == 3
    assert one.app[STATE].max_in_flight == 2 and two.app[STATE].max_in_flight <= 2
    assert f._hosts == {}  # per-host slots are released when idle


# ---------------------------------------------------------------- redirects to private addresses

PLAYS_PUBLIC = ipaddress.ip_address("127.0.0.2")


def public_127_0_0_2(ip: IPAddress) -> bool:
    """The address rule of the tests: 127.0.0.2 plays a host on the internet."""
    return ip != PLAYS_PUBLIC and is_private_address(ip)


@pytest.mark.parametrize(
    ("address", "private"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("192.168.0.1", True),
        ("169.254.169.254", True),  # cloud metadata
        ("100.64.0.1", True),  # shared (carrier-grade NAT)
        ("0.0.0.0", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("::ffff:127.0.0.1", True),
        ("224.0.0.1", True),
        ("93.184.216.34", False),
        ("2606:2800:220:1:248:1893:25c8:1946", False),
    ],
)
def test_is_private_address(address: str, private: bool) -> None:
    assert is_private_address(ipaddress.ip_address(address)) is private


@dataclass
class Hostile:
    """A feed server on 127.0.0.2 (playing public) that redirects wherever it is told, and
    a loopback-only service on 127.0.0.1 with a /metrics page it must not reach."""

    public: TestServer
    local: TestServer
    metrics_hits: list[str]

    def redirect(self, to: str) -> str:
        return str(self.public.make_url("/go").with_query(to=to))


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    hits: list[str] = []

    async def go(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def feed(request: web.Request) -> web.Response:
        return web.Response(body=FEED, content_type="application/rss+xml")

    async def metrics(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="libhub_items_total 42\n")

    public_app = web.Application()
    public_app.router.add_get("/go", go)
    public_app.router.add_get("/feed", feed)
    local_app = web.Application()
    local_app.router.add_get("/metrics", metrics)
    local_app.router.add_get("/go", go)
    local_app.router.add_get("/feed", feed)
    public = TestServer(public_app, host="127.0.0.2")
    local = TestServer(local_app, host="127.0.0.1")
    await public.start_server()
    await local.start_server()
    try:
        yield Hostile(public, local, hits)
    finally:
        await public.close()
        await local.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_public_feed_cannot_redirect_to_a_local_address(
    hostile: Hostile, host: str
) -> None:
    target = f"http://{host}:{hostile.local.port}/metrics"
    async with make_session(is_private=public_127_0_0_2) as s:
        with pytest.raises(FetchError) as caught:
            await fetcher(s).fetch(hostile.redirect(target))
        # The same connector still fetches from the public host (and its own redirects).
        ok = await fetcher(s).fetch(hostile.redirect(str(hostile.public.make_url("/feed"))))
    assert hostile.metrics_hits == []
    assert not caught.value.transient
    assert "private network or this machine" in str(caught.value)
    assert target in str(caught.value) and "127.0.0.1" in str(caught.value)
    assert ok.status == "ok" and ok.body == FEED


async def test_a_feed_on_the_local_network_may_redirect_within_it(hostile: Hostile) -> None:
    target = str(hostile.local.make_url("/feed"))
    async with make_session(is_private=public_127_0_0_2) as s:
        result = await fetcher(s).fetch(str(hostile.local.make_url("/go").with_query(to=target)))
    assert result.status == "ok" and result.url == target


async def test_a_fetcher_needs_the_checking_session() -> None:
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(ValueError, match="make_session"):
            fetcher(plain)
