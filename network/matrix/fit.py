"""Making a message's content fit in one Matrix event, for every sender in libhub (feed
items, the assistance bot's relays, notices and replies).

Homeservers refuse events over 64 KiB (``M_TOO_LARGE``, a permanent error: the message
would be lost). Visible text is not all of it (empty tags and long hrefs count too), so the
whole content is measured as JSON, leaving room for the event's envelope. Content over the
limit first loses its HTML (``formatted_body``); if the plain text is still too long, it is
shortened, with an ellipsis. `Fitted` says what was done, so a caller can tell the person.
Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_CONTENT_BYTES = 48 * 1024
# A feed item's text is cut to this many characters when it must be shortened.
SHORT_BODY_CHARS = 4000
ELLIPSIS = "…"
_LONG_URL_CHARS = 8000


def content_size(content: dict[str, Any]) -> int:
    """The bytes ``content`` takes in an event (as the homeserver counts it, about)."""
    return len(json.dumps(content, ensure_ascii=False).encode("utf-8"))


@dataclass(frozen=True)
class Fitted:
    """Content that fits, and what had to change."""

    content: dict[str, Any]
    # None when the text is whole; else how many characters of the original body are kept.
    kept_chars: int | None = None
    plain: bool = False  # the HTML version was left out

    @property
    def shortened(self) -> bool:
        return self.kept_chars is not None


def fit(
    content: dict[str, Any],
    *,
    max_chars: int | None = SHORT_BODY_CHARS,
    max_bytes: int = MAX_CONTENT_BYTES,
) -> Fitted:
    """``content`` when it fits in ``max_bytes``; else without the HTML, then with the body
    shortened to at most ``max_chars`` characters (None: as many as fit). A caller that adds
    a line afterwards passes a smaller ``max_bytes`` to keep room for it."""
    if content_size(content) <= max_bytes:
        return Fitted(content)
    slim = {k: v for k, v in content.items() if k not in ("format", "formatted_body")}
    if content_size(slim) <= max_bytes:
        return Fitted(slim, plain=True)
    if len(str(slim.get("external_url", ""))) > _LONG_URL_CHARS:
        del slim["external_url"]
    body = str(slim.get("body", ""))

    def cut(n: int) -> dict[str, Any]:
        return {**slim, "body": body[:n].rstrip() + ELLIPSIS}

    # The most characters that fit (bytes per character vary: UTF-8, JSON escapes).
    low, high = 0, len(body) if max_chars is None else min(len(body), max_chars)
    if content_size(cut(high)) > max_bytes:
        while low < high:
            mid = (low + high + 1) // 2
            if content_size(cut(mid)) <= max_bytes:
                low = mid
            else:
                high = mid - 1
    else:
        low = high
    shortened = cut(low)
    return Fitted(shortened, kept_chars=len(shortened["body"]) - len(ELLIPSIS), plain=True)


def fit_event(content: dict[str, Any]) -> dict[str, Any]:
    """The content of `fit` with the default limits."""
    return fit(content).content
