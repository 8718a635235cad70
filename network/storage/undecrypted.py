"""Encrypted events waiting for their room key (``undecrypted_events``).

The gateway parks an event here when it does not decrypt, takes it out once its key has
come and it has been handed to the hooks, and marks it once its sender has been told. The
table is bounded: the oldest rows go first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from network.storage.base import Database


@dataclass(frozen=True)
class UndecryptedEvent:
    event_id: str
    room_id: str
    session_id: str
    sender: str
    event: dict[str, Any]  # the event as the homeserver sent it
    parked_at: float
    told: bool


class UndecryptedStore(Database):
    """The ``undecrypted_events`` table."""

    async def park_undecrypted(
        self,
        event_id: str,
        room_id: str,
        session_id: str,
        sender: str,
        event: dict[str, Any],
        parked_at: float,
        *,
        keep: int,
    ) -> bool:
        """Keep an event; False when it is already kept. At most ``keep`` rows stay: the
        oldest beyond that are dropped."""
        async with self.transaction() as conn:
            cursor = await conn.execute(
                "INSERT OR IGNORE INTO undecrypted_events (event_id, room_id, session_id, "
                "sender, event_json, parked_at) VALUES (?, ?, ?, ?, ?, ?)",
                (event_id, room_id, session_id, sender, json.dumps(event), parked_at),
            )
            added = cursor.rowcount > 0
            await conn.execute(
                "DELETE FROM undecrypted_events WHERE event_id NOT IN (SELECT event_id FROM "
                "undecrypted_events ORDER BY parked_at DESC, rowid DESC LIMIT ?)",
                (keep,),
            )
        return added

    async def undecrypted_events(self) -> list[UndecryptedEvent]:
        rows = await self.fetchall("SELECT * FROM undecrypted_events ORDER BY parked_at, rowid")
        return [
            UndecryptedEvent(
                event_id=r["event_id"],
                room_id=r["room_id"],
                session_id=r["session_id"],
                sender=r["sender"],
                event=json.loads(r["event_json"]),
                parked_at=float(r["parked_at"]),
                told=bool(r["told"]),
            )
            for r in rows
        ]

    async def drop_undecrypted(self, event_id: str) -> None:
        await self.execute("DELETE FROM undecrypted_events WHERE event_id = ?", (event_id,))

    async def mark_undecrypted_told(self, event_id: str) -> None:
        await self.execute("UPDATE undecrypted_events SET told = 1 WHERE event_id = ?", (event_id,))

    async def drop_undecrypted_before(self, parked_at: float) -> int:
        return await self.execute(
            "DELETE FROM undecrypted_events WHERE parked_at < ?", (parked_at,)
        )
