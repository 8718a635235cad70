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
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any
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
from network.delivery.channels import ChannelSender, redact
from network.delivery.outbox import Delivery
from network.delivery.state import DeliveryPolicy
from network.errors import LibhubError
from network.matrix.gateway import MatrixGateway
from network.polling.poller import Poller
from network.routing.router import Router
from network.settings.model import Settings, secret
from network.storage import Storage
from network.subscriptions.digests.runner import DigestRunner
from network.subscriptions.lifecycle import Subscriptions, subscribe_from_matrix
from network.subscriptions.postman import Postman
from network.web.app import make_web_app

log = logging.getLogger(__name__)


class ServiceFailed(LibhubError):
    """A background loop died with an error; the service stopped."""

    exit_code = 1


VERSION = "0.1.0"

EventHook = Callable[[str, nio.Event], Awaitable[None]]


def _update_command(updates: CohortUpdates) -> Command:
    async def handler(ctx: CommandContext) -> Reply:
        text = await updates.handle(
            ctx.room_id, ctx.sender, ctx.event_id, ctx.args, reply_to=ctx.reply_to
        )
        return Reply(text)

    return Command("update", UPDATE_HELP, "!update TEXT", handler)


class Service:
    """One running libhub: build with ``await Service.create(settings)``."""

    def __init__(
        self, settings: Settings, storage: Storage, session: aiohttp.ClientSession
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.session = session
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
        self.matrix = MatrixGateway(
            settings.matrix,
            storage,
            password=secret(settings.matrix.password_env),
            access_token=secret(settings.matrix.access_token_env),
        )
        self.router = Router(settings)
        self.channels = ChannelSender()
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
            ),
            router=self.router,
            # Route templates can depend on the cohort; cohort items carry it in their feed id.
            cohort_of=lambda item: cohort_of_feed(item.feed_id),
            zone=ZoneInfo(settings.network.timezone),
            calendar_links=lambda item: webinar_calendar_links(settings.web.public_url, item),
        )
        self.poller = Poller(
            settings,
            storage,
            self.fetcher,
            router=self.router,
            on_queued=self.delivery.wake,
            notify_ops=self.notify_ops if settings.network.ops_room else None,
        )
        # Bots register here; the sync loop calls every hook for every timeline event.
        # The delivery hook follows room upgrades (m.room.tombstone) as they happen.
        self.event_hooks: list[EventHook] = [self.delivery.on_room_event]
        # Community of practice: welcomes and !update in cohort rooms, webinar reminders.
        self.community = Community(settings, self.matrix, storage)
        self.cohort_updates = CohortUpdates(
            settings, self.matrix, storage, self.router, self.community,
            on_queued=self.delivery.wake,
        )  # fmt: skip
        self.webinars = WebinarReminders(settings, self.matrix, storage)
        self.event_hooks += [self.community.on_event, self.cohort_updates.on_event]
        # Subscribers: double opt-in, digests and notices by email (pooled SMTP) or apprise.
        self.postman = Postman(settings, self.channels)
        web_secret = secret(settings.web.secret_env)
        self.subscriptions = Subscriptions(
            settings, storage, self.postman, secret=web_secret.encode() if web_secret else None
        )
        self.digests = DigestRunner(settings, storage, self.subscriptions)
        self.poller.item_hooks.append(self.digests.items_stored)
        self.poller.cycle_hooks.append(self.digests.wake)
        self.cohort_updates.on_new_items = self.digests.queue_items
        # The assistance bot: toolbox answers, commands, Need Assistance cases.
        self.assistant = Assistant(self)
        self.assistant.commands.subscribe_handler = functools.partial(subscribe_from_matrix, self)
        self.event_hooks.append(self.assistant.on_event)
        # !update runs as one of the bot's commands (listed by !help, one reply each); the
        # cohort hook keeps prompt replies and client-side edits of updates.
        self.assistant.commands.register(_update_command(self.cohort_updates), replace=True)
        self.cohort_updates.handle_commands = False
        self.started = asyncio.Event()
        self._web_runner: web.AppRunner | None = None

    @classmethod
    async def create(cls, settings: Settings) -> Service:
        set_parse_concurrency(2)
        storage = await Storage.open(settings.database_path)
        return cls(settings, storage, make_session())

    def feed_title(self, feed_id: str) -> str:
        cohort_id = cohort_of_feed(feed_id)
        for cohort in self.settings.cohorts if cohort_id else ():
            if cohort.id == cohort_id:
                return cohort.name
        try:
            feed = self.settings.feed(feed_id)
        except KeyError:
            return feed_id
        return feed.title or feed.id

    def display_target(self, target_type: str, target: str) -> str:
        return redact(target) if target_type == "apprise" else target

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
            await self.matrix.join(room_id)
        else:
            log.info("ignoring invite from %s (not in matrix.invite_allow)", sender)

    async def start_web(self) -> None:
        app = make_web_app(self)
        self._web_runner = web.AppRunner(app, access_log=None)
        await self._web_runner.setup()
        site = web.TCPSite(self._web_runner, self.settings.web.host, self.settings.web.port)
        await site.start()
        log.info("web server on http://%s", self.settings.web.listen)

    async def run(self, stop: asyncio.Event) -> None:
        """Run every loop until ``stop`` is set, then shut down in order."""
        await self.start_web()
        await self.poller.prepare()
        tasks = [
            asyncio.create_task(
                self.matrix.sync_forever(
                    on_event=self._on_event, on_invite=self._on_invite, stop=stop
                ),
                name="matrix-sync",
            ),
            asyncio.create_task(self.poller.run(stop), name="poller"),
            asyncio.create_task(self.delivery.run(stop), name="delivery"),
            asyncio.create_task(self.community.run(stop), name="community"),
            asyncio.create_task(self.cohort_updates.run(stop), name="weekly-prompt"),
            asyncio.create_task(self.webinars.run(stop), name="webinar-reminders"),
            asyncio.create_task(self.digests.run(stop), name="digests"),
            asyncio.create_task(self.assistant.run(stop), name="assistant"),
        ]
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

        for task in tasks:
            task.add_done_callback(watch)
        self.started.set()
        await stop.wait()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task
        if failed:
            raise ServiceFailed(f"background task failed: {'; '.join(failed)}")

    async def close(self) -> None:
        if self._web_runner is not None:
            await self._web_runner.cleanup()
        await self.matrix.close()
        await self.postman.close()
        await self.session.close()
        await self.storage.close()


async def run_service(settings: Settings, stop: asyncio.Event, **hooks: Any) -> None:
    service = await Service.create(settings)
    try:
        await service.run(stop)
    finally:
        await service.close()
