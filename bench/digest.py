"""One daily digest round for 10,000 subscribers, next to a plain smtplib loop (the limit).

Run: ``.venv/bin/python bench/digest.py`` (options: ``--subscribers 10000``, ``--items 50``,
``--connections 4``, ``--backend sqlite|postgresql``, ``--instances 1``). With ``--backend
postgresql`` the service's database is a throw-away PostgreSQL (Debian's package, started
like the tests' tests/pgkit.py does: initdb + pg_ctl on a free loopback port in a temporary
folder). ``--instances N`` (PostgreSQL only) sends the planned round from N libhub
processes on that database at once (each leases its own runs, as `libhub digest send` beside
a running service does), against the same limit.

Both sides send to the same local SMTP server: aiosmtpd in its own process with a handler
that only counts messages and bytes (no parsing, no storage), so the server is not what
is measured.

- limit: the messages rendered beforehand (one per distinct content) and sent by
  ``smtplib.SMTP.sendmail`` in a loop over one reused connection, in a thread.
- libhub: the real path. 10,000 confirmed daily subscribers (four topic combinations)
  and 50 new items (webinars, news, cohort updates) in a fresh SQLite database; at 08:05
  local time the runner plans the round (one claimed run per subscriber), renders each
  digest (shared renders, per-person links and tokens), builds each message with its
  List-Unsubscribe headers and sends it over ``email.max_connections`` reused aiosmtplib
  connections, marking every run sent as the server accepts it.

The limit runs before and after libhub and its two rates are averaged, so a change in the
machine's load during the run hits both alike. Prints time, messages per second, the
ratio (target >= 0.5 on SQLite, >= 0.7 on PostgreSQL) and the round's peak memory: the
kernel's peak-RSS mark (VmHWM) reset just before the round, so the setup's 100,000-row
insert does not count (target < 250 MB); the process's ru_maxrss is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import email.policy
import gc
import multiprocessing as mp
import os
import resource
import smtplib
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from network.devtools.devserver import free_port  # noqa: E402

TOPIC_SETS = [
    ("kind:webinar", "kind:news", "kind:cohort-update"),
    ("kind:webinar",),
    ("kind:news", "cohort:smart-spaces"),
    ("feed:news", "kind:webinar"),
]
SUMMARY = (
    "<p>The network's {n}th update: <b>twelve branches</b> now lend hotspots and laptops, "
    "with evening help sessions run by teen volunteers. Read how <a href='https://"
    "libraries.example.org/x'>Ignacio Community Library</a> planned the rollout, trained "
    "staff and measured use over the first three months.</p><p>Templates for the lending "
    "agreement and the volunteer schedule are in the toolbox.</p>"
)


# -- the SMTP server (its own process) -----------------------------------------------------


class _Counter:
    def __init__(self, count: Synchronized[int], size: Synchronized[int]) -> None:
        self.count = count
        self.size = size

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.count.get_lock():
            self.count.value += 1
        with self.size.get_lock():
            self.size.value += len(envelope.content)
        return "250 OK"


def _serve(port: int, count: Synchronized[int], size: Synchronized[int], ready: Any) -> None:
    from aiosmtpd.controller import Controller

    controller = Controller(_Counter(count, size), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


# -- the limit -----------------------------------------------------------------------------


def smtplib_loop(port: int, messages: list[bytes], n: int) -> float:
    """Seconds to send ``n`` messages (cycling through ``messages``) over one connection."""
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.localdomain") as smtp:
        for i in range(n):
            smtp.sendmail(
                "news@prairie.example.org", [f"reader{i}@example.org"], messages[i % len(messages)]
            )
    return time.perf_counter() - start


# -- libhub --------------------------------------------------------------------------------


def _send_elsewhere(config: str, tmp: str, now: datetime, ready: Any, go: Any, done: Any) -> None:
    """Another libhub instance (its own process) sending the planned round from the same
    database; tells ``done`` how many it sent."""

    async def send() -> int:
        from network.service import Service
        from network.settings.model import parse_settings

        os.environ["LIBHUB_BENCH_SECRET"] = "bench-secret-0123456789abcdef"
        settings = parse_settings(config, base_dir=Path(tmp), env={})
        service = await Service.create(settings)
        try:
            service.subscriptions.clock = service.digests.clock = lambda: now
            ready.put(os.getpid())
            await asyncio.to_thread(go.wait)
            return (await service.digests.send_pending()).sent
        finally:
            await service.close()

    done.put(asyncio.run(send()))


def _config(tmp: Path, port: int, connections: int, database_url: str | None) -> str:
    database = f'url = "{database_url}"' if database_url else f'path = "{tmp / "bench.db"}"'
    return f"""
