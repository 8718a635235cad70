"""The command registry (permissions, unknown commands, extensions, the !subscribe hook) and
the pure message helpers (relations, mentions, reply fallbacks, reactions, answers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from bots.commands import (
    Command,
    CommandContext,
    CommandRegistry,
    Reply,
    default_registry,
    register_command,
    unregister_command,
)
from bots.kb.index import Answer, KnowledgeBase
from bots.messages import (
    answer_text,
    looks_like_question,
    mentions_user,
    message,
    parse_command,
    plain_text,
    reply_to_of,
    responds_to,
    strip_mention,
    strip_reply_fallback,
    thread_root_of,
    txn,
    vote_of,
)
from network.settings.model import Settings, parse_settings

COORD, MEMBER, ANYONE = "@coord:x", "@member:x", "@anyone:x"


def _settings() -> Settings:
    return parse_settings(
        '[matrix]\nhomeserver = "http://h"\nuser_id = "@bot:x"\npassword_env = "P"\n'
        f'[assistance]\nteam_members = ["{MEMBER}"]\ncoordinators = ["{COORD}"]\n'
    )


@dataclass
class FakeBot:
    settings: Settings = field(default_factory=_settings)
    storage: Any = None
    commands: CommandRegistry = field(default_factory=default_registry)
    asked: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)

    async def answer(self, ctx: CommandContext, question: str) -> None:
        self.asked.append(question)

    async def escalate(self, ctx: CommandContext, question: str) -> None:
        self.escalated.append(question)

    async def status_lines(self) -> list[str]:
        return ["all good"]


def ctx(bot: FakeBot, sender: str = ANYONE, args: str = "") -> CommandContext:
    return CommandContext(sender, "!room:x", "$ev", args, True, None, None, bot)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("!help", ("help", "")),
        ("  !Ask how do we start?  ", ("ask", "how do we start?")),
        ("!human\nline two", ("human", "line two")),
        ("! help", None),
        ("hello !help", None),
        ("!!", None),
    ],
)
def test_parse_command(text: str, parsed: tuple[str, str] | None) -> None:
    assert parse_command(text) == parsed


async def test_unknown_command_gets_the_list_of_commands() -> None:
    bot = FakeBot()
    reply = await bot.commands.dispatch("frobnicate", ctx(bot))
    assert reply is not None and reply.text.startswith("I don't know the command !frobnicate.")
    assert "!ask QUESTION - answer a question from the toolbox" in reply.text
    assert reply.html is not None and "<li><code>!human [QUESTION]</code>" in reply.html


async def test_status_is_for_coordinators_and_case_commands_for_the_team() -> None:
    bot = FakeBot()
    refused = await bot.commands.dispatch("status", ctx(bot, ANYONE))
    assert refused == Reply("Sorry, !status is only for network coordinators.")
    allowed = await bot.commands.dispatch("status", ctx(bot, COORD))
    assert allowed is not None and "all good" in allowed.text
    refused = await bot.commands.dispatch("claim", ctx(bot, ANYONE))
    assert refused == Reply("Sorry, !claim is only for the Need Assistance team.")
    member = await bot.commands.dispatch("claim", ctx(bot, MEMBER))
    assert member is not None and "inside a case thread" in member.text
    # A coordinator who is not on the team cannot work on cases, so is not offered it.
    refused = await bot.commands.dispatch("claim", ctx(bot, COORD))
    assert refused == Reply("Sorry, !claim is only for the Need Assistance team.")
    # !help shows each person what they may use.
    assert "!status" not in bot.commands.help_reply(ANYONE, bot.settings).text
    assert "!status" in bot.commands.help_reply(COORD, bot.settings).text
    assert "!claim" in bot.commands.help_reply(MEMBER, bot.settings).text
    for command in ("!claim", "!note", "!close"):
        assert command not in bot.commands.help_reply(COORD, bot.settings).text


async def test_ask_and_human_go_to_the_bot() -> None:
    bot = FakeBot()
    assert await bot.commands.dispatch("ask", ctx(bot, args="where do kiosks go?")) is None
    assert await bot.commands.dispatch("human", ctx(bot)) is None
    assert bot.asked == ["where do kiosks go?"] and bot.escalated == [""]
    empty = await bot.commands.dispatch("ask", ctx(bot))
    assert empty is not None and "Put your question after !ask" in empty.text


async def test_subscribe_uses_the_pluggable_handler() -> None:
    bot = FakeBot()
    assert await bot.commands.dispatch("subscribe", ctx(bot)) == Reply(
        "Email subscriptions are not enabled here."
    )

    async def handler(sender: str, args: str) -> str:
        return f"{sender} asked for {args}"

    bot.commands.subscribe_handler = handler
    reply = await bot.commands.dispatch("subscribe", ctx(bot, args="weekly a@b.org"))
    assert reply == Reply(f"{ANYONE} asked for weekly a@b.org")


async def test_other_modules_register_commands() -> None:
    async def update(c: CommandContext) -> Reply:
        return Reply(f"update: {c.args}")

    command = Command("update", "post a cohort update", "!update TEXT", update)
    register_command(command)
    try:
        registry = default_registry()
        bot = FakeBot(commands=registry)
        assert await registry.dispatch("update", ctx(bot, args="we opened")) == Reply(
            "update: we opened"
        )
        with pytest.raises(ValueError, match="already registered"):
            registry.register(command)
    finally:
        unregister_command("update")
    assert default_registry().get("update") is None


def test_message_relations() -> None:
    reply = message("hi", reply_to="$q", mentions=["@a:x"])
    assert reply["m.relates_to"] == {"m.in_reply_to": {"event_id": "$q"}}
    assert reply["m.mentions"] == {"user_ids": ["@a:x"]}
    assert reply["msgtype"] == "m.notice" and "formatted_body" not in reply
    in_thread = message("hi", "<p>hi<script>x</script></p>", thread_root="$r", reply_to="$q")
    assert in_thread["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$r",
        "is_falling_back": False,
        "m.in_reply_to": {"event_id": "$q"},
    }
    assert in_thread["formatted_body"] == "<p>hi</p>"
    assert thread_root_of(in_thread) == "$r" and reply_to_of(in_thread) == "$q"
    fallback = message("hi", thread_root="$r")
    assert fallback["m.relates_to"]["is_falling_back"] is True
    assert reply_to_of(fallback) is None
    assert txn("ans", "$q") == txn("ans", "$q") != txn("ans", "$other")


def test_reading_what_people_wrote() -> None:
    assert strip_reply_fallback("> <@a:x> earlier\n> more\n\nactual text") == "actual text"
    assert strip_reply_fallback("no quote") == "no quote"
    content: dict[str, Any] = {"body": "hey", "m.mentions": {"user_ids": ["@bot:x"]}}
    assert mentions_user(content, "hey", "@bot:x", ["Toolbox Bot"])
    assert mentions_user({}, "toolbox bot: where do kiosks go?", "@bot:x", ["Toolbox Bot"])
    assert not mentions_user({}, "toolbox botany club", "@bot:x", ["Toolbox Bot"])
    assert strip_mention("Toolbox Bot: where do kiosks go?", "@bot:x", ["Toolbox Bot"]) == (
        "where do kiosks go?"
    )
    assert strip_mention("@bot:x, hi", "@bot:x", []) == "hi"
    assert looks_like_question("any tips for a small makerspace")
    assert looks_like_question("we want lockers?")
    assert not looks_like_question("thanks everyone")
    assert [vote_of(k) for k in ("👍", "👍🏽", "👍️", "👎", "+1", "❤️")] == [
        "up",
        "up",
        "up",
        "down",
        "up",
        None,
    ]


def test_what_a_message_responds_to_and_what_it_says() -> None:
    thread = {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True}
    first = {"m.relates_to": {**thread, "m.in_reply_to": {"event_id": "$root"}}}
    # Threaded clients point m.in_reply_to at the thread's latest message: the root counts.
    later = {"m.relates_to": {**thread, "m.in_reply_to": {"event_id": "$latest"}}}
    reply = {"m.relates_to": {"m.in_reply_to": {"event_id": "$q"}}}
    assert [responds_to(c) for c in (first, later, reply, {})] == ["$root", "$root", "$q", None]
    # The reply fallback is cut from replies only; elsewhere a leading quote is the writer's.
    fallback = "> <@bot:x> What did you try?\n> more\n\nA seed library"
    assert plain_text({"body": fallback, **reply}) == "A seed library"
    quote = "> a line we liked\nand what we think"
    assert plain_text({"body": quote}) == quote
    assert plain_text({"body": quote, **later}) == quote


def test_answer_text_links_the_source_and_related_pages() -> None:
    from bots.assistant import DEFAULT_TOOLBOX

    kb = KnowledgeBase.load(DEFAULT_TOOLBOX)
    answer = Answer(
        page="wi-fi-access-after-hours",
        title="Wi-Fi access after hours",
        answer="Leave it on <b>after</b> closing.",
        url="https://example.org/wifi",
        score=0.9,
        escalate=False,
        related=("wi-fi-access",),
    )
    text, html = answer_text(answer, kb.pages)
    assert text.startswith("Leave it on <b>after</b> closing.\n")
    assert "Source: Wi-Fi access after hours - https://example.org/wifi" in text
    assert f"Related: {kb.pages['wi-fi-access'].title}" in text
    assert "&lt;b&gt;after&lt;/b&gt;" in html
    assert '<a href="https://example.org/wifi">Wi-Fi access after hours</a>' in html
