"""Keep/block filters on a feed's items: regular expressions from room members, made safe.

A pattern is refused unless it is short (`MAX_PATTERN_CHARS`), compiles, and has none of
the shapes that make a backtracking matcher take exponential or high-polynomial time:
backreferences, a repeat inside a repeat (``(a+)+``), a repeated alternation (``(a|ab)*``)
and more than `MAX_UNBOUNDED` unbounded repeats. What passes is then timed against probe
texts made of the pattern's own characters; slower than `PROBE_BUDGET_S` is refused too.
Items are matched on a bounded text (`MATCH_CHARS`: title, categories and the start of the
summary), so the cost of one match has a fixed ceiling.
"""

from __future__ import annotations

import importlib
import re
import time
from dataclasses import dataclass
from typing import Any

# The sre parse tree: Python's own reading of the pattern, so the check sees what runs.
# (re._parser since 3.11; the old public names warn, and typeshed has no stubs for these.)
sre_parse: Any = importlib.import_module("re._parser")
sre_constants: Any = importlib.import_module("re._constants")

MAX_PATTERN_CHARS = 200
MAX_UNBOUNDED = 2
MATCH_CHARS = 300
PROBE_BUDGET_S = 0.05


class UnsafePattern(ValueError):
    """A filter pattern that is refused; the message says why and what to do."""


@dataclass(frozen=True)
class ItemFilter:
    mode: str  # keep | block
    pattern: str
    compiled: re.Pattern[str]


_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT}
_POSSESSIVE = getattr(sre_constants, "POSSESSIVE_REPEAT", None)
if _POSSESSIVE is not None:
    _REPEATS.add(_POSSESSIVE)


def _walk(tree: Any, inside_repeat: bool, counts: dict[str, int]) -> None:
    for op, av in tree:
        if op in (sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS):
            raise UnsafePattern("backreferences (\\1, (?P=name)) are not allowed in filters")
        if op in _REPEATS:
            _low, high, sub = av
            repeats = high is sre_constants.MAXREPEAT or high > 1
            if repeats and inside_repeat:
                raise UnsafePattern(
                    "a repeat inside a repeat, like (a+)+ or (\\w*)*, can take forever to "
                    "match; write it without the outer repeat"
                )
            if high is sre_constants.MAXREPEAT:
                counts["unbounded"] += 1
            _walk(sub, inside_repeat or repeats, counts)
        elif op is sre_constants.BRANCH:
            if inside_repeat:
                raise UnsafePattern(
                    "a repeated alternation, like (a|ab)*, can take forever to match; "
                    "use a character class like [ab]* or drop the repeat"
                )
            for branch in av[1]:
                _walk(branch, inside_repeat, counts)
        elif op is sre_constants.SUBPATTERN:
            _walk(av[-1], inside_repeat, counts)
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            _walk(av[1], inside_repeat, counts)
        elif op is getattr(sre_constants, "ATOMIC_GROUP", None):
            _walk(av, inside_repeat, counts)


def _probes(pattern: str) -> list[str]:
    letters = sorted({c for c in pattern if c.isalnum() or c in " -_.,:"}) or ["a"]
    return [c * MATCH_CHARS for c in letters[:8]] + [
        "".join(letters) * (MATCH_CHARS // len(letters) + 1),
        "a1 " * (MATCH_CHARS // 3),
    ]


def compile_filter(mode: str, pattern: str) -> ItemFilter:
    """A checked filter; `UnsafePattern` saying why when refused. CPU-bound for up to a
    few dozen milliseconds (the probe): call it off the event loop."""
    if mode not in ("keep", "block"):
        raise UnsafePattern(f"expected keep or block, got {mode!r}")
    if not pattern:
        raise UnsafePattern("the pattern is empty")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise UnsafePattern(
            f"the pattern is {len(pattern)} characters long; keep it under {MAX_PATTERN_CHARS}"
        )
    try:
        tree = sre_parse.parse(pattern, re.IGNORECASE)
        compiled = re.compile(pattern, re.IGNORECASE)
    except (re.error, RecursionError, OverflowError) as e:
        raise UnsafePattern(f"not a valid regular expression: {e}") from None
    counts = {"unbounded": 0}
    _walk(tree, False, counts)
    if counts["unbounded"] > MAX_UNBOUNDED:
        raise UnsafePattern(
            f"the pattern has {counts['unbounded']} open-ended repeats (*, +, {{n,}}); "
            f"at most {MAX_UNBOUNDED} are allowed. A filter matches anywhere in the text, "
            "so a leading or trailing .* is not needed"
        )
    for probe in _probes(pattern):
        started = time.perf_counter()
        compiled.search(probe)
        if time.perf_counter() - started > PROBE_BUDGET_S:
            raise UnsafePattern("the pattern is too slow to match; make it simpler")
    return ItemFilter(mode, pattern, compiled)


def match_text(title: str, categories: tuple[str, ...], summary_text: str) -> str:
    """The bounded text filters are matched against."""
    return " ".join([title, *categories, summary_text])[:MATCH_CHARS]


def passes(filters: tuple[ItemFilter, ...], text: str) -> bool:
    """Kept when it matches every keep filter and no block filter."""
    for f in filters:
        found = f.compiled.search(text) is not None
        if found != (f.mode == "keep"):
            return False
    return True
