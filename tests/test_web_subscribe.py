"""The subscription pages over HTTP (aiohttp client, real server and SMTP): CSRF, nothing
changes on GET, RFC 8058 one-click unsubscribe, the same answer for every address, link
errors, and the headers that keep token URLs from leaking."""

from __future__ import annotations

import asyncio
import re
import zoneinfo
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from network.devtools.mailsink import MailSink
from network.service import Service
from network.tokens import TokenInvalid, sign_token, verify_token
from network.web.app import make_web_app
from tests.digestkit import (
    SECRET,
    SECRET_ENV,
    START,
    Clock,
    DigestEnv,
    item,
    link_to,
    make_service,
    parts,
    publish,
    settings_for,
    subscriber,
)
from tests.waiting import eventually


@dataclass
class Env:
    service: Service
    clock: Clock
    sink: MailSink
    client: TestClient  # type: ignore[type-arg]


@pytest.fixture
async def env(digest_env: DigestEnv) -> AsyncIterator[Env]:
    d = digest_env
    client = TestClient(TestServer(make_web_app(d.service.web), host="127.0.0.1"))
    await client.start_server()
    try:
        yield Env(d.service, d.clock, d.sink, client)
    finally:
        await client.close()


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "no CSRF field in the form"
    return m.group(1)


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


FORM = {"address": "ana@example.org", "topics": "kind:webinar", "frequency": "weekly",
        "tz": "Europe/Berlin", "hour": "9", "weekday": "4"}  # fmt: skip


