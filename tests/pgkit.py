"""A real PostgreSQL for the tests: Debian's server binaries, a cluster in a temporary
folder on a free loopback port, one fresh database per test that asks for one.

initdb refuses to run as root, so as root (CI) the cluster belongs to the ``postgres``
user Debian's package creates and every server command runs through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    folder: Path
    port: int
    user: str = "libhub"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    async def new_database(self) -> str:
        """An empty database of its own; returns its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def start_postgres() -> PgServer:
    """initdb + pg_ctl start in a new temporary folder; raises RuntimeError when the
    server binaries are missing (`apt-get install postgresql`)."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise RuntimeError("PostgreSQL is not installed: run 'apt-get install -y postgresql'")
    folder = Path(tempfile.mkdtemp(prefix="libhub-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    subprocess.run(
        _as_owner([initdb, "-D", str(data), "-U", "libhub", "-A", "trust", "-E", "UTF8",
                   "--locale=C", "--no-sync"]),
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_owner([pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-o", options,
                   "-w", "-t", "60", "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    return PgServer(folder, port)


def stop_postgres(server: PgServer) -> None:
    pg_ctl = pg_bin("pg_ctl")
    assert pg_ctl is not None
    subprocess.run(
        _as_owner([pg_ctl, "-D", str(server.folder / "data"), "-m", "immediate", "stop"]),
        capture_output=True,
    )
    shutil.rmtree(server.folder, ignore_errors=True)
