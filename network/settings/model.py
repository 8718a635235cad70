"""The settings model: one TOML file, validated once at start into frozen dataclasses.

Every key is documented in ``config/example.toml`` (a test keeps the two in sync).
Secrets never live in the file: keys ending in ``_env`` name the environment variable
that holds the secret, and apprise URLs may contain ``${NAME}`` placeholders filled
from the environment. Relative paths are relative to the config file's directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from network.errors import ConfigError
from network.route_templates import compile_template
from network.settings.checks import (
    address_in,
    check_email,
    check_id,
    check_range,
    check_room,
    check_tz,
    check_user,
    check_weekday,
    parse_networks,
)
from network.settings.community import (
    CohortSettings,
    CommunitySettings,
    WebinarSettings,
    Weekday,
)
from network.settings.loading import Duration, build
from network.settings.moderation import HOOK_FEED_PREFIX, HookSettings, ModerationSettings
from network.settings.smtp import parse_smtp_url
from network.tokens import MIN_SECRET_BYTES

Kind = Literal["news", "webinar", "cohort-update"]
KINDS: tuple[str, ...] = ("news", "webinar", "cohort-update")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class NetworkSettings:
    name: str = "Library Network"
    contact_url: str = ""
    timezone: str = "America/New_York"
    ops_room: str = ""

    def validate(self, path: str) -> None:
        check_tz(self.timezone, f"{path}.timezone")
        _one_line(self.name, f"{path}.name")  # it names the list in every digest's headers
        if self.ops_room:
            check_room(self.ops_room, f"{path}.ops_room")


DEFAULT_DATABASE_PATH = "var/libhub.db"


@dataclass(frozen=True)
class DatabaseSettings:
    """SQLite (``path``, the embedded default) or PostgreSQL (``url``), never both."""

    path: str = ""
    url: str = ""
    password_env: str = ""

    def validate(self, path: str) -> None:
        if self.path and self.url:
            raise ConfigError(
                "set either database.path (SQLite) or database.url (PostgreSQL), not both",
                path=f"{path}.url",
            )
        if self.url:
            parts = urlsplit(self.url)
            if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
                raise ConfigError(
                    "expected a URL like 'postgresql://libhub@db.example.org:5432/libhub'",
                    path=f"{path}.url",
                )
            if parts.password is not None:
                raise ConfigError(
                    "the password does not belong in the file: put it in an environment "
                    "variable and name it in database.password_env",
                    path=f"{path}.url",
                )
        elif self.password_env:
            raise ConfigError("password_env is for database.url (PostgreSQL)", path=path)


@dataclass(frozen=True)
class MatrixSettings:
    homeserver: str
    user_id: str
    password_env: str = ""
    access_token_env: str = ""
    device_name: str = "libhub"
    create_rooms: bool = False
    invite_allow: tuple[str, ...] = ()
    sync_timeout: Duration = Duration(seconds=30)
    crypto_store: str = ""
    recovery_key_env: str = "LIBHUB_RECOVERY_KEY"
    share_keys_with: str = "cross-signed"
    encryption: bool = True

    def validate(self, path: str) -> None:
        if self.share_keys_with not in ("cross-signed", "all"):
            raise ConfigError(
                f"expected 'cross-signed' or 'all', got {self.share_keys_with!r}",
                path=f"{path}.share_keys_with",
            )
        if not self.homeserver.startswith(("http://", "https://")):
            raise ConfigError("expected an http:// or https:// URL", path=f"{path}.homeserver")
        if not re.match(r"^@[^:]+:.+$", self.user_id):
            raise ConfigError(
                f"{self.user_id!r} is not a Matrix user id like '@libhub:example.org'",
                path=f"{path}.user_id",
            )
        if not (self.password_env or self.access_token_env):
            raise ConfigError(
                "set password_env or access_token_env to the environment variable that holds "
                "the bot's secret",
                path=path,
            )


@dataclass(frozen=True)
class WebSettings:
    listen: str = "127.0.0.1:8080"
    public_url: str = "http://127.0.0.1:8080"
    secret_env: str = "LIBHUB_SECRET"
    previous_secrets_env: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    forms_per_client: int = 30
    forms_window: Duration = Duration(hours=1)
    metrics_token_env: str = ""

    def __post_init__(self) -> None:
        # Links in mail headers must be ASCII: an international host name is written in
        # its IDNA form and other characters percent-encoded, once, here.
        object.__setattr__(self, "public_url", ascii_url(self.public_url))

    def validate(self, path: str) -> None:
        for i, value in enumerate(self.trusted_proxies):
            try:
                parse_networks([value])
            except ValueError:
                raise ConfigError(
                    f"{value!r} is not an IP address or range like '10.0.0.0/8'",
                    path=f"{path}.trusted_proxies[{i}]",
                ) from None
        if self.forms_per_client < 0:
            raise ConfigError("must be 0 (no limit) or more", path=f"{path}.forms_per_client")
        if self.forms_per_client > 0 and self.forms_window <= timedelta(0):
            raise ConfigError(
                "expected a window above 0 (or set forms_per_client = 0 for no limit)",
                path=f"{path}.forms_window",
            )
        host, sep, port = self.listen.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        if not sep or not host or not port.isdigit():
            raise ConfigError(
                f"expected 'host:port' like '127.0.0.1:8080', got {self.listen!r}",
                path=f"{path}.listen",
            )
        if ":" in host and not bracketed:
            raise ConfigError(
                f"write an IPv6 address in brackets, like '[::1]:8080', got {self.listen!r}",
                path=f"{path}.listen",
            )
        if not 1 <= int(port) <= 65535:
            raise ConfigError(f"port {port} is not 1 to 65535", path=f"{path}.listen")
        if bracketed:
            try:
                ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                raise ConfigError(
                    f"{host} is not an IPv6 address like '[::1]'", path=f"{path}.listen"
                ) from None
        if not self.public_url.startswith(("http://", "https://")):
            raise ConfigError("expected an http:// or https:// URL", path=f"{path}.public_url")
        if not self.public_url.isascii() or any(c.isspace() for c in self.public_url):
            raise ConfigError(
                f"{self.public_url!r} cannot be written in ASCII for links in emails: check "
                "the host name, or write it in its xn-- form",
                path=f"{path}.public_url",
            )

    @property
    def host(self) -> str:
        # "[::1]:8080" binds "::1": the brackets only separate the address from the port.
        return self.listen.rpartition(":")[0].removeprefix("[").removesuffix("]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True)
class EmailSettings:
    smtp_url: str = ""
    from_: str = ""
    password_env: str = ""
    max_connections: int = 4
    max_per_second: float = 0.0
    messages_per_connection: int = 500
    timeout: Duration = Duration(seconds=30)
    unsubscribe_mailto: str = ""
    list_id: str = ""

    def validate(self, path: str) -> None:
        # Both end up in the header of every message: a line break would make each one
        # impossible to build.
        _one_line(self.from_, f"{path}.from")
        _one_line(self.list_id, f"{path}.list_id")
        if self.smtp_url and not self.smtp_url.startswith(
            ("smtp://", "smtps://", "smtp+starttls://")
        ):
            raise ConfigError(
                "expected smtp://host:port, smtps://host:port or smtp+starttls://host:port",
                path=f"{path}.smtp_url",
            )
        if self.smtp_url:
            # Parsed here, by the rule the sender uses, so a URL that cannot be used is
            # refused by check-config rather than at the first send.
            target = parse_smtp_url(self.smtp_url, f"{path}.smtp_url")
            if target.username and not (target.password_env or self.password_env):
                raise ConfigError(
                    f"SMTP user {target.username!r} needs a password: add ?password_env=NAME "
                    "to the URL (or set email.password_env) and put the password in that "
                    "environment variable",
                    path=f"{path}.smtp_url",
                )
        if self.smtp_url and not self.from_:
            raise ConfigError(
                "missing sender address, needed when smtp_url is set", path=f"{path}.from"
            )
        if self.from_ and not address_in(self.from_):
            raise ConfigError(
                f"{self.from_!r} has no email address: write 'Name <news@example.org>'",
                path=f"{path}.from",
            )
        check_range(self.max_connections, 1, 64, f"{path}.max_connections")
        if self.max_per_second < 0:
            raise ConfigError(
                "expected 0 (no limit) or a number of messages a second, e.g. 14",
                path=f"{path}.max_per_second",
            )
        if self.messages_per_connection < 1:
            raise ConfigError("expected at least 1", path=f"{path}.messages_per_connection")
        if self.timeout < timedelta(seconds=1):
            raise ConfigError("expected at least 1s", path=f"{path}.timeout")
        if self.unsubscribe_mailto:
            check_email(
                self.unsubscribe_mailto.removeprefix("mailto:"),
                f"{path}.unsubscribe_mailto",
                "unsubscribe@example.org",
            )

    @property
    def sender_address(self) -> str:
        """The bare address of ``from`` (``news@example.org``), or "" when unset."""
        return address_in(self.from_)


def _one_line(value: str, path: str) -> None:
    """Refuse a line break in a value that goes into a mail header."""
    if "\r" in value or "\n" in value:
        raise ConfigError(
            f"{value!r} contains a line break; mail headers are one line: remove it", path=path
        )


def ascii_url(url: str) -> str:
    """``url`` with its host in IDNA (``xn--``) form and the rest percent-encoded where it
    is not ASCII; unchanged when it cannot be encoded (validation then says so)."""
    if url.isascii():
        return url
    try:
        parts = urlsplit(url)
        userinfo, at, hostport = parts.netloc.rpartition("@")
        host, colon, port = hostport.rpartition(":")
        if not colon or not port.isdigit():
            host, colon, port = hostport, "", ""
        if not host.startswith("["):
            host = host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return url
    safe = "/:@!$&'()*+,;=%-._~?"
    netloc = quote(userinfo, safe=":%") + at + host + colon + port
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            quote(parts.path, safe=safe),
            quote(parts.query, safe=safe),
            quote(parts.fragment, safe=safe),
        )
    )


_TOPIC = re.compile(r"^(kind|feed|cohort):[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class DigestSettings:
    """Subscriptions, digests and notices for people who read email (or another channel)."""

    topics: tuple[str, ...] = ()
    default_frequency: Literal["immediate", "daily", "weekly"] = "weekly"
    default_hour: int = 8
    default_weekday: Weekday = "monday"
    default_timezone: str = ""
    network_name: str = ""
    confirm_ttl: Duration = Duration(hours=72)
    link_ttl: Duration = Duration(days=365)
    subscribe_limit: int = 3
    subscribe_window: Duration = Duration(hours=24)
    bounce_threshold: float = 3.0
    bounce_stale_after: Duration = Duration(days=30)
    retry_limit: int = 8
    channel_schemes: tuple[str, ...] = ()

    def validate(self, path: str) -> None:
        _one_line(self.network_name, f"{path}.network_name")
        for i, topic in enumerate(self.topics):
            if not _TOPIC.match(topic):
                raise ConfigError(
                    f"{topic!r} is not a topic: write 'kind:webinar', 'feed:<feed id>' or "
                    "'cohort:<cohort id>'",
                    path=f"{path}.topics[{i}]",
                )
            kind, _, name = topic.partition(":")
            if kind == "kind" and name not in KINDS:
                raise ConfigError(
                    f"unknown item kind {name!r}: expected one of {', '.join(KINDS)}",
                    path=f"{path}.topics[{i}]",
                )
        if not 0 <= self.default_hour <= 23:
            raise ConfigError("expected an hour from 0 to 23", path=f"{path}.default_hour")
        if self.default_timezone:
            check_tz(self.default_timezone, f"{path}.default_timezone")
        if self.confirm_ttl < timedelta(minutes=10):
            raise ConfigError("expected at least 10m", path=f"{path}.confirm_ttl")
        if self.link_ttl < timedelta(days=7):
            raise ConfigError(
                "expected at least 7d (old emails keep their unsubscribe links)",
                path=f"{path}.link_ttl",
            )
        if self.subscribe_limit < 1:
            raise ConfigError("expected at least 1", path=f"{path}.subscribe_limit")
        if self.subscribe_window < timedelta(minutes=1):
            raise ConfigError("expected at least 1m", path=f"{path}.subscribe_window")
        if self.bounce_threshold <= 0:
            raise ConfigError("expected a number above 0", path=f"{path}.bounce_threshold")
        if self.retry_limit < 1:
            raise ConfigError("expected at least 1", path=f"{path}.retry_limit")
        for i, scheme in enumerate(self.channel_schemes):
            if not re.match(r"^[a-z][a-z0-9+.-]*$", scheme) or scheme.startswith("mailto"):
                raise ConfigError(
                    f"{scheme!r} is not an apprise URL scheme such as 'ntfys' (email "
                    "addresses are always accepted; mailto:// is not used for subscribers)",
                    path=f"{path}.channel_schemes[{i}]",
                )


MAX_BODY_MIB = 1024.0  # a feed body larger than 1 GiB is a mistake, not a feed


@dataclass(frozen=True)
class PollingSettings:
    default_interval: Duration = Duration(minutes=30)
    max_body_mib: float = 10.0
    timeout: Duration = Duration(seconds=30)
    concurrency: int = 20
    per_host: int = 2
    max_age: Duration = Duration(days=30)
    initial_posts: int = 0

    def validate(self, path: str) -> None:
        if self.default_interval < timedelta(minutes=1):
            raise ConfigError("expected at least 1 minute", path=f"{path}.default_interval")
        # The fetcher refuses bodies above this: 0, negative, nan or inf would refuse (or
        # never bound) every feed, so it is refused here, where check-config sees it.
        if not 0 < self.max_body_mib <= MAX_BODY_MIB:
            raise ConfigError(
                f"expected a size in MiB above 0 and at most {MAX_BODY_MIB}",
                path=f"{path}.max_body_mib",
            )
        check_range(self.concurrency, 1, 500, f"{path}.concurrency")
        check_range(self.per_host, 1, 50, f"{path}.per_host")


@dataclass(frozen=True)
class KindRuleSettings:
    """Refines a feed's kind: items with one of these categories or title words get ``kind``."""

    kind: Kind
    categories: tuple[str, ...] = ()
    title_keywords: tuple[str, ...] = ()

    def validate(self, path: str) -> None:
        if not (self.categories or self.title_keywords):
            raise ConfigError("a kind rule needs categories or title_keywords", path=path)


