"""The bot's ``!commands``: the registry, who may run what, and the built-in commands.

A `Command` is a name, a help line, a usage example and an async handler that gets a
`CommandContext` and returns the `Reply` to post (or None when it already answered, as
``!ask`` does). Other modules add commands with `register_command` (picked up by every
registry made afterwards) or ``assistant.commands.register(...)`` on a running bot.

``!subscribe`` belongs to the subscriptions part of the service: the app passes its handler
when it builds the bot (``subscribe_handler``); without one the bot says subscriptions are not
enabled here. Case commands (``!claim``, ``!note``, ``!close``) are carried out by
`bots.cases.escalation` inside case threads; here they only explain where to use them.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bots.messages import link

if TYPE_CHECKING:
    from network.settings.model import Settings
    from network.storage import Storage


@dataclass(frozen=True)
class Reply:
    text: str
    html: str | None = None


class BotApi(Protocol):
    """What command handlers may ask of the running bot."""

    settings: Settings
    storage: Storage
    commands: CommandRegistry

    async def answer(self, ctx: CommandContext, question: str) -> None: ...

    async def escalate(self, ctx: CommandContext, question: str) -> None: ...

    async def status_lines(self) -> list[str]: ...


@dataclass(frozen=True)
class CommandContext:
    sender: str
    room_id: str
    event_id: str
    args: str
    is_direct: bool
    thread_root: str | None  # the thread the command was sent in, if any
    reply_to: str | None  # the event the command replies to, if any
    bot: BotApi


Handler = Callable[[CommandContext], Awaitable[Reply | None]]
SubscribeHandler = Callable[[str, str], Awaitable[str]]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    usage: str
    handler: Handler
    coordinators_only: bool = False
    team_only: bool = False


def may_run(command: Command, sender: str, settings: Settings) -> bool:
    """Whether ``sender`` may run (and sees in !help) ``command``. Team commands are for
    ``team_members`` only, the same rule cases follow (`bots.cases.state`): a coordinator
    who is not on the team could not claim or close a case, so is not offered the commands."""
    a = settings.assistance
    if command.coordinators_only:
        return sender in a.coordinators
    if command.team_only:
        return sender in a.team_members
    return True


class CommandRegistry:
    """The commands one bot knows, by name."""

    def __init__(
        self,
        commands: list[Command] | None = None,
        *,
        subscribe_handler: SubscribeHandler | None = None,
    ) -> None:
        self._commands: dict[str, Command] = {}
        self.subscribe_handler = subscribe_handler
        for command in commands or []:
            self.register(command)

    def register(self, command: Command, *, replace: bool = False) -> None:
        name = command.name.lower()
        if name in self._commands and not replace:
            raise ValueError(f"a command !{name} is already registered")
        self._commands[name] = command

    def get(self, name: str) -> Command | None:
        return self._commands.get(name.lower())

    def __iter__(self) -> Iterator[Command]:
        return iter(sorted(self._commands.values(), key=lambda c: c.name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._commands

    def help_reply(self, sender: str, settings: Settings, intro: str = "") -> Reply:
        """Every command ``sender`` may run, with its help line."""
        usable = [c for c in self if may_run(c, sender, settings)]
        lines = [intro] if intro else []
        lines.append("Commands:")
        lines += [f"{c.usage} - {c.help}" for c in usable]
        lines.append("In a direct message (or a help room) you can also just ask your question.")
        items = "".join(
            f"<li><code>{html.escape(c.usage)}</code> - {html.escape(c.help)}</li>" for c in usable
        )
        head = f"<p>{html.escape(intro)}</p>" if intro else ""
        body = (
            f"{head}<p>Commands:</p><ul>{items}</ul><p>In a direct message (or a help room) "
            "you can also just ask your question.</p>"
        )
        return Reply("\n".join(lines), body)

    async def dispatch(self, name: str, ctx: CommandContext) -> Reply | None:
        """Run ``!name`` for ``ctx.sender``: a refusal, a helpful answer for an unknown
        command, or the handler's reply."""
        settings = ctx.bot.settings
        command = self.get(name)
        if command is None:
            return self.help_reply(ctx.sender, settings, intro=f"I don't know the command !{name}.")
        if not may_run(command, ctx.sender, settings):
            who = (
                "network coordinators" if command.coordinators_only else "the Need Assistance team"
            )
            return Reply(f"Sorry, !{command.name} is only for {who}.")
        return await command.handler(ctx)


