"""`libhub db migrate-to`: a network's SQLite database copied into PostgreSQL, with
progress; what was there is there, and new rows continue after the copied ids."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from network.storage import Storage, Target
from tests.pgkit import PgServer
from tests.test_delivery_grouping import item

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent


async def libhub(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "network.cli", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_sqlite_database_is_copied_into_postgresql(
    tmp_path: Path, postgres: PgServer
) -> None:
    db = tmp_path / "libhub.db"
    config = tmp_path / "libhub.toml"
    config.write_text(
        f'[database]\npath = "{db}"\n'
        '[matrix]\nhomeserver = "http://127.0.0.1:9"\nuser_id = "@bot:x"\npassword_env = "P"\n'
    )
    source = await Storage.open(db)
    try:
        await source.set_state("matrix.device_id", "DEVICE")
        result = await source.store_items(
            "news", [item(f"k{i}") for i in range(2500)],
            targets=lambda _i: [Target("matrix", "#a:x"), Target("matrix", "#b:x")],
            post=lambda _i: True, edit_window=timedelta(hours=1), now=T0,
        )  # fmt: skip
        assert result.new == 2500 and result.queued == 5000
        before = await source.outbox_counts()
        claimed = await source.claim_due(T0, limit=3)
    finally:
        await source.close()

    url = await postgres.new_database()
    code, out, err = await libhub("db", "migrate-to", url, "-c", str(config))
    assert code == 0, err
    assert "copied" in out and "rows" in out and "outbox" in out

    target = await Storage.open(url)
    try:
        assert await target.get_state("matrix.device_id") == "DEVICE"
        assert await target.item_count() == 2500
        assert await target.outbox_counts() == before
        # Rows keep their ids and their transaction ids (a resend is deduplicated).
        rows = await target.poll_rows("matrix", "#a:x", claimed[0].poll or "")
        assert [r.txn_id for r in rows][:2] == [c.txn_id for c in claimed if c.target == "#a:x"][:2]
        # New rows continue after the copied ids.
        more = await target.store_items(
            "news", [item("new")], targets=lambda _i: [Target("matrix", "#a:x")],
            post=lambda _i: True, edit_window=timedelta(hours=1), now=T0,
        )  # fmt: skip
        assert more.new == 1 and more.queued == 1
        assert await target.item_count() == 2501
    finally:
        await target.close()

    # A second copy would merge two networks: refused, nothing written.
    code, _, err = await libhub("db", "migrate-to", url, "-c", str(config))
    assert code != 0 and "already holds libhub data" in err
