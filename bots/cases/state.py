"""The Need Assistance case state machine: states, events, transitions and their effects, plus
when a case is due for a reminder to the team or for auto-closing.

Pure: `apply` takes a case and an event and returns the new case with the effects the caller
must carry out (relay to the asker, post in the team thread, ...). Nothing here sends, stores or
reads the clock.

States: `open` (unclaimed) -> `claimed` -> `answered` -> `closed`.
- Only team members may claim, answer, note or close; anyone else gets a `TellActor` refusal
  and the case is unchanged (never an exception: a stray command is not an error).
- Answering an unclaimed case claims it. A team member may take over another's claim, so a case
  never waits on an absent claimant.
- Notes are internal: they produce no effect toward the asker and do not count as activity,
  so they neither delay auto-close nor silence reminders.
- A follow-up from the asker is relayed to the team. On an answered case it puts the case back
  to `claimed` (the team owes a reply); on a closed case it reopens it (`claimed` if it had a
  claimant, else `open`).
- Closing twice is harmless. `auto_close` only closes answered cases.

The team's "wait" starts when the case is opened, claimed, or handed back by the asker
(`waiting_since`); reminders count business hours from there and restart at zero each time.
Reminders go out only while the team is open, at most one per reminder window.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bots.cases.hours import BusinessHours, business_seconds_between, is_open
from network import i18n
from network.i18n import N_

# The texts of the effects are marked for the gettext catalogs. Those to the team and to
# the person acting are translated here, in the language in use (the team's: English unless
# set); `TellAsker` carries the English source, translated into the asker's language where
# it is sent (bots.cases.transitions).
_ = i18n.gettext

AUTO_CLOSE_TEXT = N_(
    "We haven't heard back from you for a while, so we've closed this request. "
    "If you still need help, just reply here and it will be reopened."
)


class CaseState(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    ANSWERED = "answered"
    CLOSED = "closed"


class Event(StrEnum):
    CLAIM = "claim"
    ANSWER = "answer"
    NOTE = "note"
    CLOSE = "close"
    ASKER_FOLLOWUP = "asker_followup"
    AUTO_CLOSE = "auto_close"


_TEAM_ONLY = {
    Event.CLAIM: N_("Only Need Assistance team members can claim cases."),
    Event.ANSWER: N_("Only Need Assistance team members can answer cases."),
    Event.NOTE: N_("Only Need Assistance team members can add notes to cases."),
    Event.CLOSE: N_("Only Need Assistance team members can close cases."),
}


@dataclass(frozen=True)
class Case:
    state: CaseState
    claimed_by: str | None
    opened_at: datetime
    last_activity_at: datetime
    answered_at: datetime | None = None  # first answer, kept for response-time metrics
    closed_at: datetime | None = None
    reminders_sent: int = 0  # reminder windows of the current wait reminded of (reminder_due)
    waiting_since: datetime | None = None  # start of the team's current wait; None: opened_at

    @classmethod
    def new(cls, opened_at: datetime) -> Case:
        return cls(CaseState.OPEN, None, opened_at, opened_at)

    @property
    def wait_started_at(self) -> datetime:
        return self.waiting_since or self.opened_at


@dataclass(frozen=True)
class RelayToAsker:
    """Send the actor's message to the asker."""


@dataclass(frozen=True)
class RelayToTeam:
    """Post the asker's message in the case thread of the team room."""


@dataclass(frozen=True)
class NotifyTeam:
    text: str


@dataclass(frozen=True)
class TellActor:
    text: str


@dataclass(frozen=True)
class TellAsker:
    text: str


@dataclass(frozen=True)
class Reopened:
    """A closed case came back because the asker wrote again."""


Effect = RelayToAsker | RelayToTeam | NotifyTeam | TellActor | TellAsker | Reopened


@dataclass(frozen=True)
class Transition:
    case: Case
    effects: tuple[Effect, ...] = ()


def apply(
    case: Case, event: Event, *, actor: str, now: datetime, team: frozenset[str]
) -> Transition:
    """The case after `event` by `actor` at `now`, and what the caller must do about it."""
    if event in _TEAM_ONLY and actor not in team:
        return Transition(case, (TellActor(_(_TEAM_ONLY[event])),))
    if event is Event.CLAIM:
        return _claim(case, actor, now)
    if event is Event.ANSWER:
        return _answer(case, actor, now)
    if event is Event.NOTE:
        return Transition(case)
    if event is Event.CLOSE:
        if case.state is CaseState.CLOSED:
            return Transition(case, (TellActor(_("This case is already closed.")),))
        closed = replace(case, state=CaseState.CLOSED, closed_at=now, last_activity_at=now)
        return Transition(closed, (NotifyTeam(_("Case closed by {actor}.").format(actor=actor)),))
    if event is Event.ASKER_FOLLOWUP:
        return _followup(case, now)
    if event is Event.AUTO_CLOSE:
        if case.state is not CaseState.ANSWERED:
            return Transition(case)
        closed = replace(case, state=CaseState.CLOSED, closed_at=now)
        return Transition(
            closed,
            (TellAsker(AUTO_CLOSE_TEXT), NotifyTeam(_("Case closed automatically: no reply."))),
        )
    raise ValueError(f"unknown case event {event!r}")


