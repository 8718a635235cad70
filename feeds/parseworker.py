"""What runs inside a parser worker process (`feeds.parsepool` starts them).

Kept apart from the pool so a worker imports only the parser: not asyncio, not the pool,
not the service (each imported module is memory held by every worker).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
from typing import Any

from feeds import parse
from feeds.parse import ParsedFeed

__all__ = ["init_worker", "parse_in_worker", "ready"]

_WORKER_NICENESS = 10


def parse_in_worker(body: bytes, url: str, headers: dict[str, str] | None) -> ParsedFeed:
    return parse.parse_feed(body, url=url, headers=headers)


def init_worker(owner: int, started: Any) -> None:
    """Worker initializer: background priority, no Ctrl-C, and exit when ``owner`` is gone;
    then ``started`` (a semaphore) is released."""
    # The parent handles Ctrl-C and shuts the pool down; a worker interrupted mid-parse would
    # only print a KeyboardInterrupt traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _lower_priority()
    _exit_with_owner(owner)
    started.release()


def _lower_priority() -> None:
    """Parsing is background work; the event loop's process comes first.

    The loop is the serial part of a poll cycle (every request, every database write), so on
    a busy machine it should not wait for a core while a worker parses: measured on 2 cores,
    a cycle of 1,000 feeds took about 1.0 s with workers at normal priority, 0.8 s at +10.
    """
    try:
        os.nice(_WORKER_NICENESS)
    except (AttributeError, OSError):  # no nice() on this platform, or not permitted
        pass


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_OWNER_POLL_SECONDS = 1.0


def _exit_with_owner(owner: int) -> None:
    """End this worker when the process that owns the pool ends, however it ends.

    A SIGKILLed owner cannot shut the pool down, and nothing else would: each worker holds
    the write end of its own task queue and of the forkserver's liveness pipe, so neither
    ever sees end-of-file. A watchdog thread waits on a pidfd of the owner (Linux: woken the
    moment it exits) or polls for it. Under forkserver the worker's parent is the forkserver,
    which may also die first: PR_SET_PDEATHSIG covers that (not set under spawn, where the
    parent is a thread of the owner that may end while the owner lives on).
    """
    if os.getppid() != owner and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl: the watchdog still covers it
            pass
    try:
        pidfd = os.pidfd_open(owner)
    except ProcessLookupError:
        os._exit(1)  # the owner died before this worker started
    except (AttributeError, OSError):  # not Linux, or a kernel without pidfds
        pidfd = -1
    threading.Thread(
        target=_watch_owner, args=(owner, pidfd), name="parsepool-owner-watch", daemon=True
    ).start()


def _watch_owner(owner: int, pidfd: int) -> None:
    if pidfd >= 0:
        select.select([pidfd], [], [])  # readable once the owner has exited
        os._exit(1)
    while True:
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # the pid was reused by someone else's process
            os._exit(1)
        if os.getppid() == 1:  # our parent (the forkserver) is gone
            os._exit(1)
        threading.Event().wait(_OWNER_POLL_SECONDS)


def ready() -> None:
    """A no-op task: submitting it makes the pool start a worker."""
