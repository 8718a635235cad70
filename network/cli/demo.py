"""``libhub demo``: a self-contained demo on loopback (the only command that uses
`network.devtools`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from network.cli.common import Subparsers, add, run_async, setup_logging


def cmd_demo(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from network.devtools.demo import run_demo

    return run_async(run_demo(Path(args.data_dir)))


def register(sub: Subparsers) -> None:
    demo = add(sub, "demo", cmd_demo, "run a self-contained demo on loopback", config=False)
    demo.add_argument("--data-dir", default="var/demo", help="where the demo keeps its state")
