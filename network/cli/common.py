"""What every ``libhub`` command module shares: the consoles, exit codes, loading the
config, logging set-up, running a coroutine, and `add` to put a subcommand on a parser."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from network.settings.model import Settings, load_settings

if TYPE_CHECKING:
    from network.storage import Storage

EXIT_CONFIG = 2
EXIT_NOT_A_FEED = 3

err = Console(stderr=True)
out = Console()

Handler = Callable[[argparse.Namespace], int]
# The ``add_subparsers()`` action of a parser; argparse does not export its type.
Subparsers = Any


def add(
    parent: Subparsers, name: str, handler: Handler, help_text: str, *, config: bool = True
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` to ``parent``; with ``config``, it takes ``-c/--config``."""
    p: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
    if config:
        p.add_argument("-c", "--config", required=True, type=Path, help="the TOML config file")
    p.set_defaults(handler=handler)
    return p


def config(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    # With config/demo.toml, the secrets `libhub demo` made are used (a value set wins).
    from network.devtools.demosecrets import use_demo_secrets

    use_demo_secrets(
        args.config,
        settings.database_path,
        password_env=settings.matrix.password_env,
        secret_env=settings.web.secret_env,
    )
    return settings


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Libraries that log request URLs at INFO could leak tokens in query strings, and at
    # DEBUG aiosqlite logs SQL parameters (the stored access token) and aiosmtplib the
    # AUTH exchange: they stay at WARNING even with --verbose.
    for noisy in ("nio", "aiohttp.access", "apprise", "peewee", "mail.log", "aiosqlite",
                  "aiosmtplib"):  # fmt: skip
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_async(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


async def open_storage(settings: Settings) -> Storage:
    """The network's database as the settings name it (an SQLite file, or PostgreSQL by
    ``database.url`` with its password from the environment)."""
    from network.storage import Storage

    return await Storage.open(settings.database_location, password=settings.database_password)