@dataclass(frozen=True)
class FeedSettings:
    id: str
    url: str
    kind: Kind = "news"
    interval: Duration | None = None
    rooms: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    title: str = ""
    initial_posts: int | None = None
    # false: the feed's items wait for a coordinator on routes with moderation = "hold".
    reviewed: bool = True

    def validate(self, path: str) -> None:
        check_id(self.id, f"{path}.id")
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError("expected an http:// or https:// URL", path=f"{path}.url")
        for i, room in enumerate(self.rooms):
            check_room(room, f"{path}.rooms[{i}]")
        if self.interval is not None and self.interval < timedelta(minutes=1):
            raise ConfigError("expected at least 1 minute", path=f"{path}.interval")


@dataclass(frozen=True)
class ChannelSettings:
    urls: tuple[str, ...]

    def validate(self, path: str) -> None:
        if not self.urls:
            raise ConfigError("expected at least one apprise URL", path=f"{path}.urls")


@dataclass(frozen=True)
class RouteSettings:
    """Extra targets for the items that match every condition given (empty = any)."""

    feeds: tuple[str, ...] = ()
    kinds: tuple[Kind, ...] = ()
    cohorts: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    rooms: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    # Jinja2 (sandboxed) for this route's rooms / channels; see network/route_templates.py.
    matrix_template: str = ""
    channel_template: str = ""
    # "hold": items from unreviewed sources (member updates, webhooks, feeds with
    # reviewed = false) wait for a coordinator before this route's rooms and channels.
    moderation: Literal["none", "hold"] = "none"

    def validate(self, path: str) -> None:
        for i, room in enumerate(self.rooms):
            check_room(room, f"{path}.rooms[{i}]")
        if not (self.rooms or self.channels):
            raise ConfigError("a route needs rooms or channels to send to", path=path)
        # Compiled and rendered against sample items now: a broken template stops the
        # start, it never fails a message later.
        if self.matrix_template:
            if not self.rooms:
                raise ConfigError("matrix_template needs rooms", path=f"{path}.matrix_template")
            compile_template(self.matrix_template, html=True, path=f"{path}.matrix_template")
        if self.channel_template:
            if not self.channels:
                raise ConfigError(
                    "channel_template needs channels", path=f"{path}.channel_template"
                )
            compile_template(self.channel_template, html=False, path=f"{path}.channel_template")


