"""Subscriptions: double opt-in, manage and unsubscribe, for the web pages, bot and CLI.

Owns the life of a subscription: a request (rate-limited per address, with the same
answer whether the address is known or not), its confirmation through a signed,
single-use, expiring link (only then does the address become a subscriber: nothing but
the confirmation message is ever sent to an unconfirmed address), changes through the
manage link, and leaving. `subscribe_from_matrix` is the bot's ``!subscribe`` (limited per
Matrix sender and server like the web forms per client: limits.py).

Topics and addresses are in topics.py, sending and links in postman.py; confirmations and
manage links wait in a queue until sent (personal.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from network import i18n, tokens
from network.errors import ConfigError
from network.i18n import gettext as _
from network.settings.checks import check_weekday
from network.settings.model import Settings, previous_secrets
from network.storage import Storage
from network.storage.personal_mail import QueuedMail
from network.storage.subscribers import (
    Preferences,
    Subscriber,
    SubscribeRequest,
    TokenAlreadyUsed,
)
from network.subscriptions import personal
from network.subscriptions.limits import SenderLimit
from network.subscriptions.postman import Links, Postman
from network.subscriptions.schedule import FREQUENCIES
from network.subscriptions.topics import (
    Address,
    SubscriptionError,
    TopicCatalog,
    describe,
    next_due,
    parse_address,
)

log = logging.getLogger(__name__)

_FREQ_WORDS = {
    "immediate": "immediate",
    "immediately": "immediate",
    "instant": "immediate",
    "daily": "daily",
    "day": "daily",
    "weekly": "weekly",
    "week": "weekly",
}

__all__ = ["SubscriptionError", "Subscriptions", "subscribe_from_matrix"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- the subscription service --------------------------------------------------------------


@dataclass(frozen=True)
class RequestOutcome:
    """What a subscribe request did. Never shown to the requester beyond "check your inbox"."""

    address: Address
    sent: bool  # False: rate-limited (or the send failed)
    detail: str = ""


class Subscriptions:
    """Double opt-in and the life of a subscription, for the web pages, bot and CLI."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        postman: Postman,
        *,
        secret: bytes | None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.postman = postman
        self.catalog = TopicCatalog(settings)
        self.clock = clock
        self._secret = secret
        # Rotated-out secrets: links mailed before the secret changed still verify.
        self._previous = previous_secrets(settings.web)
        self.network_name = postman.network_name
        # The bot's !subscribe, per Matrix sender and server (the web forms count per client).
        self.sender_limit = SenderLimit.from_settings(settings.web)

    @property
    def links(self) -> Links:
        if not self._secret or len(self._secret) < tokens.MIN_SECRET_BYTES:
            raise ConfigError(
                f"no secret for signing links: set the environment variable "
                f"{self.settings.web.secret_env} (web.secret_env) to a random value of at "
                f"least {tokens.MIN_SECRET_BYTES} characters",
                path="web.secret_env",
            )
        return Links(
            self.settings.web.public_url,
            self._secret,
            link_ttl=self.settings.digests.link_ttl,
            previous=self._previous,
        )

    def defaults(self) -> Preferences:
        d = self.settings.digests
        kinds = tuple(t.id for t in self.catalog.topics if t.group == "kind")
        return Preferences(
            # Every kind is every item; feeds and cohorts are there to narrow it down.
            topics=kinds or tuple(t.id for t in self.catalog.topics),
            frequency=d.default_frequency,
            tz=d.default_timezone or self.settings.network.timezone,
            hour=d.default_hour,
            weekday=check_weekday(d.default_weekday, "digests.default_weekday"),
            language=i18n.current(),
        )

    def preferences(
        self,
        topics: Sequence[str],
        frequency: str,
        tz: str,
        hour: str | int,
        weekday: str | int,
        language: str | None = None,
    ) -> Preferences:
        """Checked preferences from form or command values; SubscriptionError names the field."""
        chosen = tuple(dict.fromkeys(t for t in topics if t))
        unknown = [t for t in chosen if t not in self.catalog]
        if unknown:
            raise SubscriptionError(
                _("Unknown topic: %(topics)s.") % {"topics": ", ".join(unknown)}, field="topics"
            )
        if not chosen:
            raise SubscriptionError(_("Choose at least one topic."), field="topics")
        if frequency not in FREQUENCIES:
            raise SubscriptionError(_("Choose how often you want email."), field="frequency")
        try:
            ZoneInfo(tz)
        except (ValueError, KeyError, OSError):
            raise SubscriptionError(
                _("“%(tz)s” is not a time zone: pick one from the list, or search by city.")
                % {"tz": tz},
                field="tz",
            ) from None
        try:
            h = int(hour)
            w = int(weekday)
        except (TypeError, ValueError):
            raise SubscriptionError(_("Choose a time of day."), field="hour") from None
        if not 0 <= h <= 23:
            raise SubscriptionError(_("Choose a time of day from the list."), field="hour")
        if not 0 <= w <= 6:
            raise SubscriptionError(_("Choose a day of the week."), field="weekday")
        return Preferences(chosen, frequency, tz, h, w, i18n.known(language or i18n.current()))

    # -- subscribe and confirm --

    async def request(
        self, address_text: str, prefs: Preferences, *, source: str, any_scheme: bool = False
    ) -> RequestOutcome:
        """Record a subscribe request and send its confirmation (unless rate-limited).

        The outcome is the same for new, subscribed and unsubscribed addresses: the
        confirmation decides. Raises SubscriptionError for an unusable address.
        """
        schemes = None if any_scheme else set(self.settings.digests.channel_schemes)
        address = parse_address(address_text, schemes=schemes)
        _ = self.links  # fail before storing anything when links cannot be signed
        if address.channel == "email" and not self.settings.email.smtp_url:
            raise ConfigError(
                "no SMTP server: set email.smtp_url to send to email subscribers",
                path="email.smtp_url",
            )
        d = self.settings.digests
        now = self.clock()
        request = await self.storage.record_subscribe_request(
            address=address.value,
            address_key=address.key,
            channel=address.channel,
            prefs=prefs,
            source=source,
            now=now,
            expires_at=now + d.confirm_ttl,
            limit=d.subscribe_limit,
            window=d.subscribe_window,
            mail="confirm",
            lease_until=now + personal.LEASE,
        )
        if not request.sent:
            log.info("subscribe request for %s rate-limited", address.display())
            return RequestOutcome(address, False, "rate-limited")
        result = await personal.send_queued(self, QueuedMail("confirm", 0, request))
        if not result.ok:
            log.warning("confirmation to %s not sent: %s", address.display(), result.detail)
        return RequestOutcome(address, result.ok, result.detail)

    async def send_queued_mail(self) -> int:
        """Send the confirmations and manage links waiting for a retry (the digest runner
        calls this every round); returns how many went out."""
        return await personal.send_due(self)

    async def pending_request(self, token: str) -> SubscribeRequest:
        """The request a confirmation link is for (the page shows it before the button)."""
        kind, request_id, _ = self.links.verify(token, "confirm", self.clock())
        request = await self.storage.subscribe_request(request_id) if kind == "req" else None
        if request is None:
            raise tokens.TokenInvalid("this confirmation link is not known (any more)")
        if request.confirmed_at is not None:
            raise TokenAlreadyUsed("this confirmation link was already used")
        return request

    async def confirm(self, token: str) -> Subscriber:
        """Use a confirmation link once; the subscriber is active with the request's
        preferences (topics no longer offered are left out)."""
        now = self.clock()
        claims = self.links.verify_claims(token, "confirm", now)
        request = await self.pending_request(token)
        topics = tuple(t for t in request.prefs.topics if t in self.catalog)
        if not topics:
            raise SubscriptionError(_("The topics of this request are no longer offered."))
        prefs = Preferences(
            topics, request.prefs.frequency, request.prefs.tz, request.prefs.hour,
            request.prefs.weekday, request.prefs.language,
        )  # fmt: skip
        subscriber, created = await self.storage.confirm_request(
            request.id,
            nonce=claims.nonce,
            token_expires=claims.expires_at,
            now=now,
            next_due=next_due,
            prefs=prefs,
        )
        log.info(
            "subscription %s for %s confirmed",
            "created" if created else "updated",
            Address(subscriber.address, subscriber.address_key, subscriber.channel).display(),
        )
        return subscriber

    # -- manage and unsubscribe --

    async def subscriber_for(self, token: str, purpose: str) -> Subscriber:
        kind, subscriber_id, _ = self.links.verify(token, purpose, self.clock())
        subscriber = await self.storage.subscriber(subscriber_id) if kind == "sub" else None
        if subscriber is None:
            raise tokens.TokenInvalid("this link is for a subscription that does not exist")
        return subscriber

    async def update(self, subscriber: Subscriber, prefs: Preferences) -> Subscriber:
        if subscriber.status == "unsubscribed":
            raise SubscriptionError(
                _("This subscription was cancelled; subscribe again to get email.")
            )
        return await self.storage.update_preferences(
            subscriber.id, prefs, now=self.clock(), next_due=next_due
        )

    async def unsubscribe(self, subscriber: Subscriber) -> bool:
        changed = await self.storage.unsubscribe(subscriber.id, now=self.clock())
        if changed:
            log.info("subscriber %d unsubscribed", subscriber.id)
        return changed

    def send_manage_link(self, address_text: str) -> None:
        """Email a manage link to an active subscriber; silent for anyone else (and
        rate-limited like subscribe requests), so the page reveals nothing.

        Everything, the lookup included, happens in the background (`Postman.later`): the
        caller answers at once whoever asked, so how long the answer took tells nothing.
        """
        self.postman.later(functools.partial(self._send_manage_link, address_text))

    async def _send_manage_link(self, address_text: str) -> None:
        try:
            address = parse_address(address_text, schemes=None)
        except SubscriptionError:
            return
        now = self.clock()
        subscriber = await self.storage.subscriber_by_key(address.key)
        d = self.settings.digests
        request = await self.storage.record_subscribe_request(
            address=address.value,
            address_key=address.key,
            channel=address.channel,
            prefs=subscriber.prefs if subscriber else self.defaults(),
            source="manage-link",
            now=now,
            expires_at=now,
            limit=d.subscribe_limit if subscriber and subscriber.status != "unsubscribed" else 0,
            window=d.subscribe_window,
            mail="manage",
            lease_until=now + personal.LEASE,
        )
        if subscriber is None or not request.sent:
            return
        await personal.send_queued(self, QueuedMail("manage", 0, request))


