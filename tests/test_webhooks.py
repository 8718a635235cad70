"""Inbound webhooks against a running web server, with the deliveries going out through a
real apprise ``json://`` notification to a local aiohttp receiver: a wrong token, an
oversized body and a flood get clear refusals, and every accepted post is delivered once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from network.devtools.devserver import free_port
from network.service import Service
from network.settings.model import parse_settings
from network.tokens import hook_of_token, hook_token, hook_token_valid
from tests.channelkit import JsonReceiver, json_receiver
from tests.test_delivery_kit import drain

SECRET = "webhook-test-secret-0123456789"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[JsonReceiver, int]]:
    async with json_receiver() as running:
        yield running


def _settings(tmp_path: Path, receiver_port: int, web_port: int, extra: str = "") -> Any:
    return parse_settings(
        f"""
[database]
path = "{tmp_path / "libhub.db"}"
[matrix]
homeserver = "http://127.0.0.1:{free_port()}"
user_id = "@bot:localhost"
password_env = "UNUSED_PW"
[web]
listen = "127.0.0.1:{web_port}"
public_url = "http://127.0.0.1:{web_port}"
[channels.social]
urls = ["json://127.0.0.1:{receiver_port}/social"]
[[hooks]]
id = "events"
title = "Library events"
kind = "webinar"
channels = ["social"]
max_kib = 2
rate_limit = 5
rate_window = "1h"
[hooks.template]
title = "{{{{ payload.name }}}}"
link = "{{{{ payload.url }}}}"
summary = "{{{{ payload.where }}}}"
[[routes]]
feeds = ["hook:events"]
channels = ["social"]
channel_template = "{{{{ title }}}} {{{{ link }}}}"
{extra}
""",
        base_dir=tmp_path,
    )


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBHUB_SECRET", SECRET)


async def test_webhook_refuses_clearly_and_delivers_each_accepted_post_once(
    tmp_path: Path, receiver: tuple[JsonReceiver, int], secret_env: None
) -> None:
    got, receiver_port = receiver
    port = free_port()
    settings = _settings(tmp_path, receiver_port, port)
    service = await Service.create(settings)
    base = f"http://127.0.0.1:{port}/hooks/"
    good = base + hook_token(SECRET.encode(), "events")
    try:
        await service.start_web()
        async with aiohttp.ClientSession() as http:
            # A token signed with another secret: 403, nothing stored.
            forged = base + hook_token(b"another-secret-0123456789", "events")
            async with http.post(forged, json={"name": "Forged"}) as resp:
                assert resp.status == 403
                assert "not signed by this service" in (await resp.json())["message"]
            # A hook that does not exist: 404.
            async with http.post(base + "nosuch.abc", json={"name": "x"}) as resp:
                assert resp.status == 404
                assert "No webhook has this address" in (await resp.json())["message"]
            # Too large: 413, said in KiB.
            async with http.post(good, json={"name": "Big", "where": "x" * 4000}) as resp:
                assert resp.status == 413
                assert "larger than this webhook accepts (2 KiB)" in (await resp.json())["message"]
            # Not a JSON object: 400, and not counted against the limit.
            async with http.post(
                good, data=b"[1,2]", headers={"Content-Type": "application/json"}
            ) as resp:
                assert resp.status == 400
                assert "not a JSON object" in (await resp.json())["message"]
            # Form fields that are not UTF-8: 400, saying so.
            async with http.post(
                good,
                data=b"name=\xff\xfe",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as resp:
                assert resp.status == 400
                assert "form fields could not be read" in (await resp.json())["message"]
            # A flood: 5 per hour are accepted (one of them as form fields), the rest 429.
            statuses = []
            for n in range(8):
                event = {"name": f"Story time {n}", "url": f"https://lib.example.org/e/{n}"}
                if n == 2:
                    async with http.post(good, data=event) as resp:
                        statuses.append(resp.status)
                        continue
                async with http.post(good, json=event) as resp:
                    statuses.append(resp.status)
                    body = await resp.json()
                    if resp.status == 429:
                        assert "at most 5 per 1 h" in body["message"]
                        assert "nothing was stored" in body["message"]
                        assert int(resp.headers["Retry-After"]) > 0
            assert statuses == [202] * 5 + [429] * 3
        await drain(service)
        counts = await service.storage.outbox_counts()
        items = await service.storage.item_count()
    finally:
        await service.close()
    assert items == 5
    assert counts["sent"] == 5 and counts["pending"] == 0 and counts["failed"] == 0
    assert sorted(m["message"] for m in got.payloads) == sorted(
        f"Story time {n} https://lib.example.org/e/{n}" for n in range(5)
    )


async def test_a_repeated_post_is_stored_once(
    tmp_path: Path, receiver: tuple[JsonReceiver, int], secret_env: None
) -> None:
    got, receiver_port = receiver
    port = free_port()
    service = await Service.create(_settings(tmp_path, receiver_port, port))
    good = f"http://127.0.0.1:{port}/hooks/" + hook_token(SECRET.encode(), "events")
    try:
        await service.start_web()
        async with aiohttp.ClientSession() as http:
            event = {"id": "evt-7", "name": "Maker night", "url": "https://lib.example.org/m"}
            async with http.post(good, json=event) as first:
                assert first.status == 202
            async with http.post(good, json=event) as again:
                assert again.status == 200
                assert "Already received" in (await again.json())["message"]
            async with http.post(good, json={"url": "https://lib.example.org/x"}) as untitled:
                assert untitled.status == 422
                assert "gives no title" in (await untitled.json())["message"]
        await drain(service)
    finally:
        await service.close()
    assert [m["message"] for m in got.payloads] == ["Maker night https://lib.example.org/m"]


def test_hook_tokens_name_their_hook_and_survive_a_secret_rotation() -> None:
    old, new = b"the-old-secret-0123456789", b"the-new-secret-0123456789"
    token = hook_token(old, "events")
    assert hook_of_token(token) == "events"
    assert hook_token(old, "events") == token  # the same URL every time it is printed
    assert not hook_token_valid(new, token)
    assert hook_token_valid(new, token, previous=[old])
    other = hook_token(old, "forms")
    # One hook's signature does not open another hook.
    forged = "forms." + token.partition(".")[2]
    assert forged != other and not hook_token_valid(old, forged)
    assert not hook_token_valid(old, token[:-2] + "é")
    assert hook_of_token("no-dot") is None and hook_of_token("UPPER.x") is None
