"""Benchmark: one full poll cycle over 1,000 feeds, libhub against the `reader` library.

    .venv/bin/python bench/feeds_poll.py [--feeds 1000] [--changed 200] [--items 20]

A local aiohttp publisher (its own process) serves N feeds with ETags. Both systems first
poll everything once (not measured: the initial sync). Then the publisher gives `changed`
feeds `items` new items each, and one full cycle is measured: the others answer 304.
Each system runs in its own process so peak memory (ru_maxrss) and CPU time are its own;
libhub parses in helper processes (feeds.parsepool), whose CPU time during the cycle and
peak memory are added to its figures (read from /proc). libhub's cycle also reports the
longest event-loop stall seen by a 10 ms ticker. Prints both and the throughput ratio
(reader wall / libhub wall); with --runs N, each system is measured N times (alternating,
a fresh publisher each time) and the table shows medians.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# -- the publisher (runs in a child process) ---------------------------------------------


def feed_doc(i: int, generation: int, items: int) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>',
        f"<title>Library feed {i}</title><link>http://127.0.0.1/f/{i}</link>",
        "<description>bench</description>",
    ]
    for j in range(items):
        key = f"{i}-{generation}-{j}"
        parts.append(
            f"<item><title>Item {key}: storytime, makerspace and Wi-Fi news</title>"
            f"<link>http://127.0.0.1/items/{key}</link><guid>urn:bench:{key}</guid>"
            f"<pubDate>Mon, 23 Nov 2026 0{j % 10}:00:00 GMT</pubDate>"
            f"<description>&lt;p&gt;Paragraph about item {key} with a "
            f'&lt;a href="/x/{key}"&gt;link&lt;/a&gt; and some &lt;b&gt;bold&lt;/b&gt; '
            f"text that a library would write.&lt;/p&gt;</description></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def serve(port_file: str, feeds: int, items: int) -> None:
    from aiohttp import web

    generation = {i: 0 for i in range(feeds)}
    cache: dict[int, tuple[bytes, str]] = {}

    def doc(i: int) -> tuple[bytes, str]:
        if i not in cache:
            body = feed_doc(i, generation[i], items)
            cache[i] = (body, '"' + hashlib.sha1(body).hexdigest() + '"')
        return cache[i]

    async def feed(request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        body, etag = doc(i)
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type="application/rss+xml", headers={"ETag": etag})

    async def advance(request: web.Request) -> web.Response:
        changed = int(request.query["changed"])
        for i in range(changed):
            generation[i] += 1
            cache.pop(i, None)
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/f/{i}", feed)
        app.router.add_post("/advance", advance)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        await asyncio.to_thread(Path(port_file).write_text, str(port))
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the two systems (each in a child process) --------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_peak_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _helper_pids() -> list[int]:
    """libhub's parser worker processes and the forkserver they are forked from."""
    import multiprocessing.forkserver

    from feeds.parsepool import parse_pool_pids

    pids = parse_pool_pids()
    server = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    return pids + ([server] if server else [])


