"""Test helpers that act as a person in Matrix: create rooms, read what arrived, reply."""

from __future__ import annotations

import asyncio
import uuid
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from network.devtools.devserver import DevUser


class MatrixReader:
    """A plain client-server API user (deliberately not libhub's own gateway)."""

    def __init__(self, homeserver: str, user: DevUser) -> None:
        self.homeserver = homeserver
        self.user = user
        self.user_id = user.user_id
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> MatrixReader:
        self._http = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.user.access_token}"}
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._http is not None
        await self._http.close()

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        assert self._http is not None
        async with self._http.request(method, self.homeserver + path, json=body) as resp:
            data: dict[str, Any] = await resp.json()
            if resp.status >= 400:
                raise AssertionError(f"{method} {path}: {resp.status} {data}")
            return data

    async def create_room(
        self,
        alias: str | None = None,
        *,
        invite: list[str] | None = None,
        public: bool = True,
        name: str = "test room",
        encrypted: bool = False,
    ) -> str:
        body: dict[str, Any] = {
            "preset": "public_chat" if public else "private_chat",
            "name": name,
            "invite": invite or [],
        }
        if alias:
            body["room_alias_name"] = alias
        if encrypted:
            body["initial_state"] = [
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ]
        data = await self.call("POST", "/_matrix/client/v3/createRoom", body)
        return str(data["room_id"])

    async def join(self, room: str) -> str:
        data = await self.call("POST", f"/_matrix/client/v3/join/{quote(room, safe='')}", {})
        return str(data["room_id"])

    async def send(
        self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message"
    ) -> str:
        path = (
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/{event_type}/"
            f"{uuid.uuid4().hex}"
        )
        data = await self.call("PUT", path, content)
        return str(data["event_id"])

    async def say(self, room_id: str, text: str, **extra: Any) -> str:
        return await self.send(room_id, {"msgtype": "m.text", "body": text, **extra})

    async def events(self, room_id: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        """Every event of the room, oldest first."""
        out: list[dict[str, Any]] = []
        token: str | None = None
        while len(out) < limit:
            q = "?dir=b&limit=500" + (f"&from={quote(token)}" if token else "")
            data = await self.call(
                "GET", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages{q}"
            )
            chunk = data.get("chunk", [])
            out.extend(chunk)
            token = data.get("end")
            if not chunk or not token:
                break
        return list(reversed(out))

    async def messages(self, room_id: str, *, sender: str | None = None) -> list[dict[str, Any]]:
        """The m.room.message events (optionally from one sender), oldest first."""
        return [
            e
            for e in await self.events(room_id)
            if e.get("type") == "m.room.message" and (sender is None or e.get("sender") == sender)
        ]

    async def wait_for(
        self, room_id: str, predicate: Any, *, within: float = 30.0, sender: str | None = None
    ) -> list[dict[str, Any]]:
        """Poll the room until ``predicate(messages)`` is true; return the messages."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            msgs = await self.messages(room_id, sender=sender)
            if predicate(msgs):
                return msgs
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"timed out; room has {len(msgs)} messages: "
                    f"{[m['content'].get('body', '')[:60] for m in msgs]}"
                )
            await asyncio.sleep(0.2)
