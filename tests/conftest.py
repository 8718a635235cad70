"""Shared fixtures: one real Synapse for the session, Matrix readers, a real SMTP server
and a Matrix-less service for the digest and subscription tests."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from network.devtools.mailsink import MailSink
from tests.digestkit import SECRET, SECRET_ENV, START, Clock, DigestEnv, make_service, settings_for
from tests.matrixkit import MatrixReader
from tests.pgkit import PgServer, start_postgres, stop_postgres

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


@pytest.fixture
def sink() -> Iterator[MailSink]:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""
    s = MailSink()
    s.start()
    yield s
    s.stop()


@pytest.fixture
async def digest_env(
    tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[DigestEnv]:
    """The service of `tests.digestkit.config_text`, its clock at START, mailing `sink`."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    clock = Clock(START)
    settings = settings_for(tmp_path, sink.url)
    service = await make_service(settings, clock)
    try:
        yield DigestEnv(service, clock, sink, settings)
    finally:
        await service.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """A real PostgreSQL server for the session (Debian's package; see tests/pgkit.py)."""
    server = start_postgres()
    try:
        yield server
    finally:
        stop_postgres(server)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a storage test's database lives: an SQLite file, or an empty PostgreSQL
    database; tests that take it run once on each backend."""
    if request.param == "sqlite":
        return tmp_path / "libhub.db"
    server: PgServer = request.getfixturevalue("postgres")
    return await server.new_database()
