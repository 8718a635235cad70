"""The staff dashboard over HTTP (no homeserver needed): login tokens work once and expire,
the session cookie is HttpOnly/SameSite=Strict, unauthenticated requests are refused,
forms need the session's CSRF token and a same-origin POST, and the pages show the data."""

from __future__ import annotations

import dataclasses
import html
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from network.devtools.devserver import free_port
from network.service import Service
from network.settings.model import parse_settings
from network.storage import ItemInput, Target
from network.tokens import sign_token, verify_token
from network.web.app import make_web_app
from network.web.dashboard import issue_login_token, login_url

SECRET = "dashboard-test-secret-0123456789"


@pytest.fixture
async def service(tmp_path: Path, bot_env: dict[str, str]) -> AsyncIterator[Service]:
    bot_env["LIBHUB_SECRET"] = SECRET
    port = free_port()
    settings = parse_settings(
        f"""
[database]
path = "{tmp_path / "libhub.db"}"
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@bot:example.org"
password_env = "DASH_TEST_PW"
[web]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[[feeds]]
id = "news"
title = "Network news"
url = "http://127.0.0.1:9/news.xml"
[[cohorts]]
id = "smart"
name = "Smart Spaces"
room = "#smart:example.org"
members = ["@ana:example.org", "lee@ignacio.example.org"]
[[cohorts.libraries]]
name = "Ignacio Community Library"
members = ["@raj:example.org"]
""",
        base_dir=tmp_path,
    )
    svc = await Service.create(settings)
    await svc.poller.prepare()
    await svc.start_web()
    try:
        yield svc
    finally:
        await svc.close()


def base(service: Service) -> str:
    return f"http://{service.settings.web.listen}"


async def failed_row(service: Service) -> int:
    item = ItemInput(
        key="k1", kind="news", title="Hotspot lending expands", link="https://example.org/a",
        published=None, author=None, categories=(), summary_html="", enclosures=(),
        event_start=None, content_hash="h1",
    )  # fmt: skip
    now = datetime.now(UTC)
    await service.storage.store_items(
        "news", [item], targets=lambda _i: [Target("matrix", "!gone:example.org")],
        post=lambda _i: True, edit_window=timedelta(days=1), now=now,
    )  # fmt: skip
    [row] = await service.storage.claim_due(now)
    await service.storage.mark_failed(row.id, error="cannot post to !gone:example.org: forbidden")
    return row.id


async def login(
    http: aiohttp.ClientSession, service: Service, token: str
) -> aiohttp.ClientResponse:
    async with http.get(login_url(service.settings, token)) as page:
        assert page.status == 200
        assert 'value="' + token + '"' in await page.text()  # prefilled, not yet used
    resp = await http.post(
        f"{base(service)}/dashboard/login", data={"token": token}, allow_redirects=False
    )
    resp.release()
    return resp


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m is not None
    return m.group(1)


async def test_unauthenticated_requests_are_refused(service: Service) -> None:
    row_id = await failed_row(service)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base(service)}/dashboard", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/dashboard/login"
        async with http.get(f"{base(service)}/dashboard/outbox", allow_redirects=False) as resp:
            assert resp.status == 303
        async with http.post(f"{base(service)}/dashboard/outbox/{row_id}/retry") as resp:
            assert resp.status == 401
        http.cookie_jar.update_cookies({"libhub_dashboard": "forged.token"})
        async with http.get(f"{base(service)}/dashboard", allow_redirects=False) as resp:
            assert resp.status == 303
    assert [r.id for r in await service.storage.failed_rows()] == [row_id]