@dataclass(frozen=True)
class DeliverySettings:
    room_parallelism: int = 4
    room_pace: Duration = Duration(seconds=0)
    group_threshold: int = 10
    edit_window: Duration = Duration(days=2)

    def validate(self, path: str) -> None:
        check_range(self.room_parallelism, 1, 64, f"{path}.room_parallelism")
        if self.group_threshold < 1:
            raise ConfigError("expected at least 1", path=f"{path}.group_threshold")


@dataclass(frozen=True)
class AssistanceSettings:
    """The assistance bot and the human Need Assistance team behind it."""

    team_room: str = ""
    team_members: tuple[str, ...] = ()
    team_email: str = ""
    help_rooms: tuple[str, ...] = ()
    coordinators: tuple[str, ...] = ()
    toolbox_dir: str = ""
    escalate_when_unsure: bool = True
    timezone: str = ""
    hours: str = "09:00-17:00"
    workdays: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    holidays: tuple[str, ...] = ()
    remind_unclaimed_after: float = 4.0
    remind_unanswered_after: float = 8.0
    max_reminders: int = 3
    auto_close_days: float = 7.0
    check_every: Duration = Duration(minutes=1)

    def validate(self, path: str) -> None:
        if self.team_room:
            check_room(self.team_room, f"{path}.team_room")
        for i, room in enumerate(self.help_rooms):
            check_room(room, f"{path}.help_rooms[{i}]")
        if self.team_email:
            check_email(self.team_email, f"{path}.team_email", "need-assistance@example.org")
        for key in ("team_members", "coordinators"):
            for i, user in enumerate(getattr(self, key)):
                check_user(user, f"{path}.{key}[{i}]")
        if self.timezone:
            check_tz(self.timezone, f"{path}.timezone")
        m = re.match(
            r"^([01]?\d|2[0-3]):([0-5]\d)-([01]?\d|2[0-3]):([0-5]\d)$", self.hours.replace(" ", "")
        )
        if not m or not (int(m[1]), int(m[2])) < (int(m[3]), int(m[4])):
            raise ConfigError(
                f"expected opening hours like '09:00-17:00', got {self.hours!r}",
                path=f"{path}.hours",
            )
        for i, day in enumerate(self.workdays):
            check_weekday(day, f"{path}.workdays[{i}]")
        if not self.workdays:
            raise ConfigError("expected at least one workday", path=f"{path}.workdays")
        for i, day in enumerate(self.holidays):
            try:
                date.fromisoformat(day)
            except ValueError:
                raise ConfigError(
                    f"expected a date like '2026-12-25', got {day!r}",
                    path=f"{path}.holidays[{i}]",
                ) from None
        for key in ("remind_unclaimed_after", "remind_unanswered_after", "auto_close_days"):
            if getattr(self, key) <= 0:
                raise ConfigError("expected a number above 0", path=f"{path}.{key}")
        if self.max_reminders < 0:
            raise ConfigError("expected 0 or more", path=f"{path}.max_reminders")
        if self.check_every < timedelta(seconds=1):
            raise ConfigError("expected at least 1s", path=f"{path}.check_every")


