"""Spaces and rooms from config on a real Synapse: created once, members invited by Matrix id
or by email, a second run changes nothing, a member dropped from config is removed only
when libhub manages membership; plus `libhub cohorts sync --dry-run` from the shell."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from network.community.cohorts import CohortSync, smtp_mailer
from network.devtools.devserver import DevHomeserver, DevUser, free_port
from network.devtools.mailsink import MailSink
from network.matrix.gateway import MatrixGateway
from network.settings.model import Settings, parse_settings, secret
from network.storage import Storage
from tests.conftest import new_user
from tests.matrixkit import MatrixReader

pytestmark = pytest.mark.synapse

REPO = Path(__file__).resolve().parents[1]


def community_config(
    tmp: Path,
    synapse: DevHomeserver,
    bot: DevUser,
    *,
    members: list[str],
    facilitator: str,
    smtp: str = "",
    manage: bool = False,
    extra: str = "",
    community: str = "",
) -> str:
    tag = uuid.uuid4().hex[:8]
    server = synapse.server_name
    listed = ", ".join(f'"{m}"' for m in members)
    email = f'[email]\nsmtp_url = "{smtp}"\nfrom = "Network <net@example.org>"\n' if smtp else ""
    return f"""
[network]
name = "Test Library Network"
[database]
path = "{tmp / "libhub.db"}"
[matrix]
homeserver = "{synapse.url}"
user_id = "{bot.user_id}"
password_env = "COHORT_BOT_PASSWORD"
# The readers here are plain clients: the rooms libhub makes stay unencrypted in these tests
# (tests/test_e2e_*.py read encrypted rooms with a real encrypting client).
encryption = false
[web]
listen = "127.0.0.1:{free_port()}"
{email}
[community]
space = "#net{tag}:{server}"
space_topic = "Everything of the network"
facilitators = ["{facilitator}"]
manage_membership = {"true" if manage else "false"}
{community}
[[community.rooms]]
room = "#announce{tag}:{server}"
name = "Announcements"
topic = "News from the network office"
[[cohorts]]
id = "smart"
name = "Smart Spaces"
room = "#smart{tag}:{server}"
topic = "Round 3"
members = [{listed}]
[[cohorts.resources]]
title = "Smart spaces in the toolbox"
url = "https://example.org/toolbox/smart-spaces"
{extra}
"""


async def state(reader: MatrixReader, room_id: str, etype: str, key: str = "") -> dict[str, Any]:
    return await reader.call(
        "GET",
        f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state/{etype}/{quote(key, safe='')}",
    )


async def membership(reader: MatrixReader, room_id: str) -> dict[str, str]:
    data = await reader.call("GET", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/members")
    return {e["state_key"]: e["content"]["membership"] for e in data["chunk"]}


async def resolve(reader: MatrixReader, alias: str) -> str:
    data = await reader.call("GET", f"/_matrix/client/v3/directory/room/{quote(alias, safe='')}")
    return str(data["room_id"])


async def run_sync(settings: Settings, *, dry_run: bool = False) -> Any:
    storage = await Storage.open(settings.database_path)
    matrix = MatrixGateway(
        settings.matrix,
        storage,
        password=secret("COHORT_BOT_PASSWORD"),
        access_token=None,
        crypto_store=settings.crypto_store_path,
    )
    try:
        await matrix.login()
        sync = CohortSync(settings, matrix, storage, mailer=smtp_mailer(settings))
        report = await (sync.plan() if dry_run else sync.apply())
        return report, {r.key: r.room_id for r in await storage.community_rooms()}
    finally:
        await matrix.close()
        await storage.close()


async def test_space_rooms_invites_idempotent_and_removal(
    synapse: DevHomeserver,
    admin: DevUser,
    reader: MatrixReader,
    tmp_path: Path,
    bot_env: dict[str, str],
) -> None:
    bot = await new_user(synapse, "cbot", admin)
    bot_env["COHORT_BOT_PASSWORD"] = bot.password
    fac = await new_user(synapse, "fac", admin)
    other = await new_user(synapse, "member", admin)
    sink = MailSink()
    sink.start()
    try:
        text = community_config(
            tmp_path,
            synapse,
            bot,
            members=[reader.user_id, other.user_id, "lee@ignacio.example.org"],
            facilitator=fac.user_id,
            smtp=sink.url,
        )
        settings = parse_settings(text, base_dir=tmp_path)

        plan, _ = await run_sync(settings, dry_run=True)
        assert [a.kind for a in plan.changes].count("create") == 3
        first, ids = await run_sync(settings)
        assert first.errors == []
        space, announce, smart = (
            ids["space"],
            ids[f"room:{settings.community.rooms[0].room}"],
            ids["cohort:smart"],
        )
        # The space is a space, with both rooms as children; the rooms point back to it.
        await reader.join(space)
        create = await state(reader, space, "m.room.create")
        assert create.get("type") == "m.space"
        for child in (announce, smart):
            assert (await state(reader, space, "m.space.child", child))["via"] == [
                synapse.server_name
            ]
        await reader.join(smart)
        assert (await state(reader, smart, "m.space.parent", space))["canonical"] is True
        assert (await state(reader, smart, "m.room.name"))["name"] == "Smart Spaces"
        assert (await state(reader, smart, "m.room.topic"))["topic"] == "Round 3"
        assert (await state(reader, smart, "m.room.join_rules"))["join_rule"] == "knock"
        assert await resolve(reader, settings.cohorts[0].room) == smart
        power = await state(reader, smart, "m.room.power_levels")
        assert power["users"][fac.user_id] == 50, power
        members = await membership(reader, smart)
        assert members[other.user_id] == "invite" and members[fac.user_id] == "invite"
        assert members[reader.user_id] == "join"
        # Resources are pinned as a message of the bot.
        pinned = (await state(reader, smart, "m.room.pinned_events"))["pinned"]
        msgs = await reader.messages(smart, sender=bot.user_id)
        assert [
            m["event_id"] for m in msgs if "Smart spaces in the toolbox" in m["content"]["body"]
        ] == pinned
        # The member listed by email got one invitation saying how to join.
        [mail] = sink.to("lee@ignacio.example.org")
        body = mail.get_content()
        assert f"https://matrix.to/#/{quote(settings.cohorts[0].room, safe='@:!#')}" in body
        assert synapse.url in body and "Ask to join" in body

        # Second run: nothing to do, nothing sent.
        again, _ = await run_sync(settings)
        assert again.changes == [] and again.errors == []
        dry, _ = await run_sync(settings, dry_run=True)
        assert dry.changes == []
        assert len(sink.to("lee@ignacio.example.org")) == 1

        # Dropped from config while libhub does not manage membership: reported, not removed.
        cohort = replace(settings.cohorts[0], members=(reader.user_id, "lee@ignacio.example.org"))
        dropped = replace(settings, cohorts=(cohort,))
        kept, _ = await run_sync(dropped)
        assert kept.changes == []
        assert any(a.kind == "note" and a.target == other.user_id for a in kept.actions)
        assert (await membership(reader, smart))[other.user_id] == "invite"

        # With manage_membership the invitation is withdrawn (in the cohort room and, as the
        # person is no longer in any cohort, in the space and network rooms too).
        managed = replace(dropped, community=replace(dropped.community, manage_membership=True))
        removed, _ = await run_sync(managed)
        assert {(a.kind, a.target) for a in removed.changes} == {("kick", other.user_id)}
        assert len(removed.changes) == 3
        assert (await membership(reader, smart))[other.user_id] == "leave"
        final, _ = await run_sync(managed)
        assert final.changes == []
    finally:
        sink.stop()


async def test_cli_dry_run(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, reader: MatrixReader
) -> None:
    bot = await new_user(synapse, "clibot", admin)
    config = tmp_path / "libhub.toml"
    config.write_text(
        community_config(tmp_path, synapse, bot, members=[reader.user_id], facilitator=bot.user_id)
    )
    env = {**os.environ, "COHORT_BOT_PASSWORD": bot.password, "COLUMNS": "200"}
    code = "import sys; from network.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, "cohorts", "sync", "-c", str(config), "--dry-run",
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "would do" in text and "create" in text and "invite" in text
    assert reader.user_id in text
    settings = parse_settings(config.read_text(), base_dir=tmp_path)
    storage = await Storage.open(settings.database_path)
    try:
        assert await storage.community_rooms() == []
    finally:
        await storage.close()
    with pytest.raises(AssertionError):
        await resolve(reader, settings.cohorts[0].room)
