"""Small persistent state: Matrix session, sync token, resolved rooms, handled events."""

from __future__ import annotations

from datetime import datetime

from network.storage.base import Database, now_iso


class StateStore(Database):
    async def get_state(self, key: str) -> str | None:
        row = await self.fetchone("SELECT value FROM state WHERE key = ?", (key,))
        return str(row["value"]) if row else None

    async def set_state(self, key: str, value: str) -> None:
        await self.execute(
            "INSERT INTO state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def delete_state(self, key: str) -> None:
        await self.execute("DELETE FROM state WHERE key = ?", (key,))

    async def room_id_for(self, ref: str) -> str | None:
        row = await self.fetchone("SELECT room_id FROM rooms WHERE ref = ?", (ref,))
        return str(row["room_id"]) if row else None

    async def remember_room(self, ref: str, room_id: str, now: datetime | None = None) -> None:
        await self.execute(
            "INSERT INTO rooms (ref, room_id, joined_at) VALUES (?, ?, ?) "
            "ON CONFLICT (ref) DO UPDATE SET room_id = excluded.room_id, "
            "joined_at = excluded.joined_at",
            (ref, room_id, now_iso(now)),
        )

    async def replace_room(self, old_room_id: str, new_room_id: str) -> int:
        """Follow a room upgrade: every reference to the old room now means the new one."""
        return await self.execute(
            "UPDATE rooms SET room_id = ? WHERE room_id = ?", (new_room_id, old_room_id)
        )

    async def rooms(self) -> dict[str, str]:
        rows = await self.fetchall("SELECT ref, room_id FROM rooms")
        return {str(r["ref"]): str(r["room_id"]) for r in rows}

    async def mark_event_processed(
        self, event_id: str, room_id: str, now: datetime | None = None
    ) -> bool:
        """Record an event as handled; False when it already was (a replay after restart)."""
        changed = await self.execute(
            "INSERT OR IGNORE INTO processed_events (event_id, room_id, processed_at) "
            "VALUES (?, ?, ?)",
            (event_id, room_id, now_iso(now)),
        )
        return changed > 0

    async def event_processed(self, event_id: str) -> bool:
        row = await self.fetchone("SELECT 1 FROM processed_events WHERE event_id = ?", (event_id,))
        return row is not None
