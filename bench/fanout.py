"""Fan-out benchmark: 500 items into 4 rooms through the full outbox path, against a plain
matrix-nio ``room_send`` loop posting the same messages, on one local Synapse in one run.

Run: ``.venv/bin/python bench/fanout.py`` (options: ``--items``, ``--rooms``,
``--parallelism``). It starts its own throw-away Synapse, lifts the bot's rate limit,
creates the rooms, then measures:

- baseline: one ``AsyncClient.room_send`` after the other, nothing persisted;
- libhub: ``Storage.store_items`` (items and one outbox row per room, one transaction),
  then ``Delivery.run`` until every row is marked sent: claims, leases, rendering, event
  ids and results all written to SQLite, rooms served in parallel.

Both post into fresh rooms of their own, in alternating rounds (A-B, B-A, ...) so that
load from other processes on the machine weighs on both alike.

Prints both rates in messages per second and their ratio (target: 1.0 or more), and how
busy Synapse's CPU was in each run: the homeserver, not the client, is the limit here.

With ``--backend postgresql`` libhub's storage is a throw-away PostgreSQL (Debian's package,
started as tests/pgkit.py does: initdb + pg_ctl on a free loopback port in a temporary
folder) instead of an SQLite file; the baseline is the same nio loop. ``--instances 2``
adds a third method to the rounds: two libhub instances (each its own connection pool,
Matrix login and delivery loop, claiming rooms as the service does on PostgreSQL) sharing
one database and the same work, and prints its rate against one instance's.

With ``--encrypted`` the baseline is the libhub outbox into plain rooms and the measured
path the libhub outbox into end-to-end encrypted rooms (its own device with a crypto
store, cross-signed), same items, same run (target: 0.8 or more).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import nio

from network.delivery.channels import ChannelSender
from network.delivery.outbox import Delivery
from network.delivery.state import DeliveryPolicy
from network.devtools.devserver import DevHomeserver
from network.matrix.gateway import MatrixGateway
from network.routing.render import matrix_content
from network.settings.model import MatrixSettings
from network.storage import Item, ItemInput, Storage, Target
from network.storage.dialect import POSTGRESQL

if TYPE_CHECKING:
    from tests.pgkit import PgServer

ROOT = Path(__file__).resolve().parents[1]  # tests/pgkit.py starts PostgreSQL
FEED_TITLE = "Network news"


def make_inputs(n: int, now: datetime) -> list[ItemInput]:
    out = []
    for i in range(n):
        summary = (
            f"<p>Branch {i} now lends <b>hotspots</b>, laptops and "
            f'<a href="https://lib.example.org/tech/{i}">maker kits</a>.</p>'
        )
        out.append(
            ItemInput(
                key=f"bench-{i}",
                kind="news",
                title=f"Hotspot lending expands to branch {i}",
                link=f"https://lib.example.org/news/{i}",
                published=now - timedelta(minutes=i),
                author="Network office",
                categories=("technology",),
                summary_html=summary,
                enclosures=(),
                event_start=None,
                content_hash=hashlib.sha256(summary.encode()).hexdigest(),
            )
        )
    return out


def as_item(i: int, inp: ItemInput, now: datetime) -> Item:
    return Item(
        id=i, feed_id="bench", key=inp.key, kind=inp.kind, title=inp.title, link=inp.link,
        published=inp.published, author=inp.author, categories=inp.categories,
        summary_html=inp.summary_html, enclosures=inp.enclosures, event_start=None,
        content_hash=inp.content_hash, version=1, first_seen=now, updated_at=now,
    )  # fmt: skip


class PlainLoop:
    """The baseline: matrix-nio's ``room_send``, one message after the other, no storage."""

    def __init__(self, server: DevHomeserver, user_id: str, rooms: list[str]) -> None:
        self.client = nio.AsyncClient(server.url, user_id)
        self.rooms = rooms

    async def login(self, password: str) -> None:
        login = await self.client.login(password, device_name="bench-baseline")
        assert isinstance(login, nio.LoginResponse), login

    async def post(self, inputs: list[ItemInput], now: datetime) -> tuple[int, float]:
        """(messages, seconds) for posting every item into every room."""
        contents = [matrix_content(as_item(i, x, now), feed_title=FEED_TITLE)
                    for i, x in enumerate(inputs)]  # fmt: skip
        start = time.perf_counter()
        for content in contents:
            for room in self.rooms:
                resp = await self.client.room_send(room, "m.room.message", content)
                assert isinstance(resp, nio.RoomSendResponse), resp
        return len(contents) * len(self.rooms), time.perf_counter() - start

    async def close(self) -> None:
        await self.client.close()


