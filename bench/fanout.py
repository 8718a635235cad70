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

import nio

from network.delivery.channels import ChannelSender
from network.delivery.outbox import Delivery
from network.delivery.state import DeliveryPolicy
from network.devtools.devserver import DevHomeserver
from network.matrix.gateway import MatrixGateway
from network.routing.render import matrix_content
from network.settings.model import MatrixSettings
from network.storage import Item, ItemInput, Storage, Target

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
        self.delivery = Delivery(
            storage, gateway, ChannelSender(), feed_titles=lambda _f: FEED_TITLE,
            policy=DeliveryPolicy(room_parallelism=parallelism, group_threshold=10**6),
        )  # fmt: skip
        self.stop = asyncio.Event()
        self.runner: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, server: DevHomeserver, user_id: str, password: str, rooms: list[str],
                   data: Path, parallelism: int, *, name: str = "bench",
                   crypto: bool = False) -> OutboxPath:  # fmt: skip
        storage = await Storage.open(data / f"{name}.db")
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
                crypto=enc,
            )  # fmt: skip
            done = {"plain": [0, 0.0, 0.0], "libhub": [0, 0.0, 0.0]}  # messages, s, cpu s
            ratios: list[float] = []
            size = -(-args.items // args.rounds)
            try:
                for r in range(args.rounds):
                    chunk = inputs[r * size : (r + 1) * size]
                    stamp = now + timedelta(seconds=r)
                    # A-B, B-A, ...: load from other processes hits both methods alike.
                    order = [("plain", plain.post), ("libhub", hub.post)]
                    pair: dict[str, float] = {}
                    for name, post in order if r % 2 == 0 else order[::-1]:
                        cpu0 = _cpu_seconds(pid)
                        n, seconds = await post(chunk, stamp)
                        done[name][0] += n
                        done[name][1] += seconds
                        done[name][2] += _cpu_seconds(pid) - cpu0
                        pair[name] = n / seconds
                    ratios.append(pair["libhub"] / pair["plain"])
                    print(
                        f"  round {r + 1:2}: baseline {pair['plain']:6.1f} msg/s, "
                        f"libhub {pair['libhub']:6.1f} msg/s, ratio {ratios[-1]:.2f}",
                        flush=True,
                    )
            finally:
                await plain.close()
                counts = await hub.close()
            if enc:
                label, target = "libhub outbox, plain rooms", "0.8"
            else:
                label, target = "baseline, nio room_send loop", "1.0"
            base = done["plain"][0] / done["plain"][1]
            rate = done["libhub"][0] / done["libhub"][1]
            print(f"  {label}: {base:7.1f} msg/s", flush=True)
            print(
                f"  libhub outbox{', encrypted rooms' if enc else ''}, {args.parallelism} rooms "
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
    sys.exit(asyncio.run(main(parser.parse_args())))
