"""The Matrix gateway: session, rooms, idempotent sends and the sync loop.

Built on matrix-nio's AsyncClient with its own retries switched off
(``max_limit_exceeded=0``, ``max_timeouts=0``): retry policy belongs to the outbox,
which knows what is already persisted. Sends go through nio's HTTP session but read the
raw response so both ``retry_after_ms`` and the ``Retry-After`` header are honoured.
The device id and access token are kept in the database so the transaction ids of a
resend after a restart are deduplicated by the homeserver (they are scoped per device).

Every send checks whether the room is encrypted (network/matrix/crypto.py); into an
encrypted room it sends ``m.room.encrypted`` with the caller's transaction id, and never the
plain message. Each logged-in device is cross-signed by the account
(network/matrix/crosssigning.py) so clients that exclude insecure devices trust it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import aiohttp
import nio

from network.errors import (
    MatrixAuthError,
    MatrixEncryptionUnavailable,
    MatrixError,
    MatrixPermanent,
    MatrixRateLimited,
    MatrixUnavailable,
)
from network.matrix.crosssigning import CrossSigning
from network.matrix.crypto import RoomCrypto, guarded
from network.matrix.ratelimit import RateLimitWatch
from network.settings.model import MatrixSettings, Settings, secret
from network.storage import Storage

log = logging.getLogger(__name__)

EventHandler = Callable[[str, nio.Event], Awaitable[None]]
InviteHandler = Callable[[str, nio.InviteEvent], Awaitable[None]]

_PERMANENT_CODES = frozenset(
    {"M_FORBIDDEN", "M_NOT_FOUND", "M_UNKNOWN", "M_BAD_JSON", "M_NOT_JSON", "M_TOO_LARGE",
     "M_INVALID_PARAM", "M_UNSUPPORTED_ROOM_VERSION"}
)  # fmt: skip


# The state event that makes a new room end-to-end encrypted.
ENCRYPTION_STATE: dict[str, Any] = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


@dataclass(frozen=True)
class SentEvent:
    event_id: str
    room_id: str


def _error_from(status: int, body: dict[str, Any], headers: Any, what: str) -> MatrixError:
    errcode = str(body.get("errcode", ""))
    message = str(body.get("error", "")) or f"HTTP {status}"
    if status == 429 or errcode == "M_LIMIT_EXCEEDED":
        retry = body.get("retry_after_ms")
        seconds = float(retry) / 1000 if isinstance(retry, int | float) else None
        header = headers.get("Retry-After") if headers is not None else None
        # retry_after_ms is the precise value; the header is whole seconds (Synapse
        # rounds 150 ms up to "1"), so it only counts when the body has none.
        if seconds is None and header and header.strip().isdigit():
            seconds = float(header)
        return MatrixRateLimited(f"{what}: rate limited", retry_after=seconds or 5.0)
    if errcode in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN") or status == 401:
        return MatrixAuthError(
            f"{what}: the access token was rejected ({message})", errcode=errcode
        )
    if status >= 500:
        return MatrixUnavailable(f"{what}: homeserver error {status} ({message})", errcode=errcode)
    if errcode in _PERMANENT_CODES or 400 <= status < 500:
        return MatrixPermanent(f"{what}: {message}", errcode=errcode)
    return MatrixUnavailable(f"{what}: unexpected answer {status}", errcode=errcode)


class MatrixGateway:
    """One logged-in Matrix account."""

    @classmethod
    def from_settings(cls, settings: Settings, storage: Storage) -> MatrixGateway:
        """The bot's gateway as the settings describe it: its secrets from the environment,
        its crypto store (the one place every command and the service build it)."""
        m = settings.matrix
        return cls(
            m,
            storage,
            password=secret(m.password_env),
            access_token=secret(m.access_token_env),
            crypto_store=settings.crypto_store_path,
            recovery_key=secret(m.recovery_key_env),
        )

    def __init__(
        self,
        settings: MatrixSettings,
        storage: Storage,
        *,
        password: str | None,
        access_token: str | None,
        crypto_store: Path | None = None,
        recovery_key: str | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self._password = password
        self._env_token = access_token
        config = nio.AsyncClientConfig(
            max_limit_exceeded=0,
            max_timeouts=0,
            request_timeout=settings.sync_timeout.total_seconds() + 30,
            store_sync_tokens=False,
            encryption_enabled=True,
        )
        self.client = nio.AsyncClient(settings.homeserver, settings.user_id, config=config)
        # Encryption needs a crypto store; without one, encrypted rooms are refused (held).
        self.crypto = RoomCrypto(
            self.client,
            self._request,
            storage,
            store_dir=crypto_store or Path(),
            share_with=settings.share_keys_with,
        )
        if crypto_store is None:
            self.crypto.error = "no crypto store is configured"
        self.cross_signing = CrossSigning(
            self._request,
            self._request_raw,
            user_id=settings.user_id,
            password=password,
            recovery_key=recovery_key,
            key_file=(crypto_store or Path()) / "recovery-key.txt",
            key_env=settings.recovery_key_env,
        )
        self._crypto_started = crypto_store is None
        self._cross_signed = crypto_store is None
        self._recorded_encrypted: set[str] = set()  # encrypted rooms already in the database
        self.user_id = settings.user_id
        self.last_sync_ok: float | None = None  # time.monotonic() of the last good sync
        self.last_error: str | None = None
        self._logged_in = False
        # Every 429 is counted; the first one tells the operator how to lift the limit.
        self.ratelimits = RateLimitWatch(storage, lambda: self.user_id)

    # -- session ---------------------------------------------------------------

    @property
    def logged_in(self) -> bool:
        return self._logged_in

    @property
    def may_encrypt(self) -> bool:
        """False on an instance that does not lead: it never opens the crypto store (one
        process owns it), so messages for encrypted rooms are the leader's to send."""
        return self._crypto_started

    async def login(self) -> None:
        """Log in once: env token, then stored token, then password with the stored device."""
        candidates = [
            t for t in (self._env_token, await self.storage.get_state("matrix.token")) if t
        ]
        device_id = await self.storage.get_state("matrix.device_id")
        for token in candidates:
            self.client.access_token = token
            try:
                who = await self._request("GET", "/_matrix/client/v3/account/whoami", what="whoami")
            except MatrixAuthError:
                continue
            self.client.user_id = self.user_id = str(who.get("user_id", self.user_id))
            self.client.device_id = str(who.get("device_id") or device_id or "")
            await self._remember_session(token, self.client.device_id)
            await self.prepare_crypto()
            return
        if not self._password:
            raise MatrixAuthError(
                "no working access token and no password: set the environment variable named by "
                "matrix.password_env or matrix.access_token_env"
            )
        if device_id:
            self.client.device_id = device_id
        try:
            resp = await self.client.login(self._password, device_name=self.settings.device_name)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise MatrixUnavailable(f"cannot reach {self.settings.homeserver}: {e}") from e
        if isinstance(resp, nio.LoginError):
            if resp.status_code == "M_LIMIT_EXCEEDED":
                raise MatrixRateLimited(
                    "login rate limited", retry_after=(resp.retry_after_ms or 5000) / 1000
                )
            raise MatrixAuthError(
                f"login as {self.user_id} failed: {resp.message}; check the password in "
                f"${self.settings.password_env}",
                errcode=str(resp.status_code),
            )
        self.user_id = resp.user_id
        await self._remember_session(resp.access_token, resp.device_id)
        await self.prepare_crypto()

    async def adopt_session(self) -> bool:
        """On an instance that does not lead: use the session the leader stored (the same
        access token and device), never the password, which would make a new device, so a
        resend after a crash still carries a transaction id the homeserver knows. The crypto
        store is not opened: only the leader syncs, and one process owns the store."""
        token = self._env_token or await self.storage.get_state("matrix.token")
        if not token:
            return False  # the leader has not logged in yet
        self.client.access_token = token
        try:
            who = await self._request("GET", "/_matrix/client/v3/account/whoami", what="whoami")
        except MatrixError as e:
            self.last_error = str(e)
            return False
        self.client.user_id = self.user_id = str(who.get("user_id", self.user_id))
        device = who.get("device_id") or await self.storage.get_state("matrix.device_id")
        self.client.device_id = str(device or "")
        self._logged_in = True
        self.cross_signing.user_id = self.user_id
        return True

    async def prepare_crypto(self) -> None:
        """Once per process, after login: the crypto store opened and checked against the
        device's published keys, the keys published, and the device cross-signed."""
        if not self._crypto_started:
            await self.crypto.start()
            self._crypto_started = True
        if not self._cross_signed and self.crypto.ready:
            self._cross_signed = await self.cross_signing.ensure(self.client)

    async def _remember_session(self, token: str, device_id: str) -> None:
        await self.storage.set_state("matrix.token", token)
        await self.storage.set_state("matrix.device_id", device_id)
        self._logged_in = True
        self.cross_signing.user_id = self.user_id
        log.info(
            "logged in to %s as %s (device %s)", self.settings.homeserver, self.user_id, device_id
        )

    def mark_logged_out(self, reason: str) -> None:
        """The token stopped working: the sync loop logs in again."""
        self._logged_in = False
        self.last_error = reason

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- raw requests ----------------------------------------------------------

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, what: str
    ) -> dict[str, Any]:
        status, payload, headers = await self._request_raw(method, path, body, what=what)
        if status >= 400:
            error = _error_from(status, payload, headers, what)
            if isinstance(error, MatrixRateLimited):
                await self.ratelimits.saw(what, error.retry_after)
            raise error
        return payload

    async def _request_raw(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, what: str
    ) -> tuple[int, dict[str, Any], Any]:
        """Status, JSON body and headers (user-interactive auth reads a 401's body)."""
        headers = {"Content-Type": "application/json"}
        if self.client.access_token:
            headers["Authorization"] = f"Bearer {self.client.access_token}"
        data = json.dumps(body) if body is not None else None
        try:
            resp = await self.client.send(method, path, data, headers)
            async with resp:
                try:
                    payload = await resp.json(content_type=None)
                except (json.JSONDecodeError, aiohttp.ContentTypeError, ValueError):
                    payload = {}
                if not isinstance(payload, dict):
                    payload = {}
                return resp.status, payload, resp.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise MatrixUnavailable(f"{what}: cannot reach {self.settings.homeserver} ({e})") from e

    # -- rooms -----------------------------------------------------------------

    async def resolve_room(self, ref: str, *, create: bool | None = None, name: str = "") -> str:
        """The room id for a configured ``#alias:server`` or ``!id:server``, joining it.

        The answer is cached in the database. A missing alias is created (when
        ``matrix.create_rooms`` allows) as a private room with that alias.
        """
        cached = await self.storage.room_id_for(ref)
        if cached:
            return cached
        room_id = ref
        if ref.startswith("#"):
            try:
                answer = await self._request(
                    "GET",
                    f"/_matrix/client/v3/directory/room/{quote(ref, safe='')}",
                    what=f"resolve {ref}",
                )
                room_id = str(answer["room_id"])
            except MatrixAuthError:
                raise  # the token, not the room: the caller logs in again and retries
            except MatrixPermanent as e:
                allowed = self.settings.create_rooms if create is None else create
                if e.errcode != "M_NOT_FOUND" or not allowed:
                    raise MatrixPermanent(
                        f"room {ref} does not exist; create it or set matrix.create_rooms = true",
                        errcode=e.errcode,
                    ) from e
                room_id = await self.create_room(alias=ref, name=name or ref[1:].split(":")[0])
        await self.join(room_id)
        await self.storage.remember_room(ref, room_id)
        return room_id

    async def join(self, room_id_or_alias: str) -> str:
        answer = await self._request(
            "POST",
            f"/_matrix/client/v3/join/{quote(room_id_or_alias, safe='')}",
            {},
            what=f"join {room_id_or_alias}",
        )
        return str(answer.get("room_id", room_id_or_alias))

    async def create_room(
        self,
        *,
        alias: str | None = None,
        name: str = "",
        topic: str = "",
        invite: Sequence[str] = (),
        is_direct: bool = False,
        extra: dict[str, Any] | None = None,
        encrypted: bool | None = None,
    ) -> str:
        """Create a private room; end-to-end encrypted unless ``encrypted`` (default:
        ``matrix.encryption``) says no or ``extra`` sets its own initial state."""
        body: dict[str, Any] = {"preset": "private_chat", "name": name, "invite": list(invite)}
        if alias:
            body["room_alias_name"] = alias[1:].split(":")[0]
        if topic:
            body["topic"] = topic
        if is_direct:
            body["is_direct"] = True
            body["preset"] = "trusted_private_chat"
        if self.settings.encryption if encrypted is None else encrypted:
            body["initial_state"] = [ENCRYPTION_STATE]
        if extra:
            body.update(extra)
        answer = await self._request(
            "POST", "/_matrix/client/v3/createRoom", body, what="create room"
        )
        return str(answer["room_id"])

    async def joined_rooms(self) -> list[str]:
        answer = await self._request("GET", "/_matrix/client/v3/joined_rooms", what="joined rooms")
        return [str(r) for r in answer.get("joined_rooms", [])]

    async def room_state(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        path = (
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state/"
            f"{quote(event_type, safe='')}/{quote(state_key, safe='')}"
        )
        try:
            return await self._request("GET", path, what=f"read {event_type} of {room_id}")
        except MatrixAuthError:
            raise
        except MatrixPermanent as e:
            if e.errcode == "M_NOT_FOUND":
                return None
            raise

    # -- sending ---------------------------------------------------------------

    async def send(
        self,
        room_id: str,
        content: dict[str, Any],
        *,
        txn_id: str,
        event_type: str = "m.room.message",
    ) -> SentEvent:
        """Send one event. The caller's ``txn_id`` makes a resend return the same event.

        Into an encrypted room the event is encrypted (same transaction id); when it cannot
        be, `MatrixEncryptionUnavailable` says why and nothing is sent.
        """
        if await self.crypto.is_encrypted(room_id, self.room_state):
            if room_id not in self._recorded_encrypted:
                # Shared with the other instances: those that cannot encrypt stop claiming it.
                await self.storage.remember_encrypted_room(room_id, datetime.now(UTC))
                self._recorded_encrypted.add(room_id)
            if not self._crypto_started:
                raise MatrixEncryptionUnavailable(
                    f"{room_id} is encrypted and encryption is not set up yet"
                )
            content = await self.crypto.encrypt(room_id, event_type, content)
            event_type = "m.room.encrypted"
        path = (
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/"
            f"{quote(event_type, safe='')}/{quote(txn_id, safe='')}"
        )
        answer = await self._request("PUT", path, content, what=f"send to {room_id}")
        return SentEvent(event_id=str(answer["event_id"]), room_id=room_id)

    async def send_state(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> str:
        path = (
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state/"
            f"{quote(event_type, safe='')}/{quote(state_key, safe='')}"
        )
        answer = await self._request("PUT", path, content, what=f"set {event_type} in {room_id}")
        return str(answer.get("event_id", ""))

    # -- sync --------------------------------------------------------------------

    async def sync_forever(
        self,
        *,
        on_event: EventHandler | None = None,
        on_invite: InviteHandler | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Sync until ``stop`` is set; ``next_batch`` is saved after the handlers finish.

        The very first sync of a new installation only records where "now" is: old
        history is never answered (pending invites are still accepted). Errors are logged
        and retried with backoff.
        """
        stop = stop or asyncio.Event()
        delay = 1.0
        while not stop.is_set():
            try:
                if not self._logged_in:
                    await self.login()
                await self._sync_once(on_event=on_event, on_invite=on_invite)
                delay = 1.0
            except MatrixError as e:
                self.last_error = str(e)
                wait = e.retry_after if isinstance(e, MatrixRateLimited) else delay
                log.warning("matrix sync failed: %s; retrying in %.0f s", e, wait)
                if isinstance(e, MatrixAuthError):
                    self._logged_in = False
                delay = min(delay * 2, 60.0)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                except TimeoutError:
                    pass

    async def _sync_once(
        self, *, on_event: EventHandler | None, on_invite: InviteHandler | None
    ) -> None:
        await self.prepare_crypto()
        since = await self.storage.get_state("matrix.next_batch")
        timeout_ms = int(self.settings.sync_timeout.total_seconds() * 1000) if since else 0
        sync_filter: dict[str, Any] = {"room": {"state": {"lazy_load_members": True}}}
        # After an outage Synapse cuts a room's timeline to its default of 10 events;
        # ask for more so a burst of questions is not silently skipped.
        sync_filter["room"]["timeline"] = {"limit": 1 if since is None else 100}
        try:
            resp = await self.client.sync(
                timeout=timeout_ms, since=since, sync_filter=sync_filter, full_state=False
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise MatrixUnavailable(f"sync: cannot reach {self.settings.homeserver} ({e})") from e
        if isinstance(resp, nio.SyncError):
            status = 401 if resp.status_code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN") else 500
            if resp.status_code == "M_LIMIT_EXCEEDED":
                status = 429
            raise _error_from(
                status,
                {
                    "errcode": resp.status_code,
                    "error": resp.message,
                    "retry_after_ms": resp.retry_after_ms,
                },
                None,
                "sync",
            )
        # A handler that fails must not stop the sync loop or replay the batch forever: it
        # is logged with its room and event, and the batch moves on. Invites are handled
        # on the very first sync too: one sent before libhub first started still waits.
        for room_id, invite in resp.rooms.invite.items():
            for iev in invite.invite_state:
                if (
                    on_invite is not None
                    and isinstance(iev, nio.InviteMemberEvent)
                    and iev.state_key == self.user_id
                ):
                    await _guard(on_invite(room_id, iev), room_id, "invite")
        self.crypto.saw_to_device(resp.to_device_events)
        if since is not None:
            for room_id, joined in resp.rooms.join.items():
                for ev in joined.timeline.events:
                    if isinstance(ev, nio.RoomEncryptionEvent):
                        self.crypto.saw_encryption(room_id)
                    if isinstance(ev, nio.MegolmEvent):
                        # Not decrypted (yet): kept, its key asked for, handled when it comes.
                        await self.crypto.park(room_id, ev)
                        continue
                    if on_event is not None:
                        await _guard(on_event(room_id, ev), room_id, getattr(ev, "event_id", "?"))
        else:
            for room_id, joined in resp.rooms.join.items():
                if any(isinstance(ev, nio.RoomEncryptionEvent) for ev in joined.timeline.events):
                    self.crypto.saw_encryption(room_id)
        await guarded("key exchange", self.crypto.after_sync())
        for room_id, ev in self.crypto.decrypted():
            if on_event is not None:
                await _guard(on_event(room_id, ev), room_id, getattr(ev, "event_id", "?"))
            await self.crypto.handled(ev.event_id)
        for room_id, megolm in await self.crypto.overdue():
            # The key did not come: the hooks see the encrypted event once (the bot tells
            # the sender); it stays parked in case the key still arrives.
            if on_event is not None:
                await _guard(on_event(room_id, megolm), room_id, megolm.event_id)
        await self.storage.set_state("matrix.next_batch", resp.next_batch)
        self.last_sync_ok = time.monotonic()
        self.last_error = None

    def seconds_since_sync(self) -> float | None:
        return None if self.last_sync_ok is None else time.monotonic() - self.last_sync_ok


async def _guard(handler: Awaitable[None], room_id: str, what: str) -> None:
    try:
        await handler
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("handler failed for %s in %s", what, room_id)