class OutboxPath:
    """libhub: store_items (items + outbox rows in one transaction), then Delivery.run until
    every row is marked sent with its event id."""

    def __init__(self, storage: Storage, gateway: MatrixGateway, rooms: list[str],
                 parallelism: int) -> None:  # fmt: skip
        self.storage = storage
        self.gateway = gateway
        self.targets = [Target("matrix", r) for r in rooms]
        # As the service sets it: on PostgreSQL a claim takes whole rooms, so that
        # instances sharing the database share the rooms.
        shared = storage.dialect == POSTGRESQL
        self.delivery = Delivery(
            storage, gateway, ChannelSender(), feed_titles=lambda _f: FEED_TITLE,
            policy=DeliveryPolicy(room_parallelism=parallelism, group_threshold=10**6,
                                  claim_rooms=parallelism if shared else None),
        )  # fmt: skip
        self.stop = asyncio.Event()
        self.runner: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, server: DevHomeserver, user_id: str, password: str, rooms: list[str],
                   data: Path, parallelism: int, *, name: str = "bench",
                   crypto: bool = False, database: str | None = None) -> OutboxPath:  # fmt: skip
        storage = await Storage.open(database or data / f"{name}.db")
        storage.claimant = name
        settings = MatrixSettings(homeserver=server.url, user_id=user_id, password_env="UNUSED")
        gateway = MatrixGateway(
            settings, storage, password=password, access_token=None,
            crypto_store=data / f"{name}-crypto" if crypto else None,
        )  # fmt: skip
        await gateway.login()
        for room in rooms:
            await gateway.resolve_room(room)  # joined already: caches the id, like a warm service
        path = cls(storage, gateway, rooms, parallelism)
        path.runner = asyncio.create_task(path.delivery.run(path.stop))
        return path

    async def post(self, inputs: list[ItemInput], now: datetime) -> tuple[int, float]:
        start = time.perf_counter()
        stored = await self.storage.store_items(
            "bench", inputs, targets=lambda _i: self.targets, post=lambda _i: True,
            edit_window=timedelta(days=2), now=now,
        )  # fmt: skip
        self.delivery.wake()
        # Delivery.run has no "queue empty" signal (it waits for more); watch the outbox
        # with the cheapest query there is (an index lookup).
        while await self.storage.next_due() is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return stored.queued, time.perf_counter() - start

    async def close(self) -> dict[str, int]:
        self.stop.set()
        if self.runner is not None:
            await self.runner
        counts = await self.storage.outbox_counts()
        await self.gateway.close()
        await self.storage.close()
        return counts


class Instances:
    """Several libhub instances on one PostgreSQL database: the items are stored once, by
    the first, and every instance's delivery loop claims rooms of the shared outbox."""

    def __init__(self, paths: list[OutboxPath]) -> None:
        self.paths = paths

    async def post(self, inputs: list[ItemInput], now: datetime) -> tuple[int, float]:
        first = self.paths[0]
        start = time.perf_counter()
        stored = await first.storage.store_items(
            "bench", inputs, targets=lambda _i: first.targets, post=lambda _i: True,
            edit_window=timedelta(days=2), now=now,
        )  # fmt: skip
        for path in self.paths:
            path.delivery.wake()
        while await first.storage.next_due() is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return stored.queued, time.perf_counter() - start

    async def close(self) -> dict[str, int]:
        counts = {}
        for path in self.paths:
            counts = await path.close()  # the same shared outbox: the last counts do
        return counts


def _synapse_pid(server: DevHomeserver) -> int:
    """The Synapse process serving ``server`` (found by its config path in /proc)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(server.config_path).encode() in cmdline and proc.name.isdigit():
            return int(proc.name)
    return 0


def _cpu_seconds(pid: int) -> float:
    """CPU time used so far by process ``pid`` (Linux /proc), to show who is the bottleneck."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(args: argparse.Namespace) -> int:
    if args.backend != "postgresql":
        return await run(args, None)
    sys.path.insert(0, str(ROOT))
    from tests.pgkit import start_postgres, stop_postgres

    pg = start_postgres()
    print(f"PostgreSQL on 127.0.0.1:{pg.port} (fsync off, as in the tests)", flush=True)
    try:
        return await run(args, pg)
    finally:
        stop_postgres(pg)


