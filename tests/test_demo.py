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
from email import message_from_bytes
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

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
        assert proc.returncode is None, "the demo stopped on its own"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 60)
        await reader
    assert code == 0, "".join(printed)[-3000:]
    assert "stopping" in "".join(printed)
    assert "Traceback" not in "".join(printed)


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
    from network.devtools import demo

    # Never readable by others, not even between creating it and a later chmod.
    monkeypatch.setattr(Path, "chmod", lambda *_a, **_k: None)
    old = os.umask(0o022)
    try:
        password, secret = demo.demo_secrets(tmp_path / "demo")
    finally:
        os.umask(old)
    assert (tmp_path / "demo" / "secrets").stat().st_mode & 0o777 == 0o600
    assert demo.demo_secrets(tmp_path / "demo") == (password, secret)  # made once
