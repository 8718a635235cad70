"""Question-to-answer latency of the assistance bot, next to a plain echo through the same
local Synapse in the same run.

Run: ``.venv/bin/python bench/bot_latency.py`` (options: ``--askers 20``,
``--questions 10``). It starts its own throw-away Synapse (rate limits off) and registers
the askers, the bot and an echo account. Each phase is the same: every asker opens a
direct chat with the target, then all askers at once send their questions one after the
other, each waiting for the reply before the next. Latency is what the asker's own client
sees: the clock starts just before the message is PUT and stops when the reply (an event
from the target whose ``m.in_reply_to`` is the question) arrives on the asker's own
long-polling ``/sync``.

- echo (the limit): a minimal client in its own process that long-polls ``/sync`` and, for
  every message it receives, sends a reply at once (all replies of a batch concurrently).
  It does nothing else: no database, no retrieval, no bookkeeping.
- bot: the real service, ``libhub run`` in its own process with its SQLite database:
  inbox, retrieval over the toolbox pages, a threaded answer, recorded answer.

Phases alternate (echo, bot, bot, echo with ``--rounds 2``) so a change in the machine's
load during the run hits both alike. Prints p50/p95 for both and the ratio of the p95s
(target: at most 2).

With ``--encrypted`` every direct chat is end-to-end encrypted, and everyone has real
crypto: the askers and the echo are libhub's own Matrix gateway (network/matrix: nio with
vodozemac, a crypto store, a cross-signed device), so the echo pays for decrypting and
encrypting as the bot does, and the askers' clocks stop once the reply is decrypted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import nio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from network.devtools.devserver import DevHomeserver, DevUser, free_port  # noqa: E402
from network.matrix.gateway import MatrixGateway  # noqa: E402
from network.settings.model import MatrixSettings  # noqa: E402
from network.storage import Storage  # noqa: E402

QUESTIONS = [
    "how do we keep Wi-Fi on after closing?",
    "where would a book kiosk go?",
    "how do I get my board behind a makerspace?",
    "we want to lend hotspots and laptops, where do we start?",
    "how can teens help older adults with their phones?",
    "what belongs in a strategic plan for smart spaces?",
    "how do we market our new technology programs?",
    "how do we find partners in local government?",
    "what should a basic computer class cover?",
    "how can our library support open data?",
]
SYNC_FILTER = json.dumps(
    {
        "room": {"timeline": {"limit": 50}, "state": {"lazy_load_members": True}},
        "presence": {"types": []},
        "account_data": {"types": []},
    }
)


class Client:
    """A plain client-server API user with a background long-poll ``/sync``."""

    def __init__(self, homeserver: str, user: DevUser) -> None:
        self.hs = homeserver
        self.user = user
        self.http = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {user.access_token}"},
            timeout=aiohttp.ClientTimeout(total=120),
        )
        self.since: str | None = None
        self.replies: dict[str, asyncio.Future[float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        async with self.http.request(method, self.hs + path, json=body) as resp:
            data: dict[str, Any] = await resp.json()
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {data}")
            return data

    async def sync(self, timeout_ms: int) -> dict[str, Any]:
        q = f"?timeout={timeout_ms}&filter={quote(SYNC_FILTER)}"
        if self.since:
            q += f"&since={quote(self.since)}"
        data = await self.call("GET", "/_matrix/client/v3/sync" + q)
        self.since = data["next_batch"]
        return data

    def _future(self, event_id: str) -> asyncio.Future[float]:
        if event_id not in self.replies:
            self.replies[event_id] = asyncio.get_running_loop().create_future()
        return self.replies[event_id]

    async def _listen(self, peer: str) -> None:
        while True:
            data = await self.sync(30000)
            now = time.perf_counter()
            for room in data.get("rooms", {}).get("join", {}).values():
                for ev in room.get("timeline", {}).get("events", []):
                    if ev.get("sender") != peer or ev.get("type") != "m.room.message":
                        continue
                    rel = ev.get("content", {}).get("m.relates_to") or {}
                    question = (rel.get("m.in_reply_to") or {}).get("event_id")
                    if question and not self._future(question).done():
                        self._future(question).set_result(now)

    async def start_listening(self, peer: str) -> None:
        await self.sync(0)  # start from "now"
        self._task = asyncio.create_task(self._listen(peer))

    async def stop_listening(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.replies.clear()

    async def say(self, room: str, text: str) -> str:
        path = f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/{uuid.uuid4().hex}"
        data = await self.call("PUT", path, {"msgtype": "m.text", "body": text})
        return str(data["event_id"])

    async def direct_chat(self, peer: str) -> str:
        data = await self.call(
            "POST",
            "/_matrix/client/v3/createRoom",
            {"preset": "trusted_private_chat", "is_direct": True, "invite": [peer]},
        )
        room = str(data["room_id"])
        for _ in range(600):
            members = await self.call(
                "GET", f"/_matrix/client/v3/rooms/{quote(room)}/joined_members"
            )
            if peer in members.get("joined", {}):
                return room
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{peer} did not join {room}")

    async def close(self) -> None:
        await self.stop_listening()
        await self.http.close()


class EncryptedClient:
    """An asker with real crypto: libhub's gateway (own store, cross-signed device) syncing
    in the background; a reply counts once it is decrypted."""

    def __init__(self, gateway: MatrixGateway, storage: Storage) -> None:
        self.gateway = gateway
        self.storage = storage
        self.replies: dict[str, asyncio.Future[float]] = {}
        self.peer = ""
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, homeserver: str, user: DevUser, data: Path) -> EncryptedClient:
        gateway = await open_gateway(homeserver, user, data)
        client = cls(gateway, gateway.storage)
        client._task = asyncio.create_task(
            gateway.sync_forever(on_event=client._on_event, stop=client._stop)
        )
        while gateway.last_sync_ok is None:  # noqa: ASYNC110 (a start-up wait, not timed)
            await asyncio.sleep(0.05)
        return client

    def _future(self, event_id: str) -> asyncio.Future[float]:
        if event_id not in self.replies:
            self.replies[event_id] = asyncio.get_running_loop().create_future()
        return self.replies[event_id]

    async def _on_event(self, room_id: str, ev: nio.Event) -> None:
        now = time.perf_counter()
        if not isinstance(ev, nio.RoomMessage) or ev.sender != self.peer:
            return
        rel = ev.source.get("content", {}).get("m.relates_to") or {}
        question = (rel.get("m.in_reply_to") or {}).get("event_id")
        if question and not self._future(question).done():
            self._future(question).set_result(now)

    async def start_listening(self, peer: str) -> None:
        self.peer = peer

    async def stop_listening(self) -> None:
        self.replies.clear()

    async def say(self, room: str, text: str) -> str:
        content = {"msgtype": "m.text", "body": text}
        sent = await self.gateway.send(room, content, txn_id=uuid.uuid4().hex)
        return sent.event_id

    async def direct_chat(self, peer: str) -> str:
        room = await self.gateway.create_room(name="", invite=[peer], is_direct=True)
        for _ in range(600):
            members = await self.gateway._request(
                "GET", f"/_matrix/client/v3/rooms/{quote(room)}/joined_members", what="members"
            )
            if peer in members.get("joined", {}):
                return room
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{peer} did not join {room}")

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.gateway.close()
        await self.storage.close()


Asker = Client | EncryptedClient


async def phase(askers: list[Asker], peer: str, questions: int) -> list[float]:
    """Every asker asks ``questions`` questions at once; latencies in seconds."""
    rooms = await asyncio.gather(*(a.direct_chat(peer) for a in askers))
    await asyncio.sleep(1.0)  # let the peer settle (greetings, room lookups)
    await asyncio.gather(*(a.start_listening(peer) for a in askers))

    async def one(asker: Asker, room: str) -> list[float]:
        out = []
        for i in range(questions):
            start = time.perf_counter()
            event_id = await asker.say(room, QUESTIONS[i % len(QUESTIONS)])
            received = await asyncio.wait_for(asker._future(event_id), 60)
            out.append(received - start)
        return out

    results = await asyncio.gather(*(one(a, r) for a, r in zip(askers, rooms, strict=True)))
    await asyncio.gather(*(a.stop_listening() for a in askers))
    return [x for r in results for x in r]


# -- the echo (its own process) -------------------------------------------------------------


async def echo_main(homeserver: str, user_id: str, token: str) -> None:
    client = Client(homeserver, DevUser(user_id, "", token, ""))
    await client.sync(0)
    print("ready", flush=True)

    async def reply(room: str, ev: dict[str, Any]) -> None:
        content = {
            "msgtype": "m.notice",
            "body": ev["content"].get("body", ""),
            "m.relates_to": {"m.in_reply_to": {"event_id": ev["event_id"]}},
        }
        path = f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/{uuid.uuid4().hex}"
        await client.call("PUT", path, content)

    while True:
        data = await client.sync(30000)
        rooms = data.get("rooms", {})
        joins = [
            client.call("POST", f"/_matrix/client/v3/join/{quote(r)}", {})
            for r in rooms.get("invite", {})
        ]
        sends = [
            reply(room_id, ev)
            for room_id, room in rooms.get("join", {}).items()
            for ev in room.get("timeline", {}).get("events", [])
            if ev.get("type") == "m.room.message"
            and ev.get("sender") != user_id
            and ev.get("content", {}).get("msgtype") == "m.text"
        ]
        await asyncio.gather(*joins, *sends)


async def open_gateway(homeserver: str, user: DevUser, data: Path) -> MatrixGateway:
    """libhub's gateway for one account, with its own database and crypto store."""
    storage = await Storage.open(data / "client.db")
    settings = MatrixSettings(homeserver=homeserver, user_id=user.user_id, password_env="")
    gateway = MatrixGateway(
        settings, storage, password=user.password, access_token=None, crypto_store=data / "crypto"
    )
    await gateway.login()
    return gateway


