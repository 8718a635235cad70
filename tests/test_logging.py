"""`libhub run --verbose` logs libhub's own debug lines, never a secret: the libraries that
log SQL parameters (the stored access token) or the SMTP AUTH exchange stay quiet."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from network.cli.common import setup_logging
from network.storage import Storage

QUIET = ("nio", "aiohttp.access", "apprise", "aiosqlite", "aiosmtplib", "mail.log")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.level, {name: logging.getLogger(name).level for name in QUIET}
    yield
    root.setLevel(saved[0])
    for name, level in saved[1].items():
        logging.getLogger(name).setLevel(level)


async def test_verbose_logging_keeps_the_access_token_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, restore_logging: None
) -> None:
    setup_logging(verbose=True)
    caplog.set_level(logging.DEBUG)
    storage = await Storage.open(tmp_path / "db.sqlite")
    try:
        await storage.set_state("matrix.token", "syt_very_secret_token")
        assert await storage.get_state("matrix.token") == "syt_very_secret_token"
    finally:
        await storage.close()
    logging.getLogger("network.test").debug("libhub's own debug lines still show")
    assert "libhub's own debug lines still show" in caplog.text
    assert "syt_very_secret_token" not in caplog.text
    for name in QUIET:
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