@dataclass(frozen=True)
class ReminderDue:
    """A reminder to send now: for the `number`-th reminder window of the wait."""

    number: int
    text: str


def with_reminder_sent(case: Case, due: ReminderDue) -> Case:
    """The case after the caller sent the reminder `reminder_due` asked for."""
    return replace(case, reminders_sent=due.number)


def reminder_due(
    case: Case,
    bh: BusinessHours,
    now: datetime,
    *,
    unclaimed_after_h: float,
    unanswered_after_h: float,
    max_reminders: int,
) -> ReminderDue | None:
    """The reminder the team should get now, or None. The k-th reminder window of a wait
    starts after k * threshold business hours; a wait has at most `max_reminders` windows.
    Only while the team is open, and at most one reminder per window: windows that passed
    unreminded (the service was down) are skipped, not sent one after another."""
    if unclaimed_after_h <= 0 or unanswered_after_h <= 0:
        raise ValueError("reminder thresholds must be more than zero business hours")
    if max_reminders < 0:
        raise ValueError(f"max_reminders must not be negative, got {max_reminders}")
    if case.state is CaseState.OPEN:
        threshold, what = unclaimed_after_h, N_("Case unclaimed for {hours} business hours")
    elif case.state is CaseState.CLAIMED:
        threshold = unanswered_after_h
        what = N_("Case claimed by {owner} but unanswered for {hours} business hours")
    else:
        return None
    if case.reminders_sent >= max_reminders or not is_open(bh, now):
        return None
    waited_h = business_seconds_between(bh, case.wait_started_at, now) / 3600
    window = min(max_reminders, int(waited_h // threshold))
    if window <= case.reminders_sent:
        return None
    # Translators: the first part is one of the "Case ... business hours" texts.
    text = _("{what} (reminder {window} of {total}).").format(
        what=_(what).format(owner=case.claimed_by, hours=_hours_text(waited_h)),
        window=window,
        total=max_reminders,
    )
    return ReminderDue(window, text)


def auto_close_due(case: Case, now: datetime, idle_days: float) -> bool:
    """True when an answered case has seen no activity for `idle_days` days."""
    if idle_days <= 0:
        raise ValueError(f"idle_days must be more than zero, got {idle_days}")
    # In UTC: datetimes sharing a tzinfo subtract as wall-clock times, wrong across DST.
    idle = now.astimezone(UTC) - case.last_activity_at.astimezone(UTC)
    return case.state is CaseState.ANSWERED and idle >= timedelta(days=idle_days)


def _claim(case: Case, actor: str, now: datetime) -> Transition:
    if case.state is CaseState.CLOSED:
        return Transition(
            case, (TellActor(_("This case is closed; it reopens if the asker writes again.")),)
        )
    if case.claimed_by == actor:
        return Transition(case, (TellActor(_("You have already claimed this case.")),))
    if case.state is CaseState.ANSWERED:
        # Only the owner changes: the asker already has an answer, so no new wait starts.
        moved = replace(case, claimed_by=actor, last_activity_at=now)
        return Transition(
            moved, (NotifyTeam(_("{actor} took over this case.").format(actor=actor)),)
        )
    text = (
        _("{actor} claimed this case.").format(actor=actor)
        if case.claimed_by is None
        else _("{actor} took over this case from {owner}.").format(
            actor=actor, owner=case.claimed_by
        )
    )
    claimed = replace(
        case,
        state=CaseState.CLAIMED,
        claimed_by=actor,
        last_activity_at=now,
        waiting_since=now,
        reminders_sent=0,
    )
    return Transition(claimed, (NotifyTeam(text),))


def _answer(case: Case, actor: str, now: datetime) -> Transition:
    if case.state is CaseState.CLOSED:
        return Transition(
            case,
            (TellActor(_("This case is closed, so your answer was not sent to the asker.")),),
        )
    effects: tuple[Effect, ...] = (RelayToAsker(),)
    claimed_by = case.claimed_by
    if claimed_by is None:
        claimed_by = actor
        effects += (NotifyTeam(_("{actor} claimed and answered this case.").format(actor=actor)),)
    answered = replace(
        case,
        state=CaseState.ANSWERED,
        claimed_by=claimed_by,
        answered_at=case.answered_at or now,
        last_activity_at=now,
        reminders_sent=0,
    )
    return Transition(answered, effects)


def _followup(case: Case, now: datetime) -> Transition:
    if case.state in (CaseState.OPEN, CaseState.CLAIMED):
        # Still the same wait: the clock keeps running, so reminders are not pushed back.
        return Transition(replace(case, last_activity_at=now), (RelayToTeam(),))
    state = CaseState.CLAIMED if case.claimed_by is not None else CaseState.OPEN
    back = replace(
        case,
        state=state,
        closed_at=None,
        last_activity_at=now,
        waiting_since=now,
        reminders_sent=0,
    )
    if case.state is CaseState.CLOSED:
        return Transition(back, (Reopened(), RelayToTeam()))
    return Transition(back, (RelayToTeam(),))


def _hours_text(hours: float) -> str:
    rounded = round(hours, 1)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.1f}"
