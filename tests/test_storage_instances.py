"""Several instances on one PostgreSQL database (two Storage connections stand for two
processes): the leader lease, outbox claims that keep each room with one instance, and
fencing of a claim whose lease ran out. The lease itself is checked on both backends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from network.storage import Storage, Target
from network.storage.outbox import Sent
from tests.pgkit import PgServer
from tests.test_delivery_grouping import item

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
TTL = timedelta(seconds=15)


async def test_one_leader_and_a_takeover_when_it_stops_renewing(db_location: str | Path) -> None:
    a = await Storage.open(db_location)
    b = await Storage.open(db_location)
    try:
        assert await a.try_lead("a", now=T0, ttl=TTL)
        assert not await b.try_lead("b", now=T0 + timedelta(seconds=5), ttl=TTL)
        assert await a.try_lead("a", now=T0 + timedelta(seconds=10), ttl=TTL)  # renewed
        assert not await b.try_lead("b", now=T0 + timedelta(seconds=20), ttl=TTL)
        # a dies: its lease runs out 15 s after its last renewal, and b takes over.
        assert await b.try_lead("b", now=T0 + timedelta(seconds=26), ttl=TTL)
        assert not await a.try_lead("a", now=T0 + timedelta(seconds=27), ttl=TTL)
        assert await a.leader(T0 + timedelta(seconds=27)) == "b"
        for who, s in (("a", a), ("b", b)):
            await s.heartbeat(who, host="h", pid=1, started_at=T0, now=T0)
        listed = await a.instances(T0 + timedelta(seconds=27))
        assert {(i.id, i.leader) for i in listed} == {("a", False), ("b", True)}
    finally:
        await a.close()
        await b.close()


async def _queue(s: Storage, rooms: list[str], n: int) -> None:
    await s.store_items(
        "news", [item(f"k{i}") for i in range(n)],
        targets=lambda _i: [Target("matrix", r) for r in rooms],
        post=lambda _i: True, edit_window=timedelta(hours=1), now=T0,
    )  # fmt: skip


async def test_concurrent_claims_split_rooms_between_instances(postgres: PgServer) -> None:
    url = await postgres.new_database()
    a, b = await Storage.open(url), await Storage.open(url)
    try:
        rooms = ["#r1:x", "#r2:x", "#r3:x", "#r4:x"]
        await _queue(a, rooms, 20)
        # A grouped poll: one row per item in each room, claimed in batches of 10.
        got_a, got_b = await asyncio.gather(
            a.claim_due(T0, limit=10, per_target=10), b.claim_due(T0, limit=10, per_target=10)
        )
        ids_a, ids_b = {r.id for r in got_a}, {r.id for r in got_b}
        assert (ids_a or ids_b) and not ids_a & ids_b
        # A room being sent by one instance is not touched by the other.
        assert not {r.target for r in got_a} & {r.target for r in got_b}
        # Until its rows are done, a room stays with its instance.
        again = await b.claim_due(T0, limit=100)
        assert not {r.target for r in again} & {r.target for r in got_a + got_b}
    finally:
        await a.close()
        await b.close()


async def test_a_claim_whose_lease_ran_out_cannot_mark_the_row_sent(postgres: PgServer) -> None:
    url = await postgres.new_database()
    a, b = await Storage.open(url), await Storage.open(url)
    try:
        await _queue(a, ["#r1:x"], 1)
        [row] = await a.claim_due(T0, limit=1, lease=timedelta(minutes=2))
        # a stalls past its lease; b claims the row again and sends it.
        later = T0 + timedelta(minutes=3)
        [taken] = await b.claim_due(later, limit=1)
        assert taken.id == row.id and taken.txn_id == row.txn_id
        await a.record_sent([Sent(row.id, "$from-a")], now=later)  # fenced: changes nothing
        [still] = await b.claim_due(later + timedelta(minutes=3), limit=1)
        assert still.status == "pending" and still.event_id is None
        await b.record_sent([Sent(still.id, "$from-b")], now=later)
        assert (await b.outbox_counts())["sent"] == 1
        posted = await b.original_post(row.item_id, "matrix", "#r1:x")
        assert posted is not None and posted.event_id == "$from-b"
    finally:
        await a.close()
        await b.close()


async def test_a_claim_takes_whole_rooms_up_to_a_limit_and_leaves_the_rest(
    postgres: PgServer,
) -> None:
    url = await postgres.new_database()
    a, b = await Storage.open(url), await Storage.open(url)
    try:
        rooms = [f"#r{i}:x" for i in range(6)]
        await _queue(a, rooms, 5)
        got_a = await a.claim_due(T0, limit=800, per_target=200, max_targets=3)
        got_b = await b.claim_due(T0, limit=800, per_target=200, max_targets=3)
        by_room_a = {r.target for r in got_a}
        by_room_b = {r.target for r in got_b}
        # Each instance has three rooms, whole (all five items), and none in common.
        assert len(by_room_a) == len(by_room_b) == 3 and not by_room_a & by_room_b
        assert len(got_a) == len(got_b) == 15
    finally:
        await a.close()
        await b.close()


async def test_the_claims_of_a_silent_instance_are_due_again_at_once(postgres: PgServer) -> None:
    url = await postgres.new_database()
    a, b = await Storage.open(url), await Storage.open(url)
    a.claimant, b.claimant = "host:1:a", "host:2:b"
    try:
        await _queue(a, ["#r1:x", "#r2:x"], 3)
        for who, s in ((a.claimant, a), (b.claimant, b)):
            await s.heartbeat(who, host="host", pid=1, started_at=T0, now=T0)
        got_a = await a.claim_due(T0, limit=3, per_target=3, max_targets=1)
        assert len(got_a) == 3
        # a's room is a's while its heartbeat is fresh...
        soon = T0 + timedelta(seconds=10)
        await b.heartbeat(b.claimant, host="host", pid=2, started_at=T0, now=soon)
        assert await b.release_claims_of_silent(soon, silent_since=soon - TTL) == 0
        # ...and b's again once a has been silent for longer than the leader lease.
        later = T0 + timedelta(seconds=20)
        await b.heartbeat(b.claimant, host="host", pid=2, started_at=T0, now=later)
        assert await b.release_claims_of_silent(later, silent_since=later - TTL) == 3
        taken = await b.claim_due(later, limit=10)
        assert {r.id for r in got_a} <= {r.id for r in taken}
        # a comes back after the fact: its results are fenced off.
        await a.record_sent([Sent(r.id, "$late") for r in got_a], now=later)
        assert (await b.outbox_counts())["sent"] == 0
    finally:
        await a.close()
        await b.close()


async def test_a_row_waiting_out_a_backoff_holds_back_the_rest_of_its_room(
    db_location: str | Path,
) -> None:
    s = await Storage.open(db_location)
    try:
        await _queue(s, ["#a:x", "#b:x"], 3)
        rows = await s.claim_due(T0, limit=100)
        room_a = [r for r in rows if r.target == "#a:x"]
        first, *rest = sorted(room_a, key=lambda r: r.id)
        # The room's first message failed and backs off; the rest of the round was not tried.
        await s.mark_retry(first.id, error="boom", next_attempt=T0 + timedelta(minutes=10))
        others = [r.id for r in rows if r.id != first.id]
        await s.release(others, next_attempt=T0, untried=others)
        soon = await s.claim_due(T0 + timedelta(seconds=1), limit=100)
        # Room b flows; nothing of room a overtakes its waiting first message.
        assert {r.target for r in soon} == {"#b:x"} and len(soon) == 3
        await s.release([r.id for r in soon], next_attempt=T0, untried=[r.id for r in soon])
        later = await s.claim_due(T0 + timedelta(minutes=11), limit=100, per_target=10)
        assert [r.id for r in later if r.target == "#a:x"] == [first.id, *(r.id for r in rest)]
    finally:
        await s.close()


async def test_an_instance_that_cannot_encrypt_leaves_encrypted_rooms_to_the_leader(
    db_location: str | Path,
) -> None:
    s = await Storage.open(db_location)
    try:
        await s.remember_room("#secret:x", "!secret:x")
        await s.remember_room("#open:x", "!open:x")
        await s.remember_encrypted_room("!secret:x", T0)
        await s.remember_encrypted_room("!raw:x", T0)
        await s.remember_encrypted_room("!raw:x", T0)  # seen again: no error
        await _queue(s, ["#secret:x", "#open:x", "!raw:x"], 2)
        follower = await s.claim_due(T0, limit=100, may_encrypt=False)
        assert {r.target for r in follower} == {"#open:x"} and len(follower) == 2
        leader = await s.claim_due(T0, limit=100)
        assert {r.target for r in leader} == {"#secret:x", "!raw:x"} and len(leader) == 4
    finally:
        await s.close()
