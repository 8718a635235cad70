"""A real, throw-away Synapse homeserver for tests and `libhub demo`.

Owns: writing a minimal ``homeserver.yaml`` (SQLite, one loopback client listener, no
federation, no outbound network), launching the installed ``matrix-synapse`` as a child
process in its own process group, waiting until it answers, creating users through the
shared-secret registration admin API, lifting per-user rate limits, and stopping it.

The config files are written as JSON, which is valid YAML: it needs no YAML library and
cannot be mis-indented. A data directory can be restarted any number of times: the signing
key and the registration secret are generated once and reused, so users, rooms and tokens
survive a restart.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import hashlib
import hmac
import importlib.util
import json
import os
import secrets
import signal
import socket
import string
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from network.errors import LibhubError

_LOG_TAIL_LINES = 20
_STOP_TIMEOUT = 10.0
_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)
# High enough that no test or demo ever meets them; Synapse has no "off" switch per limiter.
_UNLIMITED = {"per_second": 100_000, "burst_count": 1_000_000}
_DEFAULT_MESSAGE_RATE = 2.0
_DEFAULT_MESSAGE_BURST = 5


class DevServerError(LibhubError, RuntimeError):
    """The development homeserver could not be started, reached or used."""


@dataclass(frozen=True)
class DevUser:
    """A user on the development homeserver with a live access token."""

    user_id: str
    password: str
    access_token: str
    device_id: str


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def registration_mac(secret: str, nonce: str, localpart: str, password: str, admin: bool) -> str:
    """HMAC-SHA1 that Synapse's shared-secret registration expects (NUL-separated fields)."""
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf-8"))
    for part in (localpart, password, "admin" if admin else "notadmin"):
        mac.update(b"\x00")
        mac.update(part.encode("utf-8"))
    return mac.hexdigest()


def ratelimit_config(
    *,
    rate_limited: bool,
    message_rate: float | None,
    message_burst: int | None,
    synapse_defaults: bool = False,
) -> dict[str, Any]:
    """The ``rc_*`` keys: everything unlimited, messages limited only when asked.

    With ``synapse_defaults`` every limit a bot meets (messages 0.2/s, invites, room
    creation, joins) keeps Synapse's own default, as on a homeserver nobody tuned; only
    registration and login, which the test set-up itself does, stay unlimited.
    """
    if synapse_defaults:
        high = dict(_UNLIMITED)
        return {
            "rc_registration": high,
            "rc_login": {"address": high, "account": high, "failed_attempts": high},
        }
    message = (
        {
            "per_second": _DEFAULT_MESSAGE_RATE if message_rate is None else message_rate,
            "burst_count": _DEFAULT_MESSAGE_BURST if message_burst is None else message_burst,
        }
        if rate_limited
        else dict(_UNLIMITED)
    )
    high = dict(_UNLIMITED)
    return {
        "rc_message": message,
        "rc_registration": high,
        "rc_registration_token_validity": high,
        "rc_login": {"address": high, "account": high, "failed_attempts": high},
        "rc_joins": {"local": high, "remote": high},
        "rc_joins_per_room": high,
        "rc_invites": {"per_room": high, "per_user": high, "per_issuer": high},
        "rc_third_party_invite": high,
        "rc_admin_redaction": high,
        "rc_room_creation": high,
        "rc_3pid_validation": high,
        "rc_key_requests": high,
        "rc_media_create": high,
        "rc_presence": {"per_user": high},
        "rc_delayed_event_mgmt": high,
        "rc_reports": high,
        "rc_user_directory": high,
        "rc_profile": high,
    }


