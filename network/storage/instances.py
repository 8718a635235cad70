"""Running instances and the leader lease: which libhub processes share this database,
and which one runs what must run once.

Each instance writes a heartbeat row. The leader lease is one ``leases`` row: an instance
takes it when it is free or expired and keeps it by renewing ``expires_at``; a dead leader
stops renewing, and another instance takes over once the lease has run out. One statement
decides (an upsert whose update applies only to the holder or to an expired lease), so two
instances can never both believe they lead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from network.storage.base import Database, from_iso, now_iso

LEADER = "leader"


@dataclass(frozen=True)
class Instance:
    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    leader: bool


class InstanceStore(Database):
    async def heartbeat(
        self, instance_id: str, *, host: str, pid: int, started_at: datetime, now: datetime
    ) -> None:
        await self.execute(
            "INSERT INTO instances (id, host, pid, started_at, heartbeat_at) VALUES (?,?,?,?,?) "
            "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            (instance_id, host, pid, now_iso(started_at), now_iso(now)),
        )

    async def forget_instance(self, instance_id: str) -> None:
        await self.execute("DELETE FROM instances WHERE id = ?", (instance_id,))

    async def forget_instances_older_than(self, moment: datetime) -> int:
        return await self.execute(
            "DELETE FROM instances WHERE heartbeat_at < ?", (now_iso(moment),)
        )

    async def try_lead(
        self, instance_id: str, *, now: datetime, ttl: timedelta, force: bool = False
    ) -> bool:
        """Take or renew the leader lease until ``now + ttl``; False while another
        instance holds it. ``force`` takes it regardless (SQLite: one process per file)."""
        changed = await self.execute(
            "INSERT INTO leases (name, holder, token, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET "
            "token = CASE WHEN leases.holder = excluded.holder THEN leases.token "
            "ELSE excluded.token END, "
            "holder = excluded.holder, expires_at = excluded.expires_at "
            "WHERE leases.holder = excluded.holder OR leases.expires_at < ? OR ?",
            (LEADER, instance_id, uuid.uuid4().hex, now_iso(now + ttl), now_iso(now), force),
        )
        return changed > 0

    async def resign(self, instance_id: str, *, now: datetime) -> None:
        """Give the lease up at a clean stop, so another instance takes over at once."""
        await self.execute(
            "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ?",
            (now_iso(now - timedelta(seconds=1)), LEADER, instance_id),
        )

    async def leader(self, now: datetime) -> str | None:
        row = await self.fetchone(
            "SELECT holder FROM leases WHERE name = ? AND expires_at >= ?", (LEADER, now_iso(now))
        )
        return str(row["holder"]) if row else None

    async def instances(self, now: datetime) -> list[Instance]:
        """Every instance that sent a heartbeat, newest start first, the leader marked."""
        leader = await self.leader(now)
        rows = await self.fetchall("SELECT * FROM instances ORDER BY started_at DESC, id")
        out = []
        for r in rows:
            started, beat = from_iso(r["started_at"]), from_iso(r["heartbeat_at"])
            assert started is not None and beat is not None
            out.append(
                Instance(r["id"], r["host"], int(r["pid"]), started, beat, r["id"] == leader)
            )
        return out
