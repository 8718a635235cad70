"""Confirmations and manage links: written when sent, queued until the relay takes them.

The person who asks gets their message sent at once; when the relay answers 4xx or
cannot be reached, the message waits in the database (network/storage/personal_mail.py)
and the digest runner tries it again with the digests' backoff, until it is sent, its
link would be dead (``digests.confirm_ttl``), or ``digests.retry_limit`` attempts failed.
A message counts against the address's limit only while it is waiting or once sent. A
relay that cannot be used at all costs no attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from network import i18n
from network.errors import ConfigError
from network.i18n import gettext as _
from network.mail.pool import SendResult
from network.settings.model import Settings
from network.storage import Storage
from network.storage.personal_mail import QueuedMail
from network.storage.subscribers import Subscriber, SubscribeRequest
from network.subscriptions.postman import Links, Postman, render_message
from network.subscriptions.render import RenderedMessage
from network.subscriptions.schedule import retry_delay
from network.subscriptions.topics import Address, TopicCatalog, describe

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)  # a sender killed mid-send leaves the message due after this
BATCH = 50


class Subscriptions(Protocol):
    """What sending personal mail needs of `lifecycle.Subscriptions` (which uses this
    module, so this module names the parts instead of importing it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def storage(self) -> Storage: ...
    @property
    def postman(self) -> Postman: ...
    @property
    def links(self) -> Links: ...
    @property
    def catalog(self) -> TopicCatalog: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...
    @property
    def network_name(self) -> str: ...


def confirmation(subs: Subscriptions, request: SubscribeRequest, now: datetime) -> RenderedMessage:
    hours = round(subs.settings.digests.confirm_ttl.total_seconds() / 3600)
    with i18n.use(request.prefs.language):  # the language they chose on the page
        values = {
            "network": subs.network_name,
            "what": describe(request.prefs, subs.catalog),
            "hours": hours,
        }
        return render_message(
            subject=_("Confirm your subscription to %(network)s") % values,
            heading=_("Please confirm your subscription"),
            paragraphs=[
                _("Someone, hopefully you, asked for %(what)s, from %(network)s, at this address.")
                % values,
                i18n.ngettext(
                    "Nothing will be sent until you confirm. The link works once, for "
                    "%(hours)d hour.",
                    "Nothing will be sent until you confirm. The link works once, for "
                    "%(hours)d hours.",
                    hours,
                )
                % values,
            ],
            action_url=subs.links.confirm(request, now),
            action_label=_("Confirm my subscription"),
            footnote=_(
                "If you did not ask for this, ignore this message: you will not hear from us again."
            ),
            network_name=subs.network_name,
        )


def manage_message(subs: Subscriptions, subscriber: Subscriber, now: datetime) -> RenderedMessage:
    with i18n.use(subscriber.prefs.language):
        values = {
            "network": subs.network_name,
            "what": describe(subscriber.prefs, subs.catalog),
        }
        return render_message(
            subject=_("Your %(network)s subscription") % values,
            heading=_("Manage your subscription"),
            paragraphs=[
                _(
                    "Someone, hopefully you, asked for a link to manage this subscription. "
                    "You currently get %(what)s."
                )
                % values
            ],
            action_url=subs.links.manage(subscriber.id, now),
            action_label=_("Change or cancel my subscription"),
            footnote=_("If you did not ask for this, you can ignore this message."),
            network_name=subs.network_name,
        )


async def _message(
    subs: Subscriptions, mail: QueuedMail, now: datetime
) -> tuple[str, RenderedMessage | None]:
    """(why it is given up, or "") and the message to send."""
    request = mail.request
    if mail.kind == "confirm":
        if now >= request.expires_at:
            return "its link expired before it could be sent", None
        return "", confirmation(subs, request, now)
    if now - request.created_at >= subs.settings.digests.confirm_ttl:
        return "not sent in time", None
    subscriber = await subs.storage.subscriber_by_key(request.address_key)
    if subscriber is None or subscriber.status == "unsubscribed":
        return "no subscription to manage any more", None
    return "", manage_message(subs, subscriber, now)


async def send_queued(subs: Subscriptions, mail: QueuedMail) -> SendResult:
    """Send one queued message (leased by the caller) and record what happened."""
    storage, now, request = subs.storage, subs.clock(), mail.request
    shown = Address(request.address, request.address_key, request.channel).display()
    try:
        gone, message = await _message(subs, mail, now)
    except ConfigError as e:  # links cannot be signed yet: nobody's fault, no attempt used
        result = SendResult(False, False, None, str(e), relay=True)
    except Exception as e:  # libhub's own failure (a template): retried, never a bounce
        log.exception("%s message to %s cannot be written", mail.kind, shown)
        result = SendResult(False, False, None, f"{type(e).__name__}: {e}", own=True)
    else:
        if message is None:
            await storage.personal_mail_given_up(request.id, error=gone)
            return SendResult(False, True, None, gone)
        result = await subs.postman.send(request.address, request.channel, message, now=now)
    if result.ok:
        await storage.personal_mail_sent(request.id, now=subs.clock())
        return result
    attempts = mail.attempts + (0 if result.relay else 1)
    limit = subs.settings.digests.retry_limit
    if (result.permanent and not result.own) or attempts >= limit:
        why = result.detail if result.permanent else f"gave up after {attempts} attempts"
        log.warning("%s message to %s not sent: %s", mail.kind, shown, why)
        await storage.personal_mail_given_up(request.id, error=why)
        return result
    log.info("%s message to %s waits for a retry: %s", mail.kind, shown, result.detail)
    await storage.personal_mail_retry(
        request.id,
        error=result.detail,
        next_attempt=subs.clock() + retry_delay(max(1, attempts)),
        counts=not result.relay,
    )
    return result


async def send_due(subs: Subscriptions) -> int:
    """Send the queued messages that are due; returns how many went out. Stops at a relay
    that cannot be used (the rest is due again when their lease ends)."""
    sent = 0
    while True:
        batch = await subs.storage.lease_personal_mail(subs.clock(), limit=BATCH, lease=LEASE)
        for mail in batch:
            result = await send_queued(subs, mail)
            sent += result.ok
            if result.relay:
                return sent
        if len(batch) < BATCH:
            return sent
