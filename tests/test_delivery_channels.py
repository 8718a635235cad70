"""apprise channels end to end: a real apprise ``json://`` notification to a local aiohttp
receiver that fails twice; each URL of a channel is delivered (and retried) on its own,
exactly once in the end. No homeserver is needed: channel rows never wait for Matrix."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from network.delivery.state import DeliveryPolicy
from network.devtools.devserver import DevUser, free_port
from network.service import Service
from tests.publisher import FeedItem, Publisher, rss
from tests.test_delivery_kit import drain, settings_for
from tests.waiting import eventually


class Receiver:
    """Answers 500 to the first ``fail_first`` requests of each path in ``flaky``."""

    def __init__(self, flaky: set[str], fail_first: int) -> None:
        self.flaky = flaky
        self.fail_first = fail_first
        self.requests: Counter[str] = Counter()
        self.accepted: list[tuple[str, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        self.requests[path] += 1
        payload = await request.json()
        if path in self.flaky and self.requests[path] <= self.fail_first:
            return web.Response(status=500, text="try later")
        self.accepted.append((path, payload))
        return web.json_response({"ok": True})


async def test_failing_url_is_retried_alone_and_each_url_gets_one_delivery(
    tmp_path: Path, bot_env: dict[str, str]
) -> None:
    receiver = Receiver({"/flaky"}, fail_first=2)
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    pub = await Publisher().start()
    bot_env["DELIVERY_BOT_PASSWORD"] = "unused"
    try:
        pub.documents["f.xml"] = rss(
            "F", [FeedItem("n1", "Hotspots for every branch", summary="<p>Twelve <b>more</b>.</p>")]
        )
        base = f"json://127.0.0.1:{server.port}"
        extra = f"""
[channels.social]
urls = ["{base}/flaky", "{base}/steady"]
[[routes]]
feeds = ["news"]
channels = ["social"]
channel_template = "{{{{ title }}}}: {{{{ summary_text }}}} {{{{ link }}}}"
"""
        # No Matrix room and no login: the homeserver address is never contacted.
        nobody = DevUser("@bot:localhost", "x", "", "")
        settings = settings_for(
            tmp_path, f"http://127.0.0.1:{free_port()}", nobody, pub.url("f.xml"), [], extra=extra
        )
        service = await Service.create(settings)
        try:
            service.delivery.policy = DeliveryPolicy(base_backoff=0.05, max_backoff=0.1)
            await service.poller.prepare()
            [outcome] = await service.poller.poll_due()
            assert outcome.queued == 2  # one outbox row per URL

            async def settled() -> bool:
                # A failed URL's retry is due a moment later: keep running rounds until
                # nothing is pending, rather than stopping at the first idle round.
                await drain(service)
                return (await service.storage.outbox_counts())["pending"] == 0

            await eventually(settled, within=30, every=0.05, what="both URLs delivered")
            assert await service.delivery.run_once() is False
            counts = await service.storage.outbox_counts()
        finally:
            await service.close()
    finally:
        await pub.close()
        await server.close()
    assert receiver.requests == {"/flaky": 3, "/steady": 1}
    assert sorted(path for path, _ in receiver.accepted) == ["/flaky", "/steady"]
    for _, payload in receiver.accepted:
        assert payload["message"] == "Hotspots for every branch: Twelve more. http://example.org/n1"
    assert counts == {"pending": 0, "sent": 2, "failed": 0, "skipped": 0}
