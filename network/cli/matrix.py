"""``libhub matrix new-device``: forget the bot's Matrix device, for a lost crypto store;
``libhub matrix lift-ratelimit``: exempt the bot account from the homeserver's rate limits."""

from __future__ import annotations

import argparse
import os

from network.cli.common import Subparsers, add, config, open_storage, out, run_async
from network.errors import ConfigError

ADMIN_TOKEN_ENV = "SYNAPSE_ADMIN_TOKEN"


def cmd_matrix_new_device(args: argparse.Namespace) -> int:
    """Forget the bot's Matrix session: the next run logs in as a new device with a new
    crypto store (needed when the old store was lost). Old encrypted messages stay
    unreadable to the bot; the new device is cross-signed on its first start."""
    settings = config(args)

    async def main() -> int:
        storage = await open_storage(settings)
        try:
            old = await storage.get_state("matrix.device_id")
            await storage.set_state("matrix.token", "")
            await storage.set_state("matrix.device_id", "")
        finally:
            await storage.close()
        out.print(
            f"forgot device {old or '(none)'}: the next `libhub run` logs in as a new device "
            f"with the password in ${settings.matrix.password_env or 'the password variable'}"
        )
        return 0

    return run_async(main())


def cmd_lift_ratelimit(args: argparse.Namespace) -> int:
    """Call Synapse's ``override_ratelimit`` for the bot account with an admin's token read
    from the environment, then clear the stored rate-limit notice."""
    settings = config(args)
    token = os.environ.get(args.admin_token_env, "")
    if not token:
        raise ConfigError(
            f"set ${args.admin_token_env} to the access token of a homeserver admin (it is used "
            "for this one request and never stored)"
        )
    user_id = args.user or settings.matrix.user_id
    from network.matrix.admin import lift_ratelimit
    from network.matrix.ratelimit import clear_notice

    async def main() -> int:
        override = await lift_ratelimit(settings.matrix.homeserver, user_id, token)
        storage = await open_storage(settings)
        try:
            await clear_notice(storage)
        finally:
            await storage.close()
        out.print(
            f"{user_id} is no longer rate-limited on {settings.matrix.homeserver} "
            f"(override: messages_per_second {override.get('messages_per_second', 0)}, "
            f"burst_count {override.get('burst_count', 0)}); a running libhub sends at full "
            "speed from its next message"
        )
        return 0

    return run_async(main())


def register(sub: Subparsers) -> None:
    group = sub.add_parser("matrix", help="manage the bot's Matrix account")
    matrix_sub = group.add_subparsers(dest="matrix_command", metavar="SUBCOMMAND", required=True)
    lift = add(
        matrix_sub,
        "lift-ratelimit",
        cmd_lift_ratelimit,
        "exempt the bot account from the homeserver's rate limits (Synapse admin API)",
    )
    lift.add_argument(
        "--admin-token-env",
        default=ADMIN_TOKEN_ENV,
        help=f"the variable holding a homeserver admin's access token (default {ADMIN_TOKEN_ENV})",
    )
    lift.add_argument("--user", default="", help="the account to exempt (default matrix.user_id)")
    add(
        matrix_sub,
        "new-device",
        cmd_matrix_new_device,
        "forget the bot's Matrix device so the next run logs in as a new one",
    )
