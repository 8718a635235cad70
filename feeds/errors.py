"""Exception hierarchy of the feeds library.

`FeedError` is the root; the service catches it at its boundary and translates it into its own
errors (feeds/ may not import network/). Messages are written for the person who has to act on
them: they name the URL and say what happened.
"""

from __future__ import annotations

from functools import partial
from typing import Any

__all__ = ["FeedError", "FetchError", "NotAFeedError", "ParseError"]


class FeedError(Exception):
    """Root of every error raised by the feeds library."""


class FetchError(FeedError):
    """Retrieving a feed over HTTP failed.

    `transient` says whether trying again later may help (timeouts, resets, 5xx, 429);
    `retry_after` is the server's Retry-After hint in seconds, if it sent one; `gone` is set
    for 410 Gone, which means the publisher removed the feed for good.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None = None,
        transient: bool,
        retry_after: float | None = None,
        gone: bool = False,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.transient = transient
        self.retry_after = retry_after
        self.gone = gone

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments: the default pickling (cls(*args)) cannot rebuild these.
        rebuild = partial(
            type(self),
            url=self.url,
            status=self.status,
            transient=self.transient,
            retry_after=self.retry_after,
            gone=self.gone,
        )
        return (rebuild, self.args)


class NotAFeedError(FeedError):
    """The document is not RSS, Atom or RDF (for example an HTML page served with 200)."""

    def __init__(self, why: str, *, url: str | None = None) -> None:
        message = f"not a feed: {why}"
        if url:
            message += f" ({url})"
        super().__init__(message)
        self.why = why
        self.url = url

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (parse workers); rebuild from `why`, not the message.
        return (partial(type(self), url=self.url), (self.why,))


class ParseError(FeedError):
    """The document looked like a feed but could not be read at all."""