async def test_pages_send_headers_that_keep_links_private(env: Env) -> None:
    resp = await env.client.get("/subscribe")
    assert resp.status == 200
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("libhub_csrf=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "<script" not in await resp.text()


async def test_form_without_a_valid_csrf_token_changes_nothing(env: Env) -> None:
    client = env.client
    resp = await client.post("/subscribe", data=FORM)  # no cookie, no token
    assert resp.status == 403 and "This form has expired" in await resp.text()
    await client.get("/subscribe")  # now the browser has the cookie
    resp = await client.post("/subscribe", data={**FORM, "csrf": "0" * 64})
    assert resp.status == 403
    assert env.sink.received == []


async def test_subscribe_then_confirm_only_by_the_button(env: Env) -> None:
    client, svc = env.client, env.service
    token = csrf_of(await (await client.get("/subscribe")).text())
    resp = await client.post("/subscribe", data={**FORM, "csrf": token}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/subscribe/sent"
    [msg] = env.sink.to("ana@example.org")
    confirm = path_of(link_to(parts(msg)[0], "confirm"))
    # Opening the link (a person, or a scanner) shows what is being confirmed...
    page = await client.get(confirm)
    html = await page.text()
    assert page.status == 200 and "Confirm my subscription" in html
    assert "weekly digest every Friday at 9:00\u202fAM (Europe/Berlin) of: Webinars" in html
    assert await svc.storage.subscriber_by_key("ana@example.org") is None
    # ...a forged POST does nothing, the button subscribes, and only once.
    assert (await client.post(confirm)).status == 403
    done = await client.post(confirm, data={"csrf": csrf_of(html)})
    assert done.status == 200 and "You are subscribed" in await done.text()
    sub = await svc.storage.subscriber_by_key("ana@example.org")
    assert sub is not None and sub.status == "active"
    again = await client.post(confirm, data={"csrf": csrf_of(html)})
    assert "This link was already used" in await again.text()


async def test_same_answer_whether_or_not_the_address_is_subscribed(env: Env) -> None:
    client, svc = env.client, env.service
    await subscriber(svc, "known@example.org", now=env.clock.now)
    answers = []
    for address in ["known@example.org", "new@example.org"] + ["limited@example.org"] * 4:
        token = csrf_of(await (await client.get("/subscribe")).text())
        resp = await client.post("/subscribe", data={**FORM, "address": address, "csrf": token})
        answers.append((resp.status, await resp.text()))
    assert len(set(answers)) == 1 and answers[0][0] == 200
    assert "Check your inbox" in answers[0][1]
    manage_answers = []
    for address in ["known@example.org", "nobody@example.org"]:
        token = csrf_of(await (await client.get("/manage")).text())
        resp = await client.post("/manage", data={"address": address, "csrf": token})
        manage_answers.append(await resp.text())
    assert manage_answers[0] == manage_answers[1]
    await svc.postman.idle()
    assert link_to(parts(env.sink.to("known@example.org")[-1])[0], "manage")
    assert env.sink.to("nobody@example.org") == []


async def test_manage_link_answer_waits_for_neither_the_lookup_nor_the_mail(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, svc = env.client, env.service
    await subscriber(svc, "known@example.org", now=env.clock.now)
    # Who is subscribed is looked up behind a gate that stays shut until both answers are
    # in: an answer that waited for the lookup (or the mail after it) would never come, and
    # one that did not wait cannot depend on whether the address is subscribed.
    gate = asyncio.Event()
    real_lookup = svc.storage.subscriber_by_key

    async def gated_lookup(key: str) -> Any:
        await gate.wait()
        return await real_lookup(key)

    monkeypatch.setattr(svc.storage, "subscriber_by_key", gated_lookup)
    answers = []
    for address in ["known@example.org", "nobody@example.org"]:
        token = csrf_of(await (await client.get("/manage")).text())
        post = asyncio.create_task(client.post("/manage", data={"address": address,
                                                                "csrf": token}))  # fmt: skip
        await eventually(post.done, what=f"the answer for {address}")
        resp = post.result()
        answers.append((resp.status, await resp.text()))
    assert answers[0] == answers[1] and answers[0][0] == 200
    assert env.sink.received == []
    gate.set()
    await eventually(lambda: env.sink.to("known@example.org"), what="the manage link")
    await svc.postman.idle()
    assert env.sink.to("nobody@example.org") == []


async def test_form_pages_list_time_zones_without_scanning_tzdata_each_time(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "Central Time (Chicago)" in await (await env.client.get("/subscribe")).text()
    scans = 0
    real = zoneinfo.ZoneInfo

    def counted(key: str) -> zoneinfo.ZoneInfo:
        nonlocal scans
        scans += 1
        return real(key)

    # The likely zones and their clocks are worked out once per process, not once per page.
    monkeypatch.setattr("network.subscriptions.zones.ZoneInfo", counted)
    for _ in range(3):
        resp = await env.client.get("/subscribe")
        assert "Central Time (Chicago)" in await resp.text()
    assert scans <= 8 * 3  # one per label shown, no scan of the whole database


async def test_form_errors_are_shown_next_to_their_fields(env: Env) -> None:
    client = env.client
    token = csrf_of(await (await client.get("/subscribe")).text())
    resp = await client.post("/subscribe", data={**FORM, "address": "ana@", "csrf": token})
    html = await resp.text()
    assert resp.status == 400
    assert 'role="alert"' in html and 'href="#address"' in html
    assert 'id="address" value="ana@"' in html and 'aria-invalid="true"' in html
    assert "is not an email address like you@example.org" in html
    resp = await client.post("/subscribe", data={"address": "ana@example.org", "csrf": token,
                                                 "frequency": "daily"})  # fmt: skip
    html = await resp.text()
    assert resp.status == 400 and "Choose at least one topic." in html
    assert (
        'value="daily" id="frequency-daily" aria-describedby="frequency-daily-hint" checked' in html
    )
    assert env.sink.received == []


async def test_one_click_unsubscribe_by_post_and_get_only_shows_a_page(env: Env) -> None:
    svc, clock, client = env.service, env.clock, env.client
    sub = await subscriber(svc, "reader@example.org", frequency="immediate", now=clock.now)
    await publish(svc, "news", [item("a", "Alpha")], clock.now)
    await svc.digests.run_once()
    [msg] = env.sink.to("reader@example.org")
    https = msg["List-Unsubscribe"].split(",")[0].strip(" <>")
    target = path_of(https)
    # Link scanners GET the link: that shows a button and changes nothing.
    for _ in range(2):
        page = await client.get(target)
        assert page.status == 200 and "Stop all email" in await page.text()
    assert (await svc.storage.subscriber(sub.id)).status == "active"  # type: ignore[union-attr]
    # The mail provider's POST: no cookie, no CSRF token, RFC 8058 body.
    async with TestClient(TestServer(make_web_app(svc.web), host="127.0.0.1")) as provider:
        resp = await provider.post(
            target,
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert resp.status == 200
    assert (await svc.storage.subscriber(sub.id)).status == "unsubscribed"  # type: ignore[union-attr]
    await publish(svc, "news", [item("b", "Beta")], clock.now)
    await svc.digests.run_once()
    assert len(env.sink.to("reader@example.org")) == 1


async def test_unsubscribe_post_without_one_click_needs_the_form_token(env: Env) -> None:
    svc, client = env.service, env.client
    sub = await subscriber(svc, "reader@example.org", now=env.clock.now)
    url = path_of(svc.subscriptions.links.unsubscribe(sub.id, env.clock.now))
    assert (await client.post(url, data={"List-Unsubscribe": "Yes"})).status == 403
    assert (await svc.storage.subscriber(sub.id)).status == "active"  # type: ignore[union-attr]
    page = await (await client.get(url)).text()
    done = await client.post(url, data={"csrf": csrf_of(page)})
    assert "You are unsubscribed" in await done.text()
    assert (await svc.storage.subscriber(sub.id)).status == "unsubscribed"  # type: ignore[union-attr]


async def test_links_signed_before_the_secret_changed_still_unsubscribe(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, clock = env.service, env.clock
    sub = await subscriber(svc, "reader@example.org", now=clock.now)
    mailed = path_of(svc.subscriptions.links.unsubscribe(sub.id, clock.now))
    # The coordinator rotates the secret: the old value moves to web.previous_secrets_env.
    monkeypatch.setenv(SECRET_ENV, "a-brand-new-secret-0123456789abcdef")
    monkeypatch.setenv("LIBHUB_TEST_OLD_SECRET", SECRET)
    base = settings_for(tmp_path, env.sink.url)
    settings = replace(
        base, web=replace(base.web, previous_secrets_env=("LIBHUB_TEST_OLD_SECRET",))
    )
    rotated = await make_service(settings, clock)
    try:
        forged = sign_token(
            b"a-secret-nobody-here-ever-had-0123",
            purpose="unsubscribe",
            subject=f"sub:{sub.id}",
            now=clock.now,
            ttl=timedelta(days=30),
        )
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        one_click = "List-Unsubscribe=One-Click"
        async with TestClient(TestServer(make_web_app(rotated.web), host="127.0.0.1")) as client:
            refused = await client.post(f"/unsubscribe/{forged}", data=one_click, headers=form)
            assert refused.status == 404
            assert (await rotated.storage.subscriber(sub.id)).status == "active"  # type: ignore[union-attr]
            done = await client.post(mailed, data=one_click, headers=form)
            assert done.status == 200 and "You are unsubscribed" in await done.text()
        assert (await rotated.storage.subscriber(sub.id)).status == "unsubscribed"  # type: ignore[union-attr]
        # New links are signed with the new secret only.
        fresh = rotated.subscriptions.links.manage(sub.id, clock.now).rsplit("/", 1)[1]
        with pytest.raises(TokenInvalid):
            verify_token(SECRET.encode(), fresh, purpose="manage", now=clock.now)
    finally:
        await rotated.close()


async def test_broken_and_expired_links_explain_what_to_do(env: Env) -> None:
    svc, client = env.service, env.client
    sub = await subscriber(svc, "reader@example.org", now=env.clock.now)
    manage = path_of(svc.subscriptions.links.manage(sub.id, env.clock.now))
    cut = await client.get(manage[:-6])
    assert cut.status == 404 and "may have been cut off" in await cut.text()
    wrong_purpose = manage.replace("/manage/", "/unsubscribe/")
    assert (await client.get(wrong_purpose)).status == 404
    env.clock.advance(days=366)
    expired = await client.get(manage)
    assert expired.status == 410 and "Get a new manage link" in await expired.text()


async def test_without_a_secret_pages_say_subscriptions_are_not_set_up(
    tmp_path: Path,
    sink: MailSink,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    service = await make_service(settings_for(tmp_path, sink.url), Clock(START))
    try:
        async with TestClient(TestServer(make_web_app(service.web), host="127.0.0.1")) as client:
            resp = await client.get("/subscribe")
            assert resp.status == 503
            assert "Subscriptions are not available" in await resp.text()
            # The log names the page, never the token in its address.
            token = "eyJ2IjoxLCJwIjoidW5zdWJzY3JpYmUifQ.c2VjcmV0LXRva2Vu"
            resp = await client.get(f"/unsubscribe/{token}")
            assert resp.status == 503
        assert "subscription page /unsubscribe/{token} unavailable" in caplog.text
        assert token not in caplog.text
    finally:
        await service.close()
