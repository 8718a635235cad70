"""The app factory: the one place where settings, storage, Matrix, feeds, delivery, the
web server and the bots are wired together, started and stopped.

Start order matters for the homeserver-is-down case: the database and web server come
up first (so /healthz can say what is wrong), then the Matrix loop keeps trying to log
in with backoff while polling goes on and deliveries wait in the outbox.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, nullcontext, suppress
from typing import Any, Self
from zoneinfo import ZoneInfo

import aiohttp
import nio
from aiohttp import web

from bots.assistant import Assistant
from bots.commands import Command, CommandContext, Reply
from feeds.fetch import Fetcher, make_session
from feeds.parse import set_parse_concurrency
from network.community.cohorts import Community
from network.community.updates import UPDATE_HELP, CohortUpdates, cohort_of_feed
from network.community.webinars import WebinarReminders, webinar_calendar_links
from network.delivery.channels import ChannelSender
from network.delivery.moderation import Moderation
from network.delivery.outbox import Delivery
from network.delivery.state import DeliveryPolicy
from network.delivery.webhooks import Webhooks
from network.errors import ServiceFailed, StartupFailed
from network.feedadmin.manage import FeedAdmin
from network.feedadmin.messages import HELP as FEED_HELP
from network.feedadmin.room import FeedRoomCommands
from network.heap import release_heap, settle_heap
from network.leadership import Leadership
from network.matrix.gateway import MatrixGateway
from network.polling.poller import Poller
from network.routing.catalog import FeedCatalog
from network.routing.router import Router
from network.settings.model import Settings, secret
from network.settings.moderation import HOOK_FEED_PREFIX
from network.storage import Storage
from network.storage.dialect import POSTGRESQL
from network.storage.lock import service_lock
from network.subscriptions.digests.runner import DigestRunner
from network.subscriptions.lifecycle import Subscriptions, subscribe_from_matrix
from network.subscriptions.postman import Postman
from network.web.app import make_web_app
from network.web.context import WebContext

log = logging.getLogger(__name__)


VERSION = "0.1.0"
FOLLOW_EVERY = 2.0  # seconds between a follower's tries of the stored Matrix session

EventHook = Callable[[str, nio.Event], Awaitable[None]]


def _feed_command(room: FeedRoomCommands) -> Command:
    async def handler(ctx: CommandContext) -> Reply:
        answer = await room.handle(ctx.room_id, ctx.sender, ctx.args)
        return Reply(answer.text, answer.html)

    return Command(
        "feed", FEED_HELP.format(level=room.level), "!feed add URL | list | ...", handler
    )


def _update_command(updates: CohortUpdates) -> Command:
    async def handler(ctx: CommandContext) -> Reply:
        text = await updates.handle(
            ctx.room_id, ctx.sender, ctx.event_id, ctx.args, reply_to=ctx.reply_to
        )
        return Reply(text)

    return Command("update", UPDATE_HELP, "!update TEXT", handler)


class Service:
    """One running libhub: build with ``await Service.create(settings)`` (or ``async with``).

    ``__init__`` only wires parts that are already open; `create` opens the database, the
    HTTP session, the Matrix client and the mail pool on one `AsyncExitStack`, so a failure
    while building closes whatever was opened before it and `close` closes them all.
    """

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        session: aiohttp.ClientSession,
        matrix: MatrixGateway,
        postman: Postman,
        channels: ChannelSender,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.session = session
        self.matrix = matrix
        self.postman = postman
        self.channels = channels
        self._resources = AsyncExitStack()  # `create` hands over what it opened
        contact = settings.network.contact_url or settings.web.public_url
        self.user_agent = f"libhub/{VERSION} (+{contact})"
        self.fetcher = Fetcher(
            session,
            user_agent=self.user_agent,
            max_bytes=int(settings.polling.max_body_mib * 2**20),
            read_timeout=settings.polling.timeout.total_seconds(),
            max_concurrency=settings.polling.concurrency,
            per_host=settings.polling.per_host,
        )
        # The feeds and routes in force: the file's and those managed live (database).
        self.catalog = FeedCatalog(settings)
        self.router = Router(settings, self.catalog)
        d = settings.delivery
        self.delivery = Delivery(
            storage,
            self.matrix,
            self.channels,
            feed_titles=self.feed_title,
            policy=DeliveryPolicy(
                room_parallelism=d.room_parallelism,
                room_pace=d.room_pace.total_seconds(),
                group_threshold=d.group_threshold,
                # Instances on one PostgreSQL share the rooms: a claim takes as many rooms
                # as a round serves at once, whole (each room keeps its order).
                claim_rooms=d.room_parallelism if storage.dialect == POSTGRESQL else None,
            ),
            router=self.router,
            # Route templates can depend on the cohort; cohort items carry it in their feed id.
            cohort_of=lambda item: cohort_of_feed(item.feed_id),
            zone=ZoneInfo(settings.network.timezone),
            calendar_links=lambda item: webinar_calendar_links(settings.web.public_url, item),
        )
        # Moderation: held deliveries wait for a coordinator (dashboard or ops-room reaction).
        self.moderation = Moderation(
            settings, storage, self.matrix,
            on_released=self._released, source_title=self.feed_title,
        )  # fmt: skip
        # Subscribers: double opt-in, digests and notices by email (pooled SMTP) or apprise.
        web_secret = secret(settings.web.secret_env)
        self.subscriptions = Subscriptions(
            settings, storage, self.postman, secret=web_secret.encode() if web_secret else None
        )
        self.digests = DigestRunner(
            settings,
            storage,
            self.subscriptions,
            notify_ops=self.notify_ops if settings.network.ops_room else None,
        )
        # Inbound webhooks store items like a poll does.
        self.webhooks = Webhooks(
            settings, storage, self.router,
            on_queued=self._queued, on_new_items=self.digests.queue_items,
        )  # fmt: skip
        self.poller = Poller(
            settings,
            storage,
            self.fetcher,
            router=self.router,
            on_queued=self._queued,
            notify_ops=self.notify_ops if settings.network.ops_room else None,
            item_hooks=[self.digests.items_stored],
            cycle_hooks=[self.digests.wake],
        )
        # Feeds managed live, from rooms (!feed) and the dashboard.
        self.feed_admin = FeedAdmin(
            settings,
            storage,
            self.fetcher,
            self.catalog,
            first_poll=self._first_poll,
            on_change=self.delivery.wake,
        )
        self.feed_room = FeedRoomCommands(self.feed_admin, self.matrix)
        # Community of practice: welcomes and !update in cohort rooms, webinar reminders.
        # !update runs as one of the bot's commands (listed by !help, one reply each); the
        # cohort hook keeps prompt replies and client-side edits of updates.
        self.community = Community(settings, self.matrix, storage)
        self.cohort_updates = CohortUpdates(
            settings, self.matrix, storage, self.router, self.community,
            on_queued=self._queued,
            on_new_items=self.digests.queue_items,
            handle_commands=False,
        )  # fmt: skip
        self.webinars = WebinarReminders(settings, self.matrix, storage)
        # The assistance bot: toolbox answers, commands, Need Assistance cases.
        self.assistant = Assistant(
            settings,
            storage,
            self.matrix,
            commands=[_update_command(self.cohort_updates), _feed_command(self.feed_room)],
            subscribe=functools.partial(subscribe_from_matrix, self.subscriptions),
        )
        # The sync loop calls every hook for every timeline event. The delivery hook
        # follows room upgrades (m.room.tombstone) as they happen.
        self.event_hooks: list[EventHook] = [
            self.delivery.on_room_event,
            self.community.on_event,
            self.cohort_updates.on_event,
            self.assistant.on_event,
            self.moderation.on_event,
        ]
        self.web = WebContext(
            settings=settings,
            storage=storage,
            subscriptions=self.subscriptions,
            matrix=self.matrix,
            delivery=self.delivery,
            poller=self.poller,
            community=self.community,
            digests=self.digests,
            feed_title=self.feed_title,
            moderation=self.moderation,
            webhooks=self.webhooks,
            feed_admin=self.feed_admin,
        )
        if settings.network.ops_room:
            self.matrix.ratelimits.notify = self.notify_ops
        self.started = asyncio.Event()
        self.leadership = Leadership(storage, shared=storage.dialect == POSTGRESQL)
        self._web_runner: web.AppRunner | None = None

    @classmethod
    async def create(cls, settings: Settings) -> Service:
        set_parse_concurrency(2)
        async with AsyncExitStack() as stack:
            storage = await stack.enter_async_context(
                await Storage.open(settings.database_location, password=settings.database_password)
            )
            session = await stack.enter_async_context(make_session())
            matrix = await stack.enter_async_context(MatrixGateway.from_settings(settings, storage))
            channels = ChannelSender()
            postman = await stack.enter_async_context(Postman(settings, channels))
            service = cls(settings, storage, session, matrix, postman, channels)
            service._resources = stack.pop_all()
        return service

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _queued(self) -> None:
        """New outbox rows: deliver what is due, announce what is held."""
        self.delivery.wake()
        self.moderation.wake.set()

    def _released(self) -> None:
        """A coordinator approved held items: deliver them, and digest them."""
        self.delivery.wake()
        self.digests.wake()

    def feed_title(self, feed_id: str) -> str:
        if feed_id.startswith(HOOK_FEED_PREFIX):
            try:
                hook = self.settings.hook(feed_id[len(HOOK_FEED_PREFIX) :])
            except KeyError:
                return feed_id
            return hook.title or hook.id
        cohort_id = cohort_of_feed(feed_id)
        for cohort in self.settings.cohorts if cohort_id else ():
            if cohort.id == cohort_id:
                return cohort.name
        try:
            feed = self.catalog.feed(feed_id)
        except KeyError:
            return feed_id
        return feed.title or feed.id

    async def _first_poll(self, feed_id: str) -> None:
        """A feed just added live: store what it holds now as seen (never posted). Leased
        like any poll: should another instance's cycle have taken the new feed first, its
        poll is the first one (live feeds post nothing of what they hold when added)."""
        await self.poller.poll_now(feed_id)

    async def notify_ops(self, text: str) -> None:
        room = self.settings.network.ops_room
        if not room or not self.matrix.logged_in:
            return
        room_id = await self.matrix.resolve_room(room)
        await self.matrix.send(
            room_id, {"msgtype": "m.notice", "body": text}, txn_id=uuid.uuid4().hex
        )

    async def _on_event(self, room_id: str, event: nio.Event) -> None:
        for hook in self.event_hooks:
            # Each hook on its own: one that fails must not hide the event from the others.
            try:
                await hook(room_id, event)
            except Exception:
                name = getattr(hook, "__qualname__", repr(hook))
                what = getattr(event, "event_id", "?")
                log.exception("event hook %s failed for %s in %s", name, what, room_id)

    async def _on_invite(self, room_id: str, event: nio.InviteMemberEvent) -> None:
        sender = event.sender
        allowed = self.settings.matrix.invite_allow
        server = sender.split(":", 1)[-1]
        if sender in allowed or server in allowed:
            log.info("accepting invite from %s to %s", sender, room_id)
            content = event.content if isinstance(event.content, dict) else {}
            if content.get("is_direct") is True:
                # Recorded before joining, so the bot greets on its join like a client would.
                await self.assistant.rooms.mark_direct(room_id, sender)
            await self.matrix.join(room_id)
        else:
            log.info("ignoring invite from %s (not in matrix.invite_allow)", sender)

    async def start_web(self) -> None:
        app = make_web_app(self.web)
        self._web_runner = web.AppRunner(app, access_log=None)
        await self._web_runner.setup()
        site = web.TCPSite(self._web_runner, self.settings.web.host, self.settings.web.port)
        try:
            await site.start()
        except OSError as e:
            raise StartupFailed(
                f"cannot listen on {self.settings.web.listen}: {e.strerror or e}; is another "
                "program using it? Change web.listen or stop the other program"
            ) from e
        log.info("web server on http://%s", self.settings.web.listen)

    @property
    def _polls_everywhere(self) -> bool:
        """On PostgreSQL every instance polls a share of the due feeds (they are leased);
        on SQLite the one process polls, as the leader it is from the start."""
        return self.storage.dialect == POSTGRESQL

    def _leader_tasks(self, term: asyncio.Event) -> list[asyncio.Task[Any]]:
        """What must run once in the whole network: on the leader, until ``term``."""
        polling = (
            []
            if self._polls_everywhere
            else [asyncio.create_task(self.poller.run(term), name="poller")]
        )
        return [
            asyncio.create_task(
                self.matrix.sync_forever(
                    on_event=self._on_event, on_invite=self._on_invite, stop=term
                ),
                name="matrix-sync",
            ),
            *polling,
            asyncio.create_task(self.community.run(term), name="community"),
            asyncio.create_task(self.cohort_updates.run(term), name="weekly-prompt"),
            asyncio.create_task(self.webinars.run(term), name="webinar-reminders"),
            asyncio.create_task(self.digests.run(term), name="digests"),
            asyncio.create_task(self.assistant.run(term), name="assistant"),
            asyncio.create_task(self.moderation.run(term), name="moderation"),
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Run every loop until ``stop`` is set, then shut down in order."""
        await self.matrix.ratelimits.load()
        await self.start_web()
        await self.poller.prepare()
        await self.leadership.beat()  # on SQLite (or with no other instance) it leads now
        settle_heap()  # start-up's objects are not walked by every full collection
        failed: list[str] = []

        def watch(task: asyncio.Task[Any]) -> None:
            # A loop that dies while the service runs stops the whole service, so the
            # process exits non-zero and systemd restarts it, instead of running half-dead.
            if task.cancelled() or stop.is_set() or task.exception() is None:
                return
            error = task.exception()
            log.error("background task %s failed; stopping", task.get_name(), exc_info=error)
            failed.append(f"{task.get_name()}: {error!r}")
            stop.set()

        tasks = [
            asyncio.create_task(self.leadership.run(stop), name="heartbeat"),
            asyncio.create_task(self.delivery.run(stop), name="delivery"),
            asyncio.create_task(self._lead(stop, watch), name="leader"),
            asyncio.create_task(self._follow_session(stop), name="matrix-session"),
        ]
        if self._polls_everywhere:
            # New items wake this instance's delivery (on_queued) and are queued for the
            # digests in the database; the leader's digest runner sends the immediate
            # notices at its next round (within its idle wait, a minute at most).
            tasks.append(asyncio.create_task(self.poller.run(stop), name="poller"))
        for task in tasks:
            task.add_done_callback(watch)
        self.started.set()
        await stop.wait()
        await _finish(tasks)
        if failed:
            raise ServiceFailed(f"background task failed: {'; '.join(failed)}")

    async def _follow_session(self, stop: asyncio.Event) -> None:
        """While another instance leads, deliver through the Matrix session it stored
        (the leader's sync loop logs in; a follower never makes a device of its own)."""
        while not stop.is_set():
            if not self.leadership.leading.is_set() and not self.matrix.logged_in:
                try:
                    await self.matrix.adopt_session()
                except Exception:
                    log.exception("could not use the stored Matrix session; retrying")
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FOLLOW_EVERY)

    async def _lead(self, stop: asyncio.Event, watch: Callable[[asyncio.Task[Any]], None]) -> None:
        """Whenever this instance holds the leader lease, run the leader's loops; when it
        loses the lease (another instance leads now), stop them at once."""
        lead = self.leadership
        while not stop.is_set():
            await _first(stop.wait(), lead.leading.wait())
            if stop.is_set():
                return
            term = asyncio.Event()
            jobs = self._leader_tasks(term)
            for job in jobs:
                job.add_done_callback(watch)
            try:
                await _first(stop.wait(), lead.lost.wait())
            finally:
                # Also when the service cancels this task at shutdown: the leader's loops
                # end before the gateway and storage they use are closed.
                term.set()
                await _finish(jobs)

    async def close(self) -> None:
        if self._web_runner is not None:
            await self._web_runner.cleanup()
            self._web_runner = None
        await self._resources.aclose()
        release_heap()


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait until one of ``waits`` is done; the others are cancelled."""
    pending = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in pending:
            w.cancel()


async def _finish(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with suppress(asyncio.CancelledError, Exception):
            await task


async def run_service(settings: Settings, stop: asyncio.Event) -> None:
    """What ``libhub run`` does: hold the database's service lock (one service per
    database), build the service and run it until ``stop``; everything opened is closed
    again however it ends, so a start-up failure ends the process instead of hanging it."""
    # One process per SQLite file; on PostgreSQL any number share the work (leases).
    lock = nullcontext() if settings.database.url else service_lock(settings.database_path)
    with lock:
        async with await Service.create(settings) as service:
            await service.run(stop)
