"""The database file and its WAL companions are readable by the service's user only: they
hold the bot's access token and every subscriber's address."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from network.storage import Storage


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: files get whatever mode their creator asks for."""
    before = os.umask(0)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
async def test_new_database_and_its_wal_files_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "libhub.db"
    db = await Storage.open(path)
    try:
        await db.set_state("written", "yes")  # a write makes SQLite create -wal and -shm
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        await db.close()


@pytest.mark.usefixtures("open_umask")
async def test_database_made_world_readable_before_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = await Storage.open(path)
    await db.close()
    path.chmod(0o644)  # as an earlier libhub created it under the usual umask
    db = await Storage.open(path)
    try:
        await db.set_state("written", "yes")
        assert mode(path) == 0o600
        assert mode(Path(f"{path}-wal")) == 0o600
    finally:
        await db.close()
