"""Cohort config and the pure reconciliation plan: what differs between config and a room."""

from __future__ import annotations

from typing import Any

import pytest

from network.community.plan import (
    Action,
    RoomSnapshot,
    RoomSpec,
    cohort_spec,
    desired_rooms,
    diff_power,
    diff_room,
    invitation_email,
    matrix_to,
    resources_hash,
    snapshot_from_state,
)
from network.errors import ConfigError
from network.settings.model import parse_settings

BOT = "@libhub:example.org"
BASE = """
[matrix]
homeserver = "https://matrix.example.org"
user_id = "@libhub:example.org"
password_env = "PW"
[community]
space = "#net:example.org"
facilitators = ["@coord:example.org"]
[[community.rooms]]
room = "#announcements:example.org"
name = "Announcements"
[[cohorts]]
id = "smart"
name = "Smart Spaces"
room = "#smart:example.org"
members = ["@ana:example.org", "lee@ignacio.example.org"]
facilitators = ["@fac:example.org"]
[[cohorts.libraries]]
name = "Ignacio Community Library"
members = ["@raj:example.org", "lee@ignacio.example.org"]
[[cohorts.resources]]
title = "Toolbox"
url = "https://example.org/toolbox"
"""


def test_members_may_be_plain_ids_or_grouped_by_library() -> None:
    s = parse_settings(BASE)
    cohort = s.cohorts[0]
    assert cohort.all_members == ("@ana:example.org", "lee@ignacio.example.org", "@raj:example.org")
    assert cohort.library_of("@raj:example.org") == "Ignacio Community Library"
    assert cohort.library_of("lee@ignacio.example.org") == "Ignacio Community Library"
    assert cohort.library_of("@ana:example.org") is None
    spec = cohort_spec(s, cohort)
    assert spec.invitees == (
        "@coord:example.org",
        "@fac:example.org",
        "@ana:example.org",
        "@raj:example.org",
    )
    assert spec.emails == ("lee@ignacio.example.org",)
    assert spec.facilitators == ("@coord:example.org", "@fac:example.org")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[[cohorts]]\nid = "c"\nname = "C"\nroom = "#c:x"\nmembers = ["ana"]\n',
            "cohorts[0].members[0]: 'ana' is neither a Matrix user id",
        ),
        (
            '[[cohorts]]\nid = "c"\nname = "C"\nroom = "#c:x"\nfacilitators = ["f@x.org"]\n',
            "cohorts[0].facilitators[0]: 'f@x.org' is not a Matrix user id",
        ),
        (
            '[community]\nwelcome = "Hi {nick}"\n',
            "community.welcome: unknown placeholder(s) {nick}",
        ),
        ("[community]\nfacilitator_power = 100\n", "community.facilitator_power: expected 1 to 99"),
        ('[webinars]\nreminder_leads = ["soon"]\n', "webinars.reminder_leads[0]: reminder lead"),
        (
            '[[cohorts]]\nid = "c"\nname = "C"\nroom = "#c:x"\n'
            '[[cohorts.resources]]\ntitle = "t"\nurl = "ftp://x"\n',
            "cohorts[0].resources[0].url: expected an http:// or https:// URL",
        ),
    ],
)
def test_bad_community_config_names_the_key(extra: str, message: str) -> None:
    minimal = '[matrix]\nhomeserver = "http://h"\nuser_id = "@b:h"\npassword_env = "P"\n'
    with pytest.raises(ConfigError) as e:
        parse_settings(minimal + extra)
    assert str(e.value).startswith(message)


def test_desired_rooms_space_first_everyone_invited_to_network_rooms() -> None:
    specs = desired_rooms(parse_settings(BASE))
    assert [s.key for s in specs] == ["space", "room:#announcements:example.org", "cohort:smart"]
    assert specs[0].is_space and specs[0].name == "Library Network"
    assert set(specs[1].invitees) == {
        "@coord:example.org",
        "@fac:example.org",
        "@ana:example.org",
        "@raj:example.org",
    }


def _diff(spec: RoomSpec, snap: RoomSnapshot | None, **kw: Any) -> list[Action]:
    args: dict[str, Any] = dict(
        bot=BOT,
        invited_before=set(),
        manage=False,
        level=50,
        space_id=None,
        child_ids={},
        emailed=set(),
        smtp_ready=True,
        pinned_hash=None,
        pinned_event=None,
    )
    args.update(kw)
    return diff_room(spec, snap, **args)


def test_missing_room_plan_creates_invites_emails_and_pins() -> None:
    spec = cohort_spec(parse_settings(BASE), parse_settings(BASE).cohorts[0])
    kinds = [(a.kind, a.target) for a in _diff(spec, None, space_id="!space:example.org")]
    assert kinds[0] == ("create", "#smart:example.org")
    assert ("power", "@coord:example.org, @fac:example.org") in kinds
    assert ("invite", "@ana:example.org") in kinds and ("invite", "@raj:example.org") in kinds
    assert ("parent", "!space:example.org") in kinds
    assert ("email", "lee@ignacio.example.org") in kinds
    assert ("pin", "") in kinds


