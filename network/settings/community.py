"""The community-of-practice sections of the settings: cohorts, their libraries and
pinned resources, the network's space and rooms, and webinar reminders."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from network.errors import ConfigError
from network.settings.checks import check_id, check_member, check_room, check_user
from network.settings.loading import Duration

_WELCOME_FIELDS = frozenset({"name", "cohort", "library"})


@dataclass(frozen=True)
class CohortSettings:
    id: str
    name: str
    room: str
    members: tuple[str, ...] = ()
    topic: str = ""
    facilitators: tuple[str, ...] = ()
    libraries: tuple[LibrarySettings, ...] = ()
    resources: tuple[ResourceSettings, ...] = ()
    encryption: bool = True

    def validate(self, path: str) -> None:
        check_id(self.id, f"{path}.id")
        check_room(self.room, f"{path}.room")
        for i, member in enumerate(self.members):
            check_member(member, f"{path}.members[{i}]")
        for i, user in enumerate(self.facilitators):
            check_user(user, f"{path}.facilitators[{i}]")

    def library_of(self, member: str) -> str | None:
        """The library a member (Matrix id or email) represents, when config says."""
        for library in self.libraries:
            if member in library.members:
                return library.name
        return None

    @property
    def all_members(self) -> tuple[str, ...]:
        """Every member, with or without a library, in config order, once each."""
        found = [*self.members, *(m for lib in self.libraries for m in lib.members)]
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class LibrarySettings:
    """A library in a cohort: its name and the people (Matrix ids or emails) who represent it."""

    name: str
    members: tuple[str, ...] = ()

    def validate(self, path: str) -> None:
        if not self.name.strip():
            raise ConfigError("a library needs a name", path=f"{path}.name")
        for i, member in enumerate(self.members):
            check_member(member, f"{path}.members[{i}]")


@dataclass(frozen=True)
class ResourceSettings:
    """A link pinned in a cohort room (toolbox pages, recordings, templates)."""

    title: str
    url: str

    def validate(self, path: str) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError("expected an http:// or https:// URL", path=f"{path}.url")


@dataclass(frozen=True)
class CommunityRoomSettings:
    """A network-wide room (announcements, webinars, help): a child of the space."""

    room: str
    name: str = ""
    topic: str = ""
    encryption: bool = True

    def validate(self, path: str) -> None:
        check_room(self.room, f"{path}.room")


Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


@dataclass(frozen=True)
class CommunitySettings:
    space: str = ""
    space_name: str = ""
    space_topic: str = ""
    rooms: tuple[CommunityRoomSettings, ...] = ()
    facilitators: tuple[str, ...] = ()
    facilitator_power: int = 50
    join_rule: Literal["invite", "knock", "public"] = "knock"
    manage_membership: bool = False
    sync_on_start: bool = False
    welcome: str = (
        "Welcome to {cohort}, {name}! Introduce yourself and your library, and share what "
        "you try with !update followed by a few lines."
    )
    update_window: Duration = Duration(hours=1)
    weekly_prompt: bool = False
    prompt_text: str = (
        "What did your library try this week? Reply to this message and your answer is "
        "shared with the network as a cohort update."
    )
    prompt_weekday: Weekday = "friday"
    prompt_hour: int = 10

    def validate(self, path: str) -> None:
        if self.space:
            check_room(self.space, f"{path}.space")
        for i, user in enumerate(self.facilitators):
            check_user(user, f"{path}.facilitators[{i}]")
        if not 1 <= self.facilitator_power <= 99:
            raise ConfigError(
                "expected 1 to 99 (100 is the bot's own level)", path=f"{path}.facilitator_power"
            )
        if not 0 <= self.prompt_hour <= 23:
            raise ConfigError("expected an hour from 0 to 23", path=f"{path}.prompt_hour")
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(self.welcome) if f is not None}
        except ValueError as e:
            raise ConfigError(f"broken placeholder: {e}", path=f"{path}.welcome") from e
        unknown = sorted(names - _WELCOME_FIELDS)
        if unknown:
            raise ConfigError(
                f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
                "use {name}, {cohort} and {library}",
                path=f"{path}.welcome",
            )
        _check_welcome_format(self.welcome, f"{path}.welcome")


def _check_welcome_format(welcome: str, path: str) -> None:
    """Format specs and conversions that would fail when a welcome is sent.

    A spec with a nested field ("{name:{cohort}}") depends on the real names, so it is
    refused; any other spec behaves the same for every string, so one trial run settles it."""
    for _, _, spec, _ in string.Formatter().parse(welcome):
        if spec and "{" in spec:
            raise ConfigError(
                f"placeholder format {spec!r} uses a placeholder; write {{name}}, {{cohort}} "
                "or {library} plainly",
                path=path,
            )
    try:
        welcome.format(name="Ana", cohort="Smart Spaces", library="Ignacio Library")
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise ConfigError(f"broken placeholder: {e}", path=path) from e


class ReminderConfigError(ValueError):
    """A reminder lead or time zone in the configuration cannot be used."""


_LEAD_RE = re.compile(
    r"^(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?$", re.IGNORECASE
)


def parse_lead(text: str) -> timedelta:
    """A lead from config: "1d", "2h", "30m", "1w", or combined in that order like "1d2h"."""
    compact = re.sub(r"\s+", "", text)
    match = _LEAD_RE.match(compact)
    if not compact or match is None:
        raise ReminderConfigError(
            f"reminder lead {text!r} is not understood: write a number with w, d, h or m, "
            f"largest unit first, like '1d', '2h', '30m' or '1d2h'"
        )
    parts = {unit: int(value) for unit, value in match.groupdict(default="0").items()}
    lead = timedelta(weeks=parts["w"], days=parts["d"], hours=parts["h"], minutes=parts["m"])
    if lead <= timedelta(0):
        raise ReminderConfigError(f"reminder lead {text!r} must be more than zero")
    return lead


@dataclass(frozen=True)
class WebinarSettings:
    reminder_leads: tuple[str, ...] = ("1d", "1h")
    grace: Duration = Duration(minutes=15)
    duration: Duration = Duration(hours=1)

    def validate(self, path: str) -> None:
        if self.duration <= timedelta(0):
            raise ConfigError("expected a duration above 0", path=f"{path}.duration")
        for i, lead in enumerate(self.reminder_leads):
            try:
                parse_lead(lead)
            except ReminderConfigError as e:
                raise ConfigError(str(e), path=f"{path}.reminder_leads[{i}]") from e
