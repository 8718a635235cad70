"""A hostile feed's links cannot write lines of their own into what people receive: an
unwrapped redirect link (Google Alerts' google.com/url?url=...) whose target decodes to CR/LF
and text is checked like every other link, in a Matrix room of a real Synapse and in the
plain-text part of a real email."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from network.devtools.mailsink import MailSink
from network.service import Service
from network.settings.loading import Duration
from tests.conftest import new_user
from tests.digestkit import SECRET, SECRET_ENV, Clock, make_service, parts, subscriber
from tests.digestkit import settings_for as digest_settings
from tests.matrixkit import MatrixReader
from tests.publisher import FeedItem, Publisher, rss
from tests.test_delivery_kit import drain
from tests.test_e2e_feed_to_room import settings_for as room_settings

PHISH = "Your library card expires today: log in at https://phish.example/login"
# The target decodes to ".../a\r\n-- \n<PHISH>": a fake signature and a sentence of its own.
WRAPPED = (
    "https://www.google.com/url?rct=j&sa=t&url=https://lib.example/a%0D%0A--%20%0A"
    + PHISH.replace(" ", "%20").replace(":", "%3A")
    + "&ct=ga"
)
ITEM = FeedItem("alert-1", "Libraries in the news", link=WRAPPED, summary="A story.")


def assert_no_injected_line(text: str) -> None:
    lines = [line.strip() for line in text.splitlines()]
    assert not [line for line in lines if line.startswith("Your library card")], text
    [at] = [i for i, line in enumerate(lines) if line.startswith("https://lib.example/a")]
    # The link is one inert line, and no fake signature ("-- ") follows it.
    assert lines[at].startswith("https://lib.example/a%0D%0A--%20%0AYour%20library%20card")
    assert lines[at + 1 : at + 2] != ["--"], text


@pytest.mark.synapse
async def test_a_redirect_link_writes_no_line_into_a_matrix_message(
    synapse: DevHomeserver,
    admin: DevUser,
    reader: MatrixReader,
    tmp_path: Path,
    bot_env: dict[str, str],
) -> None:
    bot = await new_user(synapse, "bot", admin)
    bot_env["E2E_BOT_PASSWORD"] = bot.password
    room_id = await reader.create_room(invite=[bot.user_id])
    pub = await Publisher().start()
    try:
        pub.documents["alerts.xml"] = rss("Alerts", [ITEM])
        service = await Service.create(
            room_settings(tmp_path, synapse.url, bot, pub.url("alerts.xml"), room_id)
        )
        try:
            await service.matrix.login()
            await service.poller.prepare()
            await service.poller.poll_due()
            await drain(service)
        finally:
            await service.close()
    finally:
        await pub.close()
    [msg] = await reader.messages(room_id, sender=bot.user_id)
    assert_no_injected_line(msg["content"]["body"])
    assert "\n" not in msg["content"]["external_url"]


async def test_a_redirect_link_writes_no_line_into_an_email(
    tmp_path: Path, sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    pub = await Publisher().start()
    try:
        pub.documents["news.xml"] = rss("Alerts", [FeedItem("seen", "Already there")])
        settings = digest_settings(tmp_path, sink.url)
        settings = replace(
            settings,
            feeds=tuple(replace(f, url=pub.url("news.xml")) for f in settings.feeds[:1]),
            polling=replace(settings.polling, max_age=Duration(days=3650)),
        )
        clock = Clock(datetime.now(UTC))
        svc = await make_service(settings, clock)
        try:
            await subscriber(svc, "now@example.org", frequency="immediate", now=clock.now)
            await svc.poller.prepare()
            await svc.poller.poll_due()  # the first poll is history: nothing is mailed
            pub.documents["news.xml"] = rss("Alerts", [ITEM, FeedItem("seen", "Already there")])
            await svc.poller.poll_due(force=True)
            await svc.digests.run_once()
        finally:
            await svc.close()
    finally:
        await pub.close()
    [msg] = sink.to("now@example.org")
    text, _ = parts(msg)
    assert "Libraries in the news" in text
    assert_no_injected_line(text)
