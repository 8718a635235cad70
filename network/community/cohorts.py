"""The community in Matrix: the network's space, its rooms and the cohort rooms, kept in line
with the config, plus the welcome posted when someone joins a cohort room.

`CohortSync` reads each room's state, asks `network.community.plan.diff_room` what differs,
and carries the answer out (create, name, topic, join rule, facilitators' power level,
invitations, removals, space children and parents, invitation emails, pinned resources).
Everything done is remembered in storage so a second run changes nothing and nobody gets
an email or a welcome twice. `Community` is the running part the app wires in: an event
hook for welcomes and an optional reconciliation at start.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import aiohttp
import nio

from network.community.plan import (
    Action,
    RoomSnapshot,
    RoomSpec,
    desired_rooms,
    diff_room,
    invitation_email,
    matrix_to,
    new_room_snapshot,
    resources_text,
    server_of,
    snapshot_from_state,
)
from network.errors import (
    LibhubError,
    MatrixError,
    MatrixPermanent,
    MatrixRateLimited,
    MatrixUnavailable,
)
from network.matrix.gateway import ENCRYPTION_STATE, MatrixGateway
from network.settings.community import CohortSettings
from network.settings.model import Settings
from network.storage import Storage

log = logging.getLogger(__name__)

# (to, subject, text) -> None; raises LibhubError when the message was not accepted.
Mailer = Callable[[str, str, str], Awaitable[None]]

T = TypeVar("T")
P = ParamSpec("P")

# How long one `libhub cohorts sync` waits out rate limits in all before it stops (its
# progress is stored: the next run continues where it stopped).
DEFAULT_MAX_WAIT = 600.0

INTERRUPTED_TEXT = (
    "stopped after waiting {waited:.0f} s for the homeserver's rate limits ({what}); what was "
    "done is stored: run `libhub cohorts sync` again to continue, or lift the bot's limits "
    "with `libhub matrix lift-ratelimit`"
)


class SyncInterrupted(LibhubError):
    """The rate-limit budget of this run is spent; a rerun continues from stored progress."""


def _now() -> datetime:
    return datetime.now(UTC)


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


@dataclass
class SyncReport:
    """What a reconciliation found (dry run) or did."""

    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rate_limit_waits: int = 0  # 429s waited out (each retried after retry_after)
    interrupted: str = ""  # why the run stopped early (rate limits); a rerun continues

    @property
    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.changes]


def smtp_mailer(settings: Settings) -> Mailer | None:
    """A mailer over the configured SMTP server (None when ``email.smtp_url`` is unset)."""
    if not settings.email.smtp_url:
        return None
    from network.mail.factory import sender_domain, smtp_sender
    from network.mail.message import build_message

    domain = sender_domain(settings.email)

    async def send(to: str, subject: str, text: str) -> None:
        msg = build_message(
            sender=settings.email.from_,
            to=to,
            subject=subject,
            text=text,
            html=None,
            list_unsubscribe_url=None,
            list_unsubscribe_mailto=None,
            list_id=None,
            message_id_domain=domain,
        )
        async with smtp_sender(settings.email, max_connections=1) as sender:
            result = await sender.send(msg)
        if not result.ok:
            raise LibhubError(f"invitation email to {to} was not accepted: {result.detail}")

    return send


class CohortSync:
    """Reconciles the community's rooms with the config (``libhub cohorts sync``)."""

    def __init__(
        self,
        settings: Settings,
        matrix: MatrixGateway,
        storage: Storage,
        *,
        mailer: Mailer | None = None,
        clock: Callable[[], datetime] = _now,
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        self.settings = settings
        self.matrix = matrix
        self.storage = storage
        self.mailer = mailer
        self.clock = clock
        self.specs = desired_rooms(settings)
        self.max_wait = max_wait
        self._waited = 0.0
        self._waits = 0

    async def _limited(
        self, call: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``call(...)``, waiting out each 429 for its ``retry_after`` and trying again, until
        this run has waited ``max_wait`` seconds in all (then `SyncInterrupted`)."""
        while True:
            try:
                return await call(*args, **kwargs)
            except MatrixRateLimited as e:
                if self._waited + e.retry_after > self.max_wait:
                    text = INTERRUPTED_TEXT.format(waited=self._waited, what=e)
                    raise SyncInterrupted(text) from e
                self._waits += 1
                self._waited += e.retry_after
                log.info("rate limited (%s); waiting %.1f s", e, e.retry_after)
                await asyncio.sleep(e.retry_after)

    @property
    def bot(self) -> str:
        return self.matrix.user_id

    # -- reading -------------------------------------------------------------------

    async def _lookup(self, spec: RoomSpec) -> str | None:
        known = await self.storage.community_room(spec.key)
        if known is not None and known.ref == spec.ref:
            return known.room_id
        if spec.ref.startswith("!"):
            return spec.ref
        cached = await self.storage.room_id_for(spec.ref)
        if cached:
            return cached
        try:
            answer = await self.matrix._request(
                "GET",
                f"/_matrix/client/v3/directory/room/{quote(spec.ref, safe='')}",
                what=f"look up {spec.ref}",
            )
        except MatrixPermanent as e:
            if e.errcode == "M_NOT_FOUND":
                return None
            raise
        return str(answer["room_id"])

    async def _snapshot(self, room_id: str) -> RoomSnapshot | None:
        """The room's state, or None when the bot cannot read it (not in the room)."""
        try:
            resp = await self.matrix.client.room_get_state(room_id)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise MatrixUnavailable(f"read the state of {room_id}: {e}") from e
        if isinstance(resp, nio.RoomGetStateError):
            if resp.status_code in ("M_FORBIDDEN", "M_NOT_FOUND"):
                return None
            raise MatrixUnavailable(f"read the state of {room_id}: {resp.message}")
        return snapshot_from_state(room_id, resp.events)

    async def _diff(
        self, spec: RoomSpec, snap: RoomSnapshot | None, ids: dict[str, str]
    ) -> list[Action]:
        room_id = ids.get(spec.key, "")
        known = await self.storage.community_room(spec.key)
        cohort = self._cohort(spec.cohort_id)
        return diff_room(
            spec,
            snap,
            bot=self.bot,
            invited_before=await self.storage.invited_users(room_id) if room_id else set(),
            manage=self.settings.community.manage_membership,
            level=self.settings.community.facilitator_power,
            space_id=ids.get("space"),
            child_ids={s.ref: ids[s.key] for s in self.specs if not s.is_space and s.key in ids},
            emailed=await self.storage.emailed_members(spec.cohort_id) if spec.cohort_id else set(),
            smtp_ready=self.mailer is not None,
            pinned_hash=known.resources_hash if known else None,
            pinned_event=known.resources_event_id if known else None,
            cohort_name=cohort.name if cohort else "",
        )

    def _cohort(self, cohort_id: str | None) -> CohortSettings | None:
        return next((c for c in self.settings.cohorts if c.id == cohort_id), None)

    async def plan(self) -> SyncReport:
        """What `apply` would do, without changing anything."""
        report = SyncReport()
        ids: dict[str, str] = {}
        snaps: dict[str, RoomSnapshot | None] = {}
        for spec in self.specs:
            room_id = await self._lookup(spec)
            snap = await self._snapshot(room_id) if room_id else None
            if room_id:
                ids[spec.key] = room_id
                if snap is None:
                    report.actions.append(Action(spec.key, spec.ref, "join", room_id, "join"))
                    snap = new_room_snapshot(spec, self.bot)
            snaps[spec.key] = snap
        for spec in self.specs:
            report.actions.extend(await self._diff(spec, snaps[spec.key], ids))
        return report

    # -- changing ------------------------------------------------------------------

    async def apply(self) -> SyncReport:
        """Create what is missing, then make every room match the config.

        Rate limits (room creation, invites, messages) are waited out; each step is stored
        as it is done, so a run stopped by `SyncInterrupted` (or killed) continues on the
        next run without doing anything twice."""
        report = SyncReport()
        try:
            await self._apply(report)
        except SyncInterrupted as e:
            report.interrupted = str(e)
        report.rate_limit_waits = self._waits
        return report

    async def _apply(self, report: SyncReport) -> None:
        ids: dict[str, str] = {}
        now = self.clock()
        for spec in self.specs:
            try:
                room_id = await self._limited(self._lookup, spec)
                if room_id is None:
                    room_id = await self._limited(self._create, spec)
                    report.actions.append(Action(spec.key, spec.ref, "create", spec.ref))
                elif await self._snapshot(room_id) is None:
                    await self._limited(self.matrix.join, room_id)
                    report.actions.append(Action(spec.key, spec.ref, "join", room_id, "join"))
            except SyncInterrupted:
                raise
            except MatrixError as e:
                report.errors.append(f"{spec.ref}: {e}")
                continue
            ids[spec.key] = room_id
            await self.storage.save_community_room(spec.key, spec.ref, room_id, now)
            await self.storage.remember_room(spec.ref, room_id, now)
        for spec in self.specs:
            if spec.key not in ids:
                continue
            try:
                snap = await self._snapshot(ids[spec.key])
                actions = [a for a in await self._diff(spec, snap, ids) if a.kind != "create"]
            except MatrixError as e:
                report.errors.append(f"{spec.ref}: {e}")
                continue
            for action in actions:
                if not action.changes:
                    report.actions.append(action)
                    continue
                try:
                    await self._limited(self._do, spec, ids, snap, action)
                except SyncInterrupted:
                    raise
                except (MatrixError, LibhubError) as e:
                    report.errors.append(f"{spec.ref}: {action.kind} {action.target}: {e}")
                else:
                    report.actions.append(action)

    async def _create(self, spec: RoomSpec) -> str:
        if not spec.ref.startswith("#"):
            raise MatrixPermanent(f"room {spec.ref} is not visible to the bot; invite it")
        server = spec.ref.partition(":")[2]
        if server != server_of(self.bot):
            raise MatrixPermanent(
                f"cannot create {spec.ref}: aliases can only be created on the bot's "
                f"homeserver ({server_of(self.bot)}); create the room there and invite the bot"
            )
        extra: dict[str, Any] = {
            "initial_state": [
                {
                    "type": "m.room.join_rules",
                    "state_key": "",
                    "content": {"join_rule": spec.join_rule},
                }
            ]
        }
        if spec.is_space:
            extra["creation_content"] = {"type": "m.space"}
        elif spec.encrypted:
            extra["initial_state"].append(ENCRYPTION_STATE)
        log.info("creating %s %s", "space" if spec.is_space else "room", spec.ref)
        return await self.matrix.create_room(alias=spec.ref, name=spec.name, topic=spec.topic,
                                             extra=extra)  # fmt: skip

    async def _member_call(self, room_id: str, verb: str, body: dict[str, Any]) -> None:
        await self.matrix._request(
            "POST",
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/{verb}",
            body,
            what=f"{verb} {body.get('user_id')} in {room_id}",
        )

    async def _do(
        self, spec: RoomSpec, ids: dict[str, str], snap: RoomSnapshot | None, action: Action
    ) -> None:
        room_id = ids[spec.key]
        now = self.clock()
        d = action.data
        m = self.matrix
        if action.kind == "name":
            await m.send_state(room_id, "m.room.name", {"name": d["name"]})
        elif action.kind == "topic":
            await m.send_state(room_id, "m.room.topic", {"topic": d["topic"]})
        elif action.kind == "join-rule":
            await m.send_state(room_id, "m.room.join_rules", {"join_rule": d["rule"]})
        elif action.kind == "power":
            await m.send_state(room_id, "m.room.power_levels", dict(d["content"]))
        elif action.kind == "invite":
            await self._member_call(room_id, "invite", {"user_id": action.target})
            await self.storage.record_invite(room_id, action.target, now)
        elif action.kind == "kick":
            reason = "no longer a member of this group in the network's configuration"
            await self._member_call(room_id, "kick", {"user_id": action.target, "reason": reason})
            await self.storage.forget_invite(room_id, action.target)
        elif action.kind == "child":
            content = {"via": list(d["via"]), "suggested": True}
            await m.send_state(room_id, "m.space.child", content, state_key=d["room_id"])
        elif action.kind == "parent":
            content = {"via": list(d["via"]), "canonical": True}
            await m.send_state(room_id, "m.space.parent", content, state_key=action.target)
        elif action.kind == "email":
            await self._email(spec, action.target)
            assert spec.cohort_id is not None
            await self.storage.record_email_invite(spec.cohort_id, action.target, now)
        elif action.kind == "pin":
            await self._pin(spec, room_id, snap, str(d["hash"]))

    async def _email(self, spec: RoomSpec, address: str) -> None:
        assert self.mailer is not None
        cohort = self._cohort(spec.cohort_id)
        via = server_of(self.bot)
        space = self.settings.community.space
        subject, text = invitation_email(
            network=self.settings.network.name,
            cohort=spec.name,
            room_link=matrix_to(spec.ref, via),
            space_link=matrix_to(space, via) if space else None,
            homeserver=self.settings.matrix.homeserver,
            join_rule=spec.join_rule,
            library=cohort.library_of(address) if cohort else None,
        )
        await self.mailer(address, subject, text)

    async def _pin(
        self, spec: RoomSpec, room_id: str, snap: RoomSnapshot | None, wanted: str
    ) -> None:
        known = await self.storage.community_room(spec.key)
        body, formatted = resources_text(spec.name, spec.resources)
        content = {
            "msgtype": "m.notice",
            "body": body,
            "format": "org.matrix.custom.html",
            "formatted_body": formatted,
        }
        sent = await self.matrix.send(
            room_id, content, txn_id=f"libhub-resources-{_digest(spec.key, wanted)}"
        )
        old = known.resources_event_id if known else None
        pinned = [sent.event_id] + [
            e for e in (snap.pinned if snap else ()) if e not in (old, sent.event_id)
        ]
        await self.matrix.send_state(room_id, "m.room.pinned_events", {"pinned": pinned})
        await self.storage.set_resources_pin(spec.key, wanted, sent.event_id, self.clock())


def welcome_content(
    settings: Settings, cohort: CohortSettings, user: str, name: str
) -> dict[str, Any]:
    """The welcome notice for ``user`` (shown as ``name``) joining ``cohort``'s room."""
    library = cohort.library_of(user) or "your library"
    text = settings.community.welcome.format(name=name, cohort=cohort.name, library=library)
    body = [text]
    parts = [f"<p>{html.escape(text)}</p>"]
    if cohort.resources:
        body.append("Resources (pinned in this room):")
        body += [f"- {r.title}: {r.url}" for r in cohort.resources]
        links = "".join(
            f'<li><a href="{html.escape(r.url, quote=True)}">{html.escape(r.title)}</a></li>'
            for r in cohort.resources
        )
        parts.append(f"<p>Resources (pinned in this room):</p><ul>{links}</ul>")
    pill = f'<a href="https://matrix.to/#/{html.escape(user, quote=True)}">{html.escape(name)}</a>'
    return {
        "msgtype": "m.notice",
        "body": f"{name}: " + "\n".join(body),
        "format": "org.matrix.custom.html",
        "formatted_body": f"<p>{pill}</p>" + "".join(parts),
        "m.mentions": {"user_ids": [user]},
    }


class Community:
    """The running community features: welcomes on join, reconciliation at start."""

    def __init__(
        self,
        settings: Settings,
        matrix: MatrixGateway,
        storage: Storage,
        *,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.settings = settings
        self.matrix = matrix
        self.storage = storage
        self.clock = clock
        self.welcomes_sent = 0
        self._rooms: dict[str, str] = {}  # room id -> cohort id

    async def cohort_for_room(self, room_id: str) -> CohortSettings | None:
        """The cohort whose room this is (cohort rooms are known once synced or resolved)."""
        if room_id not in self._rooms:
            for cohort in self.settings.cohorts:
                known = await self.storage.community_room(f"cohort:{cohort.id}")
                rid = known.room_id if known else await self.storage.room_id_for(cohort.room)
                if rid is None and cohort.room.startswith("!"):
                    rid = cohort.room
                if rid:
                    self._rooms[rid] = cohort.id
        cohort_id = self._rooms.get(room_id)
        return next((c for c in self.settings.cohorts if c.id == cohort_id), None)

    async def on_event(self, room_id: str, event: nio.Event) -> None:
        """Event hook: welcome each person who joins a cohort room, once."""
        if not isinstance(event, nio.RoomMemberEvent) or event.membership != "join":
            return
        user = event.state_key
        if user == self.matrix.user_id or event.prev_membership == "join":
            return  # a profile change, or the bot itself
        cohort = await self.cohort_for_room(room_id)
        if cohort is None or await self.storage.welcomed(cohort.id, user):
            return
        name = str((event.content or {}).get("displayname") or user[1:].split(":")[0])
        content = welcome_content(self.settings, cohort, user, name)
        # Derived from (cohort, user): a replay after a restart returns the same event.
        sent = await self.matrix.send(
            room_id, content, txn_id=f"libhub-welcome-{_digest(cohort.id, user)}"
        )
        await self.storage.record_welcome(cohort.id, user, sent.event_id, self.clock())
        self.welcomes_sent += 1

    async def membership(self, cohort: CohortSettings) -> dict[str, str] | None:
        """Who is in the cohort's room now (user id -> membership), None when unknown."""
        room_id = await self.storage.room_id_for(cohort.room)
        if room_id is None or not self.matrix.logged_in:
            return None
        try:
            # Shown on a web page: a struggling homeserver must not hold the page up.
            answer = await asyncio.wait_for(
                self.matrix._request(
                    "GET",
                    f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/members",
                    what=f"members of {cohort.room}",
                ),
                timeout=5.0,
            )
        except (MatrixError, TimeoutError):
            return None
        return {
            str(e.get("state_key")): str((e.get("content") or {}).get("membership", "leave"))
            for e in answer.get("chunk", [])
        }

    async def sync_once(self) -> SyncReport:
        sync = CohortSync(
            self.settings,
            self.matrix,
            self.storage,
            mailer=smtp_mailer(self.settings),
            clock=self.clock,
        )
        report = await sync.apply()
        self._rooms.clear()
        for line in report.errors:
            log.error("community sync: %s", line)
        log.info("community sync: %d change(s)", len(report.changes))
        return report

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile once after the first login, when ``community.sync_on_start`` says so."""
        if not self.settings.community.sync_on_start:
            return
        while not self.matrix.logged_in:
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
                return
            except TimeoutError:
                continue
        try:
            await self.sync_once()
        except Exception:  # the service keeps running; the CLI shows the details
            log.exception("community sync at start failed; run `libhub cohorts sync`")
