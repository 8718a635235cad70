"""The bot's ``!commands``: the registry, who may run what, and the built-in commands.

A `Command` is a name, a help line, a usage example and an async handler that gets a
`CommandContext` and returns the `Reply` to post (or None when it already answered, as
``!ask`` does). Other modules add commands with `register_command` (picked up by every
registry made afterwards) or ``assistant.commands.register(...)`` on a running bot.

``!subscribe`` belongs to the subscriptions part of the service: the app passes its handler
when it builds the bot (``subscribe_handler``); without one the bot says subscriptions are not
enabled here. Case commands (``!claim``, ``!note``, ``!close``) are carried out by
`bots.cases.escalation` inside case threads; here they only explain where to use them.

Help lines, usages and replies are marked for the gettext catalogs and translated into the
language in use when shown (a command carries no question to detect a language from, so
English unless the caller chose one with `network.i18n.use`).
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bots.messages import link
from network import i18n
from network.i18n import N_

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
        _ = i18n.gettext
        usable = [(_(c.usage), _(c.help)) for c in self if may_run(c, sender, settings)]
        title, end = _("Commands:"), _(HELP_END)
        lines = [intro] if intro else []
        lines.append(title)
        lines += [f"{usage} - {text}" for usage, text in usable]
        lines.append(end)
        items = "".join(
            f"<li><code>{html.escape(usage)}</code> - {html.escape(text)}</li>"
            for usage, text in usable
        )
        head = f"<p>{html.escape(intro)}</p>" if intro else ""
        body = f"{head}<p>{html.escape(title)}</p><ul>{items}</ul><p>{html.escape(end)}</p>"
        return Reply("\n".join(lines), body)

    async def dispatch(self, name: str, ctx: CommandContext) -> Reply | None:
        """Run ``!name`` for ``ctx.sender``: a refusal, a helpful answer for an unknown
        command, or the handler's reply."""
        settings = ctx.bot.settings
        command = self.get(name)
        if command is None:
            intro = i18n.gettext("I don't know the command !{name}.").format(name=name)
            return self.help_reply(ctx.sender, settings, intro=intro)
        if not may_run(command, ctx.sender, settings):
            only = (
                N_("Sorry, !{name} is only for network coordinators.")
                if command.coordinators_only
                else N_("Sorry, !{name} is only for the Need Assistance team.")
            )
            return Reply(i18n.gettext(only).format(name=command.name))
        return await command.handler(ctx)


# -- built-in commands -------------------------------------------------------------------


async def _help(ctx: CommandContext) -> Reply:
    registry = _registry_of(ctx)
    return registry.help_reply(ctx.sender, ctx.bot.settings)


async def _ask(ctx: CommandContext) -> Reply | None:
    if not ctx.args:
        return Reply(
            i18n.gettext(
                "Put your question after !ask, e.g. !ask how do we keep Wi-Fi on after closing?"
            )
        )
    await ctx.bot.answer(ctx, ctx.args)
    return None


async def _human(ctx: CommandContext) -> Reply | None:
    await ctx.bot.escalate(ctx, ctx.args)
    return None


async def _subscribe(ctx: CommandContext) -> Reply:
    handler = _registry_of(ctx).subscribe_handler
    if handler is None:
        return Reply(i18n.gettext("Email subscriptions are not enabled here."))
    return Reply(await handler(ctx.sender, ctx.args))


async def _feeds(ctx: CommandContext) -> Reply:
    settings = ctx.bot.settings
    if not settings.feeds:
        return Reply(i18n.gettext("No feeds are configured."))
    states = {s.id: s for s in await ctx.bot.storage.feed_states()}
    _ = i18n.gettext
    lines = [_("Feeds:")]
    items: list[str] = []
    for feed in settings.feeds:
        state = states.get(feed.id)
        status = state.status if state else "new"
        when = (
            state.last_success.strftime("%Y-%m-%d %H:%M UTC")
            if state and state.last_success
            else _("never")
        )
        title = feed.title or feed.id
        extra = (
            _("; last error: {error}").format(error=state.last_error)
            if state and state.last_error
            else ""
        )
        success = _("last success {when}").format(when=when)
        lines.append(f"- {title}: {status}, {success}{extra}")
        items.append(
            f"<li>{link(title, feed.url)}: <strong>{html.escape(status)}</strong>, "
            f"{html.escape(success)}{html.escape(extra)}</li>"
        )
    return Reply("\n".join(lines), f"<p>{html.escape(lines[0])}</p><ul>{''.join(items)}</ul>")


async def _status(ctx: CommandContext) -> Reply:
    lines = await ctx.bot.status_lines()
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return Reply(
        i18n.gettext("Status:") + "\n" + "\n".join(f"- {line}" for line in lines),
        f"<ul>{items}</ul>",
    )


def _in_thread(name: str) -> Handler:
    async def handler(ctx: CommandContext) -> Reply:
        text = i18n.gettext("Use !{name} inside a case thread in the Need Assistance team room.")
        return Reply(text.format(name=name))

    return handler


def _registry_of(ctx: CommandContext) -> CommandRegistry:
    return ctx.bot.commands


HELP_END = N_("In a direct message (or a help room) you can also just ask your question.")

# Help lines and usages are marked here and translated where !help shows them.
BUILTIN: tuple[Command, ...] = (
    Command("help", N_("list the commands"), "!help", _help),
    Command(
        "ask",
        N_("answer a question from the toolbox"),
        N_("!ask QUESTION"),
        _ask,
    ),
    Command(
        "human",
        N_("ask a person from the Need Assistance team (or just say you want a person)"),
        N_("!human [QUESTION]"),
        _human,
    ),
    Command("subscribe", N_("get network news by email"), N_("!subscribe [EMAIL]"), _subscribe),
    Command("feeds", N_("the network's feeds and whether they are healthy"), "!feeds", _feeds),
    Command(
        "status",
        N_("service health, cases and knowledge base"),
        "!status",
        _status,
        coordinators_only=True,
    ),
    Command(
        "claim", N_("take a case (in its thread)"), "!claim", _in_thread("claim"), team_only=True
    ),
    Command(
        "note",
        N_("an internal note on a case, never sent to the asker"),
        N_("!note TEXT"),
        _in_thread("note"),
        team_only=True,
    ),
    Command(
        "close",
        N_("close a case; the asker is told"),
        "!close",
        _in_thread("close"),
        team_only=True,
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
