"""The team's side of a Need Assistance case: what team members do in the case's thread of
the team room.

In the team room a case is a thread whose root is the bot's message about the question.
Inside it, from team members: 👍 on the root or ``!claim`` claims; ``!note TEXT`` stays
internal; ``!close`` closes (the asker is told); anything else is an answer, relayed to the
asker as "Need Assistance team (Name): ...". Anyone else gets a polite refusal and nothing
they write is relayed (`bots.cases.state` decides; `CaseTransitions` carries it out).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bots.cases.state import Event
from bots.cases.transitions import CaseTransitions
from bots.messages import (
    html_of,
    is_edit,
    parse_command,
    plain_text,
    relates_to,
    responds_to,
    vote_of,
)

_THREAD_COMMANDS = {"claim": Event.CLAIM, "close": Event.CLOSE, "note": Event.NOTE}


class TeamThread(CaseTransitions):
    """Reactions, commands and answers of the team in a case thread."""

    async def on_team_event(self, ev: Mapping[str, Any], now: datetime) -> bool:
        """Handle an event of the team room; False when it is not about a case (then the
        bot treats it like any other message, e.g. ``!help`` in a thread)."""
        content = ev.get("content")
        if not isinstance(content, Mapping):
            return False
        sender, event_id = str(ev.get("sender", "")), str(ev.get("event_id", ""))
        if ev.get("type") == "m.reaction":
            rel = relates_to(content)
            case = await self.storage.case_by_thread_root(str(rel.get("event_id", "")))
            if case is None or rel.get("rel_type") != "m.annotation":
                return False
            if vote_of(str(rel.get("key", ""))) == "up":
                await self._transition(case, Event.CLAIM, sender, event_id, now)
            return True
        # Clients without threads reply to the root, or to a follow-up the bot relayed.
        root = responds_to(content)
        case = await self.storage.case_by_team_event(root) if root else None
        if case is None or ev.get("type") != "m.room.message":
            return False
        text = plain_text(content)
        if content.get("msgtype") == "m.notice" or is_edit(content) or not text:
            return True
        command = parse_command(text)
        if command is None:
            await self._transition(
                case, Event.ANSWER, sender, event_id, now, text, html_of(content), event_id
            )
        elif command[0] in _THREAD_COMMANDS:
            event = _THREAD_COMMANDS[command[0]]
            await self._transition(case, event, sender, event_id, now, command[1], None, event_id)
        else:
            return False
        return True