@dataclass(frozen=True)
class DashboardSettings:
    enabled: bool = True
    token_ttl: Duration = Duration(hours=24)
    session_ttl: Duration = Duration(hours=12)
    matrix_login: bool = True

    def validate(self, path: str) -> None:
        if self.token_ttl < timedelta(minutes=1):
            raise ConfigError("expected at least 1 minute", path=f"{path}.token_ttl")
        if self.session_ttl < timedelta(minutes=5):
            raise ConfigError("expected at least 5 minutes", path=f"{path}.session_ttl")


@dataclass(frozen=True)
class FeedsAdminSettings:
    """Feeds managed live, from a room (``!feed``) or the dashboard (network/feedadmin/)."""

    # The room power level a member needs for !feed add/remove/template/filter/pause/resume
    # (50 is Element's "Moderator"); !feed list is for everyone.
    power_level: int = 50
    # Feeds on private or local addresses (10.x, 192.168.x, 127.x, ...); off, so a room
    # member cannot point libhub at the machine's own services or the local network.
    allow_private: bool = False
    # How many items the confirmation and the dashboard preview show.
    preview_items: int = 3

    def validate(self, path: str) -> None:
        check_range(self.power_level, 0, 100, f"{path}.power_level")
        check_range(self.preview_items, 0, 10, f"{path}.preview_items")


