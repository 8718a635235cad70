"""``libhub admin token``: a one-time login link for the staff dashboard."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from network.cli.common import Subparsers, add, config, out


def _cmd_admin_token(args: argparse.Namespace) -> int:
    from network.web.dashboard import issue_login_token, login_url

    settings = config(args)
    token = issue_login_token(settings, args.name, now=datetime.now(UTC))
    hours = settings.dashboard.token_ttl.total_seconds() / 3600
    out.print(
        f"Dashboard login for {args.name} (works once, for {hours:g} h; keep it private):",
        highlight=False,
    )
    print(login_url(settings, token))
    return 0


def register(sub: Subparsers) -> None:
    admin = sub.add_parser("admin", help="staff dashboard access")
    asub = admin.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)
    token = add(
        asub, "token", _cmd_admin_token, "print a one-time login link for the staff dashboard"
    )
    token.add_argument("--name", default="coordinator", help="who the login is for (shown)")