async def test_login_once_then_session_cookie_and_csrf_protected_retry(service: Service) -> None:
    row_id = await failed_row(service)
    token = issue_login_token(service.settings, "dana", now=datetime.now(UTC))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        resp = await login(http, service, token)
        assert resp.status == 303 and resp.headers["Location"] == "/dashboard"
        cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie

        async with http.get(f"{base(service)}/dashboard") as page:
            html = await page.text()
            assert page.headers["Cache-Control"] == "no-store"
        assert "Logged in as dana" in html
        assert "Network news" in html and "Smart Spaces" in html
        assert "Ignacio Community Library" in html and "lee@ignacio.example.org" in html
        assert "<script" not in html
        # Cases, subscribers and digests come from the other parts' storage.
        assert "No open cases." in html and "0 active subscribers." in html
        assert "No digests sent yet." in html

        async with http.get(f"{base(service)}/dashboard/outbox") as page:
            html = await page.text()
        assert "Hotspot lending expands" in html and "forbidden" in html
        csrf = csrf_of(html)
        retry = f"{base(service)}/dashboard/outbox/{row_id}/retry"
        async with http.post(retry, data={"csrf": "0" * 64}, allow_redirects=False) as r:
            assert r.status == 403
        async with http.post(
            retry, data={"csrf": csrf}, headers={"Origin": "http://evil.example"},
            allow_redirects=False,
        ) as r:  # fmt: skip
            assert r.status == 403
        assert [r.id for r in await service.storage.failed_rows()] == [row_id]
        async with http.post(retry, data={"csrf": csrf}, allow_redirects=False) as r:
            assert (
                r.status == 303 and r.headers["Location"] == f"/dashboard/outbox?retried={row_id}"
            )
        assert await service.storage.failed_rows() == []
        assert (await service.storage.outbox_counts())["pending"] == 1

        [session_cookie] = [c.value for c in http.cookie_jar if c.key == "libhub_dashboard"]
        copied = {"Cookie": f"libhub_dashboard={session_cookie}"}
        async with aiohttp.ClientSession() as replay:  # the copy works while logged in
            async with replay.get(f"{base(service)}/dashboard", headers=copied) as r:
                assert r.status == 200 and "Logged in as dana" in await r.text()
        async with http.post(
            f"{base(service)}/dashboard/logout", data={"csrf": csrf}, allow_redirects=False
        ) as r:
            assert r.status == 303
        async with http.get(f"{base(service)}/dashboard", allow_redirects=False) as r:
            assert r.status == 303

    # A copy of the cookie taken before logging out is refused: the session has ended.
    async with aiohttp.ClientSession() as replay:
        async with replay.get(
            f"{base(service)}/dashboard", headers=copied, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/dashboard/login"
        async with replay.post(
            retry, data={"csrf": csrf}, headers=copied, allow_redirects=False
        ) as r:
            assert r.status == 401

    # The same link a second time: refused.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        again = await login(http, service, token)
        assert again.status == 401


async def test_expired_wrong_purpose_and_tampered_tokens_are_refused(service: Service) -> None:
    key = SECRET.encode()
    old = sign_token(
        key, purpose="dashboard", subject="x", now=datetime.now(UTC) - timedelta(days=3),
        ttl=timedelta(hours=1),
    )  # fmt: skip
    other = sign_token(
        key, purpose="unsubscribe", subject="1", now=datetime.now(UTC), ttl=timedelta(hours=1)
    )
    good = issue_login_token(service.settings, "x", now=datetime.now(UTC))
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for token, words in (
            (old, "expired"),
            (other, "not 'dashboard'"),
            (tampered, "not issued by this service"),
        ):
            async with http.post(
                f"{base(service)}/dashboard/login", data={"token": token}, allow_redirects=False
            ) as r:
                assert r.status == 401
                assert words in html.unescape(await r.text())
        assert len(http.cookie_jar) == 0


def test_admin_token_cli_prints_a_login_link(tmp_path: Path) -> None:
    config = tmp_path / "libhub.toml"
    config.write_text(
        '[matrix]\nhomeserver = "http://127.0.0.1:9"\nuser_id = "@b:x"\npassword_env = "PW"\n'
        '[web]\npublic_url = "https://libhub.example.org"\n'
    )
    code = "import sys; from network.cli.main import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, "admin", "token", "-c", str(config), "--name", "dana"]
    env = {k: v for k, v in os.environ.items() if k != "LIBHUB_SECRET"}
    ok = subprocess.run(args, capture_output=True, text=True, env={**env, "LIBHUB_SECRET": SECRET})
    assert ok.returncode == 0, ok.stderr
    link = ok.stdout.strip().splitlines()[-1]
    assert link.startswith("https://libhub.example.org/dashboard/login?token=")
    claims = verify_token(
        SECRET.encode(), link.split("token=", 1)[1], purpose="dashboard", now=datetime.now(UTC)
    )
    assert claims.subject == "dana"
    assert claims.expires_at - claims.issued_at == timedelta(hours=24)
    missing = subprocess.run(args, capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and missing.stdout == ""
    assert "set the environment variable LIBHUB_SECRET" in missing.stderr


async def test_origin_may_be_the_public_url_behind_a_proxy_that_rewrites_host(
    service: Service,
) -> None:
    row_id = await failed_row(service)
    settings = dataclasses.replace(
        service.settings,
        web=dataclasses.replace(service.settings.web, public_url="https://hub.example.org"),
    )
    server = TestServer(make_web_app(dataclasses.replace(service.web, settings=settings)))
    await server.start_server()
    upstream = f"http://127.0.0.1:{server.port}"
    token = issue_login_token(settings, "dana", now=datetime.now(UTC))
    # nginx passes Host as the upstream address; the browser's Origin is the public one.
    proxied = {"Host": "libhub-upstream:8080", "Origin": "https://hub.example.org"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            f"{upstream}/dashboard/login", data={"token": token}, headers=proxied,
            allow_redirects=False,
        ) as r:  # fmt: skip
            assert r.status == 303
            # The cookie is Secure (https public URL): send it by hand over the test's http.
            proxied["Cookie"] = f"libhub_dashboard={r.cookies['libhub_dashboard'].value}"
        async with http.get(f"{upstream}/dashboard/outbox", headers=proxied) as page:
            csrf = csrf_of(await page.text())
        retry = f"{upstream}/dashboard/outbox/{row_id}/retry"
        async with http.post(
            retry, data={"csrf": csrf}, headers={**proxied, "Origin": "https://evil.example"},
            allow_redirects=False,
        ) as r:  # fmt: skip
            assert r.status == 403
        async with http.post(
            retry, data={"csrf": csrf}, headers=proxied, allow_redirects=False
        ) as r:
            assert r.status == 303
    await server.close()
    assert await service.storage.failed_rows() == []


async def test_short_secret_is_a_clear_503_not_a_crash(
    service: Service, bot_env: dict[str, str]
) -> None:
    bot_env["LIBHUB_SECRET"] = "short"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{base(service)}/dashboard/login", data={"token": "a.b"}) as r:
            assert r.status == 503 and "at least 16" in await r.text()
        http.cookie_jar.update_cookies({"libhub_dashboard": "a.b"})
        async with http.get(f"{base(service)}/dashboard", allow_redirects=False) as r:
            assert r.status == 503 and "LIBHUB_SECRET" in await r.text()


async def test_overview_lists_every_instance_and_which_one_leads(service: Service) -> None:
    now = datetime.now(UTC)
    await service.leadership.beat()  # this service: it leads (SQLite)
    await service.storage.heartbeat(
        "other-host:4242:abcd", host="other-host", pid=4242, started_at=now, now=now
    )
    token = issue_login_token(service.settings, "dana", now=now)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await login(http, service, token)
        async with http.get(f"{base(service)}/dashboard") as page:
            text = html.unescape(await page.text())
    rows = re.findall(r"<tr><th scope=\"row\">(.*?)</tr>", text, re.S)
    mine = [r for r in rows if service.leadership.instance_id in r]
    other = [r for r in rows if "other-host:4242:abcd" in r]
    assert len(mine) == 1 and "Leader" in mine[0]
    assert len(other) == 1 and "Delivers only" in other[0] and "process 4242" in other[0]
    assert "2 libhub instances on this database" in text
