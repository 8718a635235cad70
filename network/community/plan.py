"""What the community's Matrix rooms should look like, and what must change to get there.

Pure: the desired rooms (`RoomSpec`) come from the settings; what a room looks like now
(`RoomSnapshot`) is parsed from its state events; `diff_room` compares the two and returns
`Action`s. `network.community.cohorts` reads the state and carries the actions out. Running the
actions and diffing again gives no changes: that is what makes `libhub cohorts sync`
idempotent.

Membership rules: people listed in config by Matrix id are invited once. libhub
remembers whom it invited; only those are ever removed (and only with
``community.manage_membership``), so people who came in some other way (an email
invitation, a facilitator's invite) are never touched, and someone who left is not
pestered with a new invitation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from network.i18n import gettext as _
from network.settings.community import CohortSettings
from network.settings.model import Settings

# Actions that change something; "note" only informs.
CHANGES = frozenset(
    {"create", "name", "topic", "join-rule", "power", "invite", "kick", "child", "parent",
     "email", "pin"}
)  # fmt: skip


@dataclass(frozen=True)
class RoomSpec:
    """One room (or the space) as config wants it."""

    key: str  # "space", "room:#alias:server" or "cohort:<id>"
    ref: str  # alias or room id from config
    name: str
    topic: str
    is_space: bool
    join_rule: str
    invitees: tuple[str, ...]  # Matrix ids to invite
    facilitators: tuple[str, ...]
    cohort_id: str | None = None
    emails: tuple[str, ...] = ()  # members listed by email (cohort rooms)
    resources: tuple[tuple[str, str], ...] = ()  # (title, url) pinned in the room
    encrypted: bool = False  # created end-to-end encrypted (a space never is)


@dataclass(frozen=True)
class RoomSnapshot:
    """The state of an existing room that reconciliation looks at."""

    room_id: str
    name: str | None = None
    topic: str | None = None
    join_rule: str | None = None
    power_levels: Mapping[str, Any] = field(default_factory=dict)
    members: Mapping[str, str] = field(default_factory=dict)  # user id -> membership
    children: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # m.space.child
    parents: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # m.space.parent
    pinned: tuple[str, ...] = ()


@dataclass(frozen=True)
class Action:
    key: str  # the room's config key
    room: str  # how to show the room (alias or name)
    kind: str  # one of CHANGES, or "note"
    target: str = ""  # user id, email, child room, power level user...
    detail: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changes(self) -> bool:
        return self.kind in CHANGES


def server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else user_id


def _dedupe(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _matrix_ids(values: Iterable[str]) -> tuple[str, ...]:
    return _dedupe(v for v in values if v.startswith("@"))


def desired_rooms(settings: Settings) -> list[RoomSpec]:
    """The space (when configured), the network-wide rooms, then one room per cohort."""
    c = settings.community
    network_facilitators = c.facilitators
    everyone = _matrix_ids(
        [*network_facilitators]
        + [m for cohort in settings.cohorts for m in (*cohort.facilitators, *cohort.all_members)]
    )
    specs: list[RoomSpec] = []
    if c.space:
        specs.append(
            RoomSpec(
                key="space",
                ref=c.space,
                name=c.space_name or settings.network.name,
                topic=c.space_topic,
                is_space=True,
                join_rule=c.join_rule,
                invitees=everyone,
                facilitators=network_facilitators,
            )
        )
    for room in c.rooms:
        specs.append(
            RoomSpec(
                key=f"room:{room.room}",
                ref=room.room,
                name=room.name or room.room[1:].split(":")[0],
                topic=room.topic,
                is_space=False,
                join_rule=c.join_rule,
                invitees=everyone,
                facilitators=network_facilitators,
                encrypted=settings.matrix.encryption and room.encryption,
            )
        )
    for cohort in settings.cohorts:
        specs.append(cohort_spec(settings, cohort))
    return specs


def cohort_spec(settings: Settings, cohort: CohortSettings) -> RoomSpec:
    facilitators = _matrix_ids([*settings.community.facilitators, *cohort.facilitators])
    members = cohort.all_members
    return RoomSpec(
        key=f"cohort:{cohort.id}",
        ref=cohort.room,
        name=cohort.name,
        topic=cohort.topic,
        is_space=False,
        join_rule=settings.community.join_rule,
        invitees=_dedupe([*facilitators, *_matrix_ids(members)]),
        facilitators=facilitators,
        cohort_id=cohort.id,
        emails=_dedupe(m for m in members if not m.startswith("@")),
        resources=tuple((r.title, r.url) for r in cohort.resources),
        encrypted=settings.matrix.encryption and cohort.encryption,
    )


def snapshot_from_state(room_id: str, events: Sequence[Mapping[str, Any]]) -> RoomSnapshot:
    """Parse the answer of ``GET /rooms/{id}/state`` (a list of state events)."""
    name = topic = join_rule = None
    power: Mapping[str, Any] = {}
    members: dict[str, str] = {}
    children: dict[str, Mapping[str, Any]] = {}
    parents: dict[str, Mapping[str, Any]] = {}
    pinned: tuple[str, ...] = ()
    for ev in events:
        etype = ev.get("type")
        key = str(ev.get("state_key", ""))
        content = ev.get("content") or {}
        if etype == "m.room.name":
            name = content.get("name")
        elif etype == "m.room.topic":
            topic = content.get("topic")
        elif etype == "m.room.join_rules":
            join_rule = content.get("join_rule")
        elif etype == "m.room.power_levels":
            power = content
        elif etype == "m.room.member":
            members[key] = str(content.get("membership", "leave"))
        elif etype == "m.space.child" and content.get("via"):
            children[key] = content  # a child without "via" has been removed
        elif etype == "m.space.parent" and content.get("via"):
            parents[key] = content
        elif etype == "m.room.pinned_events":
            pinned = tuple(str(e) for e in content.get("pinned", []))
    return RoomSnapshot(room_id, name, topic, join_rule, power, members, children, parents, pinned)


def new_room_snapshot(spec: RoomSpec, bot: str) -> RoomSnapshot:
    """What a room looks like right after libhub creates it (for dry runs)."""
    return RoomSnapshot(
        room_id="",
        name=spec.name,
        topic=spec.topic or None,
        join_rule=spec.join_rule,
        power_levels={"users": {bot: 100}, "users_default": 0},
        members={bot: "join"},
    )


def resources_text(cohort_name: str, resources: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """(plain body, HTML) of the pinned resources message."""
    import html

    body = [f"Resources for {cohort_name}:"] + [f"- {t}: {u}" for t, u in resources]
    items = "".join(
        f'<li><a href="{html.escape(u, quote=True)}">{html.escape(t)}</a></li>'
        for t, u in resources
    )
    return "\n".join(body), f"<p><strong>Resources for {html.escape(cohort_name)}</strong></p>" + (
        f"<ul>{items}</ul>"
    )


def resources_hash(cohort_name: str, resources: Sequence[tuple[str, str]]) -> str:
    body, formatted = resources_text(cohort_name, resources)
    return hashlib.sha256(f"{body}\n{formatted}".encode()).hexdigest()[:32]


def diff_power(
    power: Mapping[str, Any], facilitators: Sequence[str], *, level: int, bot: str
) -> dict[str, Any] | None:
    """The new ``m.room.power_levels`` content, or None when nothing needs to change."""
    users = {str(k): int(v) for k, v in (power.get("users") or {}).items()}
    default = int(power.get("users_default", 0) or 0)
    wanted = dict(users)
    for user in facilitators:
        if user != bot and wanted.get(user, default) < level:
            wanted[user] = level
    # Nobody is ever lowered, even when libhub manages membership: a level equal to the
    # facilitators' may have been given by hand (Element's "Moderator" is 50 too).
    if wanted == users:
        return None
    return {**power, "users": wanted}


def diff_room(
    spec: RoomSpec,
    snap: RoomSnapshot | None,
    *,
    bot: str,
    invited_before: set[str],
    manage: bool,
    level: int,
    space_id: str | None,
    child_ids: Mapping[str, str],
    emailed: set[str],
    smtp_ready: bool,
    pinned_hash: str | None,
    pinned_event: str | None,
    cohort_name: str = "",
) -> list[Action]:
    """The changes that bring the room ``snap`` (None: missing) to ``spec``.

    ``child_ids`` maps the refs of the space's children to their room ids (space only);
    ``space_id`` is the space's room id, for the child's ``m.space.parent``.
    """
    label = spec.ref

    def act(kind: str, target: str = "", detail: str = "", **data: Any) -> Action:
        return Action(spec.key, label, kind, target, detail, data)

    actions: list[Action] = []
    if snap is None:
        what = "space" if spec.is_space else "room"
        actions.append(act("create", spec.ref, f"create {what} {spec.name!r}"))
        snap = new_room_snapshot(spec, bot)
    if (snap.name or "") != spec.name:
        actions.append(act("name", detail=f"{snap.name!r} -> {spec.name!r}", name=spec.name))
    if spec.topic and (snap.topic or "") != spec.topic:
        actions.append(act("topic", detail="set the topic", topic=spec.topic))
    if snap.join_rule != spec.join_rule:
        actions.append(
            act("join-rule", detail=f"{snap.join_rule} -> {spec.join_rule}", rule=spec.join_rule)
        )
    power = diff_power(snap.power_levels, spec.facilitators, level=level, bot=bot)
    if power is not None:
        changed = sorted(
            u
            for u in set(power["users"]) | set(snap.power_levels.get("users") or {})
            if power["users"].get(u) != (snap.power_levels.get("users") or {}).get(u)
        )
        actions.append(act("power", ", ".join(changed), f"facilitators at {level}", content=power))
    for user in spec.invitees:
        if user == bot:
            continue
        membership = snap.members.get(user)
        if membership in ("join", "invite"):
            continue
        if membership == "ban":
            actions.append(act("note", user, "banned from the room: not invited"))
        elif membership == "leave" and user in invited_before:
            actions.append(act("note", user, "left or declined: not invited again"))
        else:
            how = "accept the knock" if membership == "knock" else "invite"
            actions.append(act("invite", user, how))
    for user in sorted(invited_before - set(spec.invitees)):
        if snap.members.get(user) not in ("join", "invite", "knock"):
            continue
        if manage:
            actions.append(act("kick", user, "no longer listed in config"))
        else:
            actions.append(act("note", user, "no longer listed (manage_membership is off)"))
    if spec.is_space:
        via = [server_of(bot)]
        for ref, child_id in child_ids.items():
            if child_id not in snap.children:
                actions.append(act("child", ref, "add to the space", room_id=child_id, via=via))
    elif space_id and space_id not in snap.parents:
        actions.append(act("parent", space_id, "point to the space", via=[server_of(bot)]))
    for email in spec.emails:
        if email in emailed:
            continue
        if smtp_ready:
            actions.append(act("email", email, "send an invitation email"))
        else:
            actions.append(act("note", email, "email.smtp_url is not set: cannot invite by email"))
    if spec.resources:
        wanted = resources_hash(cohort_name or spec.name, spec.resources)
        if pinned_hash != wanted or not pinned_event or pinned_event not in snap.pinned:
            actions.append(act("pin", detail=f"pin {len(spec.resources)} resource(s)", hash=wanted))
    return actions


def matrix_to(ref: str, via: str | None = None) -> str:
    """A https://matrix.to link to a room alias or id (what people click in an email)."""
    from urllib.parse import quote

    link = f"https://matrix.to/#/{quote(ref, safe='@:!#')}"
    return f"{link}?via={quote(via)}" if via and ref.startswith("!") else link