def homeserver_config(
    data_dir: Path,
    *,
    server_name: str,
    port: int,
    registration_secret: str,
    rate_limits: dict[str, Any],
) -> dict[str, Any]:
    """The whole ``homeserver.yaml`` for a loopback-only, SQLite-backed dev server."""
    return {
        "server_name": server_name,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(data_dir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                # "client" also mounts /_synapse/admin; no federation resource at all.
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(data_dir / "homeserver.db")}},
        "media_store_path": str(data_dir / "media_store"),
        "signing_key_path": str(data_dir / "signing.key"),
        "log_config": str(data_dir / "log_config.yaml"),
        "registration_shared_secret": registration_secret,
        "enable_registration": False,
        "report_stats": False,
        # The machine may have no internet: never fetch keys, never federate, never preview.
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "enable_metrics": False,
        # Minimum bcrypt cost: registration and login are on the test's critical path.
        "bcrypt_rounds": 4,
        **rate_limits,
    }


def log_config() -> dict[str, Any]:
    """Python logging dictConfig: WARNING and above to stderr (redirected to the log file)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        # synapse.storage.SQL logs access tokens at DEBUG; keep it pinned.
        "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
        "root": {"level": "WARNING", "handlers": ["console"]},
    }


def _new_signing_key() -> str:
    # Synapse's key file format is "<alg> <version> <unpadded base64 seed>"; an ed25519
    # signing key is fully determined by 32 random bytes, so no crypto library is needed.
    version = "a_" + "".join(secrets.choice(string.ascii_letters) for _ in range(4))
    seed = base64.b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return f"ed25519 {version} {seed}\n"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=lines)).rstrip()
    except OSError as e:
        return f"(log {path} unreadable: {e})"


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class DevHomeserver:
    """One Synapse process serving ``data_dir`` on ``127.0.0.1:port``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        server_name: str = "localhost",
        port: int | None = None,
        rate_limited: bool = False,
        message_rate: float | None = None,
        message_burst: int | None = None,
        synapse_defaults: bool = False,
        log_to: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.server_name = server_name
        # Chosen once so that `url` is known before start and survives restart().
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_to).resolve() if log_to else self.data_dir / "homeserver.log"
        self.config_path = self.data_dir / "homeserver.yaml"
        self._rate_limits = ratelimit_config(
            rate_limited=rate_limited,
            message_rate=message_rate,
            message_burst=message_burst,
            synapse_defaults=synapse_defaults,
        )
        self._secret = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def _prepare(self) -> str:
        """Write config files; reuse the signing key and secret already in data_dir."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "media_store").mkdir(exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        key_path = self.data_dir / "signing.key"
        if not key_path.exists():
            _write_private(key_path, _new_signing_key())
        secret_path = self.data_dir / "registration_shared_secret"
        if secret_path.exists():
            secret = secret_path.read_text(encoding="utf-8").strip()
        else:
            secret = secrets.token_urlsafe(32)
            _write_private(secret_path, secret + "\n")
        config = homeserver_config(
            self.data_dir,
            server_name=self.server_name,
            port=self.port,
            registration_secret=secret,
            rate_limits=self._rate_limits,
        )
        _write_private(self.config_path, json.dumps(config, indent=2) + "\n")
        (self.data_dir / "log_config.yaml").write_text(
            json.dumps(log_config(), indent=2) + "\n", encoding="utf-8"
        )
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"--- libhub devserver: starting Synapse on {self.url} ---\n")
        return secret

    async def start(self, timeout: float = 60) -> None:  # noqa: ASYNC109 (public API)
        """Launch Synapse and return once ``/_matrix/client/versions`` answers."""
        if self.running:
            return
        if importlib.util.find_spec("synapse") is None:
            raise DevServerError(
                f"matrix-synapse is not installed for {sys.executable}; "
                "install it with: pip install 'libhub[demo]'"
            )
        self._secret = await asyncio.to_thread(self._prepare)
        log = await asyncio.to_thread(self.log_path.open, "ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "synapse.app.homeserver",
                "-c",
                str(self.config_path),
                cwd=self.data_dir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                # Own session and process group: stop() signals the group, and a Ctrl-C
                # in the terminal reaches only us, letting stop() shut Synapse down cleanly.
                start_new_session=True,
            )
        finally:
            log.close()
        _LIVE_PIDS.add(self._proc.pid)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=_HTTP_TIMEOUT)
        try:
            await self._wait_ready(timeout_s=timeout)
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self, *, timeout_s: float) -> None:
        assert self._proc is not None and self._session is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        probe = aiohttp.ClientTimeout(total=1)
        while True:
            try:
                async with self._session.get(
                    f"{self.url}/_matrix/client/versions", timeout=probe
                ) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if self._proc.returncode is not None:
                raise await self._startup_error(f"Synapse exited with code {self._proc.returncode}")
            if loop.time() >= deadline:
                raise await self._startup_error(f"Synapse did not answer within {timeout_s:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 0.1)

    async def _startup_error(self, what: str) -> DevServerError:
        tail = await asyncio.to_thread(_tail, self.log_path)
        return DevServerError(
            f"{what} on {self.url} (data dir {self.data_dir}). "
            f"Last lines of {self.log_path}:\n{tail}"
        )

    async def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it is still there after a while."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.returncode is None:
                _kill_group(proc.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT)
                except TimeoutError:
                    _kill_group(proc.pid, signal.SIGKILL)
                    await proc.wait()
            _LIVE_PIDS.discard(proc.pid)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def __aenter__(self) -> DevHomeserver:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- users -----------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        if self._session is None or not self.running:
            raise DevServerError(f"the dev homeserver at {self.url} is not running; start() it")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with self._session.request(
                method, self.url + path, json=body, headers=headers
            ) as resp:
                data = await resp.json(content_type=None)
                return resp.status, data if isinstance(data, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise DevServerError(f"{method} {self.url}{path} failed: {e!r}") from e

    async def register(
        self,
        localpart: str,
        password: str,
        *,
        admin: bool = False,
        displayname: str | None = None,
    ) -> DevUser:
        """Create a user via shared-secret registration, or log in if it already exists.

        For an existing user ``admin`` and ``displayname`` are not changed.
        """
        path = "/_synapse/admin/v1/register"
        status, data = await self._request("GET", path)
        if status != 200 or "nonce" not in data:
            raise DevServerError(f"cannot get a registration nonce: HTTP {status} {data}")
        nonce = str(data["nonce"])
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": registration_mac(self._secret, nonce, localpart, password, admin),
        }
        if displayname is not None:
            body["displayname"] = displayname
        status, data = await self._request("POST", path, body=body)
        if status == 200:
            return self._user(data, password)
        if data.get("errcode") == "M_USER_IN_USE":
            return await self._login(localpart, password)
        raise DevServerError(f"registering {localpart!r} failed: HTTP {status} {data}")

    async def _login(self, localpart: str, password: str) -> DevUser:
        status, data = await self._request(
            "POST",
            "/_matrix/client/v3/login",
            body={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
                "initial_device_display_name": "libhub devserver",
            },
        )
        if status != 200:
            raise DevServerError(
                f"{localpart!r} exists but logging in failed (wrong password?): "
                f"HTTP {status} {data}"
            )
        return self._user(data, password)

    @staticmethod
    def _user(data: dict[str, Any], password: str) -> DevUser:
        return DevUser(
            user_id=str(data["user_id"]),
            password=password,
            access_token=str(data["access_token"]),
            device_id=str(data["device_id"]),
        )

    async def lift_ratelimit(self, user_id: str, admin_token: str) -> None:
        """Exempt ``user_id`` from message rate limiting (needs an admin's token)."""
        status, data = await self._request(
            "POST",
            f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/override_ratelimit",
            body={"messages_per_second": 0, "burst_count": 0},
            token=admin_token,
        )
        if status != 200:
            raise DevServerError(
                f"lifting the rate limit of {user_id} failed: HTTP {status} {data}"
            )


# Last line of defence: a Synapse in its own session would outlive a crashed test run.
_LIVE_PIDS: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    for pid in list(_LIVE_PIDS):
        _kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _LIVE_PIDS and time.monotonic() < deadline:
        for pid in list(_LIVE_PIDS):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                _LIVE_PIDS.discard(pid)
        time.sleep(0.05)
    for pid in _LIVE_PIDS:
        _kill_group(pid, signal.SIGKILL)
