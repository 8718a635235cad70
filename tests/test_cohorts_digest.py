"""End to end: a cohort member posts `!update` in the cohort room (real Synapse, the service
running in-process) and an email subscriber of that cohort finds it, attributed to the
member's library, in their digest from a real SMTP server."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TypeVar

import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from network.devtools.mailsink import MailSink
from network.service import Service
from network.settings.model import parse_settings
from network.storage.subscriber_records import Preferences
from tests.conftest import new_user
from tests.matrixkit import MatrixReader
from tests.test_cohorts_synapse import community_config
from tests.waiting import eventually

pytestmark = pytest.mark.synapse

SUBSCRIBER = "trustee@example.org"
T = TypeVar("T")


async def test_cohort_update_reaches_an_email_digest(
    synapse: DevHomeserver,
    admin: DevUser,
    reader: MatrixReader,
    tmp_path: Path,
    bot_env: dict[str, str],
) -> None:
    bot = await new_user(synapse, "dgbot", admin)
    bot_env["COHORT_BOT_PASSWORD"] = bot.password
    bot_env["LIBHUB_SECRET"] = "digest-e2e-secret-0123456789"
    sink = MailSink()
    sink.start()
    try:
        text = community_config(
            tmp_path,
            synapse,
            bot,
            members=[],
            facilitator=bot.user_id,
            smtp=sink.url,
            community="sync_on_start = true",
            extra=f'[[cohorts.libraries]]\nname = "Ignacio Community Library"\n'
            f'members = ["{reader.user_id}"]\n',
        )
        settings = parse_settings(text, base_dir=tmp_path)
        service = await Service.create(settings)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            # A trustee follows the cohort by email (double opt-in).
            prefs = Preferences(("cohort:smart",), "daily", "America/Chicago", 8)
            await service.subscriptions.request(SUBSCRIBER, prefs, source="test")
            [confirmation] = sink.to(SUBSCRIBER)
            body = confirmation.get_body(("plain",))
            assert body is not None
            token = re.search(r"/confirm/([A-Za-z0-9_.-]+)", body.get_content())
            assert token is not None
            await service.subscriptions.confirm(token.group(1))
            sink.clear()

            smart_ref = settings.cohorts[0].room

            async def invited() -> bool:
                room = await service.storage.room_id_for(smart_ref)
                return room is not None and reader.user_id in await service.storage.invited_users(
                    room
                )

            await eventually(invited, what="the cohort room and the invitation")
            await eventually(
                lambda: service.storage.get_state("matrix.next_batch"), what="first sync"
            )
            smart = await service.storage.room_id_for(smart_ref)
            assert smart is not None
            await reader.join(smart)
            await reader.say(
                smart,
                "!update We opened a makerspace corner with two 3D printers.\n\n"
                "Teens run it on Saturdays.",
            )
            await reader.wait_for(
                smart, lambda ms: any("Thanks" in m["content"]["body"] for m in ms),
                sender=bot.user_id,
            )  # fmt: skip

            # The coordinator sends the daily round by hand (`libhub digest send`).
            now = datetime.now(UTC)
            planned = await service.digests.plan(now, frequency="daily", force=True)
            assert [p.subscriber.address for p in planned] == [SUBSCRIBER]
            await service.digests.send_pending()
            [digest] = await eventually(lambda: _mail(sink), what="the digest")
            assert digest["To"] == SUBSCRIBER
            assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            plain = digest.get_body(("plain",))
            html_part = digest.get_body(("html",))
            assert plain is not None and html_part is not None
            text_body = plain.get_content()
            assert "We opened a makerspace corner with two 3D printers." in text_body
            assert "Ignacio Community Library" in text_body
            assert "Teens run it on Saturdays." in html_part.get_content()
            # A second round has nothing new: no empty digest.
            await service.digests.plan(datetime.now(UTC), frequency="daily", force=True)
            await service.digests.send_pending()
            assert len(sink.to(SUBSCRIBER)) == 1
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            await service.close()
    finally:
        sink.stop()


async def _mail(sink: MailSink) -> list[EmailMessage]:
    return list(sink.to(SUBSCRIBER))
