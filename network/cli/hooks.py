"""``libhub hooks``: the URL of each inbound webhook, to give to the calendar or form tool.

The token in the URL is signed with ``web.secret_env``; the URLs stay the same until the
secret changes. Anyone with a URL can post to that hook (within its size and rate limits),
so hand each one only to the tool that uses it.
"""

from __future__ import annotations

import argparse

from network.cli.common import Subparsers, add, config, out
from network.errors import ConfigError
from network.settings.model import secret
from network.tokens import MIN_SECRET_BYTES, hook_token


def _cmd_hooks(args: argparse.Namespace) -> int:
    settings = config(args)
    value = secret(settings.web.secret_env)
    if not value or len(value.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"webhook URLs are signed with a secret: set {settings.web.secret_env} to at least "
            f"{MIN_SECRET_BYTES} random bytes",
            path="web.secret_env",
        )
    if not settings.hooks:
        out.print("No webhooks configured: add a [[hooks]] table (config/example.toml).")
        return 0
    base = settings.web.public_url.rstrip("/")
    for hook in settings.hooks:
        if args.id and hook.id != args.id:
            continue
        out.print(f"{hook.id} ({hook.title or hook.id}, keep it private):", highlight=False)
        print(f"{base}/hooks/{hook_token(value.encode(), hook.id)}")
    return 0


def register(sub: Subparsers) -> None:
    cmd = add(sub, "hooks", _cmd_hooks, "print the URL of each inbound webhook")
    cmd.add_argument("--id", default="", help="only this hook")
