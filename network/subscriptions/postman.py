"""Sending one message to one subscriber address, and the signed links messages carry.

`Postman` sends by SMTP (one pool of reused connections, shared by confirmations and the
digest runner) or through apprise for any other channel, and always returns a
`SendResult` the caller can act on (bounce, retry, done). List mail (digests and notices)
gets ``List-Unsubscribe`` (https and mailto) and ``List-Unsubscribe-Post``; personal
messages (confirmations, manage links) do not, since there is no list to leave yet.
`Postman.later` runs such a personal send in the background, one at a time from a bounded
queue, for pages whose answer must not depend on whether anything was sent (the time a
send takes would tell); `close` cancels what is left. `Links` signs the URLs: confirm,
manage, unsubscribe, and the calendar files of webinars.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from network import tokens
from network.delivery.channels import ChannelSender, fit_post, post_limit
from network.errors import ConfigError, DeliveryError
from network.mail.factory import sender_domain, smtp_sender
from network.mail.message import build_message
from network.mail.pool import SendResult, SmtpSender
from network.settings.model import Settings
from network.storage.subscribers import SubscribeRequest
from network.subscriptions.render import RenderedMessage
from network.templating import environment

log = logging.getLogger(__name__)

# Background sends waiting at most; more are dropped (form posts are rate-limited per client
# too, so this is only reached by a flood).
BACKGROUND_QUEUE = 100

Job = Callable[[], Awaitable[None]]

# -- links ---------------------------------------------------------------------------------


class Links:
    """The signed URLs of one deployment. Tokens carry ``req:<id>`` or ``sub:<id>``."""

    def __init__(
        self,
        public_url: str,
        secret: bytes,
        *,
        link_ttl: timedelta,
        previous: tuple[bytes, ...] = (),
    ) -> None:
        self.base = public_url.rstrip("/")
        self.secret = secret  # signs new links
        self.previous = previous  # rotated out: their links still verify until they expire
        self.link_ttl = link_ttl

    def _token(self, purpose: str, subject: str, now: datetime, ttl: timedelta) -> str:
        return tokens.sign_token(self.secret, purpose=purpose, subject=subject, now=now, ttl=ttl)

    def confirm(self, request: SubscribeRequest, now: datetime) -> str:
        ttl = max(request.expires_at - now, timedelta(seconds=1))
        return f"{self.base}/confirm/{self._token('confirm', f'req:{request.id}', now, ttl)}"

    def manage(self, subscriber_id: int, now: datetime) -> str:
        token = self._token("manage", f"sub:{subscriber_id}", now, self.link_ttl)
        return f"{self.base}/manage/{token}"

    def unsubscribe(self, subscriber_id: int, now: datetime) -> str:
        token = self._token("unsubscribe", f"sub:{subscriber_id}", now, self.link_ttl)
        return f"{self.base}/unsubscribe/{token}"

    def ics(self, item_id: int) -> str:
        return f"{self.base}/webinars/{item_id}.ics"

    def calendar(self) -> str:
        """The ``webcal://`` address of the calendar of every webinar (it updates itself)."""
        return "webcal://" + self.base.split("://", 1)[1] + "/calendar.ics"

    def verify_claims(self, token: str, purpose: str, now: datetime) -> tokens.TokenClaims:
        """The claims of a token signed with the current or a previous secret."""
        return tokens.verify_token(
            self.secret, token, purpose=purpose, now=now, previous=self.previous
        )

    def verify(self, token: str, purpose: str, now: datetime) -> tuple[str, int, str]:
        """(subject kind, id, nonce) of a valid token; raises tokens.TokenError."""
        claims = self.verify_claims(token, purpose, now)
        kind, _, number = claims.subject.partition(":")
        if kind not in ("req", "sub") or not number.isdigit():
            raise tokens.TokenInvalid("the link is damaged (unknown subject)")
        return kind, int(number), claims.nonce


# -- sending -------------------------------------------------------------------------------