async def encrypted_echo_main(homeserver: str, user_id: str, password: str, data: str) -> None:
    """The echo with real crypto: libhub's gateway, and nothing else."""
    gateway = await open_gateway(homeserver, DevUser(user_id, password, "", ""), Path(data))
    replies: set[asyncio.Task[Any]] = set()

    async def reply(room: str, ev: nio.RoomMessageText) -> None:
        content = {
            "msgtype": "m.notice",
            "body": ev.body,
            "m.relates_to": {"m.in_reply_to": {"event_id": ev.event_id}},
        }
        await gateway.send(room, content, txn_id=uuid.uuid4().hex)

    async def on_event(room_id: str, ev: nio.Event) -> None:
        if isinstance(ev, nio.RoomMessageText) and ev.sender != user_id:
            task = asyncio.create_task(reply(room_id, ev))  # a batch's replies at once
            replies.add(task)
            task.add_done_callback(replies.discard)

    async def on_invite(room_id: str, _ev: nio.InviteEvent) -> None:
        await gateway.join(room_id)

    loop = asyncio.create_task(gateway.sync_forever(on_event=on_event, on_invite=on_invite))
    while gateway.last_sync_ok is None:  # noqa: ASYNC110 (start-up, not measured)
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await loop


# -- orchestration --------------------------------------------------------------------------


