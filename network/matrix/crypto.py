"""End-to-end encryption for the gateway: the crypto store, encrypting sends, whom room
keys go to, and events whose key has not arrived yet.

Built on matrix-nio's Olm machine (vodozemac). nio keeps the account and its sessions in
an SQLite store per device, in a directory only the owner can read. The gateway asks
this module two things: is a room encrypted (``m.room.encryption`` in its state; once
encrypted, always), and for the encrypted content of a message. Nothing here ever sends a
message in plain text: when the bot cannot encrypt, the send raises
`MatrixEncryptionUnavailable` and the message waits in the outbox. Events that do not
decrypt yet are kept in the database (``undecrypted_events``) until their key comes.

Trust policy (``matrix.share_keys_with``): room keys go to the members' devices that their
owners cross-signed, what Element's "exclude insecure devices" mode does; with ``"all"``
unsigned devices get them too. Devices with a bad signature (one claimed by the owner's
self-signing key that does not verify) never do. A member who leaves or a device list
that changes makes nio start a new session for the room (rotation). Room key requests
are answered by nio only for the bot's own verified devices; the rest are logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import nio
from nio.crypto import OlmDevice
from nio.rooms import MatrixRoom

from network.errors import MatrixEncryptionUnavailable, MatrixError, MatrixUnavailable
from network.matrix.keys import device_trust
from network.storage import Storage

log = logging.getLogger(__name__)

Request = Callable[..., Awaitable[dict[str, Any]]]

PLAIN_RECHECK = 60.0  # seconds before a room found unencrypted is asked about again
MAX_PARKED = 1000  # undecryptable events kept waiting for their key
LATE_KEY_NOTICE = 30.0  # seconds an event waits for its key before the sender is told
PARK_FOR = 24 * 3600.0  # seconds an undecryptable event is kept at most


@dataclass
class Parked:
    room_id: str
    event: nio.MegolmEvent
    since: float
    told: bool = False


def prepare_store_dir(path: Path) -> None:
    """Create the crypto store directory owner-only (0700), and tighten one that is not."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    for child in path.iterdir():
        if child.is_file() and child.stat().st_mode & 0o077:
            os.chmod(child, 0o600)


