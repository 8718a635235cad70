"""The audit log: one row per thing a coordinator (or the service on their behalf) changed.

Other stores write their audit rows inside their own transactions (`audit_row`), so an
approval and its record are committed together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from network.storage.base import Database, from_iso, now_iso


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: str


async def audit_row(
    conn: Any, *, actor: str, action: str, subject: str, detail: str, now: datetime
) -> None:
    """Insert one audit row on an open transaction's connection."""
    await conn.execute(
        "INSERT INTO audit_log (at, actor, action, subject, detail) VALUES (?,?,?,?,?)",
        (now_iso(now), actor, action, subject, detail[:1000]),
    )


class AuditStore(Database):
    async def record_audit(
        self, *, actor: str, action: str, subject: str, detail: str = "", now: datetime
    ) -> None:
        async with self.transaction() as conn:
            await audit_row(
                conn, actor=actor, action=action, subject=subject, detail=detail, now=now
            )

    async def audit_entries(self, limit: int = 200) -> list[AuditEntry]:
        """The newest entries first."""
        rows = await self.fetchall("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", (limit,))
        out = []
        for r in rows:
            at = from_iso(r["at"])
            assert at is not None
            out.append(
                AuditEntry(int(r["id"]), at, r["actor"], r["action"], r["subject"], r["detail"])
            )
        return out
