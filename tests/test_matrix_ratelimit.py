"""The bot on a Synapse that keeps its default rate limits (0.2 messages a second, burst 10;
invites and room creation limited too), as on a homeserver nobody tuned: 429s are waited
out, the operator is told once (log, ops room, `libhub status`), `libhub matrix
lift-ratelimit` lifts the limit (messages per second measured before and after), and
`libhub cohorts sync` stops resumably under the room-creation limit and waits out invites."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from network.community.cohorts import CohortSync, SyncReport
from network.devtools.devserver import DevHomeserver, DevUser, free_port
from network.errors import MatrixRateLimited
from network.matrix.gateway import MatrixGateway
from network.matrix.ratelimit import stored_notice
from network.settings.model import Settings, parse_settings
from network.storage import Storage

pytestmark = [pytest.mark.synapse, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
BOT_ENV = "RATELIMIT_BOT_PASSWORD"
_n = itertools.count()


@pytest.fixture(scope="module")
async def default_limits(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevHomeserver]:
    server = DevHomeserver(tmp_path_factory.mktemp("defaults") / "synapse", synapse_defaults=True)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="module")
async def server_admin(default_limits: DevHomeserver) -> DevUser:
    return await default_limits.register("admin", "admin-password", admin=True)


async def fresh(server: DevHomeserver, prefix: str) -> DevUser:
    """A new account, with the server's default limits (never lifted here)."""
    return await server.register(f"{prefix}{next(_n)}", f"{prefix}-password")


def config(tmp: Path, server: DevHomeserver, bot: DevUser, extra: str = "") -> Path:
    path = tmp / "libhub.toml"
    path.write_text(
        f"""
[database]
path = "{tmp / "libhub.db"}"
[matrix]
homeserver = "{server.url}"
user_id = "{bot.user_id}"
password_env = "{BOT_ENV}"
encryption = false
[web]
listen = "127.0.0.1:{free_port()}"
{extra}
""",
        encoding="utf-8",
    )
    return path


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    code = "import sys; from network.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, cwd=REPO, env={**os.environ, "COLUMNS": "400", **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def send_all(gateway: MatrixGateway, room_id: str, n: int, tag: str) -> tuple[float, int]:
    """Send ``n`` messages, waiting out every 429 as asked; (sustained messages/s, 429s).

    The sustained rate counts the messages after the first 429 (the burst is spent), or all
    of them when there was none."""
    limited = 0
    start = time.monotonic()
    first_limit: float | None = None
    after_limit = 0
    for i in range(n):
        while True:
            try:
                await gateway.send(
                    room_id, {"msgtype": "m.notice", "body": f"{tag} {i}"}, txn_id=f"{tag}-{i}"
                )
                break
            except MatrixRateLimited as e:
                limited += 1
                first_limit = first_limit or time.monotonic()
                await asyncio.sleep(e.retry_after)
        if first_limit is not None:
            after_limit += 1
    since = first_limit if first_limit is not None else start
    count = after_limit if first_limit is not None else n
    return count / max(time.monotonic() - since, 1e-6), limited


