"""The garbage collector's view of a long-running service: what start-up built is set aside.

A full collection walks every object that is alive. After start-up most of them live as
long as the process (modules, the settings with every feed and route, templates, the
toolbox index); at 5,000 feeds walking them took 20-30 ms, and a collection that falls in
a poll cycle stalls the event loop that long. `settle_heap` collects once and freezes what
is left (`gc.freeze`), so later collections walk only what was made since; `release_heap`
gives it back when the service closes (a process that runs several services in turn, as
the tests do, would otherwise keep each one's cycles for good).
"""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """Collect, then move every surviving object out of the collector's generations.

    Call once, when start-up is done. Frozen objects are never freed, so this is for what
    start-up built to keep; garbage they become later (a reloaded catalog) stays too, which
    is bounded by how much start-up built.
    """
    gc.collect()
    gc.freeze()


def release_heap() -> None:
    """Give what `settle_heap` set aside back to the collector (the service has closed)."""
    gc.unfreeze()
