"""Checks shared by the settings sections: ids, rooms, users, members, email addresses,
time zones, weekdays and IP ranges.

Each raises `ConfigError` with the key path, so a coordinator sees which line to fix. The
weekday rule (`weekday_number`) and the email address rule (`email_address`) are the ones
every part of libhub uses (subscribers, invitations, the team's email, the sender), so what
``check-config`` accepts is what the running service accepts.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from network.errors import ConfigError

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def check_id(value: str, path: str) -> None:
    if not _ID.match(value):
        raise ConfigError(
            f"{value!r} is not a valid id: use lower-case letters, digits, '-' and '_'", path=path
        )


def check_room(value: str, path: str) -> None:
    # Room ids of room version 12 and later carry no server name ("!hash").
    ok = (value.startswith("#") and ":" in value) or (value.startswith("!") and len(value) > 1)
    if not ok:
        raise ConfigError(
            f"{value!r} is not a room: expected '#alias:server' or '!roomid:server'", path=path
        )


def check_tz(value: str, path: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(
            f"unknown time zone {value!r}: use an IANA name like 'America/Chicago'", path=path
        ) from e


# Monday=0, as ``date.weekday()`` counts; also the names people read (digests, pages).
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAY_HINT = "use mon, tue, wed, thu, fri, sat or sun"


def weekday_number(name: str) -> int | None:
    """0 (Monday) to 6 for a day name in any case: the full name or its start of at least
    three letters ("mon", "Tues", "wednesday"); None for anything else ("monkey", "mo")."""
    key = name.strip().lower()
    if len(key) < 3:
        return None
    for number, full in enumerate(WEEKDAY_NAMES):
        if full.lower().startswith(key):
            return number
    return None


def check_weekday(value: str, path: str) -> int:
    number = weekday_number(value)
    if number is None:
        raise ConfigError(f"unknown day {value!r}: {WEEKDAY_HINT}", path=path)
    return number


# An address an SMTP server takes in RCPT TO: dot-atom local part, a host name with a dot.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def email_address(value: str) -> str | None:
    """``value`` as a plain address like ``ana@example.org`` (an international domain in
    its ASCII form), or None when it is not one."""
    local, at, domain = value.strip().rpartition("@")
    if not at:
        return None
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        pass  # left as it is: the pattern below refuses what IDNA could not encode
    address = f"{local}@{domain}"
    return address if len(address) <= 254 and _EMAIL.match(address) else None


def bare_address(text: str) -> str:
    """The part between the angle brackets of ``Name <ana@example.org>``, else ``text``."""
    text = text.strip()
    if text.endswith(">") and "<" in text:
        return text[text.rindex("<") + 1 : -1].strip()
    return text


def address_in(text: str) -> str:
    """The address of ``Name <ana@example.org>`` or ``ana@example.org``; "" when none."""
    return email_address(bare_address(text)) or ""


def check_email(value: str, path: str, example: str) -> None:
    if email_address(value) is None:
        raise ConfigError(f"{value!r} is not an email address like {example!r}", path=path)


def check_user(value: str, path: str) -> None:
    if not re.match(r"^@[^:\s]+:\S+$", value):
        raise ConfigError(f"{value!r} is not a Matrix user id like '@ana:example.org'", path=path)


def check_member(value: str, path: str) -> None:
    if value.startswith("@"):
        check_user(value, path)
    elif email_address(value) is None:
        raise ConfigError(
            f"{value!r} is neither a Matrix user id ('@ana:example.org') nor an email address",
            path=path,
        )


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> tuple[IPNetwork, ...]:
    """Addresses or CIDR ranges (``10.0.0.0/8``); raises ValueError on a bad one."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


def check_range(value: int, low: int, high: int, path: str) -> None:
    """Refuse a whole number outside ``low``..``high``, naming the key."""
    if not low <= value <= high:
        raise ConfigError(f"expected {low} to {high}", path=path)
