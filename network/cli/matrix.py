"""``libhub matrix-new-device``: forget the bot's Matrix device, for a lost crypto store."""

from __future__ import annotations

import argparse

from network.cli.common import Subparsers, add, config, out, run_async


def cmd_matrix_new_device(args: argparse.Namespace) -> int:
    """Forget the bot's Matrix session: the next run logs in as a new device with a new
    crypto store (needed when the old store was lost). Old encrypted messages stay
    unreadable to the bot; the new device is cross-signed on its first start."""
    settings = config(args)
    from network.storage import Storage

    async def main() -> int:
        storage = await Storage.open(
            settings.database_location, password=settings.database_password
        )
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


def register(sub: Subparsers) -> None:
    add(
        sub,
        "matrix-new-device",
        cmd_matrix_new_device,
        "forget the bot's Matrix device so the next run logs in as a new one",
    )