async def wait_healthy(url: str, proc: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if proc.returncode is not None:
                raise RuntimeError("the bot exited early; see its log")
            try:
                async with http.get(url) as resp:
                    report = await resp.json()
                if report["matrix"]["seconds_since_sync"] is not None:
                    return
            except (aiohttp.ClientError, ValueError):
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the bot never synced")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(name: str, values: list[float]) -> tuple[float, float]:
    p50, p95 = pct(values, 50) * 1000, pct(values, 95) * 1000
    mean = statistics.fmean(values) * 1000
    print(f"{name:5} n={len(values):4}  p50={p50:7.1f} ms  p95={p95:7.1f} ms  mean={mean:7.1f} ms")
    return p50, p95


async def main(n_askers: int, n_questions: int, rounds: int, encrypted: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="libhub-bot-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server = DevHomeserver(tmp / "synapse")
        await server.start()
        procs: list[asyncio.subprocess.Process] = []
        askers: list[Asker] = []
        try:
            bot = await server.register("bot", "bot-password")
            echo = await server.register("echo", "echo-password")
            users = await asyncio.gather(
                *(server.register(f"asker{i}", "asker-password") for i in range(n_askers))
            )
            if encrypted:
                askers = list(
                    await asyncio.gather(
                        *(EncryptedClient.open(server.url, u, tmp / u.user_id) for u in users)
                    )
                )
            else:
                askers = [Client(server.url, u) for u in users]
            port = free_port()
            config = tmp / "libhub.toml"
            config.write_text(
                f'[database]\npath = "{tmp / "libhub.db"}"\n'
                f'[matrix]\nhomeserver = "{server.url}"\nuser_id = "{bot.user_id}"\n'
                f'password_env = "BENCH_BOT_PASSWORD"\ninvite_allow = ["{server.server_name}"]\n'
                f'[web]\nlisten = "127.0.0.1:{port}"\n'
            )
            env = dict(
                os.environ,
                BENCH_BOT_PASSWORD=bot.password,
                LIBHUB_SECRET="bench-secret-0123456789abcdef",
            )
            with (tmp / "bot.log").open("wb") as log:
                procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-c",
                        "import sys; from network.cli.main import main; sys.exit(main())",
                        "run",
                        "-c",
                        str(config),
                        env=env,
                        cwd=ROOT,
                        stdout=log,
                        stderr=log,
                    )
                )
            if encrypted:
                echo_args = ["--encrypted-echo", server.url, echo.user_id, echo.password]
                echo_args.append(str(tmp / "echo"))
            else:
                echo_args = ["--echo", server.url, echo.user_id, echo.access_token]
            echo_proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, *echo_args, stdout=asyncio.subprocess.PIPE, cwd=ROOT
            )
            procs.append(echo_proc)
            assert echo_proc.stdout is not None
            await asyncio.wait_for(echo_proc.stdout.readline(), 60)
            await wait_healthy(f"http://127.0.0.1:{port}/healthz", procs[0])

            kind = "encrypted" if encrypted else "plain"
            print(
                f"{n_askers} askers x {n_questions} questions in {kind} direct chats, one local "
                f"Synapse, {rounds} round(s) of each"
            )
            lat: dict[str, list[float]] = {"echo": [], "bot": []}
            peers = {"echo": echo.user_id, "bot": bot.user_id}
            # Echo, bot, bot, echo, ...: drift in the machine's load hits both alike.
            order = [("echo", "bot"), ("bot", "echo")] * rounds
            for name in [n for pair in order[:rounds] for n in pair]:
                lat[name] += await phase(askers, peers[name], n_questions)
            echo_lat, bot_lat = lat["echo"], lat["bot"]
            _, echo_p95 = report("echo", echo_lat)
            _, bot_p95 = report("bot", bot_lat)
            ratio = bot_p95 / echo_p95
            verdict = "meets" if ratio <= 2.0 else "misses"
            print(f"p95 ratio bot/echo = {ratio:.2f} ({verdict} the target of at most 2)")
        finally:
            for client in askers:
                await client.close()
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
                    await proc.wait()
            await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--askers", type=int, default=20)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="phases of each, alternating")
    parser.add_argument(
        "--encrypted", action="store_true", help="encrypted direct chats, echo encrypted too"
    )
    parser.add_argument(
        "--echo", nargs=3, metavar=("HOMESERVER", "USER", "TOKEN"), help=argparse.SUPPRESS
    )
    parser.add_argument("--encrypted-echo", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        asyncio.run(echo_main(*args.echo))
    elif args.encrypted_echo:
        asyncio.run(encrypted_echo_main(*args.encrypted_echo))
    else:
        asyncio.run(main(args.askers, args.questions, args.rounds, args.encrypted))