async def run(args: argparse.Namespace, pg: PgServer | None) -> int:
    now = datetime.now(UTC)
    inputs = make_inputs(args.items, now)
    with tempfile.TemporaryDirectory(prefix="libhub-bench-") as tmp:
        data = Path(tmp)
        server = DevHomeserver(data / "synapse")
        print(f"starting Synapse on {server.url} ...", flush=True)
        await server.start()
        try:
            admin = await server.register("admin", "admin-pw", admin=True)
            bot = await server.register("bot", "bot-pw")
            await server.lift_ratelimit(bot.user_id, admin.access_token)
            gw_store = await Storage.open(data / "setup.db")
            setup = MatrixGateway(
                MatrixSettings(homeserver=server.url, user_id=bot.user_id, password_env="X"),
                gw_store, password=bot.password, access_token=None,
            )  # fmt: skip
            await setup.login()
            # Fresh rooms for each run, so neither posts into rooms the other has filled.
            enc = args.encrypted
            base_rooms = [await setup.create_room(name=f"plain {i}", encrypted=False)
                          for i in range(args.rooms)]  # fmt: skip
            hub_rooms = [await setup.create_room(name=f"libhub {i}", encrypted=enc)
                         for i in range(args.rooms)]  # fmt: skip
            two_rooms = [await setup.create_room(name=f"libhub x2 {i}", encrypted=enc)
                         for i in range(args.rooms if args.instances > 1 else 0)]  # fmt: skip
            warm = await setup.create_room(name="warm-up", encrypted=False)
            await setup.close()
            await gw_store.close()
            pid = _synapse_pid(server)
            warm_up = PlainLoop(server, bot.user_id, [warm])
            await warm_up.login(bot.password)
            await warm_up.post(inputs[:50], now)
            await warm_up.close()
            total = args.items * args.rooms
            print(
                f"{args.items} items x {args.rooms} rooms = {total} messages per method, "
                f"in {args.rounds} alternating rounds",
                flush=True,
            )
            plain: PlainLoop | OutboxPath
            if enc:
                plain = await OutboxPath.open(
                    server, bot.user_id, bot.password, base_rooms, data, args.parallelism,
                    name="plain",
                )  # fmt: skip
            else:
                plain = PlainLoop(server, bot.user_id, base_rooms)
                await plain.login(bot.password)
            hub = await OutboxPath.open(
                server, bot.user_id, bot.password, hub_rooms, data, args.parallelism,
                crypto=enc, database=await pg.new_database() if pg else None,
            )  # fmt: skip
            methods: list[tuple[str, PlainLoop | OutboxPath | Instances]] = [
                ("plain", plain), ("libhub", hub)
            ]  # fmt: skip
            if args.instances > 1:
                assert pg is not None, "--instances needs --backend postgresql"
                shared = await pg.new_database()
                paths = []
                for k in range(args.instances):
                    paths.append(await OutboxPath.open(
                        server, bot.user_id, bot.password, two_rooms, data, args.parallelism,
                        name=f"instance-{k}", crypto=enc, database=shared,
                    ))  # fmt: skip
                methods.append(("several", Instances(paths)))
            done = {name: [0, 0.0, 0.0] for name, _ in methods}  # messages, s, cpu s
            several: list[float] = []
            ratios: list[float] = []
            size = -(-args.items // args.rounds)
            try:
                for r in range(args.rounds):
                    chunk = inputs[r * size : (r + 1) * size]
                    stamp = now + timedelta(seconds=r)
                    # A-B, B-A, ...: load from other processes hits both methods alike.
                    order = methods if r % 2 == 0 else methods[::-1]
                    pair: dict[str, float] = {}
                    for name, method in order:
                        cpu0 = _cpu_seconds(pid)
                        n, seconds = await method.post(chunk, stamp)
                        done[name][0] += n
                        done[name][1] += seconds
                        done[name][2] += _cpu_seconds(pid) - cpu0
                        pair[name] = n / seconds
                    ratios.append(pair["libhub"] / pair["plain"])
                    extra = ""
                    if "several" in pair:
                        several.append(pair["several"] / pair["libhub"])
                        extra = (f", {args.instances} instances {pair['several']:6.1f} msg/s "
                                 f"({several[-1]:.2f} of one)")  # fmt: skip
                    print(
                        f"  round {r + 1:2}: baseline {pair['plain']:6.1f} msg/s, "
                        f"libhub {pair['libhub']:6.1f} msg/s, ratio {ratios[-1]:.2f}{extra}",
                        flush=True,
                    )
            finally:
                await plain.close()
                counts = await hub.close()
                many = await methods[2][1].close() if len(methods) > 2 else None
                assert not isinstance(many, float)
            if enc:
                label, target = "libhub outbox, plain rooms", "0.8"
            else:
                label, target = "baseline, nio room_send loop", "1.0"
            base = done["plain"][0] / done["plain"][1]
            rate = done["libhub"][0] / done["libhub"][1]
            print(f"  {label}: {base:7.1f} msg/s", flush=True)
            print(
                f"  libhub outbox on {args.backend}{', encrypted rooms' if enc else ''}, "
                f"{args.parallelism} rooms "
                f"at once: {rate:7.1f} msg/s "
                f"(sent {counts['sent']}, pending {counts['pending']}, failed {counts['failed']})"
            )
            print(
                f"  Synapse CPU busy: {done['plain'][2] / done['plain'][1]:.0%} of the baseline "
                f"time, {done['libhub'][2] / done['libhub'][1]:.0%} of the libhub time"
            )
            print(
                f"  ratio libhub / baseline: {rate / base:.2f} overall, "
                f"{statistics.median(ratios):.2f} median of rounds (target >= {target})"
            )
            if many is not None:
                both = done["several"][0] / done["several"][1]
                print(
                    f"  {args.instances} instances on one PostgreSQL, same work: {both:7.1f} "
                    f"msg/s (sent {many['sent']}, pending {many['pending']}, failed "
                    f"{many['failed']}); against one instance: {both / rate:.2f} overall, "
                    f"{statistics.median(several):.2f} median of rounds"
                )
        finally:
            await server.stop()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds per method")
    parser.add_argument(
        "--encrypted", action="store_true", help="encrypted rooms against plain rooms"
    )
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--instances", type=int, default=1, help="with postgresql: N instances against one"
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