def invitation_email(
    *,
    network: str,
    cohort: str,
    room_link: str,
    space_link: str | None,
    homeserver: str,
    join_rule: str,
    library: str | None,
) -> tuple[str, str]:
    """(subject, plain text) of the email that invites a member listed by address, in the
    language in use (network/i18n.py)."""
    step3 = {
        "knock": _(
            "Choose “Ask to join”. A facilitator of the cohort will let you in, usually "
            "within a day."
        ),
        "public": _("Choose “Join”."),
        "invite": _(
            "Reply to this email with your Matrix id (like @name:server) and a "
            "facilitator will invite you."
        ),
    }[join_rule]
    values = {
        "network": network,
        "cohort": cohort,
        "library": library or "",
        "room_link": room_link,
        "space_link": space_link or "",
        "homeserver": homeserver,
        "step3": step3,
    }
    added = (
        _("%(network)s has added you for %(library)s to the cohort “%(cohort)s”.")
        if library
        else _("%(network)s has added you to the cohort “%(cohort)s”.")
    )
    lines = [
        _("Hello,"),
        "",
        added % values
        + " "
        + _(
            "The cohort talks in a Matrix room: a chat room you can use in a web browser or "
            "in an app on your phone."
        ),
        "",
        _("How to join:"),
        _("1. Open %(room_link)s") % values,
        _(
            "2. Pick a Matrix app (Element works in the browser) and sign in, or create a "
            "free account, on the homeserver %(homeserver)s."
        )
        % values,
        _("3. %(step3)s") % values,
    ]
    if space_link:
        lines += [
            "",
            _("The network's other rooms (announcements, webinars, help): %(space_link)s") % values,
        ]
    lines += [
        "",
        _(
            "In the room, post !update followed by a few lines to tell the cohort what your "
            "library tried; it also reaches the people who follow the cohort by email."
        ),
        "",
        f"-- {network}",
    ]
    return _("You are invited to %(cohort)s (%(network)s)") % values, "\n".join(lines)
