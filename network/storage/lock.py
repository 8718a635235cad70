"""The lock that lets one running service, and only one, use a database file.

Two services on one database would each claim and send the same outbox rows (the second
releases the first's leases when it starts), so every message would be posted twice.
``libhub run`` holds an exclusive `fcntl.flock` on ``<database>.lock`` for its whole life;
the kernel releases it when the process ends, however it ends, so a crash never leaves a
stale lock behind. The file is created owner-only. Short commands (status, digest send)
do not take it: they are safe next to a running service.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from network.errors import AlreadyRunning, StorageError


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


@contextmanager
def service_lock(database: Path) -> Iterator[None]:
    """Hold the service lock of ``database`` while the block runs, or raise
    `AlreadyRunning` at once when another process holds it."""
    if str(database) == ":memory:":
        yield  # a database in memory cannot be shared
        return
    path = lock_path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise StorageError(
            f"cannot create the lock file {path}: {e.strerror}; check the folder's permissions"
        ) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(
                f"another libhub service is already running on {database} (it holds {path}); "
                "stop it first: two services on one database would post every message twice"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