def _state(**members: str) -> list[dict[str, object]]:
    events: list[dict[str, object]] = [
        {"type": "m.room.name", "state_key": "", "content": {"name": "Smart Spaces"}},
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}},
        {
            "type": "m.room.power_levels",
            "state_key": "",
            "content": {
                "users": {BOT: 100, "@coord:example.org": 50, "@fac:example.org": 50},
                "users_default": 0,
                "kick": 50,
            },
        },
        {
            "type": "m.space.parent",
            "state_key": "!space:example.org",
            "content": {"via": ["example.org"], "canonical": True},
        },
        {"type": "m.room.pinned_events", "state_key": "", "content": {"pinned": ["$res"]}},
    ]
    for user, membership in {BOT: "join", **members}.items():
        events.append(
            {"type": "m.room.member", "state_key": user, "content": {"membership": membership}}
        )
    return events


def test_room_in_line_with_config_needs_no_change() -> None:
    s = parse_settings(BASE)
    spec = cohort_spec(s, s.cohorts[0])
    snap = snapshot_from_state(
        "!smart:example.org",
        _state(
            **{
                "@coord:example.org": "join",
                "@fac:example.org": "invite",
                "@ana:example.org": "join",
                "@raj:example.org": "invite",
            }
        ),
    )
    actions = _diff(
        spec,
        snap,
        space_id="!space:example.org",
        emailed={"lee@ignacio.example.org"},
        pinned_hash=resources_hash("Smart Spaces", spec.resources),
        pinned_event="$res",
    )
    assert actions == []


def test_removed_member_kicked_only_when_libhub_manages_membership() -> None:
    s = parse_settings(BASE)
    spec = cohort_spec(s, s.cohorts[0])
    members = {u: "join" for u in spec.invitees} | {"@gone:example.org": "join"}
    members["@walkin:example.org"] = "join"  # came in another way: never touched
    snap = snapshot_from_state("!r", _state(**members))
    invited = {*spec.invitees, "@gone:example.org"}
    kept = _diff(
        spec, snap, invited_before=invited, manage=False, emailed={"lee@ignacio.example.org"}
    )
    assert [(a.kind, a.target) for a in kept if a.target.startswith("@")] == [
        ("note", "@gone:example.org")
    ]
    removed = _diff(
        spec, snap, invited_before=invited, manage=True, emailed={"lee@ignacio.example.org"}
    )
    assert [(a.kind, a.target) for a in removed if a.target.startswith("@")] == [
        ("kick", "@gone:example.org")
    ]


def test_someone_who_left_is_not_invited_again_but_a_knock_is_accepted() -> None:
    s = parse_settings(BASE)
    spec = cohort_spec(s, s.cohorts[0])
    snap = snapshot_from_state(
        "!r", _state(**{"@ana:example.org": "leave", "@raj:example.org": "knock"})
    )
    actions = _diff(spec, snap, invited_before={"@ana:example.org"})
    by_target = {a.target: (a.kind, a.detail) for a in actions}
    assert by_target["@ana:example.org"] == ("note", "left or declined: not invited again")
    assert by_target["@raj:example.org"] == ("invite", "accept the knock")


def test_power_levels_raise_facilitators_and_never_lower_anyone() -> None:
    power = {"users": {BOT: 100, "@old:x": 50, "@mod:x": 75}, "users_default": 0, "ban": 50}
    new = diff_power(power, ["@new:x"], level=50, bot=BOT)
    assert new is not None
    # @old:x may be a moderator a person appointed (Element's "Moderator" is 50): kept.
    assert new["users"] == {BOT: 100, "@old:x": 50, "@mod:x": 75, "@new:x": 50}
    assert new["ban"] == 50
    assert diff_power(new, ["@new:x"], level=50, bot=BOT) is None
    # A higher level set by hand is not lowered to the facilitator level.
    assert diff_power(power, ["@mod:x"], level=50, bot=BOT) is None


def test_changed_resources_are_pinned_again() -> None:
    s = parse_settings(BASE)
    spec = cohort_spec(s, s.cohorts[0])
    snap = RoomSnapshot("!r", name="Smart Spaces", join_rule="knock", pinned=("$res",))
    old_hash = resources_hash("Smart Spaces", [("Old", "https://old.example.org")])
    actions = _diff(spec, snap, pinned_hash=old_hash, pinned_event="$res")
    assert [a.kind for a in actions if a.kind == "pin"] == ["pin"]


def test_email_without_smtp_is_a_note_not_a_change() -> None:
    s = parse_settings(BASE)
    spec = cohort_spec(s, s.cohorts[0])
    actions = _diff(spec, None, smtp_ready=False)
    note = [a for a in actions if a.target == "lee@ignacio.example.org"]
    assert [(a.kind, a.changes) for a in note] == [("note", False)]


def test_invitation_email_says_how_to_join() -> None:
    subject, text = invitation_email(
        network="Example Network",
        cohort="Smart Spaces",
        room_link=matrix_to("#smart:example.org"),
        space_link=matrix_to("#net:example.org"),
        homeserver="https://matrix.example.org",
        join_rule="knock",
        library="Ignacio Community Library",
    )
    assert subject == "You are invited to Smart Spaces (Example Network)"
    assert "https://matrix.to/#/#smart:example.org" in text
    assert "https://matrix.example.org" in text
    assert "Ask to join" in text
    assert "for Ignacio Community Library" in text
    assert matrix_to("!abc:example.org", "example.org") == (
        "https://matrix.to/#/!abc:example.org?via=example.org"
    )