@dataclass(frozen=True)
class Settings:
    matrix: MatrixSettings
    network: NetworkSettings = NetworkSettings()
    database: DatabaseSettings = DatabaseSettings()
    web: WebSettings = WebSettings()
    email: EmailSettings = EmailSettings()
    polling: PollingSettings = PollingSettings()
    feeds: tuple[FeedSettings, ...] = ()
    kind_rules: tuple[KindRuleSettings, ...] = ()
    channels: dict[str, ChannelSettings] = field(default_factory=dict)
    routes: tuple[RouteSettings, ...] = ()
    delivery: DeliverySettings = DeliverySettings()
    assistance: AssistanceSettings = AssistanceSettings()
    cohorts: tuple[CohortSettings, ...] = ()
    community: CommunitySettings = CommunitySettings()
    webinars: WebinarSettings = WebinarSettings()
    dashboard: DashboardSettings = DashboardSettings()
    digests: DigestSettings = DigestSettings()
    feeds_admin: FeedsAdminSettings = FeedsAdminSettings()
    hooks: tuple[HookSettings, ...] = ()
    moderation: ModerationSettings = ModerationSettings()
    # Where the file was read from; relative paths are resolved against it.
    base_dir: Path = Path(".")

    def validate(self, path: str) -> None:
        seen: set[str] = set()
        for i, feed in enumerate(self.feeds):
            if feed.id in seen:
                raise ConfigError(f"duplicate feed id {feed.id!r}", path=f"feeds[{i}].id")
            seen.add(feed.id)
            for j, name in enumerate(feed.channels):
                if name not in self.channels:
                    raise ConfigError(
                        f"unknown channel {name!r}: define it as [channels.{name}]",
                        path=f"feeds[{i}].channels[{j}]",
                    )
        cohort_ids: set[str] = set()
        for i, cohort in enumerate(self.cohorts):
            if cohort.id in cohort_ids:
                raise ConfigError(f"duplicate cohort id {cohort.id!r}", path=f"cohorts[{i}].id")
            cohort_ids.add(cohort.id)
        hook_ids: set[str] = set()
        for i, hook in enumerate(self.hooks):
            if hook.id in hook_ids:
                raise ConfigError(f"duplicate hook id {hook.id!r}", path=f"hooks[{i}].id")
            hook_ids.add(hook.id)
            for j, name in enumerate(hook.channels):
                if name not in self.channels:
                    raise ConfigError(
                        f"unknown channel {name!r}: define it as [channels.{name}]",
                        path=f"hooks[{i}].channels[{j}]",
                    )
        sources = seen | {HOOK_FEED_PREFIX + h for h in hook_ids}
        for i, route in enumerate(self.routes):
            for j, feed_id in enumerate(route.feeds):
                if feed_id not in sources:
                    raise ConfigError(f"unknown feed {feed_id!r}", path=f"routes[{i}].feeds[{j}]")
            for j, cohort_id in enumerate(route.cohorts):
                if cohort_id not in cohort_ids:
                    raise ConfigError(
                        f"unknown cohort {cohort_id!r}", path=f"routes[{i}].cohorts[{j}]"
                    )
            for j, name in enumerate(route.channels):
                if name not in self.channels:
                    raise ConfigError(
                        f"unknown channel {name!r}: define it as [channels.{name}]",
                        path=f"routes[{i}].channels[{j}]",
                    )
        for name in self.channels:
            check_id(name, f"channels.{name}")
        self._check_digest_topics(seen, cohort_ids)
        self._check_rooms_unique()

    def _check_digest_topics(self, feed_ids: set[str], cohort_ids: set[str]) -> None:
        # A topic naming a feed or cohort that was removed from the file stops the start,
        # so check-config must refuse it too.
        known = {"feed": feed_ids, "cohort": cohort_ids}
        for i, topic in enumerate(self.digests.topics):
            group, _, name = topic.partition(":")
            if group in known and name not in known[group]:
                raise ConfigError(
                    f"unknown {group} {name!r}: define it as [[{group}s]] or remove the topic",
                    path=f"digests.topics[{i}]",
                )

    def _check_rooms_unique(self) -> None:
        # `cohorts sync` makes each managed room's members match its own list: a room named
        # twice would have its members kicked and re-invited on every run.
        refs = [("community.space", self.community.space)] if self.community.space else []
        refs += [(f"community.rooms[{i}].room", r.room) for i, r in enumerate(self.community.rooms)]
        refs += [(f"cohorts[{i}].room", c.room) for i, c in enumerate(self.cohorts)]
        first: dict[str, str] = {}
        for path, ref in refs:
            if ref in first:
                raise ConfigError(
                    f"room {ref!r} is already used by {first[ref]}: give each its own room",
                    path=path,
                )
            first[ref] = path

    @property
    def database_path(self) -> Path:
        """The SQLite file (or, with PostgreSQL, where the data directory would be)."""
        p = Path(self.database.path or DEFAULT_DATABASE_PATH)
        return p if p.is_absolute() else self.base_dir / p

    @property
    def database_location(self) -> Path | str:
        """What `Storage.open` takes: the PostgreSQL URL, or the SQLite file."""
        return self.database.url or self.database_path

    @property
    def database_password(self) -> str | None:
        return secret(self.database.password_env)

    @property
    def crypto_store_path(self) -> Path:
        """Where the Matrix crypto store lives: ``matrix.crypto_store``, or beside the
        database (the data directory)."""
        if self.matrix.crypto_store:
            p = Path(self.matrix.crypto_store)
            return p if p.is_absolute() else self.base_dir / p
        return self.database_path.parent / "crypto"

    def hook(self, hook_id: str) -> HookSettings:
        for hook in self.hooks:
            if hook.id == hook_id:
                return hook
        raise KeyError(hook_id)

    def feed(self, feed_id: str) -> FeedSettings:
        for feed in self.feeds:
            if feed.id == feed_id:
                return feed
        raise KeyError(feed_id)


