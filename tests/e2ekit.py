"""The independent encrypted client of the tests: matrix-js-sdk with its Rust crypto, in
Node, set up as Element is since 2026 (own cross-signing, exclude insecure devices).

`JsClient` drives tests/js/client.mjs over JSON lines; `js_ready` installs its packages
from tests/js/package-lock.json (``npm ci``) the first time."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

JS_DIR = Path(__file__).parent / "js"


def js_ready() -> None:
    """Skip when Node is missing; install the client's packages when they are."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("needs Node.js and npm for the matrix-js-sdk client")
    if not (JS_DIR / "node_modules" / "matrix-js-sdk").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=600
        )


class JsClient:
    """One js-sdk session (a person on their own device)."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self.user_id = ""
        self.device_id = ""

    async def __aenter__(self) -> JsClient:
        js_ready()
        self._proc = await asyncio.create_subprocess_exec(
            "node",
            str(JS_DIR / "client.mjs"),
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=16 * 2**20,
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            try:
                await asyncio.wait_for(self.call("stop"), 10)
                await asyncio.wait_for(proc.wait(), 10)
            except (TimeoutError, AssertionError, ConnectionError):
                proc.kill()
                await proc.wait()

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        async with self._lock:
            proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
            await proc.stdin.drain()
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), 180)
                if not line:
                    raise AssertionError(f"the js client exited during {cmd}")
                if line.startswith(b"@@"):
                    break
        answer: dict[str, Any] = json.loads(line[2:])
        if not answer.get("ok"):
            raise AssertionError(f"js client {cmd} failed: {answer.get('error')}")
        return answer

    async def login(self, homeserver: str, user_id: str, password: str) -> None:
        answer = await self.call("login", homeserver=homeserver, user_id=user_id, password=password)
        self.user_id, self.device_id = str(answer["user_id"]), str(answer["device_id"])

    async def create_room(self, *, invite: list[str], is_direct: bool = False) -> str:
        answer = await self.call("create_room", invite=invite, is_direct=is_direct)
        return str(answer["room_id"])

    async def join(self, room: str) -> str:
        return str((await self.call("join", room=room))["room_id"])

    async def say(self, room: str, text: str, **content: Any) -> str:
        if content:
            answer = await self.call(
                "send", room=room, content={"msgtype": "m.text", "body": text, **content}
            )
        else:
            answer = await self.call("send", room=room, body=text)
        return str(answer["event_id"])

    async def wait_message(
        self, room: str, *, sender: str, contains: str = "", timeout_ms: int = 60000
    ) -> dict[str, Any]:
        answer = await self.call(
            "wait_message", room=room, sender=sender, contains=contains, timeout=timeout_ms
        )
        event: dict[str, Any] = answer["event"]
        return event

    async def events(self, room: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = (await self.call("messages", room=room))["events"]
        return events

    async def device_status(self, user_id: str, device_id: str) -> dict[str, Any]:
        return await self.call("device_status", user_id=user_id, device_id=device_id)

    async def key_forwarding(self, enabled: bool) -> None:
        """Whether this device answers the bot's key requests."""
        await self.call("key_forwarding", enabled=enabled)

    async def decrypt(self, room: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Raw events (as /messages returns them) decrypted by this client, in order."""
        answer = await self.call("decrypt_events", room=room, events=events)
        decrypted: list[dict[str, Any]] = answer["events"]
        return decrypted
