"""The assistance bot's rooms: sending into them, and what it knows of them and of people.

Owns sending with retries (the same transaction id every time, so a retry is never a second
post), display names and room labels, finding the configured team and help rooms and the
rooms libhub created for the community, and what the bot knows of each room it is in: when
it first joined, how many people are in, whether it is encrypted. A room is a direct chat
when it was created or invited as one (``is_direct`` on the invite, kept in the bot's
``m.direct`` account data as Matrix clients do), never because it happens to have two
members; rooms libhub posts feeds or ops notices into, and the community rooms, are never
direct chats. On joining a direct chat the bot greets the person once. Encrypted rooms work
like the others: the gateway decrypts what comes in and encrypts what goes out; a message
whose key never arrived gets one notice to its sender.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bots.messages import GREETING, UNREADABLE, message, txn
from network.errors import MatrixError, MatrixPermanent, MatrixRateLimited, MatrixUnavailable
from network.settings.model import Settings

if TYPE_CHECKING:
    from network.matrix.gateway import MatrixGateway
    from network.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoomInfo:
    joined_ts: int
    members: int
    encrypted: bool


class Rooms:
    """The bot's side of Matrix; also what `bots.cases.escalation` needs from the running bot."""

    def __init__(self, settings: Settings, storage: Storage, matrix: MatrixGateway) -> None:
        self.settings = settings
        self.storage = storage
        self.matrix = matrix
        self._names: dict[str, str] = {}
        self._labels: dict[str, str] = {}
        self._rooms: dict[str, RoomInfo] = {}
        self._team_room: str | None = None
        self._help_rooms: dict[str, str] = {}  # config ref -> room id
        self._community_rooms: set[str] = set()  # the space, network and cohort rooms
        self._posted_rooms: set[str] = set()  # feed, route and ops rooms libhub posts into
        self._direct: dict[str, list[str]] | None = None  # m.direct: person -> room ids
        self._resolve_after = 0.0  # loop time before which unresolved rooms are not retried

    @property
    def user_id(self) -> str:
        return self.matrix.user_id

    async def send(self, room_id: str, content: dict[str, Any], txn_id: str) -> str:
        """Send with a few retries on rate limits and outages; the same ``txn_id`` every time."""
        delay = 1.0
        for attempt in range(4):
            try:
                return (await self.matrix.send(room_id, content, txn_id=txn_id)).event_id
            except MatrixRateLimited as e:
                if attempt == 3:
                    raise
                await asyncio.sleep(min(e.retry_after, 30.0))
            except MatrixUnavailable:
                if attempt == 3:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def display_name(self, user_id: str) -> str:
        if user_id not in self._names:
            name = user_id[1:].split(":", 1)[0]
            try:
                data = await self.matrix._request(
                    "GET",
                    f"/_matrix/client/v3/profile/{quote(user_id, safe='')}/displayname",
                    what=f"display name of {user_id}",
                )
                name = str(data.get("displayname") or name)
            except MatrixError:
                pass
            if len(self._names) > 2000:
                self._names.clear()
            self._names[user_id] = name
        return self._names[user_id]

    async def room_label(self, room_id: str) -> str:
        if room_id not in self._labels:
            label = room_id
            for event_type, key in (("m.room.canonical_alias", "alias"), ("m.room.name", "name")):
                try:
                    state = await self.matrix.room_state(room_id, event_type)
                except MatrixError:
                    state = None
                if state and isinstance(state.get(key), str) and state[key]:
                    label = str(state[key])
                    break
            self._labels[room_id] = label
        return self._labels[room_id]

    # -- the configured rooms ----------------------------------------------------------------

    async def team_room(self) -> str | None:
        await self.resolve()
        return self._team_room

    def is_team_room(self, room_id: str) -> bool:
        """Whether ``room_id`` is the team room as last resolved (see `resolve`)."""
        return room_id == self._team_room

    def is_help_room(self, room_id: str) -> bool:
        return room_id in self._help_rooms.values()

    def resolved(self) -> bool:
        """Whether every configured room has been found."""
        a = self.settings.assistance
        team_ok = not a.team_room or self._team_room is not None
        return team_ok and all(ref in self._help_rooms for ref in a.help_rooms)

    async def resolve(self) -> None:
        """Find the community rooms, and the team and help rooms not found yet."""
        a = self.settings.assistance
        # Rooms libhub created for the community are never taken for direct chats.
        self._community_rooms = {r.room_id for r in await self.storage.community_rooms()}
        for cohort in self.settings.cohorts:
            if (room_id := await self.storage.room_id_for(cohort.room)) is not None:
                self._community_rooms.add(room_id)
        # Rooms libhub posts feeds, routed items or ops notices into are never direct chats.
        refs = [r for f in self.settings.feeds for r in f.rooms]
        refs += [r for route in self.settings.routes for r in route.rooms]
        refs += [self.settings.network.ops_room] if self.settings.network.ops_room else []
        for ref in refs:
            room_id = ref if ref.startswith("!") else await self.storage.room_id_for(ref)
            if room_id is not None:
                self._posted_rooms.add(room_id)
        now = asyncio.get_running_loop().time()
        if not self.matrix.logged_in or now < self._resolve_after:
            return
        failed = False
        if a.team_room and self._team_room is None:
            try:
                self._team_room = await self.matrix.resolve_room(a.team_room)
            except MatrixError as e:
                failed = True
                log.warning("cannot use the team room %s: %s", a.team_room, e)
        for ref in a.help_rooms:
            if ref not in self._help_rooms:
                try:
                    self._help_rooms[ref] = await self.matrix.resolve_room(ref)
                except MatrixError as e:
                    failed = True
                    log.warning("cannot use the help room %s: %s", ref, e)
        if failed:
            # Tried again a minute later, not on every event.
            self._resolve_after = now + 60.0

    # -- each room the bot is in -------------------------------------------------------------

    def forget(self, room_id: str) -> None:
        """Drop what is known of the room: its members changed."""
        self._rooms.pop(room_id, None)

    async def info(self, room_id: str) -> RoomInfo | None:
        """When the bot joined, how many people are in, and whether it is encrypted."""
        if room_id in self._rooms:
            return self._rooms[room_id]
        try:
            members = await self.matrix._request(
                "GET",
                f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/members?membership=join",
                what=f"members of {room_id}",
            )
        except MatrixPermanent:
            return None  # not in the room (any more)
        chunk = [e for e in members.get("chunk", []) if isinstance(e, dict)]
        own = [e for e in chunk if e.get("state_key") == self.user_id]
        if not own:
            return None
        row = await self.storage.bot_room(room_id)
        joined_ts = row.joined_ts if row and row.joined_ts else int(own[0]["origin_server_ts"])
        if row is None or row.joined_ts is None:
            await self.storage.set_bot_room_joined(room_id, joined_ts)
        encrypted = await self.matrix.room_state(room_id, "m.room.encryption") is not None
        info = RoomInfo(joined_ts, len(chunk), encrypted)
        if len(self._rooms) > 5000:
            self._rooms.clear()
        self._rooms[room_id] = info
        return info

    async def _direct_rooms(self) -> dict[str, list[str]]:
        """The bot's ``m.direct`` account data (person -> rooms), read once."""
        if self._direct is None:
            path = f"/_matrix/client/v3/user/{quote(self.user_id, safe='')}/account_data/m.direct"
            try:
                data = await self.matrix._request("GET", path, what="the bot's direct chats")
            except MatrixPermanent:
                data = {}  # never written yet
            self._direct = {
                str(k): [str(r) for r in v] for k, v in data.items() if isinstance(v, list)
            }
        return self._direct

    async def mark_direct(self, room_id: str, person: str) -> None:
        """Remember ``room_id`` as a direct chat with ``person`` (invited with is_direct)."""
        direct = await self._direct_rooms()
        if room_id in direct.get(person, []):
            return
        direct.setdefault(person, []).append(room_id)
        path = f"/_matrix/client/v3/user/{quote(self.user_id, safe='')}/account_data/m.direct"
        await self.matrix._request("PUT", path, direct, what="the bot's direct chats")

    async def is_direct(self, room_id: str, info: RoomInfo) -> bool:
        """A direct chat: invited as one, still just the bot and one person, and not a
        room libhub made or posts into (those may have two members too)."""
        special = (
            room_id == self._team_room
            or room_id in self._help_rooms.values()
            or room_id in self._community_rooms
            or room_id in self._posted_rooms
        )
        if special or info.members > 2:
            return False
        direct = await self._direct_rooms()
        return any(room_id in rooms for rooms in direct.values())

    def on_encrypted(self, room_id: str, info: RoomInfo) -> None:
        """The room turned out to be encrypted (an encrypted event or the encryption state)."""
        self._rooms[room_id] = replace(info, encrypted=True)

    async def on_own_join(self, room_id: str, ev: dict[str, Any]) -> None:
        """The bot joined: remember when, and greet the person in a new direct chat."""
        await self.storage.set_bot_room_joined(room_id, int(ev.get("origin_server_ts", 0)))
        self._rooms.pop(room_id, None)
        # The invite the join replaced says whether the room was made as a direct chat.
        unsigned = ev.get("unsigned") if isinstance(ev.get("unsigned"), dict) else {}
        before = unsigned.get("prev_content") if isinstance(unsigned, dict) else None
        inviter = unsigned.get("prev_sender") if isinstance(unsigned, dict) else None
        if isinstance(before, dict) and before.get("is_direct") is True:
            await self.mark_direct(room_id, str(inviter or ""))
        info = await self.info(room_id)
        if info is None or not await self.is_direct(room_id, info):
            return
        row = await self.storage.bot_room(room_id)
        if row is not None and not row.greeted:
            await self.send(room_id, message(GREETING), txn("greet", room_id))
            await self.storage.set_room_flag(room_id, "greeted")

    async def tell_unreadable(self, room_id: str, sender: str, session_id: str) -> None:
        """Tell the sender, once per encryption session, that a message could not be read."""
        content = message(UNREADABLE, mentions=[sender])
        await self.send(room_id, content, txn("unreadable", room_id, sender, session_id))
