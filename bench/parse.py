"""Benchmark: does the expat fast path (feeds.fastparse) earn its keep on real feeds?

    .venv/bin/python bench/parse.py [--rounds 5] [--min-time 0.2]

Parses every document of tests/data/feeds (real captures: namespaces, gzip bodies unpacked
as the fetcher would, latin-1 and windows-1251, BOMs, malformed XML) with `parse_feed` as
the service does (fast path on) and with feedparser alone (`fast_path=False`), in the same
process and run, alternating, best of N rounds. Prints per-document times, which documents
the fast path takes, and the ratio feedparser-alone / with-fast-path over the whole corpus
(each document weighted once) and over the documents it takes.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from feeds.encoding import base_url, feedparser_headers, prepare_bytes
from feeds.errors import NotAFeedError
from feeds.parse import _fast as fast_stage  # the same check parse_feed makes
from feeds.parse import parse_feed

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "feeds"


def load_corpus() -> list[tuple[str, bytes, dict[str, str]]]:
    docs = []
    for path in sorted(CORPUS.iterdir()):
        if path.suffix not in (".xml", ".gz"):
            continue
        body = path.read_bytes()
        if path.suffix == ".gz":
            body = gzip.decompress(body)  # what the fetcher hands the parser
        kind = "atom" if path.name.startswith("atom") else "rss"
        headers = {"content-type": f"application/{kind}+xml"}
        try:
            parse_feed(body, url=f"https://feeds.example.org/{path.name}", headers=headers)
        except NotAFeedError:
            continue  # an HTML page: both paths stop at the same early check
        docs.append((path.name, body, headers))
    return docs


def per_call(fn: Callable[[], object], min_time: float) -> float:
    """Seconds per call, timing enough calls to fill ``min_time``."""
    n, spent = 1, 0.0
    while True:
        began = time.perf_counter()
        for _ in range(n):
            fn()
        spent = time.perf_counter() - began
        if spent >= min_time:
            return spent / n
        n *= 2


def takes_fast_path(body: bytes, headers: dict[str, str], url: str) -> bool:
    warnings: list[str] = []
    data, had_bom = prepare_bytes(body, warnings)
    fp_headers = feedparser_headers(data, base_url(url, data), headers, had_bom, warnings)
    return fast_stage(data, fp_headers, url) is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per measurement")
    args = ap.parse_args()
    docs = load_corpus()
    rows = []
    for name, body, headers in docs:
        url = f"https://feeds.example.org/{name}"
        fast_times, slow_times = [], []
        for _ in range(args.rounds):
            with_fast = partial(parse_feed, body, url=url, headers=headers)
            slow = partial(parse_feed, body, url=url, headers=headers, fast_path=False)
            fast_times.append(per_call(with_fast, args.min_time))
            slow_times.append(per_call(slow, args.min_time))
        rows.append((name, len(body), takes_fast_path(body, headers, url),
                     min(fast_times), min(slow_times)))  # fmt: skip

    print(f"{'document':<72} {'kB':>6} {'fast?':>5} {'with fast path':>14} {'feedparser':>10}")
    for name, size, fast, t_fast, t_slow in rows:
        print(
            f"{name[:72]:<72} {size / 1024:6.0f} {'yes' if fast else 'no':>5} "
            f"{t_fast * 1000:11.2f} ms {t_slow * 1000:7.2f} ms"
        )
    total_fast = sum(r[3] for r in rows)
    total_slow = sum(r[4] for r in rows)
    taken = [r for r in rows if r[2]]
    print()
    print(f"documents: {len(rows)}; the fast path takes {len(taken)} of them")
    print(
        f"whole corpus, one parse of each: {total_fast * 1000:.1f} ms with the fast path, "
        f"{total_slow * 1000:.1f} ms feedparser alone: ratio {total_slow / total_fast:.2f}x"
    )
    if taken:
        ratio = sum(r[4] for r in taken) / sum(r[3] for r in taken)
        median = statistics.median(r[4] / r[3] for r in taken)
        print(f"documents it takes: ratio {ratio:.2f}x (median per document {median:.2f}x)")


if __name__ == "__main__":
    main()
