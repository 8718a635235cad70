"""Need Assistance case transitions, reminders and auto-close (bots/cases/state.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bots.cases.hours import BusinessHours
from bots.cases.state import (
    AUTO_CLOSE_TEXT,
    Case,
    CaseState,
    Effect,
    Event,
    NotifyTeam,
    RelayToAsker,
    RelayToTeam,
    Reopened,
    TellActor,
    TellAsker,
    apply,
    auto_close_due,
    reminder_due,
    with_reminder_sent,
)

CHI = ZoneInfo("America/Chicago")
TEAM = frozenset({"@ana:lib.org", "@ben:lib.org"})
ANA, BEN, ASKER = "@ana:lib.org", "@ben:lib.org", "@asker:lib.org"
T0 = datetime(2026, 6, 8, 10, 0, tzinfo=CHI)
NOW = T0 + timedelta(hours=1)

OPEN = Case.new(T0)
CLAIMED = Case(CaseState.CLAIMED, ANA, T0, T0, waiting_since=T0, reminders_sent=2)
ANSWERED = Case(CaseState.ANSWERED, ANA, T0, T0, answered_at=T0, waiting_since=T0)
CLOSED = Case(CaseState.CLOSED, ANA, T0, T0, answered_at=T0, closed_at=T0, waiting_since=T0)
CLOSED_UNCLAIMED = Case(CaseState.CLOSED, None, T0, T0, closed_at=T0)


def refused(verb: str) -> tuple[Effect, ...]:
    return (TellActor(f"Only Need Assistance team members can {verb} cases."),)


TRANSITIONS = [
    # (id, case, event, actor, expected case, expected effects)
    (
        "claim-open",
        OPEN,
        Event.CLAIM,
        ANA,
        Case(CaseState.CLAIMED, ANA, T0, NOW, waiting_since=NOW),
        (NotifyTeam(f"{ANA} claimed this case."),),
    ),
    ("claim-by-outsider", OPEN, Event.CLAIM, ASKER, OPEN, refused("claim")),
    (
        "claim-own-again",
        CLAIMED,
        Event.CLAIM,
        ANA,
        CLAIMED,
        (TellActor("You have already claimed this case."),),
    ),
    (
        "take-over-claim",
        CLAIMED,
        Event.CLAIM,
        BEN,
        replace(CLAIMED, claimed_by=BEN, last_activity_at=NOW, waiting_since=NOW, reminders_sent=0),
        (NotifyTeam(f"{BEN} took over this case from {ANA}."),),
    ),
    (
        "take-over-answered",
        ANSWERED,
        Event.CLAIM,
        BEN,
        replace(ANSWERED, claimed_by=BEN, last_activity_at=NOW),
        (NotifyTeam(f"{BEN} took over this case."),),
    ),
    (
        "claim-closed",
        CLOSED,
        Event.CLAIM,
        BEN,
        CLOSED,
        (TellActor("This case is closed; it reopens if the asker writes again."),),
    ),
    (
        "answer-unclaimed-claims-it",
        OPEN,
        Event.ANSWER,
        BEN,
        Case(CaseState.ANSWERED, BEN, T0, NOW, answered_at=NOW),
        (RelayToAsker(), NotifyTeam(f"{BEN} claimed and answered this case.")),
    ),
    (
        "answer-by-claimant",
        CLAIMED,
        Event.ANSWER,
        ANA,
        replace(
            CLAIMED,
            state=CaseState.ANSWERED,
            answered_at=NOW,
            last_activity_at=NOW,
            reminders_sent=0,
        ),
        (RelayToAsker(),),
    ),
    (
        "answer-by-other-member-keeps-claimant",
        CLAIMED,
        Event.ANSWER,
        BEN,
        replace(
            CLAIMED,
            state=CaseState.ANSWERED,
            answered_at=NOW,
            last_activity_at=NOW,
            reminders_sent=0,
        ),
        (RelayToAsker(),),
    ),
    (
        "second-answer-keeps-first-answer-time",
        ANSWERED,
        Event.ANSWER,
        ANA,
        replace(ANSWERED, last_activity_at=NOW),
        (RelayToAsker(),),
    ),
    ("answer-by-outsider", CLAIMED, Event.ANSWER, ASKER, CLAIMED, refused("answer")),
    (
        "answer-closed-is-not-relayed",
        CLOSED,
        Event.ANSWER,
        ANA,
        CLOSED,
        (TellActor("This case is closed, so your answer was not sent to the asker."),),
    ),
    ("note-is-internal", CLAIMED, Event.NOTE, BEN, CLAIMED, ()),
    ("note-on-answered-is-not-activity", ANSWERED, Event.NOTE, ANA, ANSWERED, ()),
    ("note-by-outsider", CLAIMED, Event.NOTE, ASKER, CLAIMED, refused("add notes to")),
    (
        "close-claimed",
        CLAIMED,
        Event.CLOSE,
        ANA,
        replace(CLAIMED, state=CaseState.CLOSED, closed_at=NOW, last_activity_at=NOW),
        (NotifyTeam(f"Case closed by {ANA}."),),
    ),
    (
        "close-twice-is-harmless",
        CLOSED,
        Event.CLOSE,
        BEN,
        CLOSED,
        (TellActor("This case is already closed."),),
    ),
    ("close-by-outsider", ANSWERED, Event.CLOSE, ASKER, ANSWERED, refused("close")),
    (
        "followup-while-waiting-keeps-clock",
        CLAIMED,
        Event.ASKER_FOLLOWUP,
        ASKER,
        replace(CLAIMED, last_activity_at=NOW),
        (RelayToTeam(),),
    ),
    (
        "followup-on-open",
        OPEN,
        Event.ASKER_FOLLOWUP,
        ASKER,
        replace(OPEN, last_activity_at=NOW),
        (RelayToTeam(),),
    ),
    (
        "followup-after-answer-back-to-team",
        ANSWERED,
        Event.ASKER_FOLLOWUP,
        ASKER,
        replace(ANSWERED, state=CaseState.CLAIMED, last_activity_at=NOW, waiting_since=NOW),
        (RelayToTeam(),),
    ),
    (
        "followup-reopens-to-claimant",
        CLOSED,
        Event.ASKER_FOLLOWUP,
        ASKER,
        replace(
            CLOSED, state=CaseState.CLAIMED, closed_at=None, last_activity_at=NOW, waiting_since=NOW
        ),
        (Reopened(), RelayToTeam()),
    ),
    (
        "followup-reopens-unclaimed",
        CLOSED_UNCLAIMED,
        Event.ASKER_FOLLOWUP,
        ASKER,
        replace(
            CLOSED_UNCLAIMED,
            state=CaseState.OPEN,
            closed_at=None,
            last_activity_at=NOW,
            waiting_since=NOW,
        ),
        (Reopened(), RelayToTeam()),
    ),
    (
        "auto-close-answered",
        ANSWERED,
        Event.AUTO_CLOSE,
        "@bot:lib.org",
        replace(ANSWERED, state=CaseState.CLOSED, closed_at=NOW),
        (TellAsker(AUTO_CLOSE_TEXT), NotifyTeam("Case closed automatically: no reply.")),
    ),
    ("auto-close-skips-waiting-case", CLAIMED, Event.AUTO_CLOSE, "@bot:lib.org", CLAIMED, ()),
    ("auto-close-closed", CLOSED, Event.AUTO_CLOSE, "@bot:lib.org", CLOSED, ()),
]


@pytest.mark.parametrize(
    ("case", "event", "actor", "expected", "effects"),
    [pytest.param(*row[1:], id=str(row[0])) for row in TRANSITIONS],
)
def test_apply(
    case: Case, event: Event, actor: str, expected: Case, effects: tuple[Effect, ...]
) -> None:
    result = apply(case, event, actor=actor, now=NOW, team=TEAM)
    assert result.case == expected
    assert result.effects == effects


def test_a_case_from_question_to_reopening() -> None:
    def step(case: Case, event: Event, actor: str, hours: float) -> tuple[Case, list[str]]:
        t = apply(case, event, actor=actor, now=T0 + timedelta(hours=hours), team=TEAM)
        return t.case, [type(e).__name__ for e in t.effects]

    case = Case.new(T0)
    case, fx = step(case, Event.NOTE, BEN, 1)
    assert (case.state, fx) == (CaseState.OPEN, [])
    case, fx = step(case, Event.ANSWER, BEN, 2)
    assert (case.state, case.claimed_by, fx) == (
        CaseState.ANSWERED,
        BEN,
        ["RelayToAsker", "NotifyTeam"],
    )
    case, fx = step(case, Event.ASKER_FOLLOWUP, ASKER, 3)
    assert (case.state, fx) == (CaseState.CLAIMED, ["RelayToTeam"])
    case, fx = step(case, Event.ANSWER, BEN, 4)
    assert (case.state, fx) == (CaseState.ANSWERED, ["RelayToAsker"])
    assert case.answered_at == T0 + timedelta(hours=2)
    case, fx = step(case, Event.CLOSE, ANA, 5)
    case, fx = step(case, Event.CLOSE, BEN, 6)
    assert (case.state, case.closed_at, fx) == (
        CaseState.CLOSED,
        T0 + timedelta(hours=5),
        ["TellActor"],
    )
    case, fx = step(case, Event.ASKER_FOLLOWUP, ASKER, 30)
    assert (case.state, case.claimed_by, fx) == (
        CaseState.CLAIMED,
        BEN,
        ["Reopened", "RelayToTeam"],
    )


# Reminders: Chicago team, 09:00-17:00 Mon-Fri; case opened Friday 2026-06-12 at 16:00.
BH = BusinessHours.from_config("America/Chicago", holidays=("2026-12-25",))
FRI_16 = datetime(2026, 6, 12, 16, 0, tzinfo=CHI)
MON = datetime(2026, 6, 15, 0, 0, tzinfo=CHI)


def at_mon(hour: float) -> datetime:
    return MON + timedelta(hours=hour)


FRIDAY_CASE = Case.new(FRI_16)
CLAIMED_MON_9 = Case(CaseState.CLAIMED, ANA, FRI_16, at_mon(9), waiting_since=at_mon(9))


@pytest.mark.parametrize(
    ("case", "now", "expected"),
    [
        pytest.param(FRIDAY_CASE, FRI_16 + timedelta(hours=1), None, id="1h-not-due"),
        pytest.param(
            FRIDAY_CASE,
            FRI_16 + timedelta(hours=3),
            None,
            id="weekend-hours-do-not-count",
        ),
        pytest.param(
            FRIDAY_CASE,
            at_mon(10),
            "Case unclaimed for 2 business hours (reminder 1 of 3).",
            id="first-after-2h",
        ),
        pytest.param(
            FRIDAY_CASE,
            at_mon(10.5),
            "Case unclaimed for 2.5 business hours (reminder 1 of 3).",
            id="first-late",
        ),
        pytest.param(replace(FRIDAY_CASE, reminders_sent=1), at_mon(10), None, id="spaced"),
        pytest.param(
            replace(FRIDAY_CASE, reminders_sent=1),
            at_mon(12),
            "Case unclaimed for 4 business hours (reminder 2 of 3).",
            id="second-after-4h",
        ),
        pytest.param(replace(FRIDAY_CASE, reminders_sent=3), at_mon(100), None, id="max-reached"),
        pytest.param(CLAIMED_MON_9, at_mon(12.5), None, id="claimed-3.5h"),
        pytest.param(
            CLAIMED_MON_9,
            at_mon(13),
            f"Case claimed by {ANA} but unanswered for 4 business hours (reminder 1 of 3).",
            id="claimed-4h",
        ),
        pytest.param(
            replace(CLAIMED_MON_9, state=CaseState.ANSWERED), at_mon(100), None, id="answered"
        ),
        pytest.param(
            replace(CLAIMED_MON_9, state=CaseState.CLOSED), at_mon(100), None, id="closed"
        ),
        pytest.param(
            Case.new(datetime(2026, 12, 24, 16, 0, tzinfo=CHI)),
            datetime(2026, 12, 28, 10, 0, tzinfo=CHI),
            "Case unclaimed for 2 business hours (reminder 1 of 3).",
            id="holiday-not-counted",
        ),
        # Due, but the team is away: nothing at night, at the weekend or on a holiday.
        pytest.param(FRIDAY_CASE, at_mon(18), None, id="due-but-evening"),
        pytest.param(FRIDAY_CASE, at_mon(24 + 3), None, id="due-but-night"),
        pytest.param(
            Case.new(at_mon(24 * 3 + 9)), at_mon(24 * 5 + 12), None, id="due-but-saturday"
        ),
        pytest.param(
            Case.new(datetime(2026, 12, 23, 9, 0, tzinfo=CHI)),
            datetime(2026, 12, 25, 10, 0, tzinfo=CHI),
            None,
            id="due-but-holiday",
        ),
        # After downtime: one reminder for the window the wait is in, not one per window.
        pytest.param(
            FRIDAY_CASE,
            at_mon(15),
            "Case unclaimed for 7 business hours (reminder 3 of 3).",
            id="after-downtime-current-window",
        ),
        pytest.param(
            replace(FRIDAY_CASE, reminders_sent=1),
            at_mon(13.5),
            "Case unclaimed for 5.5 business hours (reminder 2 of 3).",
            id="after-downtime-second-window",
        ),
        pytest.param(replace(FRIDAY_CASE, reminders_sent=2), at_mon(13.5), None, id="in-window"),
    ],
)
def test_reminder_due(case: Case, now: datetime, expected: str | None) -> None:
    due = reminder_due(case, BH, now, unclaimed_after_h=2, unanswered_after_h=4, max_reminders=3)
    assert (due.text if due else None) == expected


def poll(case: Case, start: datetime, end: datetime, every: timedelta) -> list[datetime]:
    """When reminders go out for ``case`` if the bot checks every ``every`` from ``start``."""
    sent_at = []
    now = start
    while now < end:
        due = reminder_due(
            case, BH, now, unclaimed_after_h=2, unanswered_after_h=4, max_reminders=3
        )
        if due is not None:
            case = with_reminder_sent(case, due)
            sent_at.append(now)
        now += every
    return sent_at


def test_reminders_are_spaced_and_capped_while_polling() -> None:
    # Checking every 15 minutes until Thursday.
    sent_at = poll(Case.new(at_mon(9)), at_mon(9), at_mon(24 * 3), timedelta(minutes=15))
    assert sent_at == [at_mon(11), at_mon(13), at_mon(15)]


def test_after_downtime_reminders_do_not_come_one_a_minute() -> None:
    # The bot was down from Friday until Monday 15:00 (7 business hours into the wait) and
    # then checks every minute: one reminder, not reminders 1, 2 and 3 a minute apart.
    sent_at = poll(FRIDAY_CASE, at_mon(15), at_mon(24 * 3), timedelta(minutes=1))
    assert sent_at == [at_mon(15)]


def test_reminders_wait_for_the_team_to_open() -> None:
    # Claimed Friday 9:00 (4 h threshold): due since Friday 13:00, but the bot was down until
    # 22:00 and the team is away for the weekend: one reminder, Monday at 9:00.
    claimed = Case(CaseState.CLAIMED, ANA, FRI_16, FRI_16, waiting_since=at_mon(-72 + 9))
    sent_at = poll(claimed, FRI_16 + timedelta(hours=6), at_mon(10), timedelta(minutes=30))
    assert sent_at == [at_mon(9)]


def test_a_new_wait_restarts_the_reminders() -> None:
    reminded = replace(FRIDAY_CASE, reminders_sent=3)
    claimed = apply(reminded, Event.CLAIM, actor=ANA, now=at_mon(9), team=TEAM).case
    assert claimed.reminders_sent == 0
    due = reminder_due(
        claimed, BH, at_mon(13), unclaimed_after_h=2, unanswered_after_h=4, max_reminders=3
    )
    assert due is not None
    assert (
        due.text == f"Case claimed by {ANA} but unanswered for 4 business hours (reminder 1 of 3)."
    )
    # A case reopened on Monday at 16:00 counts from then, not from Friday.
    closed = replace(claimed, state=CaseState.CLOSED, closed_at=at_mon(10))
    reopened = apply(closed, Event.ASKER_FOLLOWUP, actor=ASKER, now=at_mon(16), team=TEAM).case
    kwargs = {"unclaimed_after_h": 2.0, "unanswered_after_h": 4.0, "max_reminders": 3}
    assert reminder_due(reopened, BH, at_mon(24 + 10), **kwargs) is None  # type: ignore[arg-type]
    assert reminder_due(reopened, BH, at_mon(24 + 12), **kwargs) is not None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"unclaimed_after_h": 0, "unanswered_after_h": 4, "max_reminders": 3},
        {"unclaimed_after_h": 2, "unanswered_after_h": -1, "max_reminders": 3},
        {"unclaimed_after_h": 2, "unanswered_after_h": 4, "max_reminders": -1},
    ],
)
def test_reminder_due_refuses_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        reminder_due(FRIDAY_CASE, BH, at_mon(10), **kwargs)  # type: ignore[arg-type]


LAST = datetime(2026, 6, 1, 12, 0, tzinfo=CHI)
IDLE_ANSWERED = Case(CaseState.ANSWERED, ANA, LAST, LAST, answered_at=LAST)


@pytest.mark.parametrize(
    ("case", "now", "expected"),
    [
        pytest.param(IDLE_ANSWERED, LAST + timedelta(days=7), True, id="exactly-7-days"),
        pytest.param(IDLE_ANSWERED, LAST + timedelta(days=7, seconds=-1), False, id="almost"),
        pytest.param(
            replace(IDLE_ANSWERED, state=CaseState.CLAIMED),
            LAST + timedelta(days=30),
            False,
            id="waiting-on-team",
        ),
        pytest.param(
            replace(IDLE_ANSWERED, state=CaseState.CLOSED),
            LAST + timedelta(days=30),
            False,
            id="already-closed",
        ),
    ],
)
def test_auto_close_due(case: Case, now: datetime, expected: bool) -> None:
    assert auto_close_due(case, now, idle_days=7) is expected


def test_auto_close_counts_elapsed_time_across_dst() -> None:
    # 00:30 CDT to 23:45 CST on the fall-back day is 24 h 15 min, though the wall clock moved
    # only 23 h 15 min.
    last = datetime(2026, 11, 1, 0, 30, tzinfo=CHI)
    case = Case(CaseState.ANSWERED, ANA, last, last, answered_at=last)
    assert auto_close_due(case, datetime(2026, 11, 1, 23, 45, tzinfo=CHI), idle_days=1)
    with pytest.raises(ValueError):
        auto_close_due(case, last, idle_days=0)