async def test_default_limits_are_told_once_and_lifted(
    default_limits: DevHomeserver, server_admin: DevUser, tmp_path: Path
) -> None:
    bot = await fresh(default_limits, "bot")
    path = config(tmp_path, default_limits, bot)
    settings = parse_settings(path.read_text(encoding="utf-8"), base_dir=tmp_path)
    env = {BOT_ENV: bot.password}
    storage = await Storage.open(settings.database_path)
    told: list[str] = []
    gateway = MatrixGateway(settings.matrix, storage, password=bot.password, access_token=None)
    try:
        await gateway.login()
        room = await gateway.create_room(name="library 1", encrypted=False)
        ops = await gateway.create_room(name="ops", encrypted=False)

        async def notify(text: str) -> None:
            # Posted into the ops room (itself rate-limited: the watch retries the post).
            await gateway.send(ops, {"msgtype": "m.notice", "body": text}, txn_id="ops-notice")
            told.append(text)

        gateway.ratelimits.notify = notify
        # The burst of 10, then 0.2 a second: three more messages meet the limit.
        before, limited = await send_all(gateway, room, 13, "before")
        await gateway.ratelimits.wait_told()
        assert limited >= 2 and gateway.ratelimits.hits >= 2
        assert len(told) == 1, "the operator is told once, not at every 429"
        assert "lift-ratelimit" in told[0] and "override_ratelimit" in told[0]
        assert "application service" in told[0]
        notice = await stored_notice(storage)
        assert notice is not None and notice.advice == told[0]

        # A restarted libhub meeting the limit again does not repeat the notice.
        again = MatrixGateway(settings.matrix, storage, password=bot.password, access_token=None)
        again.ratelimits.notify = notify
        try:
            await again.login()
            with pytest.raises(MatrixRateLimited):
                for i in range(3):
                    await again.send(room, {"msgtype": "m.notice", "body": "x"}, txn_id=f"r{i}")
            await again.ratelimits.wait_told()
            assert again.ratelimits.hits >= 1
        finally:
            await again.close()
        assert len(told) == 1
    finally:
        await gateway.close()
        await storage.close()

    code, out, err = await cli("status", "-c", str(path), "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["matrix_rate_limited"]["advice"] == told[0]

    # Without an admin token the command says what to set; with one it lifts the limit.
    code, _, err = await cli("matrix", "lift-ratelimit", "-c", str(path), env=env)
    assert code == 2 and "SYNAPSE_ADMIN_TOKEN" in err
    code, out, err = await cli(
        "matrix", "lift-ratelimit", "-c", str(path),
        env={**env, "SYNAPSE_ADMIN_TOKEN": server_admin.access_token},
    )  # fmt: skip
    assert code == 0, err
    assert "no longer rate-limited" in out
    code, out, err = await cli("status", "-c", str(path), "--json", env=env)
    assert json.loads(out)["matrix_rate_limited"] is None

    storage = await Storage.open(settings.database_path)
    gateway = MatrixGateway(settings.matrix, storage, password=bot.password, access_token=None)
    try:
        await gateway.login()
        after, limited_after = await send_all(gateway, room, 40, "after")
    finally:
        await gateway.close()
        await storage.close()
    print(f"\nmessages/s with Synapse's default limit: {before:.2f}; after lift-ratelimit: "
          f"{after:.1f} ({after / before:.0f}x)")  # fmt: skip
    assert limited_after == 0
    assert before < 0.5  # the default 0.2/s (plus scheduling slack)
    assert after > 10 * before


def community(
    tmp: Path, server: DevHomeserver, bot: DevUser, rooms: int, members: list[str]
) -> str:
    tag = next(_n)
    name = server.server_name
    extra = "".join(
        f'[[community.rooms]]\nroom = "#r{tag}x{i}:{name}"\nname = "Library {i}"\n'
        for i in range(rooms)
    )
    listed = ", ".join(f'"{m}"' for m in members)
    cohort = (
        f'[[cohorts]]\nid = "c{tag}"\nname = "Cohort"\nroom = "#c{tag}:{name}"\n'
        f"members = [{listed}]\n"
        if members
        else ""
    )
    return f"[community]\nfacilitators = []\n{extra}{cohort}"


async def cohort_sync(settings: Settings, bot: DevUser, max_wait: float) -> tuple[SyncReport, int]:
    storage = await Storage.open(settings.database_path)
    matrix = MatrixGateway(settings.matrix, storage, password=bot.password, access_token=None)
    try:
        await matrix.login()
        report = await CohortSync(settings, matrix, storage, max_wait=max_wait).apply()
        return report, len(await storage.community_rooms())
    finally:
        await matrix.close()
        await storage.close()


async def test_cohort_sync_stops_under_room_creation_limit_and_resumes(
    default_limits: DevHomeserver, server_admin: DevUser, tmp_path: Path
) -> None:
    bot = await fresh(default_limits, "cbot")
    path = config(tmp_path, default_limits, bot, community(tmp_path, default_limits, bot, 13, []))
    settings = parse_settings(path.read_text(encoding="utf-8"), base_dir=tmp_path)
    # Synapse creates 10 rooms at once, then one a minute: the run stops, progress stored.
    first, stored = await cohort_sync(settings, bot, max_wait=0)
    assert first.interrupted and "run `libhub cohorts sync` again" in first.interrupted
    assert stored == 10
    second, stored = await cohort_sync(settings, bot, max_wait=0)
    assert second.interrupted and stored == 10
    assert not [a for a in second.actions if a.kind == "create"]
    await default_limits.lift_ratelimit(bot.user_id, server_admin.access_token)
    third, stored = await cohort_sync(settings, bot, max_wait=0)
    assert not third.interrupted and not third.errors
    assert stored == 13
    assert len([a for a in third.actions if a.kind == "create"]) == 3


async def test_cohort_sync_waits_out_invite_limits(
    default_limits: DevHomeserver, tmp_path: Path
) -> None:
    bot = await fresh(default_limits, "ibot")
    members = [(await fresh(default_limits, "member")).user_id for _ in range(13)]
    path = config(
        tmp_path, default_limits, bot, community(tmp_path, default_limits, bot, 0, members)
    )
    settings = parse_settings(path.read_text(encoding="utf-8"), base_dir=tmp_path)
    # 10 invites at once, then 0.3 a second: the last three wait for the limit.
    report, _ = await cohort_sync(settings, bot, max_wait=120)
    assert not report.interrupted and not report.errors
    assert report.rate_limit_waits >= 1
    invited = {a.target for a in report.actions if a.kind == "invite"}
    assert invited == set(members)
