"""`libhub demo` as `make demo` runs it: a real Synapse, the sample feeds and a mail sink.

The sample items reach the announcements room (read by the demo librarian over the
client-server API) and the sample subscriber's mailbox, the printed dashboard link logs
in, and Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Awaitable
from email import message_from_bytes
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from network.devtools.demo import DEMO_ROOMS
from tests.waiting import eventually

pytestmark = pytest.mark.synapse

ENTRY = "import sys; from network.cli.main import main; sys.exit(main())"


async def _room_bodies(hs: str, token: str, alias: str) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{hs}/_matrix/client/v3/directory/room/{quote(alias)}") as r:
            room_id = (await r.json())["room_id"]
        url = f"{hs}/_matrix/client/v3/rooms/{quote(room_id)}/messages"
        async with http.get(url, params={"dir": "b", "limit": "50"}) as r:
            events = (await r.json())["chunk"]
    return [str(e["content"].get("body", "")) for e in events if e["type"] == "m.room.message"]


async def _room_id(hs: str, token: str, alias: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{hs}/_matrix/client/v3/directory/room/{quote(alias)}") as r:
            if r.status != 200:
                return ""
            return str((await r.json())["room_id"])


async def _state(hs: str, token: str, alias: str) -> list[dict[str, Any]]:
    room_id = await _room_id(hs, token, alias)
    if not room_id:
        return []
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{hs}/_matrix/client/v3/rooms/{quote(room_id)}/state") as r:
            if r.status != 200:
                return []
            events: list[dict[str, Any]] = await r.json()
            return events


async def _space_children(hs: str, token: str, alias: str) -> set[str]:
    """The space's children, as a member sees them (joining it first, as Element would)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{hs}/_matrix/client/v3/join/{quote(alias)}", json={}) as r:
            if r.status != 200:  # not made yet
                return set()
    return {
        str(e["state_key"])
        for e in await _state(hs, token, alias)
        if e["type"] == "m.space.child" and e["content"].get("via")
    }


async def _members(hs: str, token: str, alias: str) -> set[str]:
    return {
        str(e["state_key"])
        for e in await _state(hs, token, alias)
        if e["type"] == "m.room.member" and e["content"].get("membership") == "join"
    }


async def _covers(found: Awaitable[set[str]], wanted: set[str]) -> bool:
    return wanted <= await found


async def _login(hs: str, user: str, password: str) -> str:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{hs}/_matrix/client/v3/login", json={**body, "password": password}
        ) as r:
            assert r.status == 200, await r.text()
            return str((await r.json())["access_token"])


