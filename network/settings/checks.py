"""Checks shared by the settings sections: ids, rooms, users, members, time zones and
IP ranges.

Each raises `ConfigError` with the key path, so a coordinator sees which line to fix.
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


_MEMBER_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_user(value: str, path: str) -> None:
    if not re.match(r"^@[^:\s]+:\S+$", value):
        raise ConfigError(f"{value!r} is not a Matrix user id like '@ana:example.org'", path=path)


def check_member(value: str, path: str) -> None:
    if value.startswith("@"):
        check_user(value, path)
    elif not _MEMBER_EMAIL.match(value):
        raise ConfigError(
            f"{value!r} is neither a Matrix user id ('@ana:example.org') nor an email address",
            path=path,
        )


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> tuple[IPNetwork, ...]:
    """Addresses or CIDR ranges (``10.0.0.0/8``); raises ValueError on a bad one."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)
