"""Encrypted rooms against an independent client with real crypto and Element's 2026
defaults (matrix-js-sdk, Rust crypto, own cross-signing, exclude insecure devices): the
librarian's questions in an encrypted direct chat are answered and her client decrypts the
answers; the bot's device is cross-signed; nothing the bot posts there is plain text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from network.devtools.devserver import DevHomeserver, DevUser
from tests.conftest import new_user
from tests.e2ekit import JsClient
from tests.matrixkit import MatrixReader
from tests.test_bot_support import world

pytestmark = [pytest.mark.synapse, pytest.mark.slow]

WIFI = "how do we keep Wi-Fi on after closing?"


async def plain_from(reader: MatrixReader, room: str, sender: str) -> list[dict[str, Any]]:
    """The bot's events in the raw timeline that are not encrypted."""
    return [
        e
        for e in await reader.events(room)
        if e.get("sender") == sender and e.get("type") == "m.room.message"
    ]


async def test_librarian_gets_decrypted_answers_from_a_cross_signed_bot(
    synapse: DevHomeserver, admin: DevUser, tmp_path: Path, bot_env: dict[str, str]
) -> None:
    async with world(synapse, admin, tmp_path, bot_env) as w:
        service = await w.start()
        bot = w.bot.user_id
        librarian = await new_user(synapse, "librarian", admin)
        async with JsClient() as js, MatrixReader(synapse.url, librarian) as raw:
            await js.login(synapse.url, librarian.user_id, librarian.password)
            dm = await js.create_room(invite=[bot], is_direct=True)
            greeting = await js.wait_message(dm, sender=bot, contains="Hello!")
            assert greeting["encrypted"] is True
            status = await js.device_status(bot, str(service.matrix.client.device_id))
            assert status.get("signedByOwner") is True, (
                status,
                service.matrix.crypto.error,
                service.matrix.cross_signing.problem,
            )

            await js.say(dm, WIFI)
            answer = await js.wait_message(dm, sender=bot, contains="Wi-Fi access after hours")
            assert answer["encrypted"] is True and answer["decryption_failure"] is None

            assert await plain_from(raw, dm, bot) == []
            wire = [e for e in await raw.events(dm) if e.get("sender") == bot]
            assert {e["type"] for e in wire} >= {"m.room.encrypted"}
