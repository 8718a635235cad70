"""The demo's secrets: made once per data directory, kept owner-only beside its database.

`libhub demo` makes the bot's password and the link-signing secret in ``DATA_DIR/secrets``.
A ``libhub`` command run with the demo's own config (``-c config/demo.toml``) reads them from
there when their environment variables are unset, so ``libhub admin token -c
config/demo.toml`` works in a second terminal without copying a secret by hand.
Kept apart from demo.py so the command line can use it without importing the demo.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.toml"
SECRETS_FILE = "secrets"


def demo_secrets(data_dir: Path) -> tuple[str, str]:
    """The bot's password and the link-signing secret, made once per data dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    secret_file = data_dir / SECRETS_FILE
    if not secret_file.exists():
        # Created owner-only: a write-then-chmod would leave it readable for a moment.
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{secrets.token_urlsafe(16)}\n{secrets.token_urlsafe(32)}\n")
    bot_password, web_secret = secret_file.read_text(encoding="utf-8").split()
    return bot_password, web_secret


def use_demo_secrets(
    config: Path, database_path: Path, *, password_env: str, secret_env: str
) -> bool:
    """With the demo's config, fill the demo's secrets into those of the variables that are
    unset (a value set by hand wins). True when they were found."""
    if Path(config).resolve() != DEMO_CONFIG:
        return False
    secret_file = Path(database_path).parent / SECRETS_FILE
    try:
        bot_password, web_secret = secret_file.read_text(encoding="utf-8").split()
    except (OSError, ValueError):  # the demo has not run yet with this data dir
        return False
    for name, value in ((password_env, bot_password), (secret_env, web_secret)):
        if name and not os.environ.get(name):
            os.environ[name] = value
    return True