[network]
name = "Prairie Libraries"
timezone = "America/Chicago"
[database]
{database}
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@libhub:localhost"
password_env = "UNUSED"
[web]
public_url = "https://libhub.prairie.example.org"
secret_env = "LIBHUB_BENCH_SECRET"
[email]
smtp_url = "smtp://127.0.0.1:{port}"
from = "Prairie Libraries <news@prairie.example.org>"
max_connections = {connections}
messages_per_connection = 100000
[[feeds]]
id = "news"
title = "Network news"
url = "http://127.0.0.1:9/news.xml"
[[feeds]]
id = "webinars"
title = "Network webinars"
url = "http://127.0.0.1:9/webinars.xml"
kind = "webinar"
[[feeds]]
id = "smart-updates"
title = "Smart Spaces cohort"
url = "http://127.0.0.1:9/cohort.xml"
kind = "cohort-update"
rooms = ["#smart-spaces:example.org"]
[[cohorts]]
id = "smart-spaces"
name = "Small Libraries Create Smart Spaces"
room = "#smart-spaces:example.org"
"""


async def prepare(
    tmp: Path, port: int, args: argparse.Namespace, now: datetime, database_url: str | None
) -> Any:
    """A service with the subscribers and items in place (not measured); the subscribers
    go in by the thousand through the storage's bulk insert."""
    from network.service import Service
    from network.settings.model import parse_settings
    from network.storage import ItemInput
    from network.storage.subscribers import Preferences
    from network.subscriptions.topics import next_due

    config = _config(tmp, port, args.connections, database_url)
    settings = parse_settings(config, base_dir=tmp, env={})
    service = await Service.create(settings)
    service.subscriptions.clock = service.digests.clock = lambda: now
    subscribed = now - timedelta(days=1)
    people = [
        (f"reader{i}@example.org", f"reader{i}@example.org",
         Preferences(TOPIC_SETS[i % len(TOPIC_SETS)], "daily", "America/Chicago", 8))
        for i in range(args.subscribers)
    ]  # fmt: skip
    added = await service.storage.add_subscribers(
        people, channel="email", source="bench", consent="bench", now=subscribed,
        next_due=next_due,
    )  # fmt: skip
    assert added == args.subscribers, added
    del people
    kinds = [("webinars", "webinar"), ("news", "news"), ("smart-updates", "cohort-update")]
    for n in range(args.items):
        feed, kind = kinds[0] if n % 5 == 0 else kinds[2] if n % 5 == 1 else kinds[1]
        start = now + timedelta(days=1 + n % 7, hours=n % 5) if kind == "webinar" else None
        item = ItemInput(
            key=f"item-{n}",
            kind=kind,
            title=f"{'Webinar: ' if start else ''}Hotspot lending, part {n}",
            link=f"https://libraries.example.org/items/{n}",
            published=now - timedelta(hours=n),
            author="Network office",
            categories=(),
            summary_html=SUMMARY.format(n=n),
            enclosures=(),
            event_start=start,
            content_hash=f"hash-{n}",
        )
        stamp = now - timedelta(hours=2, minutes=n)
        await service.storage.store_items(
            feed, [item], targets=lambda _i: [], post=lambda _i: True,
            edit_window=timedelta(days=1), now=stamp,
        )  # fmt: skip
        await service.digests.items_stored(feed, [item], stamp)
    return service


