"""Settings of inbound webhooks (``[[hooks]]``) and of moderation (``[moderation]``).

A hook is a source like a feed, without polling: its items are stored under the feed id
``hook:<id>`` and routed like any item (its own rooms and channels, and routes naming
``hook:<id>`` in ``feeds``). Its URL carries a token signed with ``web.secret_env``
(``libhub hooks`` prints it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from network.errors import ConfigError
from network.route_templates import check_payload_template
from network.settings.checks import check_id, check_room
from network.settings.loading import Duration

HOOK_FEED_PREFIX = "hook:"
MAX_HOOK_KIB = 1024


@dataclass(frozen=True)
class HookTemplate:
    """How the posted payload becomes an item: one sandboxed template per field."""

    title: str = "{{ payload.title }}"
    link: str = "{{ payload.url or payload.link }}"
    summary: str = "{{ payload.summary or payload.description }}"

    def validate(self, path: str) -> None:
        for name in ("title", "link", "summary"):
            check_payload_template(getattr(self, name), path=f"{path}.{name}")


@dataclass(frozen=True)
class HookSettings:
    id: str
    title: str = ""
    kind: Literal["news", "webinar", "cohort-update"] = "news"
    rooms: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    template: HookTemplate = HookTemplate()
    max_kib: int = 64
    rate_limit: int = 60
    rate_window: Duration = Duration(hours=1)

    def validate(self, path: str) -> None:
        check_id(self.id, f"{path}.id")
        for i, room in enumerate(self.rooms):
            check_room(room, f"{path}.rooms[{i}]")
        if not 1 <= self.max_kib <= MAX_HOOK_KIB:
            raise ConfigError(f"expected 1 to {MAX_HOOK_KIB}", path=f"{path}.max_kib")
        if self.rate_limit < 1:
            raise ConfigError("expected at least 1", path=f"{path}.rate_limit")
        if self.rate_window < timedelta(seconds=1):
            raise ConfigError("expected at least 1 second", path=f"{path}.rate_window")

    @property
    def feed_id(self) -> str:
        return HOOK_FEED_PREFIX + self.id


@dataclass(frozen=True)
class ModerationSettings:
    # Items whose title, summary or categories mention one of these words or phrases
    # (whole words, any case) are held on every route, moderated or not.
    flag_words: tuple[str, ...] = ()
    # How often the ops room is checked for held items that still need a notice.
    notice_every: Duration = Duration(seconds=30)

    def validate(self, path: str) -> None:
        for i, word in enumerate(self.flag_words):
            if not word.strip():
                raise ConfigError("expected a word or phrase", path=f"{path}.flag_words[{i}]")
