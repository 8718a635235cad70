"""Webinar reminders on a real Synapse: a moved webinar gets its reminders at the new time,
each exactly once, through restarts and a crash between sending and recording."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from network.community.webinars import WebinarReminders, ics_url, reminder_content
from network.devtools.devserver import DevHomeserver, DevUser
from network.matrix.gateway import MatrixGateway
from network.settings.model import parse_settings, secret
from network.storage import Storage
from tests.conftest import new_user
from tests.matrixkit import MatrixReader
from tests.test_webinars_schedule import store, webinar

pytestmark = pytest.mark.synapse


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_moved_webinar_reminded_at_new_time_once(
    synapse: DevHomeserver,
    admin: DevUser,
    reader: MatrixReader,
    tmp_path: Path,
    bot_env: dict[str, str],
) -> None:
    bot = await new_user(synapse, "wbot", admin)
    bot_env["WEBINAR_BOT_PW"] = bot.password
    room_id = await reader.create_room(invite=[bot.user_id], name="Webinars")
    settings = parse_settings(
        f"""
[network]
timezone = "America/Chicago"
[database]
path = "{tmp_path / "libhub.db"}"
[matrix]
homeserver = "{synapse.url}"
user_id = "{bot.user_id}"
password_env = "WEBINAR_BOT_PW"
[web]
public_url = "https://libhub.example.org"
""",
        base_dir=tmp_path,
    )
    storage = await Storage.open(settings.database_path)
    matrix = MatrixGateway(
        settings.matrix, storage, password=secret("WEBINAR_BOT_PW"), access_token=None
    )
    try:
        await matrix.login()
        t0 = datetime(2026, 11, 10, 15, 0, tzinfo=UTC)
        start = datetime(2026, 11, 20, 20, 0, tzinfo=UTC)  # Fri 2:00 PM CST
        item_id = await store(storage, webinar("w1", start), t0, room=room_id)
        clock = Clock(t0)
        rem = WebinarReminders(settings, matrix, storage, clock=clock)
        assert (await rem.run_once()).added == 2

        # Moved to Monday 10:00 AM before any reminder went out.
        moved = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
        clock.now = t0 + timedelta(days=1)
        await store(storage, webinar("w1", moved), clock.now, room=room_id)
        result = await rem.run_once()
        assert (result.added, result.cancelled, result.sent) == (2, 2, 0)

        # The old times pass: nothing is sent for them.
        clock.now = start - timedelta(days=1) + timedelta(minutes=1)
        assert (await rem.run_once()).sent == 0

        # One day before the new time: the "1d" reminder, once, also after a restart.
        clock.now = moved - timedelta(days=1) + timedelta(minutes=2)
        assert (await rem.run_once()).sent == 1
        assert (await rem.run_once()).sent == 0
        restarted = WebinarReminders(settings, matrix, storage, clock=clock)
        assert (await restarted.run_once()).sent == 0

        # Crash between the homeserver's answer and recording it: the resend carries the
        # same transaction id and gets the same event back.
        clock.now = moved - timedelta(minutes=59)
        [due] = await storage.due_reminders(clock.now)
        content = reminder_content(
            title="Webinar: Wi-Fi after hours", link="https://example.org/wifi", start=moved,
            tz="America/Chicago", now=clock.now, ics=ics_url(settings.web.public_url, item_id),
        )  # fmt: skip
        first = await matrix.send(room_id, content, txn_id=due.txn_id)
        assert (await restarted.run_once()).sent == 1
        [row] = [r for r in await storage.reminders_for(item_id) if r.id == due.id]
        assert row.event_id == first.event_id

        msgs = await reader.messages(room_id, sender=bot.user_id)
        bodies = [m["content"]["body"] for m in msgs]
        assert len(bodies) == 2, bodies
        assert bodies[0].startswith(
            "Reminder: the webinar “Webinar: Wi-Fi after hours” starts tomorrow at 10:00 AM CST."
        )
        assert bodies[1].startswith(
            "Reminder: the webinar “Webinar: Wi-Fi after hours” starts in 59 minutes (10:00 AM CST)."
        )
        assert msgs[1]["event_id"] == first.event_id
        assert f"https://libhub.example.org/webinars/{item_id}.ics" in bodies[1]
        assert all("Nov" not in b and "Friday" not in b for b in bodies)
        states = sorted(r.status for r in await storage.reminders_for(item_id))
        assert states == ["cancelled", "cancelled", "sent", "sent"]
    finally:
        await matrix.close()
        await storage.close()
