"""Parsing in worker processes: same results as in-process parsing, errors that survive the
trip between processes, and a pool that recovers from a killed worker or a shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from feeds.errors import NotAFeedError
from feeds.parse import parse_concurrency, parse_feed
from feeds.parsepool import parse_feed_in_process, parse_pool_pids, shutdown_parse_pool
from tests.waiting import eventually

DATA = Path(__file__).parent / "data" / "feeds"
RSS = "rss2_guardian-us-news_55-items_media-content_dc-date.xml"
ATOM = "atom_intertwingly-sam-ruby_relative-hrefs_leading-newline.xml"
PLAIN = (
    b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Branch news'
    b"</title><link>/news</link><item><title>Makerspace opens</title><link>/m/1</link>"
    b"<description>&lt;p&gt;See &lt;a href='/m'&gt;the room&lt;/a&gt;&lt;/p&gt;</description>"
    b"<pubDate>Mon, 23 Nov 2026 08:00:00 GMT</pubDate></item></channel></rss>"
)


@pytest.mark.parametrize(
    ("body", "url"),
    [
        ((DATA / RSS).read_bytes(), "https://www.theguardian.com/us-news/rss"),
        ((DATA / ATOM).read_bytes(), "http://intertwingly.net/blog/index.atom"),
        (PLAIN, "https://lib.example.org/feed.xml"),
    ],
    ids=["rss", "atom", "plain-rss"],
)
async def test_worker_parses_exactly_like_the_caller(body: bytes, url: str) -> None:
    headers = {"content-type": "application/rss+xml"}
    assert await parse_feed_in_process(body, url=url, headers=headers) == parse_feed(
        body, url=url, headers=headers
    )
    assert len(parse_pool_pids()) == parse_concurrency()
    assert os.getpid() not in parse_pool_pids()


async def test_errors_cross_the_process_boundary_intact() -> None:
    page = b"<!DOCTYPE html><html><body>Moved</body></html>"
    with pytest.raises(NotAFeedError) as caught:
        await parse_feed_in_process(page, url="https://lib.example.org/gone")
    assert caught.value.url == "https://lib.example.org/gone"
    assert str(caught.value) == (
        "not a feed: the server returned an HTML page (https://lib.example.org/gone)"
    )


async def test_a_killed_worker_is_replaced() -> None:
    url = "https://lib.example.org/feed.xml"
    expected = parse_feed(PLAIN, url=url)
    assert await parse_feed_in_process(PLAIN, url=url) == expected
    victim = parse_pool_pids()[0]
    os.kill(victim, signal.SIGKILL)
    # The pool notices the death on its own; until then documents may still go to the other
    # worker. Either way every parse succeeds, and the broken pool is replaced.
    for _ in range(200):
        assert await parse_feed_in_process(PLAIN, url=url) == expected
        if victim not in parse_pool_pids():
            break
        await asyncio.sleep(0.02)
    assert victim not in parse_pool_pids()
    assert len(parse_pool_pids()) == parse_concurrency()


async def test_shutdown_stops_workers_and_the_next_parse_starts_new_ones() -> None:
    url = "https://lib.example.org/feed.xml"
    await parse_feed_in_process(PLAIN, url=url)
    before = parse_pool_pids()
    shutdown_parse_pool()
    assert parse_pool_pids() == []
    assert await parse_feed_in_process(PLAIN, url=url) == parse_feed(PLAIN, url=url)
    assert set(parse_pool_pids()).isdisjoint(before)


async def test_a_document_that_never_finishes_is_given_up_and_its_worker_killed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deeply nested HTML is quadratic for feedparser and the sanitizer: 200,000 nested
    <div>s would hold a worker for hours. After PARSE_TIMEOUT it is a ParseError (the feed
    is tried again later), the stuck worker is killed, and the next parse works."""
    import feeds.parsepool as parsepool
    from feeds.errors import ParseError

    url = "https://lib.example.org/feed.xml"
    assert await parse_feed_in_process(PLAIN, url=url) == parse_feed(PLAIN, url=url)
    stuck = set(parse_pool_pids())
    monkeypatch.setattr(parsepool, "PARSE_TIMEOUT", 0.5)
    nested = "<div>" * 200_000 + "deep" + "</div>" * 200_000
    hostile = PLAIN.replace(
        b"<description>", b"<description><![CDATA[" + nested.encode() + b"]]>"
    ).replace(b"</description>", b"]]></description>", 1)
    with pytest.raises(ParseError, match=r"took longer than 0\.5 s"):
        await parse_feed_in_process(hostile, url=url)
    assert await parse_feed_in_process(PLAIN, url=url) == parse_feed(PLAIN, url=url)
    assert stuck.isdisjoint(parse_pool_pids())  # the old workers are gone


# -- the pool belongs to the process that started it ----------------------------------------

REPO = Path(__file__).resolve().parent.parent
# Starts the pool, parses one document, says which processes it has, then waits; Ctrl-C
# shuts the pool down the way the service does.
OWNER = """
import os, sys, threading
from feeds.parsepool import parse_feed_in_process, shutdown_parse_pool
import asyncio
asyncio.run(parse_feed_in_process(sys.stdin.buffer.read(), url="https://lib.example.org/f"))
try:
    print("ready", flush=True)
    threading.Event().wait()
except KeyboardInterrupt:
    shutdown_parse_pool()
    print("stopped", flush=True)
"""


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, start time) of every process, from /proc."""
    found: dict[int, tuple[int, str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[int(entry.name)] = (int(fields[1]), fields[0], fields[19])
    return found


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every process below ``root``."""
    table = _processes()
    below: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _state, started) in table.items():
            if ppid == parent and pid not in below:
                below[pid] = started
                frontier.append(pid)
    return below


def _still_running(known: dict[int, str]) -> list[int]:
    table = _processes()
    return [
        pid
        for pid, started in known.items()
        if pid in table and table[pid][2] == started and table[pid][1] not in ("Z", "X")
    ]


async def _start_owner() -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWNER, cwd=REPO,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(PLAIN)
    proc.stdin.close()
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    assert line == b"ready\n", line + (await proc.stderr.read() if proc.stderr else b"")
    return proc


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
async def test_workers_and_tracker_exit_when_their_owner_is_killed() -> None:
    proc = await _start_owner()
    helpers = _descendants(proc.pid)
    # The workers and the resource tracker, and no forkserver: a process as large as a
    # worker that would be kept only to start workers (memory at 5,000 feeds).
    assert len(helpers) == parse_concurrency() + 1, helpers
    os.kill(proc.pid, signal.SIGKILL)
    try:
        await eventually(
            lambda: not _still_running(helpers),
            within=20,
            every=0.05,
            what="the parser pool's processes to exit after their owner was killed",
        )
    finally:
        for pid in _still_running(helpers):  # a failed run leaves nothing behind
            os.kill(pid, signal.SIGKILL)
        # Only now: the helpers held the owner's stdout and stderr open.
        await asyncio.wait_for(proc.wait(), 60)


async def test_ctrl_c_stops_the_pool_without_tracebacks_from_workers() -> None:
    proc = await _start_owner()
    assert proc.stdout is not None and proc.stderr is not None
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
    out, errors = await asyncio.wait_for(asyncio.gather(proc.stdout.read(), proc.stderr.read()), 60)
    assert await proc.wait() == 0
    assert out == b"stopped\n"
    assert b"KeyboardInterrupt" not in errors and b"Traceback" not in errors, errors.decode()