class RoomCrypto:
    """The Olm machine of one logged-in device, and the rooms it encrypts for."""

    def __init__(
        self,
        client: nio.AsyncClient,
        request: Request,
        storage: Storage,
        *,
        store_dir: Path,
        share_with: str = "cross-signed",
    ) -> None:
        self.client = client
        self._request = request
        self.storage = storage
        self.store_dir = store_dir
        self.share_with = share_with
        self.error: str | None = None  # why the bot cannot encrypt, when it cannot
        self._encrypted: set[str] = set()
        self._plain_checked: dict[str, float] = {}
        self._share_lock = asyncio.Lock()
        self._keys_lock = asyncio.Lock()
        self._parked: dict[str, Parked] = {}  # event id -> event waiting for its key
        self._requested: set[str] = set()  # session ids whose key was asked for
        self.late_key_notice = LATE_KEY_NOTICE

    @property
    def ready(self) -> bool:
        return self.client.olm is not None and self.error is None

    # -- start ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store for the logged-in device and publish its keys.

        A store that does not hold this device's keys (lost, or from another device) is
        not papered over with new keys: the bot keeps running without encryption, and
        the error says how to start over as a new device.
        """
        device = self.client.device_id
        try:
            prepare_store_dir(self.store_dir)
            self.client.store_path = str(self.store_dir)
            if self.client.olm is None:
                self.client.load_store()
            for child in self.store_dir.iterdir():
                if child.is_file():
                    os.chmod(child, 0o600)
        except Exception as e:  # a corrupted store raises whatever SQLite or peewee raise
            self._fail(
                f"the crypto store in {self.store_dir} cannot be opened ({e}); restore it from "
                "a backup, or log in as a new device (run `libhub matrix new-device`)"
            )
            return
        if self.client.olm is None:
            self._fail("end-to-end encryption is not available (install matrix-nio[e2e])")
            return
        own = self.client.olm.account.identity_keys
        answer = await self._request(
            "POST",
            "/_matrix/client/v3/keys/query",
            {"device_keys": {self.client.user_id: [device]}},
            what="query own device keys",
        )
        published = (answer.get("device_keys", {}).get(self.client.user_id) or {}).get(device)
        if isinstance(published, dict):
            keys = published.get("keys") or {}
            if keys.get(f"ed25519:{device}") != own["ed25519"]:
                self._fail(
                    f"the crypto store in {self.store_dir} does not hold the keys of device "
                    f"{device} (the store was lost or belongs to another device); restore it, "
                    "or log in as a new device (run `libhub matrix new-device`) so encrypted "
                    "rooms work again"
                )
                return
        self.error = None
        await self.load_parked()
        await self.after_sync()
        log.info("end-to-end encryption ready for device %s (store %s)", device, self.store_dir)

    def _fail(self, reason: str) -> None:
        self.error = reason
        log.error("encrypted rooms are on hold: %s", reason)

    # -- after each sync ------------------------------------------------------------------

    async def after_sync(self) -> None:
        """What nio's own sync loop does after a sync: to-device messages, key upload,
        device list queries and one-time key claims."""
        if not self.ready:
            return
        self._refuse_key_requests()
        try:
            async with self._keys_lock:
                if self.client.outgoing_to_device_messages:
                    await self.client.send_to_device_messages()
                if self.client.should_upload_keys:
                    await self.client.keys_upload()
                if self.client.should_query_keys:
                    await self.client.keys_query()
                if self.client.should_claim_keys:
                    await self.client.keys_claim(self.client.get_users_for_key_claiming())
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise MatrixUnavailable(f"key exchange: cannot reach the homeserver ({e})") from e

    def saw_to_device(self, events: list[Any]) -> None:
        """Log the room key requests of other accounts: nio never answers them (keys are
        forwarded only to the bot's own verified devices), and nobody should wonder why."""
        for ev in events:
            if isinstance(ev, nio.RoomKeyRequest) and ev.sender != self.client.user_id:
                log.warning(
                    "refused a room key request from %s's device %s for %s: keys are "
                    "forwarded only to the bot's own verified devices",
                    ev.sender, ev.requesting_device_id, ev.room_id,
                )  # fmt: skip

    def _refuse_key_requests(self) -> None:
        """Room key requests of the bot's own devices that nio would not answer (not
        verified) are refused and forgotten, so they cannot pile up in memory."""
        olm = self.client.olm
        assert olm is not None
        for request in olm.key_request_from_untrusted.values():
            log.warning(
                "refused a room key request from %s's device %s for %s: that device of the "
                "bot's account is not verified",
                request.sender, request.requesting_device_id, request.room_id,
            )  # fmt: skip
        olm.key_request_from_untrusted.clear()

    # -- is a room encrypted --------------------------------------------------------------

    async def is_encrypted(self, room_id: str, room_state: Callable[..., Awaitable[Any]]) -> bool:
        if room_id in self._encrypted:
            return True
        room = self.client.rooms.get(room_id)
        if (room is not None and room.encrypted) or room_id in self.client.encrypted_rooms:
            self._encrypted.add(room_id)
            return True
        checked = self._plain_checked.get(room_id)
        now = time.monotonic()
        if checked is not None and now - checked < PLAIN_RECHECK:
            return False
        state = await room_state(room_id, "m.room.encryption")
        if state is not None:
            self._encrypted.add(room_id)
            self._plain_checked.pop(room_id, None)
            return True
        self._plain_checked[room_id] = now
        return False

    def saw_encryption(self, room_id: str) -> None:
        """The sync showed ``m.room.encryption`` in the room: encrypt from now on."""
        self._encrypted.add(room_id)

    # -- encrypting ---------------------------------------------------------------------------

    async def encrypt(
        self, room_id: str, event_type: str, content: dict[str, Any]
    ) -> dict[str, Any]:
        """The ``m.room.encrypted`` content of one message; shares the room key first when
        the room has no current session (new, rotated after a leave, or expired)."""
        if not self.ready:
            raise MatrixEncryptionUnavailable(
                f"{room_id} is encrypted and the bot cannot encrypt: {self.error or 'no store'}"
            )
        olm = self.client.olm
        assert olm is not None
        try:
            if olm.should_share_group_session(room_id):
                async with self._share_lock:
                    if olm.should_share_group_session(room_id):
                        await self._share(room_id)
            payload: dict[str, Any] = olm.group_encrypt(
                room_id, {"content": content, "type": event_type}
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise MatrixUnavailable(f"sharing the key of {room_id} failed ({e})") from e
        except (nio.EncryptionError, nio.LocalProtocolError) as e:
            raise MatrixEncryptionUnavailable(f"cannot encrypt for {room_id}: {e}") from e
        if "m.relates_to" in content:
            payload["m.relates_to"] = content["m.relates_to"]  # relations stay readable
        return payload

    async def _share(self, room_id: str) -> None:
        room = await self._room(room_id)
        await self.after_sync()  # device lists of new members
        await self._apply_trust(room)
        response = await self.client.share_group_session(room_id)
        if isinstance(response, nio.ShareGroupSessionError):
            raise MatrixUnavailable(f"sharing the key of {room_id} failed: {response.message}")

    async def _room(self, room_id: str) -> MatrixRoom:
        """nio's room with every joined and invited member (sync loads members lazily)."""
        room = self.client.rooms.get(room_id)
        if room is None:
            room = MatrixRoom(room_id, self.client.user_id, encrypted=True)
            self.client.rooms[room_id] = room
        room.encrypted = True
        if not room.members_synced:
            answer = await self._request(
                "GET",
                f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/members",
                what=f"members of {room_id}",
            )
            for ev in answer.get("chunk", []):
                if not isinstance(ev, dict) or not isinstance(ev.get("state_key"), str):
                    continue
                membership = (ev.get("content") or {}).get("membership")
                if membership in ("join", "invite"):
                    name = (ev.get("content") or {}).get("displayname")
                    room.add_member(ev["state_key"], name, None, invited=membership == "invite")
            room.members_synced = True
            assert self.client.olm is not None
            self.client.olm.update_tracked_users(room)
        return room

    async def _apply_trust(self, room: MatrixRoom) -> None:
        """Mark each member device verified (cross-signed by its owner) or, by policy,
        blacklisted or ignored, so nio shares the room key with exactly the trusted ones."""
        olm = self.client.olm
        assert olm is not None
        users = sorted(room.users)
        if not users:
            return
        answer = await self._request(
            "POST",
            "/_matrix/client/v3/keys/query",
            {"device_keys": {u: [] for u in users}},
            what=f"device keys of the members of {room.room_id}",
        )
        masters = answer.get("master_keys") or {}
        ssks = answer.get("self_signing_keys") or {}
        devices = answer.get("device_keys") or {}
        for user_id in users:
            for device in olm.device_store.active_user_devices(user_id):
                published = (devices.get(user_id) or {}).get(device.id)
                master, ssk = masters.get(user_id), ssks.get(user_id)
                if not isinstance(published, dict):
                    trust = "unsigned"  # gone from the homeserver since nio saw it
                elif (published.get("keys") or {}).get(f"ed25519:{device.id}") != device.ed25519:
                    trust = "bad-signature"  # not the keys the homeserver publishes for it
                else:
                    trust = device_trust(user_id, published, master, ssk)
                self._trust(user_id, device, trust)

    def _trust(self, user_id: str, device: OlmDevice, trust: str) -> None:
        olm = self.client.olm
        assert olm is not None
        if trust == "cross-signed":
            if olm.is_device_blacklisted(device):
                olm.unblacklist_device(device)
            if not olm.is_device_verified(device):
                olm.verify_device(device)
            return
        if trust == "unsigned" and self.share_with == "all":
            if olm.is_device_blacklisted(device):
                olm.unblacklist_device(device)
            if not olm.is_device_ignored(device):
                olm.ignore_device(device)
            return
        if olm.is_device_verified(device):
            olm.unverify_device(device)
        if olm.is_device_ignored(device):
            olm.unignore_device(device)
        if olm.is_device_blacklisted(device):
            return
        if trust == "bad-signature":
            log.warning(
                "not sharing room keys with %s's device %s: its cross-signing signature does "
                "not verify (a forged or broken device); it gets no keys whatever "
                "matrix.share_keys_with says",
                user_id, device.id,
            )  # fmt: skip
        else:
            log.info(
                "not sharing room keys with %s's device %s: its owner has not cross-signed "
                "it (matrix.share_keys_with = %r)",
                user_id, device.id, self.share_with,
            )  # fmt: skip
        olm.blacklist_device(device)

    # -- events whose key has not arrived ---------------------------------------------------------

    async def load_parked(self) -> None:
        """The events still waiting for their key from before a restart."""
        self._parked.clear()
        for row in await self.storage.undecrypted_events():
            try:
                event = nio.MegolmEvent.from_dict(row.event)
            except (KeyError, TypeError, ValueError) as e:
                log.warning("dropping a kept undecryptable event %s: %s", row.event_id, e)
                await self.storage.drop_undecrypted(row.event_id)
                continue
            if not isinstance(event, nio.MegolmEvent):
                await self.storage.drop_undecrypted(row.event_id)
                continue
            event.room_id = row.room_id
            self._parked[row.event_id] = Parked(row.room_id, event, row.parked_at, row.told)
        if self._parked:
            log.info("%d encrypted events are still waiting for their key", len(self._parked))
        for parked in list(self._parked.values()):
            await self._ask_for_key(parked.event)  # again: the last ask may never have left

    async def park(self, room_id: str, event: nio.MegolmEvent) -> None:
        """Keep an event that did not decrypt (in the database, so a restart keeps it too)
        and ask for its key (once per session)."""
        if event.event_id in self._parked:
            return
        event.room_id = room_id
        now = time.time()
        await self.storage.park_undecrypted(
            event.event_id, room_id, event.session_id, event.sender, event.source, now,
            keep=MAX_PARKED,
        )  # fmt: skip
        self._parked[event.event_id] = Parked(room_id, event, now)
        if len(self._parked) > MAX_PARKED:
            oldest = min(self._parked.values(), key=lambda p: p.since)
            self._parked.pop(oldest.event.event_id, None)
            log.warning("gave up waiting for the key of %s", oldest.event.event_id)
        log.info(
            "event %s from %s in %s does not decrypt yet (session %s); asking for its key",
            event.event_id, event.sender, room_id, event.session_id,
        )  # fmt: skip
        await self._ask_for_key(event)

    async def _ask_for_key(self, event: nio.MegolmEvent) -> None:
        if event.session_id in self._requested or not self.ready:
            return
        self._requested.add(event.session_id)
        try:
            for user_id in {event.sender, self.client.user_id}:
                message = event.as_key_request(user_id, self.client.device_id)
                await self.client.to_device(message)
        except (aiohttp.ClientError, TimeoutError, OSError, nio.LocalProtocolError) as e:
            self._requested.discard(event.session_id)
            log.warning("could not ask for the key of %s: %s", event.event_id, e)

    def decrypted(self) -> list[tuple[str, nio.Event]]:
        """Parked events whose key has arrived, decrypted, oldest first. The caller hands
        each to the hooks, then calls `handled` (a crash in between hands it over again,
        which the hooks deduplicate by event id)."""
        olm = self.client.olm
        if not self._parked or olm is None:
            return []
        out: list[tuple[float, str, nio.Event]] = []
        for event_id, parked in list(self._parked.items()):
            ev = parked.event
            if not olm.inbound_group_store.get(parked.room_id, ev.sender_key, ev.session_id):
                continue  # its key has not come: no need to try
            try:
                event = self.client.decrypt_event(ev)
            except (nio.EncryptionError, nio.LocalProtocolError):
                continue
            log.info("the key of %s arrived; handling it now", event_id)
            out.append((parked.since, parked.room_id, event))
        out.sort(key=lambda t: t[0])
        return [(room_id, event) for _, room_id, event in out]

    async def handled(self, event_id: str) -> None:
        """A decrypted parked event is in the hooks' hands: stop keeping it."""
        self._parked.pop(event_id, None)
        await self.storage.drop_undecrypted(event_id)

    async def overdue(self) -> list[tuple[str, nio.MegolmEvent]]:
        """Events that waited ``LATE_KEY_NOTICE`` seconds: their senders are told, once.
        Events kept longer than ``PARK_FOR`` are given up."""
        now = time.time()
        out = []
        for event_id, parked in list(self._parked.items()):
            if now - parked.since > PARK_FOR:
                del self._parked[event_id]
                await self.storage.drop_undecrypted(event_id)
                log.warning("gave up waiting for the key of %s", event_id)
            elif not parked.told and now - parked.since > self.late_key_notice:
                parked.told = True
                await self.storage.mark_undecrypted_told(event_id)
                out.append((parked.room_id, parked.event))
        return out

    @property
    def waiting_for_keys(self) -> int:
        return len(self._parked)


async def guarded(what: str, coro: Awaitable[Any]) -> None:
    """Run a crypto chore whose failure must not stop the sync loop."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except MatrixError as e:
        log.warning("%s failed: %s", what, e)
