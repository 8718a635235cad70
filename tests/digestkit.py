"""Helpers for the subscription, digest and web tests: settings, a settable clock, items.

A `Service` is built from a small config (no Matrix connection is made: nothing here calls
login or run), with its subscription and digest clocks replaced by a `Clock` the test
moves. Mail goes to a real aiosmtpd server (`network.devtools.mailsink.MailSink`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from network.devtools.devserver import free_port
from network.devtools.mailsink import MailSink
from network.service import Service
from network.settings.model import Settings, parse_settings
from network.storage import ItemInput
from network.storage.subscribers import Preferences, Subscriber
from network.subscriptions.topics import next_due, parse_address

SECRET_ENV = "LIBHUB_TEST_DIGEST_SECRET"
SECRET = "digest-test-secret-0123456789abcdef"
COHORT_ROOM = "#smart-spaces:example.org"
# Monday 23 November 2026, 06:00 in Chicago (UTC-6).
START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw)
        return self.now


@dataclass
class DigestEnv:
    """A service with no Matrix connection, its test clock and the SMTP server it mails."""

    service: Service
    clock: Clock
    sink: MailSink
    settings: Settings


def settings_for(tmp: Path, smtp_url: str, *, port: int | None = None, extra: str = "") -> Settings:
    text = config_text(tmp, smtp_url, port=port, extra=extra)
    return parse_settings(text, base_dir=tmp, env={})


def config_text(tmp: Path, smtp_url: str, *, port: int | None = None, extra: str = "") -> str:
    """A config file for the tests: three feeds (news, webinars, a cohort's) and a cohort."""
    port = port or free_port()
    return f"""
[network]
name = "Prairie Libraries"
timezone = "America/Chicago"
[database]
path = "{tmp / "libhub.db"}"
[matrix]
homeserver = "http://127.0.0.1:9"
user_id = "@libhub:localhost"
password_env = "UNUSED_PASSWORD"
[web]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
secret_env = "{SECRET_ENV}"
[email]
smtp_url = "{smtp_url}"
from = "Prairie Libraries <news@prairie.example.org>"
max_connections = 3
[digests]
channel_schemes = ["json"]
{extra}
[[feeds]]
id = "news"
title = "Network news"
url = "http://127.0.0.1:9/news.xml"
[[feeds]]
id = "webinars"
title = "Network webinars"
url = "http://127.0.0.1:9/webinars.xml"
kind = "webinar"
[[feeds]]
id = "smart-updates"
title = "Smart Spaces cohort"
url = "http://127.0.0.1:9/cohort.xml"
kind = "cohort-update"
rooms = ["{COHORT_ROOM}"]
[[cohorts]]
id = "smart-spaces"
name = "Small Libraries Create Smart Spaces"
room = "{COHORT_ROOM}"
"""


async def make_service(settings: Settings, clock: Clock) -> Service:
    service = await Service.create(settings)
    service.subscriptions.clock = clock
    service.digests.clock = clock
    return service


def item(key: str, title: str, kind: str = "news", *, start: datetime | None = None,
         published: datetime | None = None, summary: str = "<p>Details inside.</p>") -> ItemInput:  # fmt: skip
    return ItemInput(
        key=key,
        kind=kind,
        title=title,
        link=f"https://libraries.example.org/{key}",
        published=published,
        author=None,
        categories=(),
        summary_html=summary,
        enclosures=(),
        event_start=start,
        content_hash=hashlib.sha256(f"{key}{title}".encode()).hexdigest(),
    )


async def publish(
    service: Service, feed_id: str, items: Sequence[ItemInput], now: datetime
) -> None:
    """Store items as one poll of ``feed_id`` and queue them, as the poller does."""
    await service.storage.store_items(
        feed_id,
        list(items),
        targets=lambda _i: [],
        post=lambda _i: True,
        edit_window=timedelta(days=1),
        now=now,
    )
    await service.digests.items_stored(feed_id, items, now)


async def subscriber(
    service: Service,
    address: str,
    *,
    topics: Sequence[str] = ("kind:news", "kind:webinar", "kind:cohort-update"),
    frequency: str = "daily",
    tz: str = "America/Chicago",
    hour: int = 8,
    weekday: int = 0,
    now: datetime,
) -> Subscriber:
    """A confirmed subscriber, as if they had clicked their confirmation link at ``now``."""
    parsed = parse_address(address, schemes=None)
    sub, _ = await service.storage.add_subscriber(
        address=parsed.value,
        address_key=parsed.key,
        channel=parsed.channel,
        prefs=Preferences(tuple(topics), frequency, tz, hour, weekday),
        source="test",
        consent="test",
        now=now,
        next_due=next_due,
    )
    return sub


def parts(msg: EmailMessage) -> tuple[str, str]:
    """(text, html) of a multipart/alternative message."""
    assert msg.get_content_type() == "multipart/alternative", msg.get_content_type()
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def links(text: str) -> list[str]:
    return re.findall(r"https?://[^\s<>\"']+", text)


def link_to(text: str, path: str) -> str:
    found = [u for u in links(text) if f"/{path}/" in u]
    assert found, f"no /{path}/ link in:\n{text}"
    return found[0]
