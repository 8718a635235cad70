"""The ``libhub`` command line: builds the parser from the command table and runs one
subcommand.

Each command module (run, feeds, cohorts, ...) owns its subcommands and adds them with its
``register``; `COMMANDS` lists them in the order ``libhub --help`` shows them. Errors a
person can fix (bad config, unreachable database) are printed as one line starting with
``libhub:`` and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from network.cli import (
    admin,
    assistance,
    cohorts,
    database,
    demo,
    digests,
    feeds,
    hooks,
    matrix,
    service,
)
from network.cli.common import EXIT_CONFIG, Handler, Subparsers, err
from network.errors import ConfigError, LibhubError

# (what the module holds, its register function), in help order.
COMMANDS: tuple[tuple[str, Callable[[Subparsers], None]], ...] = (
    ("run, check-config, status", service.register),
    ("matrix new-device, matrix lift-ratelimit", matrix.register),
    ("demo", demo.register),
    ("feeds", feeds.register),
    ("hooks", hooks.register),
    ("cohorts", cohorts.register),
    ("admin", admin.register),
    ("ask, kb", assistance.register),
    ("subscribers, digest", digests.register),
    ("db migrate-to", database.register),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="libhub",
        description="libhub: feeds to Matrix rooms, email digests and an assistance bot "
        "for a network of public libraries.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _, register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_CONFIG
    try:
        return handler(args)
    except ConfigError as e:
        err.print(f"libhub: config error: {e}", highlight=False, soft_wrap=True)
        return EXIT_CONFIG
    except LibhubError as e:
        err.print(f"libhub: {e}", highlight=False, soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
