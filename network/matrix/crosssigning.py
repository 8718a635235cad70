"""Cross-signing of the bot's device, which nio does not do (matrix-nio#229).

Clients that exclude insecure devices (Element since 2026, MSC4153) neither send room keys
to nor show messages from a device its owner has not cross-signed. On start the gateway
calls `CrossSigning.ensure`:

* the device is already signed by the account's self-signing key: nothing to do;
* the account has no cross-signing identity: make one (master, self-signing and
  user-signing keys), keep the private keys in secret storage under a new recovery key
  (written owner-only beside the crypto store, never logged), upload the public keys with
  the password (user-interactive auth) and sign the device;
* the account has an identity: unlock secret storage with the recovery key (the variable
  named by ``matrix.recovery_key_env``, or the file libhub wrote) and sign the device with
  the self-signing key; without the key, say exactly what is missing and run on unsigned.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nio

from network.errors import MatrixError, MatrixPermanent, MatrixUnavailable
from network.matrix.keys import (
    BadKey,
    SigningKey,
    cross_signing_key,
    decode_recovery_key,
    decrypt_secret,
    device_cross_signed,
    encode_recovery_key,
    encrypt_secret,
    key_description,
    key_matches,
    only_key,
    sign_json,
)

log = logging.getLogger(__name__)

Request = Callable[..., Awaitable[dict[str, Any]]]
RawRequest = Callable[..., Awaitable[tuple[int, dict[str, Any], Any]]]

SECRETS = ("m.cross_signing.master", "m.cross_signing.self_signing", "m.cross_signing.user_signing")


class CrossSigning:
    """Makes sure the logged-in device is signed by the account's self-signing key."""

    def __init__(
        self,
        request: Request,
        raw_request: RawRequest,
        *,
        user_id: str,
        password: str | None,
        recovery_key: str | None,
        key_file: Path,
        key_env: str,
    ) -> None:
        self._request = request
        self._raw = raw_request
        self.user_id = user_id
        self._password = password
        self._recovery_key = recovery_key
        self.key_file = key_file
        self.key_env = key_env
        self.problem: str | None = None  # what stands in the way, for status pages

    async def ensure(self, client: nio.AsyncClient) -> bool:
        """True when done (or when only a person can help); False to try again later."""
        device_id = str(client.device_id)
        try:
            answer = await self._request(
                "POST",
                "/_matrix/client/v3/keys/query",
                {"device_keys": {self.user_id: [device_id]}},
                what="query the cross-signing keys",
            )
            master = (answer.get("master_keys") or {}).get(self.user_id)
            ssk = (answer.get("self_signing_keys") or {}).get(self.user_id)
            device = ((answer.get("device_keys") or {}).get(self.user_id) or {}).get(device_id)
            if not isinstance(device, dict):
                return False  # the device keys are not published yet
            if device_cross_signed(self.user_id, device, master, ssk):
                self.problem = None
                return True
            if not master:
                await self._bootstrap(device)
            else:
                signing = await self._self_signing_key(ssk)
                if signing is None:
                    return True
                await self._sign_device(device, signing)
        except MatrixError as e:
            if e.transient:
                log.warning("cross-signing the device waits: %s", e)
                return False
            self._missing(f"cross-signing the device failed: {e}")
            return True
        self.problem = None
        log.info("device %s is cross-signed by %s", device_id, self.user_id)
        return True

    def _missing(self, text: str) -> None:
        self.problem = text
        log.error(
            "%s; until then clients that exclude insecure devices (Element) neither share "
            "keys with the bot nor show its messages in encrypted rooms",
            text,
        )

    # -- a new identity -----------------------------------------------------------------

    async def _bootstrap(self, device: dict[str, Any]) -> None:
        master, ssk, usk = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
        recovery = secrets.token_bytes(32)
        key_id = secrets.token_hex(16)
        # The recovery key reaches the disk before anything it unlocks reaches the server.
        self._write_key_file(encode_recovery_key(recovery))
        await self._put_account_data(f"m.secret_storage.key.{key_id}", key_description(recovery))
        for name, key in zip(SECRETS, (master, ssk, usk), strict=True):
            encrypted = encrypt_secret(recovery, name, key.secret())
            await self._put_account_data(name, {"encrypted": {key_id: encrypted}})
        await self._put_account_data("m.secret_storage.default_key", {"key": key_id})
        master_id = f"ed25519:{master.public}"
        body: dict[str, Any] = {
            "master_key": cross_signing_key(self.user_id, "master", master),
            "self_signing_key": sign_json(
                cross_signing_key(self.user_id, "self_signing", ssk),
                self.user_id,
                master_id,
                master,
            ),
            "user_signing_key": sign_json(
                cross_signing_key(self.user_id, "user_signing", usk),
                self.user_id,
                master_id,
                master,
            ),
        }
        await self._upload_with_auth("/_matrix/client/v3/keys/device_signing/upload", body)
        await self._sign_device(device, ssk)
        log.info(
            "made a cross-signing identity for %s; its recovery key is in %s: put it into the "
            "environment variable %s and delete the file",
            self.user_id, self.key_file, self.key_env,
        )  # fmt: skip

    def _write_key_file(self, text: str) -> None:
        self.key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.chmod(self.key_file, 0o600)

    async def _upload_with_auth(self, path: str, body: dict[str, Any]) -> None:
        what = "upload the cross-signing keys"
        status, payload, _ = await self._raw("POST", path, body, what=what)
        if status == 401 and "flows" in payload:
            if not self._password:
                raise MatrixPermanent(
                    f"{what}: the homeserver asks for the password; set the bot's password in "
                    "the variable named by matrix.password_env for the first start"
                )
            body = dict(body)
            body["auth"] = {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": self.user_id},
                "password": self._password,
                "session": payload.get("session"),
            }
            status, payload, _ = await self._raw("POST", path, body, what=what)
        if status >= 500:
            raise MatrixUnavailable(f"{what}: homeserver error {status}")
        if status >= 400:
            raise MatrixPermanent(
                f"{what}: {payload.get('error') or status}", errcode=str(payload.get("errcode"))
            )

    # -- an existing identity -----------------------------------------------------------

    def _recovery_key_text(self) -> str | None:
        if self._recovery_key:
            return self._recovery_key
        try:
            return self.key_file.read_text().strip() or None
        except OSError:
            return None

    async def _self_signing_key(self, published: dict[str, Any] | None) -> SigningKey | None:
        text = self._recovery_key_text()
        if text is None:
            self._missing(
                f"{self.user_id} already has a cross-signing identity, and no recovery key is "
                f"set: put the account's recovery key into the environment variable "
                f"{self.key_env} and restart"
            )
            return None
        try:
            recovery = decode_recovery_key(text)
            default = await self._get_account_data("m.secret_storage.default_key")
            key_id = str(default.get("key", ""))
            description = await self._get_account_data(f"m.secret_storage.key.{key_id}")
            if not key_matches(recovery, description):
                raise BadKey("it is not the account's current recovery key")
            stored = await self._get_account_data("m.cross_signing.self_signing")
            encrypted = (stored.get("encrypted") or {}).get(key_id)
            if not isinstance(encrypted, dict):
                raise BadKey("secret storage holds no self-signing key for it")
            ssk = SigningKey.from_secret(
                decrypt_secret(recovery, "m.cross_signing.self_signing", encrypted)
            )
        except BadKey as e:
            self._missing(f"the recovery key in {self.key_env} cannot be used: {e}")
            return None
        except MatrixPermanent as e:
            self._missing(f"secret storage of {self.user_id} cannot be read ({e})")
            return None
        if published is None or only_key(published) != ssk.public:
            self._missing(
                "the self-signing key in secret storage is not the account's published one; "
                "reset cross-signing for the account in Element, then restart with its new "
                f"recovery key in {self.key_env}"
            )
            return None
        return ssk

    async def _sign_device(self, device: dict[str, Any], ssk: SigningKey) -> None:
        device_id = str(device.get("device_id"))
        signed = sign_json(device, self.user_id, f"ed25519:{ssk.public}", ssk)
        answer = await self._request(
            "POST",
            "/_matrix/client/v3/keys/signatures/upload",
            {self.user_id: {device_id: signed}},
            what="upload the device's signature",
        )
        failures = answer.get("failures") or {}
        if failures:
            raise MatrixPermanent(f"the homeserver refused the device's signature: {failures}")

    # -- account data -----------------------------------------------------------------------

    def _account_data_path(self, event_type: str) -> str:
        return (
            f"/_matrix/client/v3/user/{quote(self.user_id, safe='')}/account_data/"
            f"{quote(event_type, safe='')}"
        )

    async def _put_account_data(self, event_type: str, content: dict[str, Any]) -> None:
        await self._request(
            "PUT", self._account_data_path(event_type), content, what=f"store {event_type}"
        )

    async def _get_account_data(self, event_type: str) -> dict[str, Any]:
        return await self._request(
            "GET", self._account_data_path(event_type), what=f"read {event_type}"
        )
