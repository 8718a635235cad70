"""Shared fixtures: one real Synapse for the session, Matrix readers, feed publishers."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from network.devserver import DevHomeserver, DevUser
from tests.matrixkit import MatrixReader

_users = itertools.count(1)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
async def synapse(session_dir: Path) -> AsyncIterator[DevHomeserver]:
    """A real Synapse homeserver on a free loopback port, shared by the whole session."""
    server = DevHomeserver(session_dir / "synapse")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="session")
async def admin(synapse: DevHomeserver) -> DevUser:
    return await synapse.register("admin", "admin-password", admin=True)


async def new_user(server: DevHomeserver, prefix: str, admin: DevUser | None = None) -> DevUser:
    """A fresh account (unique per test); rate limits lifted when ``admin`` is given."""
    user = await server.register(f"{prefix}{next(_users)}", f"{prefix}-password")
    if admin is not None:
        await server.lift_ratelimit(user.user_id, admin.access_token)
    return user


@pytest.fixture
async def reader(synapse: DevHomeserver, admin: DevUser) -> AsyncIterator[MatrixReader]:
    """A second Matrix account (not the bot) that creates rooms and reads them."""
    user = await new_user(synapse, "reader", admin)
    async with MatrixReader(synapse.url, user) as r:
        yield r


@pytest.fixture
def bot_env() -> Iterator[dict[str, str]]:
    """Environment variables the service reads its secrets from, restored afterwards."""
    saved = dict(os.environ)
    try:
        yield os.environ  # type: ignore[misc]
    finally:
        os.environ.clear()
        os.environ.update(saved)
