"""The feeds CLI as a coordinator uses it: parse a file, poll with a summary, list health."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.publisher import FeedItem, Publisher, rss

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "feeds"


def libhub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "network.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


def test_parse_prints_the_documented_json() -> None:
    proc = libhub(
        "feeds",
        "parse",
        str(DATA / "rss2_arcgames-neverwinter_relative-item-links_2digit-year-dates.xml"),
        "--base-url",
        "https://www.arcgames.com/en/games/neverwinter/news/rss",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"title", "link", "items", "warnings"}
    item = doc["items"][0]
    assert set(item) == {
        "key",
        "title",
        "link",
        "published",
        "kind",
        "summary_html",
        "categories",
        "enclosures",
        "event_start",
    }
    assert all(i["link"].startswith("https://www.arcgames.com/") for i in doc["items"])
    assert doc["items"][0]["published"] == "2017-12-07T18:00:29Z"  # -0800 read as UTC


def test_parse_not_a_feed_exits_3_with_json_error() -> None:
    proc = libhub(
        "feeds", "parse", str(DATA / "not-a-feed_marketwatch-document-moved-html.xml"), "--json"
    )
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["error"].startswith("not a feed")


def test_parse_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    proc = libhub("feeds", "parse", str(tmp_path / "missing.xml"), "--json")
    assert proc.returncode == 2
    assert proc.stderr.startswith("libhub: config error: cannot read")


async def test_poll_once_then_list_and_status(tmp_path: Path) -> None:
    pub = await Publisher().start()
    try:
        pub.documents["ok.xml"] = rss("Ok", [FeedItem("1", "One"), FeedItem("2", "Two")])
        config = tmp_path / "libhub.toml"
        config.write_text(f"""
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@bot:localhost"
password_env = "UNUSED"
[database]
path = "db.sqlite"
[[feeds]]
id = "good"
url = "{pub.url("ok.xml")}"
[[feeds]]
id = "broken"
url = "{pub.url("missing.xml")}"
""")
        import asyncio

        proc = await asyncio.to_thread(libhub, "feeds", "poll", "-c", str(config), "--once")
        assert proc.returncode == 0, proc.stderr
        assert "Polled 2 feeds" in proc.stdout
        assert "good" in proc.stdout and "broken" in proc.stdout
        status = await asyncio.to_thread(libhub, "status", "-c", str(config), "--json")
        report = json.loads(status.stdout)
        by_id = {f["id"]: f for f in report["feeds"]}
        assert by_id["good"]["status"] == "ok"
        assert by_id["broken"]["status"] == "failing"
        assert "404" in by_id["broken"]["last_error"]
        assert report["items"] == 2
        listing = await asyncio.to_thread(libhub, "feeds", "list", "-c", str(config))
        assert listing.returncode == 0 and "failing" in listing.stdout
    finally:
        await pub.close()


def _network(tmp_path: Path, name: str, extra: str = "") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    config = folder / "libhub.toml"
    config.write_text(f"""
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@bot:localhost"
password_env = "UNUSED"
[database]
path = "db.sqlite"
{extra}
""")
    return config


async def test_opml_round_trip_through_import_and_feeds_opml(tmp_path: Path) -> None:
    """A reader's OPML imported into one network (each feed checked: a page that is not a
    feed and one already there are skipped with why), that network's /feeds.opml (file and
    live feeds) imported into another, which then reads the same feeds; without
    allow_private, a loopback address is refused."""
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from feeds.opml import OpmlFeed, read_opml, write_opml
    from network.service import Service
    from network.settings.model import load_settings
    from network.web.app import make_web_app

    pub = await Publisher().start()
    try:
        pub.documents["ok.xml"] = rss("Ok", [FeedItem("1", "One")])
        pub.documents["news.xml"] = rss("Riverside news", [FeedItem("n1", "Story")])
        pub.documents["about.html"] = b"<html><body>About us</body></html>"
        first = _network(
            tmp_path,
            "first",
            f'[feeds_admin]\nallow_private = true\n[[feeds]]\nid = "good"\nurl = "{pub.url("ok.xml")}"',
        )
        reader = tmp_path / "reader.opml"
        reader.write_bytes(
            write_opml(
                [
                    OpmlFeed(pub.url("news.xml"), "Riverside news", folder="Libraries"),
                    OpmlFeed(pub.url("about.html"), "About page"),
                    OpmlFeed(pub.url("ok.xml"), "Already here"),
                ],
                title="A reader's list",
            )
        )
        proc = await asyncio.to_thread(
            libhub, "feeds", "import", str(reader), "-c", str(first), "--actor", "dana"
        )
        assert proc.returncode == 0, proc.stderr
        text = " ".join(proc.stdout.split())
        assert "reader.opml: 1 added, 2 skipped" in text, proc.stdout
        assert "is not a feed" in text and "is already a feed here" in text

        service = await Service.create(load_settings(first))
        try:
            [live] = await service.storage.live_feeds()
            assert (live.url, live.title, live.added_by) == (
                pub.url("news.xml"),
                "Riverside news",
                "dana",
            )
            [entry] = await service.storage.audit_entries()
            assert (entry.actor, entry.action) == ("dana", "feed.add")
            client = TestClient(TestServer(make_web_app(service.web), host="127.0.0.1"))
            await client.start_server()
            try:
                resp = await client.get("/feeds.opml")
                assert resp.status == 200 and resp.content_type == "text/x-opml"
                exported = await resp.read()
            finally:
                await client.close()
        finally:
            await service.close()
        assert [(f.url, f.title) for f in read_opml(exported)] == [
            (pub.url("ok.xml"), "good"),
            (pub.url("news.xml"), "Riverside news"),
        ]

        (tmp_path / "export.opml").write_bytes(exported)
        second = _network(tmp_path, "second", "[feeds_admin]\nallow_private = true")
        proc = await asyncio.to_thread(
            libhub, "feeds", "import", str(tmp_path / "export.opml"), "-c", str(second)
        )
        assert proc.returncode == 0, proc.stderr
        assert "export.opml: 2 added, 0 skipped" in " ".join(proc.stdout.split())
        service = await Service.create(load_settings(second))
        try:
            urls = sorted(f.url for f in await service.storage.live_feeds())
        finally:
            await service.close()
        assert urls == sorted([pub.url("ok.xml"), pub.url("news.xml")])

        third = _network(tmp_path, "third")
        proc = await asyncio.to_thread(
            libhub, "feeds", "import", str(tmp_path / "export.opml"), "-c", str(third)
        )
        assert proc.returncode == 0, proc.stderr
        text = " ".join(proc.stdout.split())
        assert "export.opml: 0 added, 2 skipped" in text and "private" in text, proc.stdout
    finally:
        await pub.close()


def test_import_of_a_file_that_is_not_opml_is_refused(tmp_path: Path) -> None:
    config = _network(tmp_path, "net")
    bad = tmp_path / "list.opml"
    bad.write_text("<html><body>not a list</body></html>")
    proc = libhub("feeds", "import", str(bad), "-c", str(config))
    assert proc.returncode != 0
    assert "is not OPML" in proc.stderr
