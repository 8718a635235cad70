"""Per-client limits on the forms that send mail, the client's address behind trusted
proxies, and who may read /metrics, over real HTTP (aiohttp server, aiosmtpd)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from multidict import CIMultiDict

from network.ratelimit import PerClientLimit, limit_key
from network.settings.checks import parse_networks
from network.settings.model import parse_settings
from network.web.app import make_web_app
from network.web.limits import client_address
from tests.digestkit import DigestEnv
from tests.test_web_subscribe import FORM, csrf_of


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limit_is_a_sliding_window_per_client() -> None:
    clock = Ticks()
    limit = PerClientLimit(2, 60, clock=clock)
    assert limit.allow("a") and limit.allow("a")
    assert not limit.allow("a")  # third within the minute
    assert limit.allow("b")  # another client has its own count
    clock.now += 30
    assert not limit.allow("a")  # refused posts do not count, the window still holds two
    clock.now += 31
    assert limit.allow("a")  # the first two are now older than the window


def test_limit_remembers_a_bounded_number_of_clients() -> None:
    limit = PerClientLimit(1, 60, max_clients=3, clock=Ticks())
    for c in ("a", "b", "c", "d"):
        assert limit.allow(c)
    assert limit.allow("a")  # forgotten (least recent) so allowed again
    assert not limit.allow("d")  # still remembered
    assert PerClientLimit(0, 60).allow("x")  # 0: no limit


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.1", "198.51.100.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:1:2:3", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.1", "198.51.100.1"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_limit_key_groups_ipv6_by_64(address: str, key: str) -> None:
    assert limit_key(address) == key


def test_limit_counts_an_ipv6_64_as_one_client() -> None:
    limit = PerClientLimit(2, 60, clock=Ticks())
    assert limit.allow("2001:db8::1") and limit.allow("2001:db8::2")
    assert not limit.allow("2001:db8::ffff:3")  # a new address in the same /64
    assert limit.allow("2001:db8:0:1::1")  # the next /64 is another client
    by_name = PerClientLimit(1, 60, clock=Ticks(), key=str)
    assert by_name.allow("@ana:x") and not by_name.allow("@ana:x") and by_name.allow("@bo:x")


def _request(peer: str, forwarded: str | None) -> object:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return make_mocked_request("POST", "/subscribe", headers=headers, transport=_Peer(peer))


class _Peer:
    def __init__(self, host: str) -> None:
        self.host = host

    def get_extra_info(self, name: str, default: object = None) -> object:
        return (self.host, 40000) if name == "peername" else default


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.7", None, "203.0.113.7"),
        # Not from a trusted proxy: the header is anyone's to write and is ignored.
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),
        # A forged left-most entry does not help: the proxy appends the real peer.
        ("127.0.0.1", "1.2.3.4, 198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "198.51.100.1, 10.0.0.5", "198.51.100.1"),  # two proxies in a row
        ("127.0.0.1", None, "127.0.0.1"),
    ],
)
def test_client_address_behind_trusted_proxies(
    peer: str, forwarded: str | None, expected: str
) -> None:
    trusted = parse_networks(["127.0.0.1", "10.0.0.0/8"])
    assert client_address(_request(peer, forwarded), trusted) == expected  # type: ignore[arg-type]


def test_client_address_reads_every_forwarded_header_line() -> None:
    # The client sends its own (forged) line; the proxy adds a second with the real peer.
    headers = CIMultiDict([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.7")])
    request = make_mocked_request(
        "POST", "/subscribe", headers=headers, transport=_Peer("127.0.0.1")
    )
    assert client_address(request, parse_networks(["127.0.0.1"])) == "203.0.113.7"


def test_bad_proxy_range_names_the_key() -> None:
    with pytest.raises(Exception, match=r"web\.trusted_proxies\[1\].*not an IP address"):
        parse_settings('[web]\ntrusted_proxies = ["10.0.0.0/8", "proxy.example.org"]\n', env={})


@pytest.fixture
async def client(digest_env: DigestEnv) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    svc = digest_env.service
    # Two mail-sending posts per client per hour, behind a proxy on loopback.
    svc.settings = replace(
        svc.settings,
        web=replace(svc.settings.web, forms_per_client=2, trusted_proxies=("127.0.0.1",)),
    )
    c = TestClient(
        TestServer(make_web_app(replace(svc.web, settings=svc.settings)), host="127.0.0.1")
    )
    await c.start_server()
    try:
        yield c
    finally:
        await c.close()


async def test_one_client_cannot_make_the_service_mail_many_inboxes(
    client: TestClient,  # type: ignore[type-arg]
    digest_env: DigestEnv,
) -> None:
    token = csrf_of(await (await client.get("/subscribe")).text())

    async def post(address: str, via: str) -> int:
        resp = await client.post(
            "/subscribe",
            data={**FORM, "address": address, "csrf": token},
            headers={"X-Forwarded-For": via},
            allow_redirects=False,
        )
        if resp.status == 429:
            assert resp.headers["Retry-After"] == "3600"
            assert "Please try again in 60 minutes" in await resp.text()
        return resp.status

    assert [await post(f"p{i}@example.org", "198.51.100.1") for i in range(4)] == [
        303, 303, 429, 429,
    ]  # fmt: skip
    # The "send me my manage link" form counts against the same limit.
    resp = await client.post(
        "/manage",
        data={"address": "p0@example.org", "csrf": token},
        headers={"X-Forwarded-For": "198.51.100.1"},
    )
    assert resp.status == 429
    # Someone at another library is not held up.
    assert await post("q@example.org", "198.51.100.2") == 303
    sent = sorted(r for m in digest_env.sink.received for r in m.rcpt_tos)
    assert sent == ["p0@example.org", "p1@example.org", "q@example.org"]
    # A form with errors sends nothing, so it is not counted.
    bad = await client.post(
        "/subscribe",
        data={**FORM, "address": "not an address", "csrf": token},
        headers={"X-Forwarded-For": "198.51.100.3"},
    )
    assert bad.status == 400
    assert await post("r@example.org", "198.51.100.3") == 303


async def test_metrics_only_for_loopback_or_a_bearer_token(
    digest_env: DigestEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = digest_env.service
    c = TestClient(
        TestServer(make_web_app(replace(svc.web, settings=svc.settings)), host="127.0.0.1")
    )
    await c.start_server()
    try:
        direct = await c.get("/metrics")
        assert direct.status == 200 and "libhub_" in await direct.text()
        # Through a proxy (which may be public): refused, and told how to let a scraper in.
        proxied = await c.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status == 403 and "metrics_token_env" in await proxied.text()
    finally:
        await c.close()

    # Behind a proxy on loopback that adds no forwarding headers: still refused.
    svc.settings = replace(
        svc.settings, web=replace(svc.settings.web, trusted_proxies=("127.0.0.1",))
    )
    c = TestClient(
        TestServer(make_web_app(replace(svc.web, settings=svc.settings)), host="127.0.0.1")
    )
    await c.start_server()
    try:
        via_proxy = await c.get("/metrics")
        assert via_proxy.status == 403 and "metrics_token_env" in await via_proxy.text()
    finally:
        await c.close()

    monkeypatch.setenv("TEST_METRICS_TOKEN", "s3cret-scrape-token")
    svc.settings = replace(
        svc.settings, web=replace(svc.settings.web, metrics_token_env="TEST_METRICS_TOKEN")
    )
    c = TestClient(
        TestServer(make_web_app(replace(svc.web, settings=svc.settings)), host="127.0.0.1")
    )
    await c.start_server()
    try:
        assert (await c.get("/metrics")).status == 401  # even from loopback
        wrong = await c.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
        ok = await c.get(
            "/metrics",
            headers={"Authorization": "Bearer s3cret-scrape-token", "X-Forwarded-For": "1.2.3.4"},
        )
        assert ok.status == 200 and "libhub_" in await ok.text()
    finally:
        await c.close()
