"""Outgoing mail against a real SMTP server (aiosmtpd on loopback): headers, pooled and
reused connections, bounce classification, reconnects, and secrets kept out of logs."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from network.errors import ConfigError
from network.mail.message import build_message
from network.mail.pool import SendResult, SmtpSender, normalize_line_endings
from network.settings.smtp import SmtpTarget, parse_smtp_url
from tests.waiting import eventually

BOUNCE = "gone@example.org"  # the server answers 550 for this recipient
GREYLISTED = "later@example.org"  # ... and 451 for this one
TOO_BIG = "big@example.org"  # accepted, but the message is refused after DATA with 552
PASSWORD = "s3cret-Pa55word"
UNSUB_URL = (
    "https://libhub.example.org/u/eyJ2IjoxLCJwIjoidW5zdWJzY3JpYmUiLCJzIjoic3ViOjEyMzQ1NiJ9"
    ".Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG8"
)
UNSUB_MAILTO = "mailto:unsubscribe+sub-123456@libhub.example.org"


@dataclass
class Recorder:
    """An aiosmtpd handler that stores what it receives and counts sessions."""

    messages: list[tuple[str, list[str], bytes, Any]] = field(default_factory=list)
    ehlo: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self, server: SMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.ehlo += 1
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address == BOUNCE:
            return "550 5.1.1 No such user here"
        if address == GREYLISTED:
            return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        if TOO_BIG in envelope.rcpt_tos:
            return "552 5.3.4 Message size exceeds fixed limit"
        with self.lock:
            self.messages.append(
                (envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.peer)
            )
        return "250 2.0.0 Message accepted"


class CountingSMTP(SMTP):
    """aiosmtpd's session protocol, reporting when a connection ends."""

    on_lost: Callable[[], None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.on_lost is not None:
            self.on_lost()


class CountingController(Controller):
    """Counts SMTP sessions opened and closed (one protocol object per connection)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections = 0
        self.closed = 0

    def factory(self) -> SMTP:
        self.connections += 1
        smtp = CountingSMTP(self.handler, **self.SMTP_kwargs)
        smtp.on_lost = self._lost
        return smtp

    def _lost(self) -> None:
        self.closed += 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def authenticate(
    server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"libhub", PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@dataclass
class Server:
    recorder: Recorder
    controller: CountingController
    target: SmtpTarget


def _start(**smtp_kwargs: Any) -> Server:
    recorder = Recorder()
    port = free_port()
    controller = CountingController(
        recorder, hostname="127.0.0.1", port=port, server_hostname="mx.test", **smtp_kwargs
    )
    controller.start()
    return Server(recorder, controller, parse_smtp_url(f"smtp://127.0.0.1:{port}"))


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = _start(authenticator=authenticate, auth_require_tls=False)
    yield s
    s.controller.stop()


@pytest.fixture(scope="module")
def impatient_server() -> Iterator[Server]:
    """Drops a client after half a second without a command, as busy relays do."""
    s = _start(timeout=0.5)
    yield s
    s.controller.stop()


def make(to: str = "reader@example.org", n: int = 0, **kw: Any) -> EmailMessage:
    args: dict[str, Any] = {
        "sender": "Prairie Library Network <digest@libhub.example.org>",
        "to": to,
        "subject": f"Daily digest — Bibliothèques intelligentes #{n}",
        "text": f"Plain text body {n}\nwith ünïcode\n",
        "html": f"<!DOCTYPE html><html lang='en'><body><h1>Digest {n}</h1></body></html>",
        "list_unsubscribe_url": UNSUB_URL,
        "list_unsubscribe_mailto": UNSUB_MAILTO,
        "list_id": "Prairie Library Network digests <digests.libhub.example.org>",
        "message_id_domain": "libhub.example.org",
        "date": datetime(2025, 5, 14, 6, 0, tzinfo=UTC),
    }
    args.update(kw)
    return build_message(**args)


def sender_for(server: Server, **kw: Any) -> SmtpSender:
    kw.setdefault("password", None)
    return SmtpSender(server.target, local_hostname="libhub.test", timeout=10, **kw)


# --- build_message ----------------------------------------------------------------------


def test_message_headers_survive_smtp_serialisation() -> None:
    wire = make().as_bytes(policy=email.policy.SMTP)
    assert b"=?utf-8?" not in wire.split(b"List-Unsubscribe:")[1].split(b"\r\nList-")[0]
    for line in wire.split(b"\r\n\r\n")[0].split(b"\r\n"):
        assert len(line) <= 998
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert parsed["List-Unsubscribe"] == f"<{UNSUB_URL}>, <{UNSUB_MAILTO}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Subject"] == "Daily digest — Bibliothèques intelligentes #0"
    assert parsed["Date"] == "Wed, 14 May 2025 06:00:00 +0000"


def test_short_list_unsubscribe_stays_on_one_line() -> None:
    msg = make(list_unsubscribe_url="https://h.example/u/t", list_unsubscribe_mailto="u@h.example")
    wire = msg.as_bytes(policy=email.policy.SMTP)
    assert b"List-Unsubscribe: <https://h.example/u/t>, <mailto:u@h.example>\r\n" in wire


def test_text_only_message_without_one_click() -> None:
    msg = make(html=None, list_unsubscribe_url=None, list_id="digests.libhub.example.org")
    assert msg.get_content_type() == "text/plain"
    assert msg["List-Unsubscribe"] == f"<{UNSUB_MAILTO}>"
    assert msg["List-Unsubscribe-Post"] is None
    assert msg["List-Id"] == "<digests.libhub.example.org>"


def test_subject_line_breaks_are_collapsed_but_address_breaks_refused() -> None:
    assert make(subject="New:\r\n  Bcc: victim@example.org")["Subject"] == (
        "New: Bcc: victim@example.org"
    )
    with pytest.raises(ValueError, match="line breaks"):
        make(to="a@example.org\r\nBcc: victim@example.org")
    with pytest.raises(ValueError, match="ASCII URI"):
        make(list_unsubscribe_url="https://h.example/u/a b")
    with pytest.raises(ValueError, match="http"):
        make(list_unsubscribe_url="ftp://h.example/u/t")
    with pytest.raises(ValueError, match="under 900"):
        make(list_unsubscribe_url="https://h.example/u/" + "t" * 1000)


def test_extra_headers_are_added_but_cannot_replace_ours() -> None:
    msg = make(extra_headers={"X-Libhub-Subscription": "42"})
    assert msg["X-Libhub-Subscription"] == "42"
    with pytest.raises(ValueError, match="List-Id"):
        make(extra_headers={"List-Id": "other"})


# --- parse_smtp_url ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.org", SmtpTarget("mail.example.org", 25, False, False)),
        ("smtp://127.0.0.1:2525", SmtpTarget("127.0.0.1", 2525, False, False)),
        ("smtps://mail.example.org", SmtpTarget("mail.example.org", 465, True, False)),
        (
            "smtp+starttls://digest%40lib.org@mail.example.org?password_env=SMTP_PASSWORD",
            SmtpTarget("mail.example.org", 587, False, True, "digest@lib.org", "SMTP_PASSWORD"),
        ),
        ("SMTP+STARTTLS://[::1]:1587/", SmtpTarget("::1", 1587, False, True)),
    ],
)
def test_parse_smtp_url(url: str, expected: SmtpTarget) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://mail.example.org", "unsupported SMTP URL scheme 'http'"),
        ("smtp://", "no host"),
        ("smtp://mail.example.org:99999", "cannot parse"),
        ("smtp://mail.example.org/path", "path"),
        ("smtp://mail.example.org?tls=1", "unknown SMTP URL parameter"),
    ],
)
def test_parse_smtp_url_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_smtp_url(url)


def test_password_in_url_is_refused_without_repeating_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse_smtp_url(f"smtp://user:{PASSWORD}@mail.example.org")
    assert PASSWORD not in str(info.value)
    assert "password_env" in str(info.value)


def test_display_and_repr_hold_no_secret() -> None:
    target = parse_smtp_url("smtp+starttls://digest@mail.example.org:587?password_env=PW")
    assert target.display() == "smtp+starttls://digest@mail.example.org:587"
    sender = SmtpSender(target, password=PASSWORD)
    assert PASSWORD not in repr(sender) and "password=set" in repr(sender)
    with pytest.raises(ConfigError, match="environment variable PW"):
        SmtpSender(target, password=None)


# --- sending ----------------------------------------------------------------------------


async def test_send_many_delivers_everything_over_at_most_three_connections(
    server: Server,
) -> None:
    before_ehlo = server.recorder.ehlo
    before_conn = server.controller.connections
    before_msgs = len(server.recorder.messages)
    results: list[SendResult] = []

    async def on_result(msg: EmailMessage, result: SendResult) -> None:
        results.append(result)

    sender = sender_for(server, max_connections=3)
    messages = [make(to=f"reader{n}@example.org", n=n) for n in range(200)]
    stats = await sender.send_many(messages, on_result)
    await sender.close()

    assert stats.sent == 200 and stats.permanent == stats.temporary == 0
    assert len(results) == 200 and all(r.ok and r.code == 250 for r in results)
    received = server.recorder.messages[before_msgs:]
    assert len(received) == 200
    assert sorted(rcpt[0] for _, rcpt, _, _ in received) == sorted(
        f"reader{n}@example.org" for n in range(200)
    )
    opened = server.controller.connections - before_conn
    assert 1 <= opened <= 3
    assert server.recorder.ehlo - before_ehlo == opened == sender.connections_opened
    assert len({peer for *_, peer in received}) == opened

    parsed = email.message_from_bytes(received[0][2], policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in parsed.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert parsed["List-Unsubscribe"] == f"<{UNSUB_URL}>, <{UNSUB_MAILTO}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Id"] == "Prairie Library Network digests <digests.libhub.example.org>"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Message-ID"].endswith("@libhub.example.org>")
    assert parsed["Subject"].startswith("Daily digest — Bibliothèques intelligentes #")
    text_part = next(iter(parsed.iter_parts()))
    assert isinstance(text_part, EmailMessage)
    assert "with ünïcode" in text_part.get_content()
    assert received[0][0] == "digest@libhub.example.org"


async def test_sequential_sends_reuse_one_connection_and_rotate(server: Server) -> None:
    before = server.controller.connections
    sender = sender_for(server, max_connections=4, messages_per_connection=5)
    for n in range(12):
        assert (await sender.send(make(n=n))).ok
    await sender.close()
    # 12 messages, 5 per connection: three sessions, never more than one at a time.
    assert server.controller.connections - before == 3 == sender.connections_opened


@pytest.mark.parametrize(
    "message",
    [
        b"a\r\nb\r\n",  # what the email package writes: nothing to do
        b"a\r\nb",  # no line ending at the end
        b"a\nb\r\n",  # a lone LF
        b"a\rb\r\n",  # a lone CR
        b"a\r\r\nb\n\r\n",  # CR before CRLF, LF CR
        b"\n\r",
        b"",
    ],
)
def test_line_endings_are_normalized_as_aiosmtplib_does(message: bytes) -> None:
    import aiosmtplib.protocol
    import aiosmtplib.smtp

    # aiosmtplib's own function, kept by network.mail.pool, gives the same bytes.
    from network.mail.pool import _normalize_line_endings

    assert normalize_line_endings(message) == _normalize_line_endings(message)
    # Both of aiosmtplib's callers use ours (the check after DATA, the SIZE option).
    assert aiosmtplib.protocol.normalize_message_line_endings is normalize_line_endings
    assert aiosmtplib.smtp.normalize_message_line_endings is normalize_line_endings  # type: ignore[attr-defined]


async def test_bare_line_endings_arrive_as_crlf(server: Server) -> None:
    import aiosmtplib

    raw = make(to="bare@example.org").as_bytes(policy=email.policy.SMTP)
    # A body with a lone LF and a lone CR, as a hand-made message might have.
    mixed = raw.replace(b"Plain text body", b"Plain\ntext\rbody")
    assert mixed != raw
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.target.port, start_tls=False)
    async with smtp:
        await smtp.sendmail("digest@libhub.example.org", ["bare@example.org"], mixed)
    content = next(m[2] for m in server.recorder.messages if m[1] == ["bare@example.org"])
    assert b"Plain\r\ntext\r\nbody" in content
    assert content.count(b"\n") == content.count(b"\r\n") == content.count(b"\r")


async def test_async_iterable_input(server: Server) -> None:
    async def generate() -> AsyncIterator[EmailMessage]:
        for n in range(10):
            await asyncio.sleep(0)
            yield make(to=f"async{n}@example.org", n=n)

    async with sender_for(server, max_connections=2) as sender:
        stats = await sender.send_many(generate())
    assert stats.sent == 10


async def test_550_is_permanent_and_451_temporary(server: Server) -> None:
    async with sender_for(server) as sender:
        bounce = await sender.send(make(to=BOUNCE))
        later = await sender.send(make(to=GREYLISTED))
        fine = await sender.send(make())
    assert not bounce.ok and bounce.permanent and bounce.code == 550
    assert bounce.bounce and not bounce.relay
    assert "No such user" in bounce.detail and bounce.refused[0].address == BOUNCE
    assert not later.ok and not later.permanent and later.code == 451
    assert not later.bounce and not later.relay
    assert "Greylisted" in later.detail
    # A refusal leaves the connection usable for the next message.
    assert fine.ok and sender.connections_opened == 1


async def test_message_refused_after_data_is_permanent_but_no_bounce(server: Server) -> None:
    async with sender_for(server) as sender:
        refused = await sender.send(make(to=TOO_BIG))
        fine = await sender.send(make())
    assert not refused.ok and refused.permanent and refused.code == 552
    # The recipient was accepted: the message, not the address, is at fault.
    assert not refused.bounce and not refused.relay and refused.refused == ()
    assert "552" in refused.detail and fine.ok


async def test_partial_refusal_is_reported_per_recipient(server: Server) -> None:
    async with sender_for(server) as sender:
        result = await sender.send(make(to=f"ok@example.org, {BOUNCE}"))
    assert not result.ok and result.permanent and result.code == 550
    assert [r.address for r in result.refused] == [BOUNCE]
    assert result.detail.startswith("some recipients refused")


async def test_send_many_counts_and_reports_bounces(server: Server) -> None:
    seen: dict[str, SendResult] = {}

    def on_result(msg: EmailMessage, result: SendResult) -> None:
        seen[str(msg["To"])] = result

    async with sender_for(server, max_connections=2) as sender:
        stats = await sender.send_many([make(), make(to=BOUNCE), make(to=GREYLISTED)], on_result)
    assert (stats.sent, stats.permanent, stats.temporary) == (1, 1, 1)
    assert seen[BOUNCE].permanent and not seen[GREYLISTED].permanent


async def test_errors_in_on_result_stop_the_run(server: Server) -> None:
    def explode(msg: EmailMessage, result: SendResult) -> None:
        raise RuntimeError("outbox write failed")

    async with sender_for(server, max_connections=2) as sender:
        with pytest.raises(RuntimeError, match="outbox write failed"):
            await sender.send_many([make(n=n) for n in range(20)], explode)
        # Sends cancelled mid-transaction did not leave a confused session in the pool.
        results = await asyncio.gather(*(sender.send(make(n=n)) for n in range(4)))
    assert all(r.ok for r in results), [r.detail for r in results]


async def test_server_down_is_temporary_with_a_clear_detail() -> None:
    port = free_port()  # nothing listens here any more
    sender = SmtpSender(
        parse_smtp_url(f"smtp://127.0.0.1:{port}"), password=None, local_hostname="t", timeout=5
    )
    result = await sender.send(make())
    await sender.close()
    assert not result.ok and not result.permanent and result.code is None
    assert result.relay and not result.bounce  # the relay's trouble, nobody's message's
    assert f"cannot connect to SMTP server smtp://127.0.0.1:{port}" in result.detail


async def test_reconnects_after_the_server_drops_an_idle_connection(
    impatient_server: Server,
) -> None:
    controller = impatient_server.controller
    async with sender_for(impatient_server) as sender:
        assert (await sender.send(make(n=1))).ok
        # The server closes the idle session after 0.5 s; wait until every session it
        # saw (ours and the probe Controller.start() makes) has ended.
        for _ in range(200):
            if controller.closed == controller.connections:
                break
            await asyncio.sleep(0.05)
        assert controller.closed == controller.connections

        # Let our side read the end of the stream (polled: a slow machine takes longer).
        def still_connected() -> bool:
            slots = list(sender._slots._queue)  # type: ignore[attr-defined]
            return any(s.smtp is not None and s.smtp.is_connected for s in slots)

        await eventually(lambda: not still_connected(), within=30, every=0.01, what="EOF seen")
        second = await sender.send(make(n=2))
    assert second.ok, second.detail
    assert sender.connections_opened == 2
    assert len(impatient_server.recorder.messages) == 2


async def test_login_works_and_wrong_password_is_temporary_and_not_logged(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    target = SmtpTarget(server.target.host, server.target.port, False, False, "libhub", "PW")
    caplog.set_level(logging.DEBUG)
    async with SmtpSender(target, password=PASSWORD, local_hostname="t", timeout=10) as good:
        assert (await good.send(make())).ok
    async with SmtpSender(
        target, password="wrong-" + PASSWORD, local_hostname="t", timeout=10
    ) as bad:
        result = await bad.send(make())
    assert not result.ok and not result.permanent and result.code == 535
    assert result.relay and not result.bounce
    assert "check the SMTP user and password" in result.detail
    assert PASSWORD not in caplog.text and PASSWORD not in result.detail


async def test_closed_sender_refuses_to_send(server: Server) -> None:
    sender = sender_for(server)
    await sender.close()
    await sender.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await sender.send(make())