# -- the bot -------------------------------------------------------------------------------

_BOT_USAGE = (
    "Usage: !subscribe [immediate|daily|weekly] [topics...] you@example.org — for example "
    "`!subscribe weekly webinars you@example.org`."
)


def _bot_too_many(window_seconds: float) -> str:
    return (
        "You (or your server) asked for many confirmation messages in a short time, so I "
        f"sent no more; please try again in {max(1, round(window_seconds / 60))} minutes."
    )


async def subscribe_from_matrix(subs: Subscriptions, sender: str, text: str) -> str:
    """Handle ``!subscribe weekly webinars you@example.org`` (words in any order).

    Sends the confirmation message and returns the reply for the room. The reply is the
    same whether or not the address was already subscribed.
    """
    words = text.split()
    if words and words[0].lower() in ("!subscribe", "subscribe"):
        words = words[1:]
    topics_offered = ", ".join(t.id.partition(":")[2] for t in subs.catalog.topics)
    if not words:
        return f"{_BOT_USAGE} Topics: {topics_offered}."
    frequency: str | None = None
    topics: list[str] = []
    address: str | None = None
    unknown: list[str] = []
    for word in words:
        lowered = word.lower().strip(",.;")
        if ("@" in word and not word.startswith("@")) or "://" in word:
            if address is not None:
                return "Please give one address at a time."
            address = word.strip(",;<>")
        elif word.startswith("@") and ":" in word:
            return (
                "Digests go to an email address, not a Matrix id; in Matrix, join the rooms "
                f"instead. {_BOT_USAGE}"
            )
        elif lowered in _FREQ_WORDS:
            frequency = _FREQ_WORDS[lowered]
        elif lowered in ("all", "everything"):
            topics.extend(t.id for t in subs.catalog.topics)
        elif (topic := subs.catalog.from_word(lowered)) is not None:
            topics.append(topic)
        else:
            unknown.append(word)
    if unknown:
        return (
            f"I don't know the topic(s) {', '.join(unknown)}. Topics: {topics_offered} (or "
            f"all). {_BOT_USAGE}"
        )
    if address is None:
        return f"Where should I send it? Add your email address. {_BOT_USAGE}"
    defaults = subs.defaults()
    try:
        prefs = subs.preferences(
            topics or defaults.topics,
            frequency or defaults.frequency,
            defaults.tz,
            defaults.hour,
            defaults.weekday,
        )
        if not subs.sender_limit.allow(sender):
            log.info("!subscribe from %s refused: over the per-sender limit", sender)
            return _bot_too_many(subs.sender_limit.window)
        outcome = await subs.request(address, prefs, source=f"matrix:{sender}")
    except SubscriptionError as e:
        return f"{e} {_BOT_USAGE}"
    except ConfigError as e:
        log.error("!subscribe from %s failed: %s", sender, e)
        return (
            "Email subscriptions are not set up on this server yet; please tell the coordinators."
        )
    hours = round(subs.settings.digests.confirm_ttl.total_seconds() / 3600)
    return (
        f"I've sent a confirmation message to {outcome.address.display()}. Open the link in it "
        f"within {hours} hours to start getting {describe(prefs, subs.catalog)}. "
        "Nothing is sent before you confirm."
    )
