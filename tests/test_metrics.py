"""``GET /metrics``: valid Prometheus text (parsed strictly here) with the numbers of a real
poll and real deliveries to a local apprise json:// receiver and a broken channel."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from aiohttp import web

from network.devtools.devserver import free_port
from network.service import Service
from network.settings.model import parse_settings
from network.web.metrics import Family, render
from tests.publisher import FeedItem, Publisher, rss

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_exposition(text: str) -> tuple[Samples, dict[str, str]]:
    """A strict reader of the text format: HELP and TYPE before a family's samples, one
    TYPE per family, valid names, labels and values; returns (samples, types)."""
    assert text.endswith("\n")
    samples: Samples = {}
    types: dict[str, str] = {}
    helps: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(_NAME, name) and name not in helps
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helps and name not in types, line
            assert kind in ("counter", "gauge", "summary", "histogram", "untyped")
            types[name] = kind
        else:
            m = _SAMPLE.match(line)
            assert m is not None, f"not a sample line: {line!r}"
            name, labels_text, value = m.groups()
            assert name in types, f"sample before its TYPE: {line!r}"
            labels: list[tuple[str, str]] = []
            rest = labels_text or ""
            while rest:
                lm = _LABEL.match(rest)
                assert lm is not None, f"bad labels in {line!r}"
                raw = lm.group(2)
                labels.append(
                    (
                        lm.group(1),
                        raw.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"),
                    )
                )
                rest = rest[lm.end() :]
            key = (name, frozenset(labels))
            assert key not in samples, f"duplicate sample {line!r}"
            samples[key] = float(value)
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_label_values_are_escaped() -> None:
    fam = Family("libhub_test", "gauge", "A test.\nSecond line.")
    fam.add(1.5, cohort='say "hi" \\ bye\nnow')
    fam.add(2, cohort="plain")
    text = render([fam, Family("libhub_empty", "gauge", "Left out: no samples.")])
    samples, types = parse_exposition(text)
    assert types == {"libhub_test": "gauge"}
    assert value(samples, "libhub_test", cohort='say "hi" \\ bye\nnow') == 1.5
    assert "# HELP libhub_test A test.\\nSecond line." in text


async def test_metrics_after_a_poll_and_deliveries(tmp_path: Path, bot_env: dict[str, str]) -> None:
    received: list[dict[str, object]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    pub = await Publisher().start()
    pub.documents["news.xml"] = rss(
        "Network news", [FeedItem("a1", "Hotspots"), FeedItem("a2", "Webinar: Wi-Fi after hours")]
    )
    port = free_port()
    settings = parse_settings(
        f"""
[database]
path = "{tmp_path / "libhub.db"}"
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@bot:example.org"
password_env = "METRICS_PW"
[web]
listen = "127.0.0.1:{port}"
[polling]
initial_posts = 10
max_age = "3650d"
[channels.hook]
urls = ["json://127.0.0.1:{hook_port}/hook"]
[channels.broken]
urls = ["nosuchservice://nowhere"]
[[feeds]]
id = "news"
url = "{pub.url("news.xml")}"
channels = ["hook", "broken"]
""",
        base_dir=tmp_path,
    )
    service = await Service.create(settings)
    try:
        await service.poller.prepare()
        await service.poller.poll_due()
        while await service.delivery.run_once():
            pass
        assert len(received) == 2
        await service.start_web()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
                text = await resp.text()
        samples, types = parse_exposition(text)
        assert types["libhub_deliveries_sent_total"] == "counter"
        assert types["libhub_feeds"] == "gauge"
        assert value(samples, "libhub_feeds", status="ok") == 1
        assert value(samples, "libhub_items_ingested_total") == 2
        assert value(samples, "libhub_items") == 2
        assert value(samples, "libhub_deliveries_sent_total", target_type="apprise") == 2
        assert value(samples, "libhub_deliveries_failed_total", target_type="apprise") == 2
        assert value(samples, "libhub_outbox_rows", status="failed") == 2
        assert value(samples, "libhub_rate_limit_waits_total") == 0
        assert value(samples, "libhub_matrix_logged_in") == 0
        # Never synced: no sync age rather than a made-up one.
        assert not any(name == "libhub_matrix_sync_age_seconds" for name, _ in samples)
        assert value(samples, "libhub_open_cases") == 0
        assert value(samples, "libhub_digest_messages", status="sent") == 0
    finally:
        await service.close()
        await pub.close()
        await runner.cleanup()
