"""Who runs what must run once: this instance's heartbeat and its hold on the leader lease.

Any number of instances share one PostgreSQL database: all deliver the outbox and poll the
due feeds (both are leased), while the Matrix sync and the bot, cohort sync, the digest and
reminder schedulers run on the leader only. Every `HEARTBEAT` the instance records itself
and takes or renews the lease (valid `TTL`); a leader that dies stops renewing, and another
instance takes over within TTL + HEARTBEAT (20 s). On SQLite the file lock already makes
the one process the only one, so it leads from the start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from network.storage import Storage

log = logging.getLogger(__name__)

HEARTBEAT = timedelta(seconds=5)
TTL = timedelta(seconds=15)
# Instances silent this long are gone (a SIGKILL leaves their row behind).
FORGET_AFTER = timedelta(minutes=10)


class Leadership:
    def __init__(
        self,
        storage: Storage,
        *,
        shared: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.storage = storage
        self.shared = shared  # several instances may run (PostgreSQL)
        self.clock = clock
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.started_at = clock()
        self.leading = asyncio.Event()  # set while this instance holds the lease
        self.lost = asyncio.Event()  # set when a held lease could not be renewed
        storage.claimant = self.instance_id

    async def beat(self) -> bool:
        """Record the heartbeat and take or renew the lease; True while leading."""
        now = self.clock()
        await self.storage.heartbeat(
            self.instance_id, host=socket.gethostname(), pid=os.getpid(),
            started_at=self.started_at, now=now,
        )  # fmt: skip
        if self.shared:
            # Rows an instance claimed before it went silent are due again now, not when
            # their leases run out (2 minutes): its rooms go on, in order.
            if taken := await self.storage.release_claims_of_silent(now, silent_since=now - TTL):
                log.warning("%d deliveries of a silent instance are due again", taken)
            # Likewise the feeds it was polling (their leases last minutes).
            if taken := await self.storage.release_feeds_of_silent(now, silent_since=now - TTL):
                log.warning("%d feeds a silent instance was polling are due again", taken)
        await self.storage.forget_instances_older_than(now - FORGET_AFTER)
        leads = await self.storage.try_lead(
            self.instance_id, now=now, ttl=TTL, force=not self.shared
        )
        if leads and not self.leading.is_set():
            log.info("instance %s leads", self.instance_id)
            self.lost.clear()
            self.leading.set()
        elif not leads and self.leading.is_set():
            log.warning("instance %s lost the leader lease", self.instance_id)
            self.leading.clear()
            self.lost.set()
        return leads

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.beat()
                except Exception:
                    # A database outage: after TTL the lease is gone anyway; stop leading
                    # before another instance can take over.
                    log.exception("heartbeat failed")
                    if self.leading.is_set():
                        self.leading.clear()
                        self.lost.set()
                try:
                    await asyncio.wait_for(stop.wait(), HEARTBEAT.total_seconds())
                except TimeoutError:
                    pass
        finally:
            if self.leading.is_set():
                try:
                    await self.storage.resign(self.instance_id, now=self.clock())
                    await self.storage.forget_instance(self.instance_id)
                except Exception:
                    log.warning("could not resign the leader lease; it runs out by itself")
