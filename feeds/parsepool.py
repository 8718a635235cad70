"""Parsing in worker processes, so parsing never competes with the event loop for the GIL.

`parse_feed_async` runs the parser in threads: the loop is never blocked, but a thread that is
parsing holds the GIL, and every socket call of the loop then waits for it (up to the 5 ms
switch interval each time), so a poll cycle with many changed feeds slows down as a whole.
`parse_feed_in_process` runs `parse_feed` in a small process pool instead: as many workers as
`set_parse_concurrency` allows (default 2), at most twice that many documents queued, started on
first use from a helper thread (starting workers takes a moment the loop must not wait for),
shared by the whole process and shut down with `shutdown_parse_pool` (also at exit).

Workers run at a lower scheduling priority: the event loop's process is the serial part of a
poll cycle and should get a core first. A worker that dies (killed, out of memory) breaks the
pool: it is replaced and the document is tried once more, then reported as a `ParseError`.
Where worker processes cannot be started at all, parsing falls back to threads.

Workers are started with spawn (fresh interpreters; no forkserver, which would be one more
process as large as a worker) and import only `feeds.parseworker` and the parser, not the
caller's main module.

Workers belong to the process that started them: they ignore Ctrl-C (the terminal sends
SIGINT to every process in the foreground group; the parent shuts the pool down), and they
exit as soon as that process is gone, even when it was SIGKILLed and had no chance to shut
the pool down. Then the resource tracker, which lives only as long as some worker holds its
pipe, exits too.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import multiprocessing
import os
import sys
import threading
import weakref
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from feeds import parse, parseworker
from feeds.errors import ParseError
from feeds.parse import ParsedFeed

__all__ = ["parse_feed_in_process", "parse_pool_pids", "shutdown_parse_pool"]

log = logging.getLogger(__name__)

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_unavailable = False  # worker processes could not be started here; use threads
_exit_hook = False
_semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[asyncio.Semaphore, int]] = (
    weakref.WeakKeyDictionary()
)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """While workers are started: they do not import this process's main module.

    A spawned process runs the parent's main module again (so that callables defined there
    can be unpickled); ours only run `feeds.parseworker`. Under ``libhub run`` that main
    module is the whole service, held in every worker's memory for nothing. multiprocessing
    reads ``__main__.__spec__`` and ``__file__`` when it starts a process; both are put back
    at once (the submits above start the workers synchronously).
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    missing = object()
    saved = {k: main.__dict__.get(k, missing) for k in ("__spec__", "__file__")}
    main.__spec__ = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is missing:
                main.__dict__.pop(key, None)
            else:
                main.__dict__[key] = value


def _start_pool(size: int) -> ProcessPoolExecutor | None:
    """Create the pool and start its workers (blocking: call it from a thread)."""
    global _pool, _pool_size, _unavailable, _exit_hook
    with _lock:
        if _pool is not None and _pool_size == size:
            return _pool
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=False)
            _pool = None
        if _unavailable:
            return None
        # spawn: each worker is a fresh interpreter that imports only what parsing needs,
        # never a fork of this multi-threaded process (forking threads risks deadlocks).
        # Not forkserver: its server is one more process as large as a worker, kept for
        # the pool's whole life only to fork workers that start once.
        context = multiprocessing.get_context("spawn")
        started = context.Semaphore(0)
        try:
            pool = ProcessPoolExecutor(
                max_workers=size,
                mp_context=context,
                initializer=parseworker.init_worker,
                initargs=(os.getpid(), started),
            )
            # One task per worker while none is idle: each submit starts a worker.
            with _main_module_hidden():
                starting = [pool.submit(parseworker.ready) for _ in range(size)]
            for waiting in starting:
                waiting.result(timeout=120)
            # A spawned worker imports the parser before it ignores Ctrl-C: the pool is
            # ready once every worker got that far (one may have run both tasks above).
            for _ in range(len(getattr(pool, "_processes", None) or {})):
                if not started.acquire(timeout=120):
                    raise TimeoutError("a parser process did not start within 120 s")
        except Exception as e:  # no semaphores, no fork, a sandbox: parse in threads
            log.warning("cannot start parser processes (%s); parsing in threads instead", e)
            _unavailable = True
            return None
        _pool, _pool_size = pool, size
        if not _exit_hook:
            atexit.register(shutdown_parse_pool)
            _exit_hook = True
        return pool


def _discard(pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    if kill:
        # A worker stuck on one document would otherwise run on after shutdown().
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def shutdown_parse_pool(*, wait: bool = True) -> None:
    """Stop the worker processes; the next parse starts new ones."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=wait, cancel_futures=True)


def parse_pool_pids() -> list[int]:
    """Process ids of the running parser workers (for resource accounting in benchmarks)."""
    pool = _pool
    if pool is None:
        return []
    processes = getattr(pool, "_processes", None) or {}  # no public accessor exists
    return sorted(int(pid) for pid in processes)


# Longest one document may take in a worker: feedparser and the sanitizer are quadratic
# on some hostile documents (deep nesting), and a stuck worker would hold its slot.
PARSE_TIMEOUT = 120.0


async def parse_feed_in_process(
    body: bytes, *, url: str, headers: Mapping[str, str] | None = None
) -> ParsedFeed:
    """`parse_feed` in a worker process; raises what `parse_feed` raises."""
    size = parse.parse_concurrency()
    loop = asyncio.get_running_loop()
    gate = _semaphores.get(loop)
    if gate is None or gate[1] != size:
        # Twice the workers: the next document is ready when a worker finishes one.
        gate = _semaphores[loop] = (asyncio.Semaphore(2 * size), size)
    plain_headers = dict(headers) if headers is not None else None
    async with gate[0]:
        for attempt in (1, 2):
            pool = _pool if _pool is not None and _pool_size == size else None
            if pool is None:
                pool = await asyncio.to_thread(_start_pool, size)
            if pool is None:
                return await asyncio.to_thread(
                    parse.parse_feed, body, url=url, headers=plain_headers
                )
            try:
                running = loop.run_in_executor(
                    pool, parseworker.parse_in_worker, body, url, plain_headers
                )
            except RuntimeError:  # shut down between the lookup and the submit
                _discard(pool)
                continue
            try:
                return await asyncio.wait_for(running, PARSE_TIMEOUT)
            except TimeoutError as e:
                _discard(pool, kill=True)
                raise ParseError(
                    f"could not read the feed {url}: reading it took longer than "
                    f"{PARSE_TIMEOUT:g} s (a document built to be slow?); it is tried again "
                    "at the next check"
                ) from e
            except BrokenProcessPool as e:
                _discard(pool)
                if attempt == 2:
                    raise ParseError(
                        f"could not read the feed {url}: the parser process stopped "
                        f"while reading it ({e}); the document may be too large"
                    ) from e
    raise ParseError(f"could not read the feed {url}: the parser processes keep stopping")