# -- built-in commands -------------------------------------------------------------------


async def _help(ctx: CommandContext) -> Reply:
    registry = _registry_of(ctx)
    return registry.help_reply(ctx.sender, ctx.bot.settings)


async def _ask(ctx: CommandContext) -> Reply | None:
    if not ctx.args:
        return Reply(
            "Put your question after !ask, e.g. !ask how do we keep Wi-Fi on after closing?"
        )
    await ctx.bot.answer(ctx, ctx.args)
    return None


async def _human(ctx: CommandContext) -> Reply | None:
    await ctx.bot.escalate(ctx, ctx.args)
    return None


async def _subscribe(ctx: CommandContext) -> Reply:
    handler = _registry_of(ctx).subscribe_handler
    if handler is None:
        return Reply("Email subscriptions are not enabled here.")
    return Reply(await handler(ctx.sender, ctx.args))


async def _feeds(ctx: CommandContext) -> Reply:
    settings = ctx.bot.settings
    if not settings.feeds:
        return Reply("No feeds are configured.")
    states = {s.id: s for s in await ctx.bot.storage.feed_states()}
    lines = ["Feeds:"]
    items: list[str] = []
    for feed in settings.feeds:
        state = states.get(feed.id)
        status = state.status if state else "new"
        when = (
            state.last_success.strftime("%Y-%m-%d %H:%M UTC")
            if state and state.last_success
            else "never"
        )
        title = feed.title or feed.id
        extra = f"; last error: {state.last_error}" if state and state.last_error else ""
        lines.append(f"- {title}: {status}, last success {when}{extra}")
        items.append(
            f"<li>{link(title, feed.url)}: <strong>{html.escape(status)}</strong>, "
            f"last success {html.escape(when)}{html.escape(extra)}</li>"
        )
    return Reply("\n".join(lines), f"<p>Feeds:</p><ul>{''.join(items)}</ul>")


async def _status(ctx: CommandContext) -> Reply:
    lines = await ctx.bot.status_lines()
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return Reply("Status:\n" + "\n".join(f"- {line}" for line in lines), f"<ul>{items}</ul>")


def _in_thread(name: str) -> Handler:
    async def handler(ctx: CommandContext) -> Reply:
        return Reply(f"Use !{name} inside a case thread in the Need Assistance team room.")

    return handler


def _registry_of(ctx: CommandContext) -> CommandRegistry:
    return ctx.bot.commands


BUILTIN: tuple[Command, ...] = (
    Command("help", "list the commands", "!help", _help),
    Command(
        "ask",
        "answer a question from the toolbox",
        "!ask QUESTION",
        _ask,
    ),
    Command(
        "human",
        "ask a person from the Need Assistance team (or just say you want a person)",
        "!human [QUESTION]",
        _human,
    ),
    Command("subscribe", "get network news by email", "!subscribe [EMAIL]", _subscribe),
    Command("feeds", "the network's feeds and whether they are healthy", "!feeds", _feeds),
    Command(
        "status",
        "service health, cases and knowledge base",
        "!status",
        _status,
        coordinators_only=True,
    ),
    Command("claim", "take a case (in its thread)", "!claim", _in_thread("claim"), team_only=True),
    Command(
        "note",
        "an internal note on a case, never sent to the asker",
        "!note TEXT",
        _in_thread("note"),
        team_only=True,
    ),
    Command(
        "close", "close a case; the asker is told", "!close", _in_thread("close"), team_only=True
    ),
)

_EXTRA: list[Command] = []


def register_command(command: Command) -> None:
    """Add a command to every registry made from now on (e.g. ``!update`` for cohorts)."""
    _EXTRA[:] = [c for c in _EXTRA if c.name != command.name] + [command]


def unregister_command(name: str) -> None:
    _EXTRA[:] = [c for c in _EXTRA if c.name != name]


def default_registry(
    extra: Sequence[Command] = (), *, subscribe_handler: SubscribeHandler | None = None
) -> CommandRegistry:
    """A registry with the built-in commands, those added with `register_command` and then
    ``extra`` (each replaces a command of the same name)."""
    registry = CommandRegistry(list(BUILTIN), subscribe_handler=subscribe_handler)
    for command in [*_EXTRA, *extra]:
        registry.register(command, replace=True)
    return registry
