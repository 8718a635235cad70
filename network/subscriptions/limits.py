"""Per-sender limits on the bot's ``!subscribe``: the web forms' limit, per Matrix account.

The per-address limit (storage) stops mail bombing of one inbox; this one stops one Matrix
account, or one homeserver full of throwaway accounts, from making the service mail
thousands of inboxes. The numbers are the web forms' (``web.forms_per_client`` per
``web.forms_window``), counted per sender and per sender's server.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from network.ratelimit import PerClientLimit
from network.settings.model import WebSettings


class SenderLimit:
    """At most ``limit`` subscribe requests per ``window`` seconds per Matrix sender and
    per sender's homeserver."""

    def __init__(
        self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self._senders = PerClientLimit(limit, window, clock=clock, key=str)
        self._servers = PerClientLimit(limit, window, clock=clock, key=str)

    @classmethod
    def from_settings(cls, web: WebSettings) -> SenderLimit:
        return cls(web.forms_per_client, web.forms_window.total_seconds())

    def allow(self, sender: str) -> bool:
        """Count one request of ``sender`` (``@user:server``); False when over a limit."""
        server = sender.partition(":")[2] or sender
        return self._senders.allow(sender) and self._servers.allow(server)
