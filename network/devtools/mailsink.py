"""A local SMTP server that keeps every message it receives (for the demo and tests).

aiosmtpd in its own thread; each message is stored as an ``.eml`` file in a folder
(when one is given) and kept in memory, so a person can open the demo's mail and a test
can parse it with the ``email`` package. Given a ``login``, it behaves like a relay that
only takes mail from an authenticated client (AUTH over plain SMTP, as on loopback).
Files are numbered on from the highest number already in the folder, so mail kept from
an earlier run is never overwritten.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    at: float = field(default_factory=time.monotonic)  # when DATA was accepted


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sink._count_connection()
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        code = self.sink.reject.get(address.lower())
        if code is not None:
            return code
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.sink._store(Received(envelope.mail_from, tuple(envelope.rcpt_tos), msg), raw)
        return "250 Message accepted"


class _Login:
    """aiosmtpd authenticator accepting one user name and password."""

    def __init__(self, user: str, password: str) -> None:
        self.expected = (user.encode(), password.encode())

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and tuple(auth_data) == self.expected
        return AuthResult(success=ok, handled=False)


class MailSink:
    """Start with ``start()``; messages arrive in ``received`` (and ``folder`` if set).

    With ``login=(user, password)`` every message needs AUTH with them first."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        folder: Path | None = None,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.received: list[Received] = []
        self.connections = 0
        # address -> SMTP reply, for tests of bounces ("550 No such user")
        self.reject: dict[str, str] = {}
        self._lock = threading.Lock()
        self._last = 0  # the highest file number in use; found in the folder at start()
        if port == 0:
            from network.devtools.devserver import free_port

            port = free_port(host)
        self.host, self.port = host, port
        auth: dict[str, Any] = {}
        if login is not None:
            auth = {
                "authenticator": _Login(*login),
                "auth_required": True,
                "auth_require_tls": False,
            }
        self._controller = Controller(_Handler(self), hostname=host, port=port, **auth)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> None:
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._last = _highest_number(self.folder)
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def _count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def _store(self, received: Received, raw: bytes) -> None:
        with self._lock:
            self.received.append(received)
            if self.folder is not None:
                self._write_new(self.folder, raw)

    def _write_new(self, folder: Path, raw: bytes) -> None:
        while True:
            self._last += 1
            try:
                # "x": a file that appeared meanwhile (another sink, a copy) is never replaced.
                with (folder / f"{self._last:05d}.eml").open("xb") as f:
                    f.write(raw)
                return
            except FileExistsError:
                continue

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [r.message for r in self.received if address in r.rcpt_tos]

    def clear(self) -> None:
        with self._lock:
            self.received.clear()
            self.connections = 0


_NUMBERED = re.compile(r"^(\d+)\.eml$")


def _highest_number(folder: Path) -> int:
    numbers = (_NUMBERED.match(p.name) for p in folder.iterdir())
    return max((int(m.group(1)) for m in numbers if m), default=0)
