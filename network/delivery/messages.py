"""How a room's claimed rows become Matrix messages: bursts grouped, content rendered,
edits checked against their post.

A burst (more than ``group_threshold`` posts of one poll for one room) becomes grouped
messages computed from rows that never change, so a retried group is the same message with
the same transaction id. Edits wait for their post, and are skipped when the post already
shows the item's latest version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from network.delivery.state import DeliveryState, Round
from network.routing.render import edit_content, grouped_content, matrix_content
from network.storage import OutboxRow


@dataclass
class Unit:
    """One message: a post, an edit, or a grouped message covering several rows."""

    action: str  # post | edit | group
    head: OutboxRow  # whose transaction id the message uses
    claimed: list[OutboxRow]  # rows of this round it covers
    members: list[OutboxRow]  # every pending row it delivers


@dataclass(frozen=True)
class Prepared:
    """A message's content, and what recording it as sent needs to know."""

    content: dict[str, Any]
    shown_version: int | None = None
    post_row_id: int | None = None


class MessagePlanning(DeliveryState):
    """Plans a room's rows as messages and prepares each message's content."""

    async def _plan(self, ref: str, rows: list[OutboxRow]) -> list[Unit]:
        """The room's rows as messages, in row order; bursts become grouped messages."""
        chunk_of: dict[int, list[OutboxRow]] = {}
        sizes = await self.storage.poll_sizes(
            "matrix", ref, sorted({r.poll for r in rows if r.action == "post" and r.poll})
        )
        for poll_id, count in sorted(sizes.items()):
            if count <= self.policy.group_threshold:
                continue
            poll = await self.storage.poll_rows("matrix", ref, poll_id)
            n = math.ceil(len(poll) / self.policy.group_max)
            size = math.ceil(len(poll) / n)  # even chunks: no lonely "1 new item" message
            for k in range(0, len(poll), size):
                chunk = poll[k : k + size]
                for r in chunk:
                    chunk_of[r.id] = chunk
        units: list[Unit] = []
        groups: dict[int, Unit] = {}
        for row in rows:
            burst = chunk_of.get(row.id) if row.action == "post" else None
            if burst is None:
                units.append(Unit(row.action, row, [row], [row]))
            elif burst[0].id in groups:
                groups[burst[0].id].claimed.append(row)
            else:
                members = [r for r in burst if r.status == "pending"]
                unit = Unit("group", members[0], [row], members)
                groups[burst[0].id] = unit
                units.append(unit)
        return units

    async def _prepare(self, ref: str, unit: Unit, ctx: Round) -> Prepared | None:
        """The message content, or None when the unit needs no message (recorded here)."""
        head = unit.head
        if unit.action == "group":
            missing = [r.item_id for r in unit.members if r.item_id not in ctx.items]
            ctx.items.update(await self.storage.items_by_id(missing))
            burst = [ctx.items[r.item_id] for r in unit.members if r.item_id in ctx.items]
            titles = {i.feed_id: self.feed_titles(i.feed_id) for i in burst}
            return Prepared(grouped_content(burst, feed_titles=titles))
        item = ctx.items.get(head.item_id)
        if item is None:
            await self.storage.mark_failed(head.id, error="the item no longer exists")
            return None
        template = None
        if self.router is not None:
            template = self.router.matrix_template(
                item.feed_id, item, ref, cohort=self.cohort_of(item)
            )
        # An item usually goes to several rooms: render it once per layout and round.
        key = (item.id, item.version, template.source if template else None)
        content = ctx.rendered.get(key)
        if content is None:
            content = ctx.rendered[key] = matrix_content(
                item,
                feed_title=self.feed_titles(item.feed_id),
                feed_link=ctx.feed_links.get(item.feed_id),
                template=template,
                zone=self.zone,
                calendar=self.calendar_links(item) if self.calendar_links else None,
            )
        # Only a first attempt is known to show what was rendered now: an earlier attempt
        # may have reached the server, which then returns that older event.
        shown = item.version if head.attempts == 0 else None
        if unit.action == "post":
            return Prepared(content, shown_version=shown)
        await self._flush(ctx)  # the post may have gone out earlier in this turn
        post = await self.storage.original_post(item.id, "matrix", ref)
        if post is not None and post.status == "pending":
            wait = max(self.policy.base_backoff, (post.next_attempt - self.clock()).total_seconds())
            # Not an attempt: the edit simply comes after its post.
            await self._release([head], wait + 1)
            return None
        reason = None
        if post is None or post.status != "sent" or post.event_id is None:
            reason = "the original post was not sent on its own"
        elif post.grouped:
            reason = "the original was part of a grouped message"
        elif post.shown_version >= item.version:
            reason = f"the post already shows version {item.version}"
        if reason is not None:
            await self.storage.mark_skipped([head.id], reason=reason)
            return None
        assert post is not None and post.event_id is not None
        return Prepared(
            edit_content(content, post.event_id), shown_version=shown, post_row_id=post.row_id
        )
