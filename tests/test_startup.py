"""Starting `libhub run`: a start-up failure ends the process with one clear line and a
non-zero status (a supervisor restarts it, a person reads what to fix); `check-config`
refuses what `run` would fail on; one database serves one running service; a file that is
not libhub's database is refused, never written to. Real processes, real SQLite files."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from network.devtools.devserver import free_port
from network.errors import ConfigError, NotOurDatabase, StorageError
from network.settings.model import parse_settings
from network.storage import Storage
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[1]
# Generous: a start-up failure ends in about a second; a hang would run into this.
EXIT_WITHIN = 60


def config_text(tmp_path: Path, port: int, *, extra: str = "", db: str = "libhub.db") -> str:
    return f"""
[database]
path = "{tmp_path / db}"
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@bot:example.org"
password_env = "STARTUP_TEST_PW"
[web]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[[feeds]]
id = "news"
url = "http://127.0.0.1:9/news.xml"
{extra}
"""


def write_config(tmp_path: Path, *, extra: str = "", name: str = "libhub.toml") -> Path:
    path = tmp_path / name
    path.write_text(config_text(tmp_path, free_port(), extra=extra))
    return path


def libhub(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STARTUP_TEST_PW": "unused", "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "network.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=EXIT_WITHIN,
    )


def last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# -- check-config and run agree ----------------------------------------------------------------

BAD_CONFIGS = {
    "a digest topic naming a removed feed": (
        '[digests]\ntopics = ["feed:gone"]',
        "digests.topics[0]: unknown feed 'gone'",
    ),
    "max_body_mib of 0": ("[polling]\nmax_body_mib = 0", "polling.max_body_mib"),
    "negative max_body_mib": ("[polling]\nmax_body_mib = -1.5", "polling.max_body_mib"),
    "max_body_mib nan": ("[polling]\nmax_body_mib = nan", "polling.max_body_mib"),
    "max_body_mib inf": ("[polling]\nmax_body_mib = inf", "polling.max_body_mib"),
}


@pytest.mark.parametrize("extra,key", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_check_config_refuses_what_run_cannot_start_with(
    tmp_path: Path, extra: str, key: str
) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_settings(config_text(tmp_path, free_port(), extra=extra), base_dir=tmp_path)


@pytest.mark.parametrize(
    "extra,key",
    [BAD_CONFIGS["a digest topic naming a removed feed"], BAD_CONFIGS["max_body_mib nan"]],
    ids=["removed feed", "nan"],
)
def test_run_and_check_config_exit_with_the_same_one_line_message(
    tmp_path: Path, extra: str, key: str
) -> None:
    config = write_config(tmp_path, extra=extra)
    checked = libhub("check-config", "-c", str(config))
    ran = libhub("run", "-c", str(config))
    for result in (checked, ran):
        assert result.returncode == 2, result.stderr
        assert key in last_line(result.stderr)
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "libhub.db").exists()  # refused before the database is touched


def test_run_exits_with_a_clear_line_when_its_web_port_is_taken(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    listen = parse_settings(config.read_text(), base_dir=tmp_path).web
    with socket.socket() as taken:
        taken.bind((listen.host, listen.port))
        taken.listen()
        result = libhub("run", "-c", str(config))
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on {listen.listen}" in last_line(result.stderr)
    assert "Traceback" not in result.stderr


# -- one service per database ----------------------------------------------------------------


async def test_a_second_service_on_the_same_database_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    web = parse_settings(config.read_text(), base_dir=tmp_path).web
    env = {**os.environ, "STARTUP_TEST_PW": "unused"}
    log = (tmp_path / "first.log").open("wb")
    first = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "network.cli", "run", "-c", str(config),
        cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
    )  # fmt: skip
    try:

        async def serving() -> bool:
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"http://{web.listen}/healthz") as r:
                        return r.status in (200, 503)
            except aiohttp.ClientError:
                return False

        await eventually(serving, within=EXIT_WITHIN, what="the first service's web server")
        # Another config file naming the same database, on another port.
        other = tmp_path / "other.toml"
        other.write_text(config_text(tmp_path, free_port()))
        second = await asyncio.to_thread(libhub, "run", "-c", str(other))
        assert second.returncode == 2, second.stderr
        assert "another libhub service is already running on" in last_line(second.stderr)
        assert "Traceback" not in second.stderr
        assert first.returncode is None  # the first one goes on
        lock = tmp_path / "libhub.db.lock"
        assert lock.stat().st_mode & 0o077 == 0  # owner-only
    finally:
        first.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(first.wait(), EXIT_WITHIN)
        log.close()
    assert code == 0, (tmp_path / "first.log").read_text()


# -- what is at database.path -----------------------------------------------------------------


def foreign_database(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO photos (name) VALUES ('harbour.jpg')")
    conn.close()


async def test_another_programs_sqlite_file_is_refused_and_left_unchanged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "libhub.db"
    foreign_database(path)
    before = path.read_bytes()
    with pytest.raises(NotOurDatabase, match="belongs to another program"):
        await Storage.open(path)
    assert path.read_bytes() == before
    result = libhub("status", "-c", str(write_config(tmp_path)))
    assert result.returncode == 2, result.stderr
    assert "belongs to another program" in last_line(result.stderr)
    assert path.read_bytes() == before


async def test_an_empty_new_file_becomes_a_libhub_database(tmp_path: Path) -> None:
    path = tmp_path / "libhub.db"
    path.touch()
    async with await Storage.open(path) as storage:
        assert await storage.item_count() == 0
    # ... and is libhub's from then on.
    async with await Storage.open(path) as storage:
        assert await storage.item_count() == 0


@pytest.mark.parametrize("what", ["not a database", "a folder"])
def test_a_database_path_that_cannot_be_used_is_one_line_not_a_traceback(
    tmp_path: Path, what: str
) -> None:
    path = tmp_path / "libhub.db"
    if what == "a folder":
        path.mkdir()
    else:
        path.write_bytes(b"these are minutes of the board meeting, not a database\n" * 100)
    for command in ("status", "run"):
        result = libhub(command, "-c", str(write_config(tmp_path)))
        assert result.returncode == 2, result.stderr
        line = last_line(result.stderr)
        assert line.startswith("libhub: cannot ") and "database" in line, result.stderr
        assert "Traceback" not in result.stderr


async def test_storage_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "libhub.db"
    path.write_bytes(b"x" * 4096)
    with pytest.raises(StorageError, match=str(path)):
        await Storage.open(path)
