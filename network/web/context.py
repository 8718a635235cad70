"""What the web pages may use of the running service, and the typed keys it is kept under.

The service builds one frozen `WebContext` of its parts (settings, storage, subscriptions,
the Matrix gateway's status, delivery and polling counters, cohort membership) and the app
factory stores it under `CONTEXT`. Pages read it with `context_of(request)`; they never see
the service itself, so the web layer depends on the parts, not on what wires them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from network.community.cohorts import Community
from network.delivery.channels import redact
from network.delivery.moderation import Moderation
from network.delivery.outbox import Delivery
from network.delivery.webhooks import Webhooks
from network.feedadmin.manage import FeedAdmin
from network.matrix.gateway import MatrixGateway
from network.polling.poller import Poller
from network.ratelimit import PerClientLimit
from network.settings.checks import IPNetwork
from network.settings.model import Settings
from network.storage import Storage
from network.subscriptions.digests.runner import DigestRunner
from network.subscriptions.lifecycle import Subscriptions


@dataclass(frozen=True)
class WebContext:
    """The parts of one running service that its web pages read or wake."""

    settings: Settings
    storage: Storage
    subscriptions: Subscriptions
    matrix: MatrixGateway
    delivery: Delivery
    poller: Poller
    community: Community
    digests: DigestRunner
    # A feed's or cohort's display name, as in the messages delivered for it.
    feed_title: Callable[[str], str]
    moderation: Moderation
    webhooks: Webhooks
    # Live feeds and their routes (the dashboard's feeds page).
    feed_admin: FeedAdmin

    def display_target(self, target_type: str, target: str) -> str:
        """A delivery target as staff may see it: apprise URLs carry secrets, so redacted."""
        return redact(target) if target_type == "apprise" else target


CONTEXT: web.AppKey[WebContext] = web.AppKey("context", WebContext)
# Posts of the forms that send mail, per client address (network/web/limits.py).
FORM_LIMIT: web.AppKey[PerClientLimit] = web.AppKey("form_limit", PerClientLimit)
TRUSTED_PROXIES: web.AppKey[tuple[IPNetwork, ...]] = web.AppKey("trusted_proxies")


def context_of(request: web.Request) -> WebContext:
    return request.app[CONTEXT]
