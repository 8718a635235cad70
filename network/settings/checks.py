"""Checks shared by the settings sections: ids, rooms, users, members, time zones and
weekdays.

Each raises `ConfigError` with the key path, so a coordinator sees which line to fix. The
weekday rule (`weekday_number`) is the one every part of libhub reads day names with, so
a day that ``check-config`` accepts is a day the running service understands.
"""

from __future__ import annotations

import re
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