async def prerendered(service: Any, now: datetime) -> list[bytes]:
    """One finished message per topic combination: what the limit sends."""
    out = []
    for i in range(len(TOPIC_SETS)):
        sub = await service.storage.subscriber_by_key(f"reader{i}@example.org")
        message = await service.digests.preview(sub)
        from network.mail.message import build_message

        msg = build_message(
            sender="Prairie Libraries <news@prairie.example.org>",
            to=sub.address,
            subject=message.subject,
            text=message.text,
            html=message.html,
            list_unsubscribe_url=service.subscriptions.links.unsubscribe(sub.id, now),
            list_unsubscribe_mailto="mailto:news@prairie.example.org",
            list_id="digests.prairie.example.org",
            message_id_domain="prairie.example.org",
            date=now,
        )
        out.append(msg.as_bytes(policy=email.policy.SMTP))  # CRLF, as on the wire
    return out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS, so the peak read after
    the round is the round's own, not the setup's (Linux: /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--instances", type=int, default=1, help="postgresql: N senders")
    args = parser.parse_args()
    if args.instances > 1 and args.backend != "postgresql":
        parser.error("--instances needs --backend postgresql")
    os.environ["LIBHUB_BENCH_SECRET"] = "bench-secret-0123456789abcdef"
    import logging

    logging.basicConfig(level=logging.WARNING)
    target = 0.7 if args.backend == "postgresql" else 0.5

    port = free_port()
    ctx = mp.get_context("spawn")
    count, size, ready = ctx.Value("q", 0), ctx.Value("q", 0), ctx.Event()
    server = ctx.Process(target=_serve, args=(port, count, size, ready), daemon=True)
    server.start()
    ready.wait(30)
    now = datetime(2026, 11, 23, 14, 5, tzinfo=UTC)  # 08:05 in Chicago
    n = args.subscribers
    pg: Any = None
    database_url: str | None = None
    if args.backend == "postgresql":
        from tests.pgkit import start_postgres

        pg = start_postgres()
        database_url = await pg.new_database()
        print(f"PostgreSQL on 127.0.0.1:{pg.port} (fsync off, as in the tests)", flush=True)
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            print(f"preparing {n} subscribers and {args.items} items ({args.backend})…", flush=True)
            t_prep = time.perf_counter()
            service = await prepare(Path(tmp_dir), port, args, now, database_url)
            print(f"prepared in {time.perf_counter() - t_prep:.1f}s", flush=True)
            try:
                limit_msgs = await prerendered(service, now)
                before = rss_mb()
                avg_size = sum(map(len, limit_msgs)) / len(limit_msgs)
                print(f"message size ~{avg_size / 1024:.1f} KiB; process RSS {before:.0f} MB")

                limit_times = [await asyncio.to_thread(smtplib_loop, port, limit_msgs, n)]
                # The other instances start (not measured) and wait for the round.
                started, go, done = ctx.Queue(), ctx.Event(), ctx.Queue()
                config = _config(Path(tmp_dir), port, args.connections, database_url)
                theirs = (config, tmp_dir, now, started, go, done)
                extra = args.instances - 1
                others = [ctx.Process(target=_send_elsewhere, args=theirs) for _ in range(extra)]
                for other in others:
                    other.start()
                for _ in others:
                    await asyncio.to_thread(started.get, True, 120)
                start_count = count.value
                gc.collect()
                reset = reset_peak()
                round_start = _status_mb("VmRSS")
                t0 = time.perf_counter()
                # keep=False, as the scheduled round plans: holding every planned run
                # would measure the bench, not the round.
                await service.digests.plan(now, keep=False)
                t_plan = time.perf_counter() - t0
                planned = (await service.storage.run_counts())["pending"]
                go.set()
                report = await service.digests.send_pending()
                sent = report.sent + sum(
                    [await asyncio.to_thread(done.get, True, 3600) for _ in others]
                )
                ours = time.perf_counter() - t0
                for other in others:
                    other.join(30)
                round_peak = _status_mb("VmHWM")
                received = count.value - start_count
                peak = rss_mb()
                limit_times.append(await asyncio.to_thread(smtplib_loop, port, limit_msgs, n))
                counts = await service.storage.run_counts()
            finally:
                await service.close()
    finally:
        server.terminate()
        server.join(5)
        if pg is not None:
            from tests.pgkit import stop_postgres

            stop_postgres(pg)

    limit_rate = sum(n / t for t in limit_times) / len(limit_times)
    ours_rate = n / ours
    ratio = ours_rate / limit_rate
    ok = sent == n == received and counts["sent"] == n
    print()
    print(f"{'':28}{'time':>10}{'messages/s':>14}")
    for i, t in enumerate(limit_times):
        print(f"{'smtplib loop (limit) #' + str(i + 1):28}{t:>9.2f}s{n / t:>14.0f}")
    label = "libhub daily round" + (f", {args.instances} inst." if args.instances > 1 else "")
    print(f"{label:28}{ours:>9.2f}s{ours_rate:>14.0f}")
    print()
    print(
        f"backend: {args.backend}; planned runs: {planned} in {t_plan:.2f}s; "
        f"sent: {sent} ({report.sent} by this process); server received: {received}"
    )
    print(f"ratio libhub / limit: {ratio:.2f} (target >= {target})")
    how = (
        "VmHWM, reset via /proc/self/clear_refs just before the round"
        if reset
        else ("VmHWM, NOT reset (clear_refs unavailable): includes the setup")
    )
    print(
        f"round peak memory: {round_peak:.0f} MB RSS ({how}); {round_start:.0f} MB at the "
        f"start of the round, so the round grew it by {round_peak - round_start:.0f} MB "
        "(target < 250 MB)"
    )
    print(f"process peak (ru_maxrss, setup included): {peak:.0f} MB ({before:.0f} MB before)")
    passed = ok and ratio >= target and round_peak < 250
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