class Postman:
    """Sends one message to one subscriber address; SMTP connections are pooled."""

    def __init__(
        self, settings: Settings, channels: ChannelSender, *, smtp: SmtpSender | None = None
    ) -> None:
        self.settings = settings
        self.channels = channels
        self._smtp = smtp
        email = settings.email
        self.from_ = email.from_
        domain = sender_domain(email)
        self.domain = domain
        name = settings.digests.network_name or settings.network.name
        self.network_name = name
        self.list_id = email.list_id or f"{name} <digests.{domain}>"
        self.unsubscribe_mailbox = (
            email.unsubscribe_mailto.removeprefix("mailto:") or email.sender_address
        )
        self._jobs: asyncio.Queue[Job] = asyncio.Queue(maxsize=BACKGROUND_QUEUE)
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def smtp(self) -> SmtpSender:
        if self._smtp is None:
            self._smtp = smtp_sender(self.settings.email)
        return self._smtp

    @property
    def parallelism(self) -> int:
        return self.settings.email.max_connections

    def unsubscribe_mailto(self, address: str) -> str | None:
        """``mailto:`` for List-Unsubscribe; the subject names the address, so whoever reads
        that mailbox can run ``libhub subscribers remove`` with it."""
        if not self.unsubscribe_mailbox:
            return None
        return f"mailto:{self.unsubscribe_mailbox}?subject=" + quote(f"unsubscribe {address}")

    async def send(
        self,
        address: str,
        channel: str,
        message: RenderedMessage,
        *,
        now: datetime,
        unsubscribe_url: str | None = None,
    ) -> SendResult:
        """Send ``message``; list mail (with ``unsubscribe_url``) gets the RFC 8058 headers."""
        if channel == "apprise":
            return await self._send_apprise(address, message)
        try:
            msg = build_message(
                sender=self.from_,
                to=address,
                subject=message.subject,
                # List mail goes out by the thousand: its body is encoded below, in C.
                text="" if unsubscribe_url else message.text,
                html=None if unsubscribe_url else message.html,
                list_unsubscribe_url=unsubscribe_url,
                list_unsubscribe_mailto=self.unsubscribe_mailto(address)
                if unsubscribe_url
                else None,
                list_id=self.list_id if unsubscribe_url else None,
                message_id_domain=self.domain,
                date=now,
            )
            if unsubscribe_url:
                set_alternative(msg, message.text, message.html)
        except ValueError as e:  # libhub's own failure (settings, a template): no bounce
            return SendResult(False, False, None, f"message cannot be built: {e}", own=True)
        return await self._smtp_send(msg)

    async def send_list(
        self,
        address: str,
        channel: str,
        mail: ListMail,
        fill: Callable[[str], str],
        *,
        unsubscribe_url: str,
        now: datetime,
    ) -> SendResult:
        """Send a shared digest or notice to one subscriber; ``fill`` puts their links in."""
        if channel == "apprise":
            m = mail.message
            personal = RenderedMessage(m.subject, fill(m.text), fill(m.html))
            return await self._send_apprise(address, personal)
        try:
            msg = build_message(
                sender=self.from_,
                to=address,
                subject=mail.message.subject,
                text="",
                html=None,
                list_unsubscribe_url=unsubscribe_url,
                list_unsubscribe_mailto=self.unsubscribe_mailto(address),
                list_id=self.list_id,
                message_id_domain=self.domain,
                date=now,
            )
            _set_encoded_alternative(msg, *mail.personal(fill))
        except ValueError as e:  # libhub's own failure (settings, a template): no bounce
            return SendResult(False, False, None, f"message cannot be built: {e}", own=True)
        return await self._smtp_send(msg)

    async def _smtp_send(self, msg: EmailMessage) -> SendResult:
        try:
            smtp = self.smtp
        except ConfigError as e:  # no SMTP server configured: retried once there is one
            return SendResult(False, False, None, str(e), relay=True)
        return await smtp.send(msg)

    async def _send_apprise(self, url: str, message: RenderedMessage) -> SendResult:
        limit = post_limit(url)
        body = fit_post(message.text, "", limit) if limit is not None else message.text
        try:
            await self.channels.send(url, title="" if limit else message.subject, body=body)
        except DeliveryError as e:
            # The subscriber's own URL refused: that is their bounce.
            return SendResult(False, not e.transient, None, str(e), bounce=not e.transient)
        return SendResult(True, False, None, "accepted")

    # -- in the background --

    def later(self, job: Job) -> bool:
        """Run ``job`` (which sends something) in the background, after those queued before
        it; False when it was dropped (queue full, or closing)."""
        if self._closed:
            return False
        try:
            self._jobs.put_nowait(job)
        except asyncio.QueueFull:
            log.warning("background send dropped: %d already waiting", self._jobs.qsize())
            return False
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="postman-background")
        return True

    async def idle(self) -> None:
        """Wait until every background job queued so far is done (for tests and tools)."""
        await self._jobs.join()

    async def _work(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                await job()
            except Exception:
                log.exception("background send failed")
            finally:
                self._jobs.task_done()

    async def close(self) -> None:
        self._closed = True
        if self._worker is not None:
            # Cancelled, not drained: a send can take the SMTP timeout, and a shutdown
            # should not wait for a queue of them. A manage link asked for in the last
            # moment is lost; asking again sends it.
            self._worker.cancel()
            await asyncio.wait([self._worker])
            self._worker = None
        dropped = 0
        while not self._jobs.empty():  # so `idle` does not wait for them forever
            self._jobs.get_nowait()
            self._jobs.task_done()
            dropped += 1
        if dropped:
            log.info("%d background send(s) dropped at shutdown", dropped)
        if self._smtp is not None:
            await self._smtp.close()
            self._smtp = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _qp(text: str) -> str:
    """Quoted-printable with CRLF line ends, by binascii (C)."""
    lines = text.replace("\r\n", "\n").replace("\n", "\r\n")
    encoded = binascii.b2a_qp(lines.encode("utf-8"), istext=True).decode("ascii")
    # A last line without a line end gets soft breaks with a bare LF: make them CRLF too.
    return encoded if "\r\n" in lines else encoded.replace("=\n", "=\r\n")


def _set_encoded_alternative(msg: EmailMessage, text_qp: str, html_qp: str) -> None:
    boundary = f"=_libhub_{secrets.token_hex(12)}"
    parts = [
        f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{encoded}\r\n"
        for subtype, encoded in (("plain", text_qp), ("html", html_qp))
    ]
    del msg["Content-Type"]
    del msg["Content-Transfer-Encoding"]
    msg["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
    # A string payload of a multipart message is written out as it is by the generator.
    msg.set_payload("".join(parts) + f"--{boundary}--\r\n")


def set_alternative(msg: EmailMessage, text: str, html: str) -> None:
    """Make ``msg`` multipart/alternative (text, then HTML), both quoted-printable.

    The same structure `build_message` makes, but encoded by binascii (C) into one
    prebuilt body instead of by the email package's encoder and generator, which were
    most of the cost of a digest (a 50 KB message took ~10 ms to build and flatten).
    The boundary starts with "=_", which quoted-printable text can never contain.
    """
    _set_encoded_alternative(msg, _qp(text), _qp(html))


def _split_at_first(text: str, markers: Sequence[str]) -> tuple[str, str]:
    """(whole lines before the first line holding a marker, the rest)."""
    text = text.replace("\r\n", "\n")
    found = [i for m in markers if (i := text.find(m)) >= 0]
    cut = text.rfind("\n", 0, min(found)) + 1 if found else len(text)
    return text[:cut], text[cut:]


@dataclass(frozen=True)
class ListMail:
    """A digest or notice shared by many subscribers, with stand-ins for their own links.

    Everything before the first line with a stand-in is encoded once, here; per person
    only the rest (the footer) is filled in and encoded. Quoted-printable works line by
    line, so the two pieces together are exactly the encoding of the whole.
    """

    message: RenderedMessage
    text_head: str
    text_tail: str
    html_head: str
    html_tail: str

    @classmethod
    def prepare(cls, message: RenderedMessage, markers: Sequence[str]) -> ListMail:
        text_head, text_tail = _split_at_first(message.text, markers)
        html_head, html_tail = _split_at_first(message.html, markers)
        return cls(message, _qp(text_head), text_tail, _qp(html_head), html_tail)

    def personal(self, fill: Callable[[str], str]) -> tuple[str, str]:
        """(text, html) quoted-printable, with ``fill`` applied to the personal part."""
        return (
            self.text_head + _qp(fill(self.text_tail)),
            self.html_head + _qp(fill(self.html_tail)),
        )


def render_message(
    *,
    subject: str,
    heading: str,
    paragraphs: Sequence[str],
    action_url: str | None,
    action_label: str,
    footnote: str,
    network_name: str,
    templates_dir: Path | None = None,
) -> RenderedMessage:
    """A short personal message (confirmation, manage link) from email/message.*.j2."""
    env = environment(templates_dir.resolve() if templates_dir else None)
    context: dict[str, Any] = {
        "subject": subject,
        "heading": heading,
        "paragraphs": list(paragraphs),
        "action_url": action_url,
        "action_label": action_label,
        "footnote": footnote,
        "network_name": network_name,
    }
    return RenderedMessage(
        subject=subject,
        text=env.get_template("email/message.txt.j2").render(context),
        html=env.get_template("email/message.html.j2").render(context),
    )
