"""Hostile requests to the real web app: form bodies that cannot be decoded are a 400 on every
POST route (before CSRF, without a login), ids in paths are ASCII digits that fit the
database, every answer carries the security headers, and none of it logs a traceback."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from network.devtools.mailsink import MailSink
from network.service import Service
from network.web.app import make_web_app
from network.web.dashboard import issue_login_token
from tests.digestkit import SECRET, SECRET_ENV, START, Clock, item, make_service, publish
from tests.digestkit import settings_for as digest_settings

MULTIPART = "multipart/form-data; boundary=x"
PART = b'--x\r\nContent-Disposition: form-data; name="csrf"\r\n'
# (Content-Type, body): each is refused by aiohttp's form parser with a different error.
MALFORMED = [
    ("application/x-www-form-urlencoded", b"csrf=\xff\xfe&address=a%40b.example"),
    ("application/x-www-form-urlencoded; charset=no-such-charset", b"csrf=x"),
    ("application/x-www-form-urlencoded; charset=utf-16", b"csrf=xy"),  # odd length
    ("multipart/form-data", b"--x\r\n"),  # no boundary parameter
    (MULTIPART, b"no boundary in here"),
    (MULTIPART, PART + b"\r\n\xff\xfe\r\n--x--\r\n"),
    (MULTIPART, PART + b"Content-Type: text/plain; charset=no-such\r\n\r\nz\r\n--x--\r\n"),
    (MULTIPART, PART + b"Content-Transfer-Encoding: bogus\r\n\r\nz\r\n--x--\r\n"),
    (MULTIPART, b"--x\r\nNot a header line\r\n\r\nz\r\n--x--\r\n"),
    (MULTIPART, b"--x\r\nContent-Disposition: form-data\r\n\r\nz\r\n--x--\r\n"),  # no name
    (MULTIPART, PART + b"Content-Type: multipart/mixed; boundary=y\r\n\r\n--y--\r\n--x--\r\n"),
    (MULTIPART, PART + b"\r\nthe body ends in the middle"),
]


@dataclass
class Env:
    service: Service
    app: web.Application
    client: TestClient  # type: ignore[type-arg]
    tracebacks: list[logging.LogRecord]


@pytest.fixture
async def env(
    tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Env]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    extra = '[assistance]\ncoordinators = ["@coord:localhost"]\n[dashboard]\nmatrix_login = true\n'
    service = await make_service(digest_settings(tmp_path, sink.url, extra=extra), Clock(START))
    tracebacks: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info or record.levelno >= logging.ERROR:
                tracebacks.append(record)

    catch = Catch()
    logging.getLogger().addHandler(catch)
    app = make_web_app(service.web)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Env(service, app, client, tracebacks)
    finally:
        await client.close()
        logging.getLogger().removeHandler(catch)
        await service.close()


def post_paths(app: web.Application) -> list[str]:
    """A path for every POST route of the app, its placeholders filled in."""
    paths = []
    for route in app.router.routes():
        if route.method == "POST" and route.resource is not None:
            paths.append(re.sub(r"\{[^}]*\}", "1", route.resource.canonical))
    return sorted(set(paths))


async def test_every_post_route_refuses_an_unreadable_body_with_400(env: Env) -> None:
    paths = post_paths(env.app)
    # The subscription pages, the dashboard's login forms, logout and retry, at least.
    assert {"/subscribe", "/manage", "/dashboard/login", "/dashboard/login/matrix"} <= set(paths)
    assert "/dashboard/outbox/1/retry" in paths and "/unsubscribe/1" in paths
    # Webhooks check their token before they read (and bound) a body of their own; their
    # refusals are in tests/test_webhooks.py.
    paths = [p for p in paths if not p.startswith("/hooks/")]
    for path in paths:
        for content_type, body in MALFORMED:
            resp = await env.client.post(path, data=body, headers={"Content-Type": content_type})
            text = await resp.text()
            assert resp.status == 400, (path, content_type, body, resp.status, text[:200])
            assert "could not be read" in text
            assert resp.headers["Cache-Control"] == "no-store"
    assert env.tracebacks == []


async def test_ids_in_paths_are_ascii_digits_that_fit_the_database(env: Env) -> None:
    svc, client = env.service, env.client
    await publish(svc, "webinars", [item("w", "Smart spaces 101", "webinar", start=START)], START)
    assert (await client.get("/webinars/1.ics")).status == 200
    for path in (
        "/webinars/99999999999999999999.ics",  # more than SQLite's 64 bits
        "/webinars/9999999999999999999.ics",  # 19 digits, still more than 2**63 - 1
        "/webinars/\u0661.ics",  # ARABIC-INDIC DIGIT ONE: int() reads it as 1
        "/webinars/\uff11.ics",  # FULLWIDTH DIGIT ONE
    ):
        resp = await client.get(path)
        assert resp.status == 404, (path, resp.status)
    # The dashboard's retry button, logged in with a valid form.
    token = issue_login_token(svc.settings, "ana", now=datetime.now(UTC))
    login = await client.post("/dashboard/login", data={"token": token}, allow_redirects=False)
    assert login.status == 303
    page = await (await client.get("/dashboard/outbox")).text()
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf, "the outbox page has a form token"
    for row in ("9999999999999999999", "99999999999999999999", "\u0661"):
        resp = await client.post(
            f"/dashboard/outbox/{row}/retry", data={"csrf": csrf.group(1)}, allow_redirects=False
        )
        assert resp.status == 404, (row, resp.status)
    assert env.tracebacks == []


async def test_every_answer_carries_the_security_headers(env: Env) -> None:
    for path, referrer in (
        ("/subscribe", "no-referrer"),
        ("/unsubscribe/not-a-token", "no-referrer"),
        ("/dashboard/login", "same-origin"),
        ("/dashboard", "same-origin"),  # a redirect to the login page
        ("/no/such/page", "no-referrer"),
    ):
        resp = await env.client.get(path, allow_redirects=False)
        assert resp.headers["Referrer-Policy"] == referrer, path
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"], path
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
        assert resp.headers["X-Frame-Options"] == "DENY", path
