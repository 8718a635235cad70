"""Every kind of mail libhub sends logs in to the SMTP server the same way: a real aiosmtpd
relay that refuses mail without AUTH, with the password named only in ``email.smtp_url``
(``?password_env=NAME``), gets confirmations, digests, the Need Assistance team's email and
cohort invitations alike."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from bots.cases.escalation import Escalation
from network.community.cohorts import smtp_mailer
from network.devtools.mailsink import MailSink
from network.errors import ConfigError
from network.mail.factory import smtp_sender
from network.mail.message import build_message
from network.service import Service
from network.settings.model import Settings
from network.storage import Storage
from network.storage.cases import NewCase
from network.storage.subscribers import Preferences
from tests.digestkit import (
    SECRET,
    SECRET_ENV,
    START,
    Clock,
    item,
    make_service,
    publish,
    settings_for,
    subscriber,
)

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER = "relay-user"
PASSWORD = "relay-Pa55word"
PASSWORD_ENV = "LIBHUB_TEST_SMTP_PASSWORD"
TEAM = "team@prairie.example.org"
ASSISTANCE = f"""
[assistance]
team_room = "#team:example.org"
team_email = "{TEAM}"
"""


@pytest.fixture
def relay() -> Iterator[MailSink]:
    s = MailSink(login=(USER, PASSWORD))
    s.start()
    yield s
    s.stop()


def _settings(tmp: Path, relay: MailSink) -> Settings:
    url = f"smtp://{USER}@{relay.host}:{relay.port}?password_env={PASSWORD_ENV}"
    settings = settings_for(tmp, url, extra=ASSISTANCE)
    assert settings.email.password_env == ""  # the URL alone names the variable
    return settings


@pytest.fixture
async def service(
    tmp_path: Path, relay: MailSink, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Service]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    svc = await make_service(_settings(tmp_path, relay), Clock(START))
    try:
        yield svc
    finally:
        await svc.close()


@dataclass
class TeamHost:
    """What a case needs from the bot, without a homeserver: only its email is tested."""

    settings: Settings
    storage: Storage
    user_id: str = "@libhub:localhost"

    async def send(self, room_id: str, content: dict[str, Any], txn_id: str) -> str:
        raise AssertionError("no Matrix message is sent for an email")

    async def display_name(self, user_id: str) -> str:
        return "Ana"

    async def room_label(self, room_id: str) -> str:
        return "#help:example.org"

    async def team_room(self) -> str | None:
        return "!team:example.org"


async def test_confirmation_digest_team_and_invitation_mail_all_log_in(
    service: Service, relay: MailSink
) -> None:
    clock = service.digests.clock
    assert isinstance(clock, Clock)
    prefs = Preferences(("kind:news",), "daily", "America/Chicago", 8, 0)
    outcome = await service.subscriptions.request("new@example.org", prefs, source="test")
    assert outcome.sent, outcome.detail
    assert len(relay.to("new@example.org")) == 1

    await subscriber(service, "ana@example.org", now=clock.now)
    await publish(service, "news", [item("n1", "Hotspot lending expands")], clock.now)
    clock.advance(hours=2)  # 08:00 in Chicago, ana's hour
    report = await service.digests.run_once()
    assert report.sent == 1
    assert len(relay.to("ana@example.org")) == 1

    storage = service.storage
    await storage.create_case(
        NewCase(
            "$question", "Who lends hotspots?", "@ana:example.org", "!help:example.org",
            False, None, None, None, "!team:example.org", "$root", clock.now, True,
        )
    )  # fmt: skip
    escalation = Escalation(TeamHost(service.settings, storage))
    try:
        assert await escalation.send_pending_emails() == 1
    finally:
        await escalation.close()
    [team_mail] = relay.to(TEAM)
    assert team_mail["Subject"].startswith("[Need Assistance] Ana")

    mailer = smtp_mailer(service.settings)
    assert mailer is not None
    await mailer("cohort@example.org", "You are invited", "Join the cohort room.")
    assert len(relay.to("cohort@example.org")) == 1


async def test_a_missing_password_names_the_variable_from_the_url(
    tmp_path: Path, relay: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    settings = _settings(tmp_path, relay)
    with pytest.raises(ConfigError, match=f"^email.smtp_url: .*{PASSWORD_ENV}"):
        smtp_sender(settings.email)
    # The relay refuses a client that does not log in, so the test above means something.
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    async with smtp_sender(settings.email) as sender:
        result = await sender.send(_any_message())
    assert not result.ok and result.relay and result.code == 535


def _any_message() -> EmailMessage:
    return build_message(
        sender="n@example.org",
        to="x@example.org",
        subject="s",
        text="t",
        html=None,
        list_unsubscribe_url=None,
        list_unsubscribe_mailto=None,
        list_id=None,
        message_id_domain="example.org",
    )
