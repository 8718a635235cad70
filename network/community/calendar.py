"""iCalendar (RFC 5545) files for webinars: the "Add to calendar" link of digests.

Owns the text of a one-event ``VCALENDAR``: CRLF line endings, content lines folded at 75
octets without splitting a UTF-8 character, TEXT values escaped (backslash, comma,
semicolon, newline), all times in UTC with a ``Z`` suffix. ``DTSTAMP`` is ``now``, passed in,
so the output is a pure function of the arguments.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

PRODID = "-//libhub//Library network webinars//EN"
MAX_LINE_OCTETS = 75
CRLF = "\r\n"


def escape_text(value: str) -> str:
    """A TEXT property value escaped per RFC 5545 section 3.3.11."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def fold_line(line: str) -> str:
    """``line`` folded into CRLF-joined pieces of at most 75 octets (RFC 5545 section 3.1).

    Continuation lines start with one space, which counts towards their 75 octets. Breaks
    fall between characters, never inside a multi-octet UTF-8 sequence.
    """
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    limit = MAX_LINE_OCTETS
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            pieces.append("".join(current))
            current, size, limit = [], 0, MAX_LINE_OCTETS - 1
        current.append(char)
        size += width
    pieces.append("".join(current))
    return (CRLF + " ").join(pieces)


def _utc(value: datetime, what: str) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime")
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar_uri(url: str) -> str | None:
    """``url`` as a URI value, or None when it cannot be one (leave the URL field out).

    A URI value is not TEXT and is not escaped, so anything that could break the line
    structure is refused rather than written. Feeds do publish links with spaces; a space
    is percent-encoded, which names the same page."""
    uri = url.strip().replace(" ", "%20")
    if any(ord(c) < 0x20 or c == "\x7f" for c in uri):
        return None
    return uri if uri.startswith(("http://", "https://")) else None


def _check_uri(url: str) -> str:
    uri = calendar_uri(url)
    if uri is None:
        raise ValueError(f"webinar URL must be an http(s) URL without line breaks, got {url!r}")
    return uri


def webinar_ics(
    uid: str,
    title: str,
    start: datetime,
    duration: timedelta,
    url: str | None,
    description: str,
    now: datetime,
) -> str:
    """A calendar file with one event for a webinar, as text with CRLF line endings.

    ``uid`` must be stable for the webinar (e.g. ``item-42@libhub.example.org``) so a second
    download updates the same calendar entry instead of adding another.
    """
    if not uid.strip():
        raise ValueError("webinar uid must not be empty")
    if duration <= timedelta(0):
        raise ValueError(f"webinar duration must be positive, got {duration}")
    end = start + duration
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{escape_text(uid)}",
        f"DTSTAMP:{_utc(now, 'now')}",
        f"DTSTART:{_utc(start, 'start')}",
        f"DTEND:{_utc(end, 'start')}",
        f"SUMMARY:{escape_text(title.strip() or 'Webinar')}",
    ]
    if description.strip():
        lines.append(f"DESCRIPTION:{escape_text(description.strip())}")
    if url:
        lines.append(f"URL:{_check_uri(url)}")
    lines += ["STATUS:CONFIRMED", "TRANSP:OPAQUE", "END:VEVENT", "END:VCALENDAR"]
    return "".join(fold_line(line) + CRLF for line in lines)
