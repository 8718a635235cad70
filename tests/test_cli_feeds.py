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
