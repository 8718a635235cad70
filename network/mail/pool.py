"""Sending email over pooled SMTP connections: `SmtpSender` and the `SendResult` it returns.

`SmtpSender` is a bounded pool of aiosmtplib connections that are reused across messages,
re-opened when the server drops them and rotated after a number of messages. Every send
returns a `SendResult` instead of raising, classified so the caller can act: a 5xx refusal
of a recipient is a *bounce* (it counts against the address); a 5xx refusal of the message
itself (after DATA, or a feature the server lacks) is *permanent* but no bounce; 4xx
replies, sessions lost mid-message and our sender refused are *temporary*; when the
relay cannot be used at all (unreachable, login refused) the result says ``relay``: no
message's fault, so callers wait for the relay instead of using up a message's attempts;
and a message libhub itself got wrong (it cannot be built or sent as built) says ``own``:
never the recipient's bounce, retried like a temporary failure.

Messages are built in network/mail/message.py (`build_message`) and SMTP URLs parsed in
network/settings/smtp.py (`parse_smtp_url`).

aiosmtplib is asyncio-native, so nothing here blocks the event loop. Passwords are never
logged or shown in a repr.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
import aiosmtplib.protocol
import aiosmtplib.smtp

from network.errors import ConfigError
from network.mail.rate import SendRate
from network.settings.smtp import SmtpTarget

log = logging.getLogger(__name__)

_normalize_line_endings = aiosmtplib.protocol.normalize_message_line_endings


def normalize_line_endings(message: bytes) -> bytes:
    """aiosmtplib's line-ending normalization, without its work when there is none to do.

    aiosmtplib runs a regular expression over every message to turn lone CR and LF into
    CRLF, twice when the server announces SIZE: for a 50 KB digest that was a quarter of a
    round's CPU (py-spy on bench/digest.py). The email package already writes CRLF
    (policy SMTP), so when every CR and LF belongs to a CRLF pair (counted in C) and the
    message ends with one, the message is returned as it is, which is what the expression
    would have made of it; anything else goes through aiosmtplib's own function.
    """
    crlf = message.count(b"\r\n")
    if message.endswith(b"\r\n") and message.count(b"\n") == crlf == message.count(b"\r"):
        return message
    return _normalize_line_endings(message)


# Both of aiosmtplib's callers look the function up in their module at each call.
aiosmtplib.protocol.normalize_message_line_endings = normalize_line_endings
aiosmtplib.smtp.normalize_message_line_endings = normalize_line_endings  # type: ignore[attr-defined]

# A pooled connection idle for longer than this is checked with NOOP before use: servers
# drop idle clients, and finding out during MAIL FROM would cost the message a retry.
IDLE_CHECK_SECONDS = 10.0


@dataclass(frozen=True)
class RecipientRefusal:
    address: str
    code: int
    message: str


@dataclass(frozen=True)
class SendResult:
    """The outcome of one message. ``permanent`` is only meaningful when ``ok`` is False.

    ``refused`` lists recipients the server refused; for a message with several recipients
    some may have been accepted, so send one message per recipient when retries matter.
    ``bounce``: refused for good because of the recipient (counts against the address).
    ``relay``: the relay could not be used at all (down, login refused, not configured).
    ``own``: libhub's own failure (the message could not be built or sent as built).
    """

    ok: bool
    permanent: bool
    code: int | None
    detail: str
    refused: tuple[RecipientRefusal, ...] = ()
    bounce: bool = False
    relay: bool = False
    own: bool = False


@dataclass(frozen=True)
class SendStats:
    """Totals of a `SmtpSender.send_many` run."""

    sent: int = 0
    permanent: int = 0
    temporary: int = 0


OnResult = Callable[[EmailMessage, SendResult], Awaitable[None] | None]


@dataclass
class _Slot:
    """One pooled connection (or a free place for one)."""

    smtp: aiosmtplib.SMTP | None = None
    sent: int = 0
    last_used: float = 0.0


def _refusal_result(refusals: list[RecipientRefusal], accepted_any: bool) -> SendResult:
    permanent = all(500 <= r.code < 600 for r in refusals)
    listed = "; ".join(f"{r.address}: {r.code} {r.message}" for r in refusals)
    prefix = "some recipients refused" if accepted_any else "recipient refused"
    return SendResult(
        ok=False,
        permanent=permanent,
        code=refusals[0].code,
        detail=f"{prefix} ({'permanent' if permanent else 'temporary'}): {listed}",
        refused=tuple(refusals),
        bounce=permanent,
    )


class SmtpSender:
    """Sends messages over at most ``max_connections`` reused SMTP connections."""

    def __init__(
        self,
        target: SmtpTarget,
        *,
        password: str | None,
        max_connections: int = 4,
        messages_per_connection: int = 500,
        timeout: float = 30,
        local_hostname: str | None = None,
        max_per_second: float = 0,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if messages_per_connection < 1:
            raise ValueError(
                f"messages_per_connection must be at least 1, got {messages_per_connection}"
            )
        if target.username and not password:
            where = f"environment variable {target.password_env}" if target.password_env else ""
            raise ConfigError(
                f"SMTP user {target.username!r} needs a password; set {where or 'one'}",
                path="email.smtp_url",
            )
        self.target = target
        self._password = password
        self._max_connections = max_connections
        self._per_connection = messages_per_connection
        self._timeout = timeout
        # Without a name, aiosmtplib asks socket.getfqdn(), which can stall on DNS.
        self._local_hostname = local_hostname
        # LIFO so a trickle of messages keeps reusing the warmest connection.
        self._slots: asyncio.LifoQueue[_Slot] = asyncio.LifoQueue()
        for _ in range(max_connections):
            self._slots.put_nowait(_Slot())
        self._closed = False
        self.connections_opened = 0
        # The relay's message quota, across all connections (0: none).
        self.rate = SendRate(max_per_second)

    def __repr__(self) -> str:
        return (
            f"SmtpSender({self.target.display()}, max_connections={self._max_connections}, "
            f"password={'set' if self._password else 'none'})"
        )

    async def __aenter__(self) -> SmtpSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def send(self, msg: EmailMessage) -> SendResult:
        """Send one message on a pooled connection; never raises for SMTP or network trouble."""
        if self._closed:
            raise RuntimeError("SmtpSender is closed")
        slot = await self._slots.get()
        try:
            # Paced after a connection is free: a reserved start is never left unused.
            await self.rate.wait()
            return await self._send_on(slot, msg)
        except BaseException:
            # Cancelled mid-transaction: the session's state is unknown, so it is not reused.
            self._discard(slot)
            raise
        finally:
            slot.last_used = asyncio.get_running_loop().time()
            self._slots.put_nowait(slot)

    async def send_many(
        self,
        msgs: Iterable[EmailMessage] | AsyncIterable[EmailMessage],
        on_result: OnResult | None = None,
    ) -> SendStats:
        """Send every message with up to ``max_connections`` in flight.

        ``on_result(msg, result)`` is called (and awaited if it returns an awaitable) after
        each message, e.g. to mark an outbox row sent or count a bounce. Messages are pulled
        from ``msgs`` only as fast as they are sent. An exception from ``on_result`` or from
        iterating ``msgs`` stops the run and is raised.
        """
        if self._closed:
            raise RuntimeError("SmtpSender is closed")
        workers = self._max_connections
        queue: asyncio.Queue[EmailMessage | None] = asyncio.Queue(maxsize=workers * 2)
        counts = {"sent": 0, "permanent": 0, "temporary": 0}

        async def produce() -> None:
            if isinstance(msgs, AsyncIterable):
                async for msg in msgs:
                    await queue.put(msg)
            else:
                for msg in msgs:
                    await queue.put(msg)
            for _ in range(workers):
                await queue.put(None)

        async def work() -> None:
            while (msg := await queue.get()) is not None:
                result = await self.send(msg)
                key = "sent" if result.ok else "permanent" if result.permanent else "temporary"
                counts[key] += 1
                if on_result is not None:
                    outcome = on_result(msg, result)
                    if inspect.isawaitable(outcome):
                        await outcome

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(produce())
                for _ in range(workers):
                    group.create_task(work())
        except BaseExceptionGroup as eg:
            # Callers expect their own exception, not a group of one.
            raise eg.exceptions[0] from eg
        return SendStats(**counts)

    async def close(self) -> None:
        """Wait for messages in flight, then QUIT every pooled connection."""
        if self._closed:
            return
        self._closed = True
        slots = [await self._slots.get() for _ in range(self._max_connections)]
        for slot in slots:
            await self._drop(slot, polite=True)

    # -- internals --

    def _discard(self, slot: _Slot) -> None:
        smtp, slot.smtp, slot.sent = slot.smtp, None, 0
        if smtp is not None:
            smtp.close()

    async def _drop(self, slot: _Slot, *, polite: bool) -> None:
        smtp = slot.smtp
        if polite and smtp is not None and smtp.is_connected:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                pass  # the server may already have gone; the socket is closed below
        self._discard(slot)

    async def _ready(self, slot: _Slot) -> aiosmtplib.SMTP:
        where = self.target.display()
        smtp = slot.smtp
        if smtp is not None and not smtp.is_connected:
            self._discard(slot)
        elif smtp is not None and slot.sent >= self._per_connection:
            await self._drop(slot, polite=True)
        elif smtp is not None:
            idle = asyncio.get_running_loop().time() - slot.last_used
            if idle > IDLE_CHECK_SECONDS:
                try:
                    await smtp.noop()
                except (aiosmtplib.SMTPException, OSError):
                    self._discard(slot)
        if slot.smtp is None:
            smtp = aiosmtplib.SMTP(
                hostname=self.target.host,
                port=self.target.port,
                use_tls=self.target.use_tls,
                # Plain smtp:// means no TLS at all: opportunistic STARTTLS to a local relay
                # with a self-signed certificate would fail certificate checks.
                start_tls=self.target.starttls,
                username=self.target.username if self._password else None,
                password=self._password,
                local_hostname=self._local_hostname,
                timeout=self._timeout,
            )
            await smtp.connect()
            self.connections_opened += 1
            log.debug("opened SMTP connection %d to %s", self.connections_opened, where)
            slot.smtp, slot.sent = smtp, 0
        assert slot.smtp is not None
        return slot.smtp

    async def _send_on(self, slot: _Slot, msg: EmailMessage) -> SendResult:
        where = self.target.display()
        try:
            smtp = await self._ready(slot)
        except aiosmtplib.SMTPAuthenticationError as e:
            self._discard(slot)
            log.warning("SMTP login to %s failed: %s %s", where, e.code, e.message)
            return SendResult(
                False,
                False,
                e.code,
                f"login to {where} refused ({e.code} {e.message}): "
                "check the SMTP user and password",
                relay=True,
            )
        except (aiosmtplib.SMTPException, OSError) as e:
            self._discard(slot)
            log.warning("cannot connect to SMTP server %s: %s", where, e)
            return SendResult(
                False,
                False,
                None,
                f"cannot connect to SMTP server {where}: {e}; will retry",
                relay=True,
            )

        slot.sent += 1
        try:
            errors, response = await smtp.send_message(msg)
        except aiosmtplib.SMTPRecipientsRefused as e:
            refusals = [RecipientRefusal(r.recipient, r.code, r.message) for r in e.recipients]
            return _refusal_result(refusals, accepted_any=False)
        except aiosmtplib.SMTPSenderRefused as e:
            # Not the recipient's fault: counting it as a bounce would punish every subscriber.
            return SendResult(
                False, False, e.code, f"{where} refused our sender {e.sender}: {e.code} {e.message}"
            )
        except aiosmtplib.SMTPResponseException as e:
            # The message itself was refused (e.g. its content or size, after DATA): no
            # recipient is to blame, so no bounce.
            if e.code == 421:
                self._discard(slot)
            permanent = 500 <= e.code < 600
            return SendResult(
                False, permanent, e.code, f"{where} refused the message: {e.code} {e.message}"
            )
        except aiosmtplib.SMTPNotSupported as e:
            return SendResult(False, True, None, f"{where} cannot take this message: {e}")
        except (aiosmtplib.SMTPException, OSError) as e:
            self._discard(slot)
            # Not ``relay``: a session lost mid-message may be this message's doing, and a
            # message that keeps failing must use up its attempts, not stall everyone.
            return SendResult(False, False, None, f"connection to {where} failed: {e}; will retry")
        except ValueError as e:
            # The message's headers could not be turned into an envelope. Addresses were
            # checked when people subscribed, so this is libhub's doing, not a bounce.
            return SendResult(False, False, None, f"message cannot be sent: {e}", own=True)
        if errors:
            refusals = [RecipientRefusal(a, r.code, r.message) for a, r in errors.items()]
            return _refusal_result(refusals, accepted_any=True)
        return SendResult(True, False, 250, response.strip() or "accepted")
