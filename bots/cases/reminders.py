"""Time-driven work on Need Assistance cases: reminding the team in business hours when a
case waits too long for a claim or an answer, and closing answered cases the asker left.

`bots.cases.state` decides what is due (`reminder_due`, `auto_close_due`); this module asks
it for every open case and carries the result out, under the same per-case lock as the
team's thread and the asker's room. A case that fails (its room is gone, the homeserver
refuses) is logged and tried again at the next check; the other cases go on.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bots.cases.state import (
    CaseState,
    Event,
    apply,
    auto_close_due,
    reminder_due,
    with_reminder_sent,
)
from bots.cases.transitions import CaseTransitions, progress_of, to_case
from bots.messages import txn
from network import i18n

log = logging.getLogger(__name__)


class CaseReminders(CaseTransitions):
    """Reminders and auto-closing of open cases."""

    async def remind_and_auto_close(self, now: datetime) -> None:
        """Send the reminders and close the cases that are due at ``now``."""
        for listed in await self.storage.active_cases():
            try:
                await self._remind_or_close(listed.id, now)
            except Exception:
                log.exception("case %d: reminder or auto-close failed; retried later", listed.id)

    async def _remind_or_close(self, case_id: int, now: datetime) -> None:
        a = self.settings.assistance
        async with self._lock(case_id):
            rec = await self.storage.case(case_id)
            if rec is None or rec.state == CaseState.CLOSED.value:
                return
            case = to_case(rec)
            due = reminder_due(
                case,
                self.hours,
                now,
                unclaimed_after_h=a.remind_unclaimed_after,
                unanswered_after_h=a.remind_unanswered_after,
                max_reminders=a.max_reminders,
            )
            if due is not None:
                who = [case.claimed_by] if case.claimed_by else sorted(self.team)
                key = txn("remind", str(rec.id), case.wait_started_at.isoformat(), str(due.number))
                await self._in_thread(
                    rec,
                    i18n.gettext("⏰ Reminder: {text}").format(text=due.text),
                    key,
                    who,
                    notify=True,
                )
                case = with_reminder_sent(case, due)
                await self.storage.update_case(rec.id, progress_of(case))
            if auto_close_due(case, now, a.auto_close_days):
                bot = self.host.user_id
                trigger = f"autoclose:{rec.id}:{case.last_activity_at.isoformat()}"
                result = apply(case, Event.AUTO_CLOSE, actor=bot, now=now, team=self.team)
                await self._carry_out(rec, result, bot, trigger, now, "", None, None)
                await self.storage.update_case(rec.id, progress_of(result.case))
