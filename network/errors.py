"""The one exception tree of the service.

Every error that reaches a person (CLI, log, web page, Matrix reply) is a `LibhubError`
with a message that says what happened and what to do next. Library errors are
translated at the boundary (``raise MatrixUnavailable(...) from e``); the feeds library
keeps its own root (`feeds.errors.FeedError`) because it must not import the service.
"""

from __future__ import annotations


class LibhubError(Exception):
    """Root of every error libhub raises on purpose."""

    # What `libhub` exits with when this error ends a command: 2 means "fix the setup"
    # (config, environment); a service that stopped on its own says 1.
    exit_code = 2


class ConfigError(LibhubError, ValueError):
    """The configuration file is missing, unreadable or invalid.

    ``path`` is the key path (``feeds[2].kind``) so the message can point at the line
    a coordinator has to fix.
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class StorageError(LibhubError):
    """The database cannot be opened, migrated or written."""


class DatabaseTooNew(StorageError):
    """The database was written by a newer libhub; running old code on it would corrupt it."""


class NotOurDatabase(StorageError):
    """The database file belongs to another program; libhub must not write into it."""


class AlreadyRunning(StorageError):
    """Another ``libhub run`` holds the database: two would post every message twice."""


class LeaseLost(StorageError):
    """A leased feed's poll may not commit: its lease ran out and another instance took the
    feed over (its poll is the one that counts)."""


class MatrixError(LibhubError):
    """A Matrix request failed. ``transient`` says whether retrying can help."""

    transient = True

    def __init__(self, message: str, *, errcode: str | None = None) -> None:
        self.errcode = errcode
        super().__init__(message)


class MatrixUnavailable(MatrixError):
    """The homeserver cannot be reached or answered with a server error."""


class MatrixEncryptionUnavailable(MatrixUnavailable):
    """The room is encrypted and the bot cannot encrypt right now: the message waits (never
    sent in plain text)."""


class MatrixRateLimited(MatrixError):
    """``M_LIMIT_EXCEEDED``: wait ``retry_after`` seconds before sending again."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message, errcode="M_LIMIT_EXCEEDED")


class MatrixPermanent(MatrixError):
    """Forbidden, unknown room, bad request: retrying the same request cannot succeed."""

    transient = False


class MatrixAuthError(MatrixPermanent):
    """Login failed or the access token was rejected."""


class DeliveryError(LibhubError):
    """A channel (apprise, SMTP) refused or failed a message."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        self.transient = transient
        super().__init__(message)


class ServiceFailed(LibhubError):
    """A background loop died with an error; the service stopped."""

    exit_code = 1


class StartupFailed(LibhubError):
    """The service could not start (the web port is taken, ...); nothing was left running."""

    exit_code = 1
