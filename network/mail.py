"""Outgoing email: building subscriber messages and sending them over pooled SMTP connections.

Owns three things:

* `build_message`: a multipart/alternative message (text, then HTML) with the headers bulk
  mail needs to be accepted and unsubscribed from: ``List-Unsubscribe`` and
  ``List-Unsubscribe-Post`` (RFC 8058 one-click), ``List-Id``, ``Auto-Submitted``,
  ``Date`` and ``Message-ID``.
* `parse_smtp_url`: ``smtp://``, ``smtps://`` and ``smtp+starttls://`` URLs into an
  `SmtpTarget`. Passwords never live in the URL (it ends up in logs); the URL may name the
  environment variable that holds one (``?password_env=NAME``).
* `SmtpSender`: a bounded pool of aiosmtplib connections that are reused across messages,
  re-opened when the server drops them and rotated after a number of messages. Every send
  returns a `SendResult` instead of raising, classified so the caller can act: a 5xx refusal
  of the recipient or the message is *permanent* (a bounce), while 4xx replies, connection
  trouble and problems on our side (authentication, sender refused) are *temporary*.

aiosmtplib is asyncio-native, so nothing here blocks the event loop. Passwords are never
logged or shown in a repr.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from network.errors import ConfigError

log = logging.getLogger(__name__)

_SCHEMES = {
    # scheme: (default port, implicit TLS, STARTTLS)
    "smtp": (25, False, False),
    "smtps": (465, True, False),
    "smtp+starttls": (587, False, True),
}
# A pooled connection idle for longer than this is checked with NOOP before use: servers
# drop idle clients, and finding out during MAIL FROM would cost the message a retry.
IDLE_CHECK_SECONDS = 10.0
_OWN_HEADERS = frozenset(
    "from to subject date message-id list-unsubscribe list-unsubscribe-post list-id "
    "auto-submitted mime-version content-type content-transfer-encoding".split()
)


# --- building messages ------------------------------------------------------------------


class _VerbatimHeader(str):
    """A header value that is folded only between list elements, never encoded.

    The email package folds long unstructured headers by turning them into RFC 2047
    encoded-words, which makes ``List-Unsubscribe`` URLs unreadable to mailbox providers.
    RFC 2369 allows whitespace after the commas between ``<...>`` elements, so that is
    the only place this header breaks a line.
    """

    name: str

    def __new__(cls, name: str, value: str) -> _VerbatimHeader:
        obj = super().__new__(cls, value)
        obj.name = name
        return obj

    def fold(self, *, policy: Policy) -> str:
        limit = policy.max_line_length or 998
        elements = [e.strip() for e in str(self).split(",")]
        lines = [f"{self.name}: {elements[0]}"]
        for element in elements[1:]:
            if len(lines[-1]) + 2 + len(element) > limit:
                lines[-1] += ","
                lines.append(f" {element}")
            else:
                lines[-1] += f", {element}"
        return policy.linesep.join(lines) + policy.linesep


def _header_safe(value: str, what: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{what} must not contain line breaks: {value!r}")
    return value


def _ascii_uri(value: str, what: str) -> str:
    _header_safe(value, what)
    if not value.isascii() or any(c in value for c in " <>,\t"):
        raise ValueError(f"{what} must be an ASCII URI without spaces, '<', '>' or ',': {value!r}")
    # Each URI sits on a header line of its own at worst, and SMTP lines end at 998 octets.
    if len(value) > 900:
        raise ValueError(f"{what} is {len(value)} characters; keep it under 900")
    return value


def build_message(
    *,
    sender: str,
    to: str,
    subject: str,
    text: str,
    html: str | None,
    list_unsubscribe_url: str | None,
    list_unsubscribe_mailto: str | None,
    list_id: str | None,
    message_id_domain: str,
    extra_headers: Mapping[str, str] | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """An email ready for `SmtpSender.send`: text part, optional HTML alternative, list headers.

    ``list_unsubscribe_url`` is the per-recipient one-click URL (https in production; RFC
    8058 requires it for one-click) and adds ``List-Unsubscribe-Post``;
    ``list_unsubscribe_mailto`` may be an address or a ``mailto:`` URI. ``list_id`` is
    either a full ``Name <id>`` value or a bare id. ``date`` defaults to the current time.
    Raises ValueError for header values with line breaks or malformed addresses.
    """
    msg = EmailMessage()
    msg["From"] = _header_safe(sender, "sender")
    msg["To"] = _header_safe(to, "recipient")
    # Feed titles end up in subjects; collapsing whitespace keeps one tidy header line.
    msg["Subject"] = " ".join(subject.split()) or "(no subject)"
    msg["Date"] = format_datetime((date or datetime.now(UTC)).astimezone(UTC))
    msg["Message-ID"] = make_msgid(domain=_header_safe(message_id_domain, "message_id_domain"))
    msg["Auto-Submitted"] = "auto-generated"

    unsubscribe: list[str] = []
    if list_unsubscribe_url:
        url = _ascii_uri(list_unsubscribe_url, "list_unsubscribe_url")
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"list_unsubscribe_url must be an http(s) URL, got {url!r}")
        unsubscribe.append(f"<{url}>")
    if list_unsubscribe_mailto:
        mailto = _ascii_uri(list_unsubscribe_mailto, "list_unsubscribe_mailto")
        if not mailto.startswith("mailto:"):
            mailto = f"mailto:{mailto}"
        unsubscribe.append(f"<{mailto}>")
    if unsubscribe:
        msg["List-Unsubscribe"] = _VerbatimHeader("List-Unsubscribe", ", ".join(unsubscribe))
    if list_unsubscribe_url:
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if list_id:
        list_id = _header_safe(list_id.strip(), "list_id")
        msg["List-Id"] = list_id if "<" in list_id else f"<{list_id}>"

    for name, value in (extra_headers or {}).items():
        if name.lower() in _OWN_HEADERS:
            raise ValueError(f"extra header {name!r} would replace one build_message sets")
        msg[name] = _header_safe(value, f"header {name}")

    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


# --- SMTP target ------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect. Holds the *name* of the password variable, never a password."""

    host: str
    port: int
    use_tls: bool
    starttls: bool
    username: str | None = None
    password_env: str | None = None

    def display(self) -> str:
        """The target as a URL that is safe to log."""
        scheme = "smtps" if self.use_tls else "smtp+starttls" if self.starttls else "smtp"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse ``smtp://[user@]host[:port][?password_env=NAME]`` (also ``smtps``,
    ``smtp+starttls``). Raises ConfigError with a message that never repeats a password."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"cannot parse the SMTP URL: {e}", path="email.smtp_url") from e
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"unsupported SMTP URL scheme {scheme!r}: expected smtp://host:port, "
            "smtps://host:port or smtp+starttls://host:port",
            path="email.smtp_url",
        )
    if parts.password is not None:
        raise ConfigError(
            "the SMTP URL must not contain a password (URLs end up in logs): put it in an "
            "environment variable and add ?password_env=NAME",
            path="email.smtp_url",
        )
    if not parts.hostname:
        raise ConfigError("the SMTP URL has no host name", path="email.smtp_url")
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigError("the SMTP URL must not have a path or fragment", path="email.smtp_url")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"password_env"})
    if unknown:
        raise ConfigError(
            f"unknown SMTP URL parameter(s) {', '.join(unknown)}: only password_env is supported",
            path="email.smtp_url",
        )
    password_env = query.get("password_env", [""])[-1] or None
    default_port, use_tls, starttls = _SCHEMES[scheme]
    return SmtpTarget(
        host=parts.hostname,
        port=port or default_port,
        use_tls=use_tls,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password_env=password_env,
    )


# --- sending ----------------------------------------------------------------------------


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
    """

    ok: bool
    permanent: bool
    code: int | None
    detail: str
    refused: tuple[RecipientRefusal, ...] = ()


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
            )
        except (aiosmtplib.SMTPException, OSError) as e:
            self._discard(slot)
            log.warning("cannot connect to SMTP server %s: %s", where, e)
            return SendResult(
                False, False, None, f"cannot connect to SMTP server {where}: {e}; will retry"
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
            return SendResult(False, False, None, f"connection to {where} failed: {e}; will retry")
        except ValueError as e:
            return SendResult(False, True, None, f"message cannot be sent: {e}")
        if errors:
            refusals = [RecipientRefusal(a, r.code, r.message) for a, r in errors.items()]
            return _refusal_result(refusals, accepted_any=True)
        return SendResult(True, False, 250, response.strip() or "accepted")