def run_libhub(base: str, feeds: int, workdir: str) -> dict[str, float]:
    import aiohttp

    from feeds.fetch import Fetcher, make_session
    from network.heap import settle_heap
    from network.polling.poller import Poller
    from network.routing.router import Router
    from network.settings.model import parse_settings
    from network.storage import Storage

    feed_tables = "\n".join(f'[[feeds]]\nid = "f{i}"\nurl = "{base}/f/{i}"\n' for i in range(feeds))
    settings = parse_settings(
        '[matrix]\nhomeserver = "http://127.0.0.1:1"\nuser_id = "@b:x"\npassword_env = "X"\n'
        "[polling]\nconcurrency = 100\nper_host = 50\n" + feed_tables,
        base_dir=Path(workdir),
    )

    async def main() -> dict[str, float]:
        storage = await Storage.open(Path(workdir) / "libhub.db")
        session = make_session(limit=100, limit_per_host=50)
        fetcher = Fetcher(session, user_agent="libhub-bench", max_concurrency=100, per_host=50)
        poller = Poller(settings, storage, fetcher, router=Router(settings))
        await poller.prepare()
        await poller.poll_due(force=True)  # initial sync, not measured
        settle_heap()  # as the service does once it has started
        async with aiohttp.ClientSession() as http:
            await http.post(f"{base}/advance", params={"changed": str(ARGS.changed)})
        stall = 0.0
        done = False

        async def ticker() -> None:
            nonlocal stall
            loop = asyncio.get_running_loop()
            while not done:
                t = loop.time()
                await asyncio.sleep(0.01)
                stall = max(stall, loop.time() - t - 0.01)

        tick = asyncio.create_task(ticker())
        helpers = _helper_pids()  # started during the initial sync
        helper_cpu0 = sum(_proc_cpu_s(pid) for pid in helpers)
        cpu0, t0 = time.process_time(), time.perf_counter()
        outcomes = await poller.poll_due(force=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        helper_cpu = sum(_proc_cpu_s(pid) for pid in helpers) - helper_cpu0
        helper_peaks = [_proc_peak_mib(pid) for pid in helpers]
        done = True
        await tick
        new = sum(o.new for o in outcomes)
        await session.close()
        await storage.close()
        return {
            "wall": wall,
            "cpu": cpu + helper_cpu,
            "new": new,
            "stall_ms": stall * 1000,
            "helper_peak_mib": sum(helper_peaks),
            "helper_peak_max_mib": max(helper_peaks, default=0.0),
            "helpers": len(helpers),
        }

    return asyncio.run(main())


def run_reader(base: str, feeds: int, workdir: str) -> dict[str, float]:
    from reader import make_reader

    reader = make_reader(str(Path(workdir) / "reader.sqlite"))
    for i in range(feeds):
        reader.add_feed(f"{base}/f/{i}")
    reader.update_feeds(workers=ARGS.reader_workers, scheduled=False)  # initial sync, not measured
    import urllib.request

    urllib.request.urlopen(
        urllib.request.Request(f"{base}/advance?changed={ARGS.changed}", method="POST")
    ).read()
    before = int(reader.get_entry_counts().total or 0)
    cpu0, t0 = time.process_time(), time.perf_counter()
    reader.update_feeds(workers=ARGS.reader_workers, scheduled=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    new = int(reader.get_entry_counts().total or 0) - before
    reader.close()
    return {"wall": wall, "cpu": cpu, "new": new, "stall_ms": float("nan")}


def child(which: str, base: str) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        fn = run_libhub if which == "libhub" else run_reader
        result = fn(base, ARGS.feeds, workdir)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["own_peak_mib"] = own
    result["peak_mib"] = own + result.pop("helper_peak_mib", 0.0)
    print(json.dumps(result))


# -- the driver -----------------------------------------------------------------------------


def measure(which: str, base: str) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", which, "--base", base, *sys.argv[1:]]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{which} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--feeds", type=int, default=1000)
    p.add_argument("--changed", type=int, default=200)
    p.add_argument("--items", type=int, default=20)
    p.add_argument("--reader-workers", type=int, default=20)
    p.add_argument("--runs", type=int, default=1, help="measure each system N times; show medians")
    p.add_argument("--child", choices=["libhub", "reader"])
    p.add_argument("--base")
    p.add_argument("--serve", metavar="PORT_FILE", help=argparse.SUPPRESS)
    return p.parse_args()


ARGS = parse_args()


def main() -> None:
    if ARGS.serve:
        serve(ARGS.serve, ARGS.feeds, ARGS.items)
        return
    if ARGS.child:
        child(ARGS.child, ARGS.base)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    runs: dict[str, list[dict[str, float]]] = {"reader": [], "libhub": []}
    for run in range(ARGS.runs):
        for which in ("reader", "libhub"):
            # A fresh publisher per measurement: both start from the same documents.
            with tempfile.NamedTemporaryFile(suffix=".port") as pf:
                server = subprocess.Popen(
                    [sys.executable, __file__, "--serve", pf.name, *sys.argv[1:]]
                )
                try:
                    for _ in range(200):
                        if Path(pf.name).read_text().strip():
                            break
                        time.sleep(0.05)
                    base = f"http://127.0.0.1:{Path(pf.name).read_text().strip()}"
                    label = f"measuring {which} on {ARGS.feeds} feeds (run {run + 1}/{ARGS.runs})…"
                    with console.status(label):
                        runs[which].append(measure(which, base))
                finally:
                    server.terminate()
                    server.wait()
    results = {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }
    what = "median of " + str(ARGS.runs) + " runs" if ARGS.runs > 1 else "one run"
    table = Table(
        title=f"One poll cycle ({what}): {ARGS.feeds} feeds, {ARGS.changed} with "
        f"{ARGS.items} new items, the rest 304"
    )
    for col in ("system", "wall s", "CPU s", "new items", "feeds/s", "peak MiB",
                "max loop stall ms"):  # fmt: skip
        table.add_column(col, justify="right")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['wall']:.2f}",
            f"{r['cpu']:.2f}",
            str(int(r["new"])),
            f"{ARGS.feeds / r['wall']:.0f}",
            f"{r['peak_mib']:.0f}",
            "n/a" if name == "reader" else f"{r['stall_ms']:.1f}",
        )
    console.print(table)
    helpers = int(results["libhub"].get("helpers", 0))
    if helpers:
        console.print(
            f"libhub CPU and peak memory include its {helpers} parser helper processes "
            "(workers and their forkserver; memory is the sum over processes)."
        )
    ratio = results["reader"]["wall"] / results["libhub"]["wall"]
    if ARGS.runs > 1:
        each = ", ".join(
            f"{a['wall'] / b['wall']:.2f}x"
            for a, b in zip(runs["reader"], runs["libhub"], strict=True)
        )
        console.print(f"ratio per run: {each}")
    # Targets: issue 3 at 1,000 feeds; issue 14 (network scale) at 5,000.
    stall_target = 50 if ARGS.feeds >= 5000 else 100
    memory = results["libhub"]["peak_mib"] / results["reader"]["peak_mib"]
    stalls = ", ".join(f"{r['stall_ms']:.1f}" for r in runs["libhub"])
    console.print(
        f"throughput ratio libhub/reader: [bold]{ratio:.2f}x[/bold] (target >= 3.0); "
        f"libhub longest loop stall {results['libhub']['stall_ms']:.1f} ms "
        f"(target < {stall_target}; each run: {stalls}); "
        f"peak memory {memory:.2f}x reader's (target <= 2 at 5,000 feeds)"
    )
    expected = ARGS.changed * ARGS.items
    for name, rs in runs.items():
        for r in rs:
            if int(r["new"]) != expected:
                console.print(
                    f"[red]{name} stored {int(r['new'])} new items, expected {expected}[/red]"
                )


if __name__ == "__main__":
    main()
