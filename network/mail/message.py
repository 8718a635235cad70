"""Building subscriber email: `build_message` and the header checks it relies on.

`build_message` makes a multipart/alternative message (text, then HTML) with the headers bulk
mail needs to be accepted and unsubscribed from: ``List-Unsubscribe`` and
``List-Unsubscribe-Post`` (RFC 8058 one-click), ``List-Id``, ``Auto-Submitted``, ``Date``
and ``Message-ID``. Sending it is network/mail/pool.py's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, make_msgid

_OWN_HEADERS = frozenset(
    "from to subject date message-id list-unsubscribe list-unsubscribe-post list-id "
    "auto-submitted mime-version content-type content-transfer-encoding".split()
)


class _VerbatimHeader(str):
    """A header value that is folded only between list elements, never encoded.

    The email package folds long unstructured headers by turning them into RFC 2047
    encoded-words, which makes ``List-Unsubscribe`` URLs unreadable to mailbox providers.
    RFC 2369 allows whitespace after the commas between ``<...>`` elements, so that is
    the only place this header breaks a line.
    """

    name: str

    def __new__(cls, name: str, value: str) -> _VerbatimHeader:
        obj = super().__new__(cls, value)
        obj.name = name
        return obj

    def fold(self, *, policy: Policy) -> str:
        limit = policy.max_line_length or 998
        elements = [e.strip() for e in str(self).split(",")]
        lines = [f"{self.name}: {elements[0]}"]
        for element in elements[1:]:
            if len(lines[-1]) + 2 + len(element) > limit:
                lines[-1] += ","
                lines.append(f" {element}")
            else:
                lines[-1] += f", {element}"
        return policy.linesep.join(lines) + policy.linesep


def _header_safe(value: str, what: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{what} must not contain line breaks: {value!r}")
    return value


def _ascii_uri(value: str, what: str) -> str:
    _header_safe(value, what)
    if not value.isascii() or any(c in value for c in " <>,\t"):
        raise ValueError(f"{what} must be an ASCII URI without spaces, '<', '>' or ',': {value!r}")
    # Each URI sits on a header line of its own at worst, and SMTP lines end at 998 octets.
    if len(value) > 900:
        raise ValueError(f"{what} is {len(value)} characters; keep it under 900")
    return value


def build_message(
    *,
    sender: str,
    to: str,
    subject: str,
    text: str,
    html: str | None,
    list_unsubscribe_url: str | None,
    list_unsubscribe_mailto: str | None,
    list_id: str | None,
    message_id_domain: str,
    extra_headers: Mapping[str, str] | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """An email ready for `SmtpSender.send`: text part, optional HTML alternative, list headers.

    ``list_unsubscribe_url`` is the per-recipient one-click URL (https in production; RFC
    8058 requires it for one-click) and adds ``List-Unsubscribe-Post``;
    ``list_unsubscribe_mailto`` may be an address or a ``mailto:`` URI. ``list_id`` is
    either a full ``Name <id>`` value or a bare id. ``date`` defaults to the current time.
    Raises ValueError for header values with line breaks or malformed addresses.
    """
    msg = EmailMessage()
    msg["From"] = _header_safe(sender, "sender")
    msg["To"] = _header_safe(to, "recipient")
    # Feed titles end up in subjects; collapsing whitespace keeps one tidy header line.
    msg["Subject"] = " ".join(subject.split()) or "(no subject)"
    msg["Date"] = format_datetime((date or datetime.now(UTC)).astimezone(UTC))
    msg["Message-ID"] = make_msgid(domain=_header_safe(message_id_domain, "message_id_domain"))
    msg["Auto-Submitted"] = "auto-generated"

    unsubscribe: list[str] = []
    if list_unsubscribe_url:
        url = _ascii_uri(list_unsubscribe_url, "list_unsubscribe_url")
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"list_unsubscribe_url must be an http(s) URL, got {url!r}")
        unsubscribe.append(f"<{url}>")
    if list_unsubscribe_mailto:
        mailto = _ascii_uri(list_unsubscribe_mailto, "list_unsubscribe_mailto")
        if not mailto.startswith("mailto:"):
            mailto = f"mailto:{mailto}"
        unsubscribe.append(f"<{mailto}>")
    if unsubscribe:
        msg["List-Unsubscribe"] = _VerbatimHeader("List-Unsubscribe", ", ".join(unsubscribe))
    if list_unsubscribe_url:
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if list_id:
        list_id = _header_safe(list_id.strip(), "list_id")
        msg["List-Id"] = list_id if "<" in list_id else f"<{list_id}>"

    for name, value in (extra_headers or {}).items():
        if name.lower() in _OWN_HEADERS:
            raise ValueError(f"extra header {name!r} would replace one build_message sets")
        msg[name] = _header_safe(value, f"header {name}")

    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg
