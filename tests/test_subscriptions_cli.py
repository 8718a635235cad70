"""The coordinators' commands, run as a person runs them (the ``libhub`` entry point):
importing a list with and without confirmation, listing suspended addresses, previewing
a digest and sending a round by hand."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from network.devtools.mailsink import MailSink
from network.settings.model import parse_settings
from tests.digestkit import SECRET, SECRET_ENV, Clock, config_text, item, make_service, publish

REPO = Path(__file__).resolve().parents[1]
ENTRY = "import sys; from network.cli.main import main; sys.exit(main())"


def libhub(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, SECRET_ENV: SECRET, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        # What the `libhub` script runs.
        [sys.executable, "-c", ENTRY, *args, "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )


@pytest.fixture
def config(tmp_path: Path, sink: MailSink) -> Path:
    path = tmp_path / "libhub.toml"
    path.write_text(config_text(tmp_path, sink.url), encoding="utf-8")
    return path


def test_import_sends_confirmations_and_reports_bad_rows(
    tmp_path: Path, config: Path, sink: MailSink
) -> None:
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(
        "address,topics,frequency,tz,hour,weekday\n"
        "ana@example.org,webinars news,weekly,Europe/Berlin,9,friday\n"
        "bo@example.org,,,,,\n"
        "not-an-address,,,,,\n"
        "cy@example.org,podcasts,,,,\n",
        encoding="utf-8",
    )
    proc = libhub("subscribers", "import", str(csv_file), config=config)
    assert proc.returncode == 1, proc.stderr
    assert "confirmation sent" in proc.stdout and " 2 " in proc.stdout.split("confirmation sent")[1]
    assert "line 4: “not-an-address” is not an email address" in proc.stderr
    assert "line 5: unknown topic 'podcasts'" in proc.stderr
    assert {r.rcpt_tos[0] for r in sink.received} == {"ana@example.org", "bo@example.org"}
    [ana] = sink.to("ana@example.org")
    assert ana["Subject"] == "Confirm your subscription to Prairie Libraries"
    text = " ".join(str(ana.get_body(("plain",)).get_content()).split())  # type: ignore[union-attr]
    assert "weekly digest every Friday at 9:00 AM (Europe/Berlin) of: Webinars, News" in text
    listed = libhub("subscribers", "list", config=config)
    assert "0 active" in listed.stdout  # nobody confirmed yet


def test_import_confirmed_needs_consent_warns_and_keeps_unsubscribes(
    tmp_path: Path, config: Path, sink: MailSink
) -> None:
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("address\nana@example.org\nbo@example.org\n", encoding="utf-8")
    refused = libhub("subscribers", "import", str(csv_file), "--confirmed", config=config)
    assert refused.returncode == 2 and "--confirmed needs --consent" in refused.stderr

    # Bo unsubscribed earlier: a later import must not sign him up again.
    settings = parse_settings(config.read_text(), base_dir=tmp_path, env={})

    async def bo_leaves() -> None:
        os.environ[SECRET_ENV] = SECRET
        try:
            svc = await make_service(settings, Clock(datetime.now(UTC)))
            subs = svc.subscriptions
            from network.subscriptions.topics import next_due, parse_address

            bo = parse_address("bo@example.org", schemes=None)
            sub, _ = await svc.storage.add_subscriber(
                address=bo.value, address_key=bo.key, channel="email", prefs=subs.defaults(),
                source="web", consent="link", now=subs.clock(), next_due=next_due,
            )  # fmt: skip
            await subs.unsubscribe(sub)
            await svc.close()
        finally:
            del os.environ[SECRET_ENV]

    asyncio.run(bo_leaves())
    proc = libhub("subscribers", "import", str(csv_file), "--confirmed", "--consent",
                  "signed up at the 2026 conference", config=config)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" in proc.stderr and "no confirmation messages will be sent" in proc.stderr
    assert "added as confirmed subscribers" in proc.stdout
    assert sink.received == []
    listed = libhub("subscribers", "list", "--all", "--json", config=config)
    import json

    rows = {r["address"]: r for r in json.loads(listed.stdout)}
    assert rows["ana@example.org"]["status"] == "active"
    assert "signed up at the 2026 conference" in rows["ana@example.org"]["consent"]
    assert rows["bo@example.org"]["status"] == "unsubscribed"


def test_preview_send_and_suspended_list(tmp_path: Path, config: Path, sink: MailSink) -> None:
    settings = parse_settings(config.read_text(), base_dir=tmp_path, env={})
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(
        "address,frequency\nana@example.org,daily\ngone@example.org,daily\n", encoding="utf-8"
    )
    assert libhub("subscribers", "import", str(csv_file), "--confirmed", "--consent", "test",
                  config=config).returncode == 0  # fmt: skip

    async def news() -> None:
        os.environ[SECRET_ENV] = SECRET
        try:
            svc = await make_service(settings, Clock(datetime.now(UTC)))
            await publish(svc, "news", [item("n1", "Library card drive")], datetime.now(UTC))
            await svc.close()
        finally:
            del os.environ[SECRET_ENV]

    asyncio.run(news())
    preview = libhub("digest", "preview", "--subscriber", "Ana@Example.org", "--html",
                     str(tmp_path / "p.html"), config=config)  # fmt: skip
    assert preview.returncode == 0, preview.stderr
    assert "Subject: Prairie Libraries: Daily digest" in preview.stdout
    assert "Library card drive" in preview.stdout
    assert "<h2" in (tmp_path / "p.html").read_text()
    assert sink.received == []  # a preview sends nothing

    dry = libhub("digest", "send", "--frequency", "daily", "--dry-run", "--force", config=config)
    assert "ana@example.org" in dry.stdout and "nothing was sent" in dry.stdout
    assert sink.received == []

    sink.reject["gone@example.org"] = "550 5.1.1 No such user"
    sent = libhub("digest", "send", "--frequency", "daily", "--force", config=config)
    assert "sent 1, bounced 1" in sent.stdout, sent.stdout + sent.stderr
    assert len(sink.to("ana@example.org")) == 1
    # Sending again by hand: nothing new, nothing sent twice.
    again = libhub("digest", "send", "--frequency", "daily", "--force", config=config)
    assert "sent 0" in again.stdout and len(sink.to("ana@example.org")) == 1

    # Bounces past the threshold (3, once a day) suspend the address.
    async def bounce_more() -> None:
        os.environ[SECRET_ENV] = SECRET
        try:
            svc = await make_service(settings, Clock(datetime.now(UTC)))
            sub = await svc.storage.subscriber_by_key("gone@example.org")
            assert sub is not None
            await svc.storage.record_bounce(sub.id, score=3.0, now=datetime.now(UTC),
                                            suspend=True, error="550 5.1.1 No such user")  # fmt: skip
            await svc.close()
        finally:
            del os.environ[SECRET_ENV]

    asyncio.run(bounce_more())
    listed = libhub("subscribers", "list", "--suspended", config=config)
    assert "gone@example.org" in listed.stdout and "suspended since" in listed.stdout
    assert "ana@example.org" not in listed.stdout
    assert "libhub subscribers resume ADDRESS" in listed.stdout
    resumed = libhub("subscribers", "resume", "gone@example.org", config=config)
    assert "resumed" in resumed.stdout