def _expand_env(data: Any, path: str, env: dict[str, str]) -> Any:
    """Fill ``${NAME}`` in apprise URLs from the environment: tokens stay out of the file."""
    if isinstance(data, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                raise ConfigError(f"environment variable {name} is not set", path=path)
            return env[name]

        return _ENV_REF.sub(sub, data)
    if isinstance(data, list):
        return [_expand_env(v, f"{path}[{i}]", env) for i, v in enumerate(data)]
    return data


def parse_settings(
    text: str, *, base_dir: Path = Path("."), env: dict[str, str] | None = None
) -> Settings:
    """Parse and validate TOML text. Raises `ConfigError` naming the key path."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}") from e
    environ = dict(os.environ) if env is None else env
    channels = data.get("channels")
    # A `channels` that is not a table is reported by build() below, naming the key.
    for name, channel in channels.items() if isinstance(channels, dict) else ():
        if isinstance(channel, dict) and "urls" in channel:
            channel["urls"] = _expand_env(channel["urls"], f"channels.{name}.urls", environ)
    if "base_dir" in data:
        raise ConfigError("unknown key", path="base_dir")
    return replace(build(Settings, data), base_dir=base_dir)


def load_settings(path: Path | str) -> Settings:
    """Read and validate the config file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"config file {p} does not exist: copy config/example.toml") from e
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not UTF-8 text") from e
    return parse_settings(text, base_dir=p.resolve().parent)


def secret(env_name: str) -> str | None:
    """The secret held by the environment variable ``env_name`` (None when unset or empty)."""
    if not env_name:
        return None
    return os.environ.get(env_name) or None


def previous_secrets(web: WebSettings) -> tuple[bytes, ...]:
    """The rotated-out link secrets that still verify (web.previous_secrets_env); a variable
    that is unset or empty is skipped, so it can be dropped once its links have expired."""
    found = []
    for i, name in enumerate(web.previous_secrets_env):
        value = secret(name)
        if value is None:
            continue
        key = value.encode("utf-8")
        if len(key) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"the secret in {name} is {len(key)} bytes; a previous secret is one that "
                f"signed links before, at least {MIN_SECRET_BYTES} bytes",
                path=f"web.previous_secrets_env[{i}]",
            )
        found.append(key)
    return tuple(found)