async def test_demo_posts_mails_and_stops_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    env.pop("LIBHUB_DEMO_SECRET", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "demo", "--data-dir", str(tmp_path / "demo"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    printed: list[str] = []

    async def read() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            printed.append(line.decode("utf-8", "replace"))

    reader = asyncio.create_task(read())
    try:
        await eventually(
            lambda: any("libhub demo is running" in line for line in printed),
            within=120,
            what="the demo to start",
        )
        text = "".join(printed)
        hs = re.search(r"Homeserver\s+(http://\S+)", text)
        login = re.search(r"Dashboard\s+(http://\S+)", text)
        assert hs and login, text
        token = await _login(hs.group(1), "librarian", "librarian-demo")

        async def posted() -> bool:
            bodies = await _room_bodies(hs.group(1), token, "#announcements:localhost")
            return any("Hotspot lending pilot" in b for b in bodies)

        await eventually(posted, within=120, what="a sample item in #announcements")
        mail_dir = tmp_path / "demo" / "mail"
        files = await eventually(
            lambda: sorted(mail_dir.glob("*.eml")) if mail_dir.exists() else [],
            within=120,
            what="mail for the sample subscriber",
        )
        msg = message_from_bytes(files[0].read_bytes())
        assert msg["To"] == "reader@libhub.localhost"
        assert msg["List-Unsubscribe"]

        # The dashboard link printed at start opens the login form with its token filled in.
        async with aiohttp.ClientSession() as http:
            async with http.get(login.group(1)) as r:
                assert r.status == 200
                page = await r.text()
            assert login.group(1).split("token=", 1)[1] in page  # filled in, one click
            assert "<form" in page

            # The links in the rooms lead to pages the demo serves.
            bodies = await _room_bodies(hs.group(1), token, "#announcements:localhost")
            links = re.findall(r"http://127\.0\.0\.1:\d+/news/[\w-]+", "\n".join(bodies))
            assert links, bodies
            for url in links:
                async with http.get(url) as r:
                    assert r.status == 200, url

            # The printed command gives a new dashboard link without setting anything by hand.
            again = re.search(r"a new link: (.+)\)", text)
            assert again, text
            command = again.group(1).replace("libhub ", f"{sys.executable} -m network.cli ", 1)
            shell_env = {k: v for k, v in env.items() if k != "LIBHUB_DEMO_SECRET"}
            made = await asyncio.create_subprocess_shell(
                command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=shell_env,
            )  # fmt: skip
            out, errors = await made.communicate()
            assert made.returncode == 0, errors.decode()
            fresh = re.search(r"(http://\S+token=\S+)", out.decode())
            assert fresh, out.decode()
            async with http.get(fresh.group(1)) as r:
                assert r.status == 200

        # The second team member logs in with what was printed.
        assert re.search(r"Team member\s+user helper\s+password helper-demo", text), text
        helper = await _login(hs.group(1), "helper", "helper-demo")
        assert "@helper:localhost" in await _members(
            hs.group(1), helper, "#need-assistance:localhost"
        )

        # The service made the network's space, with every demo room as a child.
        async def children() -> set[str]:
            return await _space_children(hs.group(1), token, "#prairie-state:localhost")

        rooms = {await _room_id(hs.group(1), token, f"#{a}:localhost") for a in DEMO_ROOMS}
        await eventually(lambda: _covers(children(), rooms), within=120, what="the demo's space")
        assert proc.returncode is None, "the demo stopped on its own"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 60)
        await reader
    assert code == 0, "".join(printed)[-3000:]
    assert "stopping" in "".join(printed)
    text = "".join(printed)
    assert "Traceback" not in text, text[text.find("Traceback") - 500 :][:4000]


async def test_a_failure_while_starting_stops_what_already_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from network.devtools import demo
    from network.devtools.devserver import DevHomeserver
    from network.devtools.mailsink import MailSink

    events: list[str] = []

    async def start(self: DevHomeserver, timeout: float = 60) -> None:  # noqa: ASYNC109
        events.append("synapse started")

    async def stop(self: DevHomeserver) -> None:
        events.append("synapse stopped")

    def sink_fails(self: MailSink) -> None:
        raise OSError("mail sink port in use")

    monkeypatch.setattr(DevHomeserver, "start", start)
    monkeypatch.setattr(DevHomeserver, "stop", stop)
    monkeypatch.setattr(MailSink, "start", sink_fails)
    monkeypatch.setenv("LIBHUB_DEMO_BOT_PASSWORD", "restored-after-the-test")
    monkeypatch.setenv("LIBHUB_DEMO_SECRET", "restored-after-the-test-0123456789")
    with pytest.raises(OSError, match="mail sink port in use"):
        await demo.run_demo(tmp_path / "demo")
    assert events == ["synapse started", "synapse stopped"]


def test_demo_secrets_file_is_created_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from network.devtools import demosecrets as demo

    # Never readable by others, not even between creating it and a later chmod.
    monkeypatch.setattr(Path, "chmod", lambda *_a, **_k: None)
    old = os.umask(0o022)
    try:
        password, secret = demo.demo_secrets(tmp_path / "demo")
    finally:
        os.umask(old)
    assert (tmp_path / "demo" / "secrets").stat().st_mode & 0o777 == 0o600
    assert demo.demo_secrets(tmp_path / "demo") == (password, secret)  # made once


def test_admin_token_with_the_demo_config_uses_the_secret_the_demo_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`libhub admin token -c config/demo.toml` in a second terminal, nothing set by hand."""
    from network.cli.main import main
    from network.devtools import demosecrets
    from network.settings.model import load_settings
    from network.web.dashboard import login_url

    # A copy of the demo's layout: config/demo.toml, and var/demo/ where its database is.
    config = tmp_path / "config" / "demo.toml"
    config.parent.mkdir()
    config.write_text(demosecrets.DEMO_CONFIG.read_text())
    monkeypatch.setattr(demosecrets, "DEMO_CONFIG", config)
    monkeypatch.delenv("LIBHUB_DEMO_SECRET", raising=False)
    monkeypatch.delenv("LIBHUB_DEMO_BOT_PASSWORD", raising=False)
    settings = load_settings(config)
    _, web_secret = demosecrets.demo_secrets(settings.database_path.parent)  # as the demo does

    assert main(["admin", "token", "-c", str(config)]) == 0
    printed = capsys.readouterr().out
    link = re.search(r"(http://\S+token=\S+)", printed)
    assert link, printed
    assert link.group(1).startswith(login_url(settings, ""))
    assert os.environ["LIBHUB_DEMO_SECRET"] == web_secret

    # Another config naming the same variable is not the demo's: its secret is not guessed.
    other = tmp_path / "config" / "mine.toml"
    other.write_text(config.read_text())
    monkeypatch.delenv("LIBHUB_DEMO_SECRET")
    assert main(["admin", "token", "-c", str(other)]) == 2
    assert "LIBHUB_DEMO_SECRET" in capsys.readouterr().err


def test_the_demo_needs_nothing_from_the_test_or_benchmark_toolchain() -> None:
    """`make demo` installs only `.[demo]`: nothing the demo imports may come from `.[test]`
    or `.[bench]` (checked by refusing those imports in a fresh interpreter)."""
    import subprocess

    guard = (
        "import sys\n"
        "BLOCKED = {'pytest', '_pytest', 'pytest_aiohttp', 'pytest_asyncio', 'pytest_timeout',\n"
        "           'playwright', 'mypy', 'ruff', 'reader', 'sgmllib'}\n"
        "class Guard:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'the demo imports {name}, which .[demo] lacks')\n"
        "sys.meta_path.insert(0, Guard())\n"
        "import network.cli.main  # every command module, through the command table\n"
        "import network.devtools.demo, network.devtools.demofeeds, network.devtools.mailsink\n"
        "import network.service, bots.assistant, feeds.parsepool\n"
        "from network.devtools.demo import feed_site, FEEDS_DIR\n"
        "feed_site(FEEDS_DIR)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", guard], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
