"""Noticing that the homeserver rate-limits the bot, and telling the operator once.

A default Synapse lets an account send 0.2 messages a second (``rc_message``): one item into
1,000 library rooms then takes more than 80 minutes, and invites and room creation are
limited too. Waiting out each 429 keeps delivery correct but slow; the fix is on the
homeserver. `RateLimitWatch` is fed every ``M_LIMIT_EXCEEDED`` the gateway meets; the first
one (per database: the notice is stored, so a restart does not repeat it) is logged, posted
to the ops room and kept for /healthz and ``libhub status`` until
``libhub matrix lift-ratelimit`` succeeds and clears it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from network.errors import MatrixError, MatrixRateLimited
from network.storage import Storage

log = logging.getLogger(__name__)

NOTICE_KEY = "matrix.rate_limit_notice"

# What a person reads (kept together so they can be translated).
NOTICE_TEXT = (
    "libhub: the homeserver rate-limits the bot account {user} ({what}; asked to wait "
    "{wait:.1f} s). A default Synapse allows 0.2 messages a second, so one item into 1,000 "
    "rooms takes more than 80 minutes. Fix: exempt the bot with Synapse's admin API, e.g. "
    "`SYNAPSE_ADMIN_TOKEN=... libhub matrix lift-ratelimit -c CONFIG` (it calls "
    "POST /_synapse/admin/v1/users/{user_quoted}/override_ratelimit with "
    'messages_per_second 0), or run the bot as an application service with "rate_limited: '
    'false" in its registration. Until then every limit is waited out; nothing is lost.'
)

Notify = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class RateLimitNotice:
    """The stored notice: when the limit was first met, on what, and what to do."""

    first_seen: str
    what: str
    retry_after: float
    advice: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "first_seen": self.first_seen,
            "what": self.what,
            "retry_after": self.retry_after,
            "advice": self.advice,
        }


def notice_text(user_id: str, what: str, wait: float) -> str:
    return NOTICE_TEXT.format(
        user=user_id, what=what, wait=wait, user_quoted=quote(user_id, safe="")
    )


async def stored_notice(storage: Storage) -> RateLimitNotice | None:
    raw = await storage.get_state(NOTICE_KEY)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return RateLimitNotice(
            first_seen=str(data["first_seen"]),
            what=str(data["what"]),
            retry_after=float(data["retry_after"]),
            advice=str(data["advice"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


async def clear_notice(storage: Storage) -> None:
    await storage.set_state(NOTICE_KEY, "")


class RateLimitWatch:
    """Counts the 429s the bot meets; tells the operator the first time."""

    def __init__(self, storage: Storage, user_id: Callable[[], str]) -> None:
        self.storage = storage
        self._user_id = user_id
        self.notify: Notify | None = None  # the service's ops room, once it is wired
        self.hits = 0
        self.notice: RateLimitNotice | None = None
        self._loaded = False
        self._telling: asyncio.Task[None] | None = None

    async def load(self) -> RateLimitNotice | None:
        """The stored notice (a limit seen by an earlier run counts as told)."""
        if not self._loaded:
            self.notice = await stored_notice(self.storage)
            self._loaded = True
        return self.notice

    async def saw(self, what: str, retry_after: float) -> None:
        """One ``M_LIMIT_EXCEEDED``: the first ever is stored, logged and posted."""
        self.hits += 1
        if await self.load() is not None:
            return
        advice = notice_text(self._user_id(), what, retry_after)
        self.notice = RateLimitNotice(
            first_seen=datetime.now(UTC).isoformat(timespec="seconds"),
            what=what,
            retry_after=retry_after,
            advice=advice,
        )
        await self.storage.set_state(NOTICE_KEY, json.dumps(self.notice.as_dict()))
        log.warning("%s", advice)
        if self.notify is not None:
            # In the background: the ops room is rate-limited too, and the send that met
            # the limit must not wait for the notice.
            self._telling = asyncio.create_task(self._tell(advice), name="rate-limit-notice")

    async def _tell(self, text: str) -> None:
        assert self.notify is not None
        for _ in range(10):
            try:
                await self.notify(text)
                return
            except MatrixRateLimited as e:
                await asyncio.sleep(min(e.retry_after, 60.0))
            except MatrixError as e:
                log.warning("could not tell the ops room about the rate limit: %s", e)
                return

    async def wait_told(self) -> None:
        """For tests and shutdown: the ops-room notice has been posted (or given up)."""
        if self._telling is not None:
            await self._telling

    def forget(self) -> None:
        """The limit was lifted: a new limit will be told again."""
        self.notice = None
        self._loaded = True
