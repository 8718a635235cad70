"""The public archive and its search under 20,000 archived items, next to ``/healthz``.

Run: ``.venv/bin/python bench/archive.py`` (options: ``--items 20000``, ``--requests 300``,
``--concurrency 8``).

A fresh SQLite database gets the items (news, webinars and members' cohort updates, with
summaries drawn from a small vocabulary so searches match hundreds of items or a few)
through the real storage path, FTS5 triggers included. The real web app (``make_web_app``)
then serves on loopback in its own process; the load generator is an asyncio aiohttp loop
in this process with a bounded number of requests in flight. Phases alternate (healthz,
the archive pages, healthz) so a change in the machine's load hits both alike. Prints
p50/p95 per page and the ratio of each page's p95 to /healthz's (target: at most 3).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from network.devtools.devserver import free_port  # noqa: E402
from network.service import Service  # noqa: E402
from network.settings.model import Settings, parse_settings  # noqa: E402
from network.storage import ItemInput  # noqa: E402
from network.web.app import make_web_app  # noqa: E402

WORDS = (
    "library makerspace hotspot lending broadband grant budget teens seniors digital "
    "literacy coding robotics podcast studio garden seed kiosk wifi laptops trustees "
    "partners city council open data privacy outreach bookmobile storytime census "
    "health jobs resume workshop volunteers accessibility spanish bilingual"
).split()
RARE = "zeppelin"  # one item in a thousand
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
PAGES = {
    "archive": "/archive",
    "archive page 200": "/archive?page=200",
    "topic": "/archive/topic/kind-webinar",
    "cohort": "/archive/cohort/smart-spaces",
    "search common": "/archive?q=library",
    "search two words": "/archive?q=grant+teens",
    "search rare": f"/archive?q={RARE}",
}


def config(tmp: Path, port: int) -> str:
    return f"""
[network]
name = "Bench Libraries"
[database]
path = "{tmp / "bench.db"}"
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@libhub:localhost"
password_env = "UNUSED_PASSWORD"
[web]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[[feeds]]
id = "news"
title = "Network news"
url = "http://127.0.0.1:9/news.xml"
[[feeds]]
id = "webinars"
title = "Network webinars"
url = "http://127.0.0.1:9/webinars.xml"
kind = "webinar"
[[cohorts]]
id = "smart-spaces"
name = "Smart Spaces"
room = "#smart:example.org"
"""


def settings_of(tmp: Path, port: int) -> Settings:
    return parse_settings(config(tmp, port), base_dir=tmp, env={})


def _item(n: int, kind: str, rnd: random.Random) -> ItemInput:
    words = rnd.choices(WORDS, k=40)
    if n % 1000 == 7:
        words.append(RARE)
    title = " ".join(rnd.choices(WORDS, k=6)).capitalize()
    summary = "<p>" + " ".join(words[:20]) + "</p><p>" + " ".join(words[20:]) + "</p>"
    return ItemInput(
        key=f"k{n}",
        kind=kind,
        title=title,
        link=f"https://libraries.example.org/{n}",
        published=START + timedelta(minutes=n),
        author=None,
        categories=(),
        summary_html=summary,
        enclosures=(),
        event_start=START + timedelta(days=n % 90) if kind == "webinar" else None,
        content_hash=hashlib.sha256(f"{n}{title}".encode()).hexdigest(),
    )


async def fill(settings: Settings, count: int) -> None:
    service = await Service.create(settings)
    rnd = random.Random(16)
    try:
        updates = count // 20
        batch: dict[str, list[ItemInput]] = {"news": [], "webinars": [], "cohort:smart-spaces": []}
        for n in range(count):
            feed = "cohort:smart-spaces" if n < updates else "webinars" if n % 5 == 0 else "news"
            kind = {"news": "news", "webinars": "webinar"}.get(feed, "cohort-update")
            batch[feed].append(_item(n, kind, rnd))
        for feed, items in batch.items():
            for i in range(0, len(items), 500):
                await service.storage.store_items(
                    feed,
                    items[i : i + 500],
                    targets=lambda _i: [],
                    post=lambda _i: False,
                    edit_window=timedelta(days=1),
                    now=START + timedelta(seconds=i),
                )
        for item in batch["cohort:smart-spaces"]:
            await service.storage.record_cohort_update(
                event_id=item.key,
                feed_id="cohort:smart-spaces",
                cohort_id="smart-spaces",
                room_id="!smart:example.org",
                sender="@ana:example.org",
                library=None,
                now=START,
            )
    finally:
        await service.close()


def serve(tmp: str, port: int, ready: mp.Event) -> None:  # type: ignore[valid-type]
    async def main() -> None:
        service = await Service.create(settings_of(Path(tmp), port))
        runner = web.AppRunner(make_web_app(service), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()  # type: ignore[attr-defined]
        await asyncio.Event().wait()

    asyncio.run(main())


async def measure(url: str, requests: int, concurrency: int) -> list[float]:
    times: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with gate:
                t0 = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise SystemExit(f"{url}: HTTP {resp.status}")
                times.append(time.perf_counter() - t0)

        await asyncio.gather(*(one() for _ in range(requests)))
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18]


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        t0 = time.perf_counter()
        await fill(settings_of(Path(tmp), port), args.items)
        print(f"stored {args.items} items in {time.perf_counter() - t0:.1f} s")
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        server = ctx.Process(target=serve, args=(tmp, port, ready), daemon=True)
        server.start()
        try:
            if not await asyncio.to_thread(ready.wait, 60):
                raise SystemExit("the web server did not start")
            base = f"http://127.0.0.1:{port}"
            for path in ["/healthz", *PAGES.values()]:  # warm up
                await measure(base + path, 20, args.concurrency)
            health = await measure(base + "/healthz", args.requests, args.concurrency)
            results = {}
            for name, path in PAGES.items():
                results[name] = await measure(base + path, args.requests, args.concurrency)
            health += await measure(base + "/healthz", args.requests, args.concurrency)
        finally:
            server.terminate()
            server.join(10)
    base_p95 = p95(health)
    print(f"{'page':<18} {'p50 ms':>8} {'p95 ms':>8} {'ratio':>6}")
    print(f"{'/healthz':<18} {statistics.median(health) * 1000:8.1f} {base_p95 * 1000:8.1f}")
    worst = 0.0
    for name, times in results.items():
        ratio = p95(times) / base_p95
        worst = max(worst, ratio)
        print(
            f"{name:<18} {statistics.median(times) * 1000:8.1f} {p95(times) * 1000:8.1f} "
            f"{ratio:6.2f}"
        )
    print(f"worst p95 ratio to /healthz: {worst:.2f} (target <= 3)")
    return 0 if worst <= 3 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    os.environ.setdefault("LIBHUB_SECRET", "bench-secret-0123456789abcdef0123")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
