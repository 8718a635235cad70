"""Dashboard login with a coordinator's Matrix account, against a real Synapse: only
coordinators on the bot's homeserver get in, wrong passwords and outsiders are refused,
the Matrix session made to check the password is signed out again, attempts are limited,
and a homeserver that is down gets a clear page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from network.devtools.devserver import DevHomeserver, DevUser, free_port
from network.service import Service
from network.settings.model import parse_settings
from network.web.app import make_web_app
from network.web.dashboard import COOKIE
from network.web.dashboard_login import DEVICE_NAME, HomeserverTrouble, check_password
from tests.conftest import new_user

pytestmark = pytest.mark.synapse


def config(
    tmp: Path, homeserver: str, coordinators: list[str], *, matrix_login: bool = True
) -> str:
    port = free_port()
    listed = ", ".join(f'"{c}"' for c in coordinators)
    return f"""
[database]
path = "{tmp / "libhub.db"}"
[matrix]
homeserver = "{homeserver}"
user_id = "@libhub:localhost"
password_env = "UNUSED_BOT_PASSWORD"
[web]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[assistance]
coordinators = [{listed}]
[dashboard]
matrix_login = {"true" if matrix_login else "false"}
"""


@pytest.fixture
async def people(synapse: DevHomeserver, admin: DevUser) -> tuple[DevUser, DevUser]:
    return await new_user(synapse, "coord", admin), await new_user(synapse, "outsider", admin)


async def client_for(settings_text: str, tmp: Path) -> tuple[Service, TestClient]:  # type: ignore[type-arg]
    service = await Service.create(parse_settings(settings_text, base_dir=tmp))
    client = TestClient(TestServer(make_web_app(service.web), host="127.0.0.1"))
    await client.start_server()
    return service, client


@pytest.fixture
async def dash(
    synapse: DevHomeserver,
    people: tuple[DevUser, DevUser],
    tmp_path: Path,
    bot_env: dict[str, str],
) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    bot_env["LIBHUB_SECRET"] = "dashboard-matrix-login-secret-0123"
    coord, _ = people
    service, client = await client_for(config(tmp_path, synapse.url, [coord.user_id]), tmp_path)
    try:
        yield client
    finally:
        await client.close()
        await service.close()


async def login(client: TestClient, user_id: str, password: str) -> aiohttp.ClientResponse:  # type: ignore[type-arg]
    return await client.post(
        "/dashboard/login/matrix",
        data={"user_id": user_id, "password": password},
        allow_redirects=False,
    )


async def devices(synapse: DevHomeserver, user: DevUser) -> list[str]:
    headers = {"Authorization": f"Bearer {user.access_token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{synapse.url}/_matrix/client/v3/devices") as r:
            return [str(d.get("display_name")) for d in (await r.json())["devices"]]


async def test_a_coordinator_logs_in_with_their_matrix_password(
    dash: TestClient,  # type: ignore[type-arg]
    synapse: DevHomeserver,
    people: tuple[DevUser, DevUser],
) -> None:
    coord, _ = people
    page = await (await dash.get("/dashboard/login")).text()
    assert 'action="/dashboard/login/matrix"' in page and 'autocomplete="current-password"' in page

    wrong = await login(dash, coord.user_id, "not-the-password")
    assert wrong.status == 401
    assert "did not accept" in await wrong.text()
    assert COOKIE not in {c.key for c in dash.session.cookie_jar}

    ok = await login(dash, coord.user_id, coord.password)
    assert ok.status == 303 and ok.headers["Location"] == "/dashboard"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    overview = await dash.get("/dashboard")
    assert overview.status == 200 and "Log in to the staff dashboard" not in await overview.text()
    # The Matrix session made to check the password was signed out at once.
    assert DEVICE_NAME not in await devices(synapse, coord)


async def test_outsiders_and_other_servers_are_refused_before_any_password_check(
    dash: TestClient,  # type: ignore[type-arg]
    synapse: DevHomeserver,
    people: tuple[DevUser, DevUser],
) -> None:
    _, outsider = people
    refused = await login(dash, outsider.user_id, outsider.password)
    assert refused.status == 403
    assert "assistance.coordinators" in await refused.text()
    assert DEVICE_NAME not in await devices(synapse, outsider)  # the homeserver was not asked
    assert (await login(dash, "ana", "x")).status == 400
    assert (await dash.get("/dashboard", allow_redirects=False)).status in (302, 303)


async def test_attempts_are_limited_per_client(
    dash: TestClient,  # type: ignore[type-arg]
    people: tuple[DevUser, DevUser],
) -> None:
    coord, _ = people
    statuses = [(await login(dash, coord.user_id, f"guess-{i}")).status for i in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429
    # Even the right password waits now: the limit is on the client, not on a guess.
    assert (await login(dash, coord.user_id, coord.password)).status == 429


async def test_attempts_are_limited_per_account_across_clients(
    tmp_path: Path, bot_env: dict[str, str]
) -> None:
    bot_env["LIBHUB_SECRET"] = "dashboard-matrix-login-secret-0123"
    down = f"http://127.0.0.1:{free_port()}"  # each try is counted before the homeserver
    text = config(tmp_path, down, ["@coord:localhost"]).replace(
        "[web]\n", '[web]\ntrusted_proxies = ["127.0.0.1"]\n'
    )
    service, client = await client_for(text, tmp_path)

    async def attempt(user_id: str, via: str) -> int:
        resp = await client.post(
            "/dashboard/login/matrix",
            data={"user_id": user_id, "password": "guess"},
            headers={"X-Forwarded-For": via},
            allow_redirects=False,
        )
        return resp.status

    try:
        # Ten clients (each under its own limit) guess at one account; the eleventh waits.
        tries = [await attempt("@coord:localhost", f"198.51.100.{i}") for i in range(11)]
        assert tries[:10] == [503] * 10 and tries[10] == 429
        refused = await client.post(
            "/dashboard/login/matrix",
            data={"user_id": "@coord:localhost", "password": "guess"},
            headers={"X-Forwarded-For": "198.51.100.99"},
        )
        assert refused.status == 429 and "for this account" in await refused.text()
        # Addresses in one IPv6 /64 are one client.
        v6 = [await attempt("@other:localhost", f"2001:db8::{i:x}") for i in range(11)]
        assert v6[10] == 429
    finally:
        await client.close()
        await service.close()


@pytest.mark.parametrize("body", [b"", b"<html>Bad Gateway</html>", b"[1]"])
async def test_an_empty_or_non_json_error_answer_is_homeserver_trouble(body: bytes) -> None:
    async def bad_gateway(_request: web.Request) -> web.Response:
        return web.Response(status=502, body=body)

    app = web.Application()
    app.router.add_post("/_matrix/client/v3/login", bad_gateway)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        with pytest.raises(HomeserverTrouble) as e:
            await check_password(str(server.make_url("")), "@coord:localhost", "pw")
        assert e.value.status == 502 and "HTTP 502" in str(e.value)
    finally:
        await server.close()


async def test_homeserver_down_and_switched_off(
    tmp_path: Path, bot_env: dict[str, str], people: tuple[DevUser, DevUser]
) -> None:
    bot_env["LIBHUB_SECRET"] = "dashboard-matrix-login-secret-0123"
    coord, _ = people
    down = f"http://127.0.0.1:{free_port()}"
    service, client = await client_for(config(tmp_path, down, [coord.user_id]), tmp_path)
    try:
        resp = await login(client, coord.user_id, coord.password)
        assert resp.status == 503 and "could not be reached" in await resp.text()
    finally:
        await client.close()
        await service.close()
    off = config(tmp_path, down, [coord.user_id], matrix_login=False)
    service, client = await client_for(off, tmp_path)
    try:
        assert "login/matrix" not in await (await client.get("/dashboard/login")).text()
        assert (await login(client, coord.user_id, coord.password)).status in (404, 405)
    finally:
        await client.close()
        await service.close()
