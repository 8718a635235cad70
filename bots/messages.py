"""Matrix message content for the assistance bot, and reading what people wrote.

Owns the shape of every message the bot sends (notices, rich replies, thread replies,
mentions, answers with their source page) and the parsing of incoming content: the text
without reply fallbacks, the thread and reply relations (matrix-nio does not parse them),
mentions of the bot, commands and reactions. Pure: no I/O.

Message types: answers, acknowledgements and refusals are ``m.notice`` (the spec: notices
are never answered automatically, so bots cannot loop). Messages that must *reach* a person
later - a team answer relayed to the asker, a new case or a reminder for the team - are
``m.text``, because the default push rule ``.m.rule.suppress_notices`` comes before
``.m.rule.is_user_mention``: a mention inside a notice never notifies anyone.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bots.kb.index import Answer, Page
from bots.kb.replies import say
from feeds.sanitize import sanitize_html
from network import i18n
from network.i18n import N_
from network.matrix.fit import MAX_CONTENT_BYTES, fit

MsgType = Literal["m.notice", "m.text"]
Text = tuple[str, str]  # (body, html)

THUMBS_UP = "👍"
THUMBS_DOWN = "👎"
_VARIATION_AND_SKIN = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")
_COMMAND_RE = re.compile(r"^!([A-Za-z][A-Za-z0-9_-]{0,31})(?:\s+(.*))?$", re.DOTALL)
_QUESTION_WORDS = frozenset(
    "what how where who when why which can could should would do does did is are any "
    "anyone anybody has have need help tips ideas advice recommend suggestions".split()
)


def txn(prefix: str, *parts: str) -> str:
    """A transaction id derived from what triggered the send: the same trigger after a
    restart gives the same id, so the homeserver returns the first event instead of a copy."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]
    return f"{prefix}-{digest}"


def message(
    text: str,
    html_body: str | None = None,
    *,
    msgtype: MsgType = "m.notice",
    reply_to: str | None = None,
    thread_root: str | None = None,
    falling_back: bool = False,
    mentions: Iterable[str] = (),
) -> dict[str, Any]:
    """Content of one message, fitted in one event (`network.matrix.fit`: too long, it loses
    its HTML, then is shortened). ``thread_root`` puts it in that thread; ``reply_to`` makes
    it a reply to that event (inside the thread, unless ``falling_back``: then it is only the
    fallback for clients without threads)."""
    return fit(
        _content(text, html_body, msgtype, reply_to, thread_root, falling_back, mentions),
        max_chars=None,
    ).content


def relay_message(
    head: str,
    text: str,
    body_html: str | None,
    *,
    msgtype: MsgType = "m.text",
    reply_to: str | None = None,
    thread_root: str | None = None,
    falling_back: bool = False,
    mentions: Iterable[str] = (),
) -> tuple[dict[str, Any], int | None]:
    """A message passed on between the asker and the team (see `relayed`), fitted in one
    event, and how many characters of ``text`` it carries when it had to be shortened (None:
    all of them). A shortened relay ends with a line saying so."""
    body, formatted = relayed(head, text, body_html)
    raw = _content(body, formatted, msgtype, reply_to, thread_root, falling_back, mentions)
    fitted = fit(raw, max_chars=None, max_bytes=MAX_CONTENT_BYTES - _NOTE_ROOM)
    if fitted.kept_chars is None:
        return fitted.content, None
    kept = max(0, fitted.kept_chars - len(head) - 1)
    note = RELAY_SHORTENED.format(kept=kept, total=len(text))
    return {**fitted.content, "body": f"{fitted.content['body']}\n{note}"}, kept


def _content(
    text: str,
    html_body: str | None,
    msgtype: MsgType,
    reply_to: str | None,
    thread_root: str | None,
    falling_back: bool,
    mentions: Iterable[str],
) -> dict[str, Any]:
    content: dict[str, Any] = {"msgtype": msgtype, "body": text}
    if html_body is not None:
        content["format"] = "org.matrix.custom.html"
        # The last point before HTML leaves libhub: everything goes through the sanitizer.
        content["formatted_body"] = sanitize_html(html_body, keep_images=False)
    content["m.mentions"] = {"user_ids": sorted(set(mentions))}
    if thread_root is not None:
        rel: dict[str, Any] = {
            "rel_type": "m.thread",
            "event_id": thread_root,
            "is_falling_back": falling_back or reply_to is None,
            "m.in_reply_to": {"event_id": reply_to or thread_root},
        }
        content["m.relates_to"] = rel
    elif reply_to is not None:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    return content


def pill(user_id: str, name: str) -> str:
    """An HTML mention pill (clients render it as the person's name)."""
    href = "https://matrix.to/#/" + user_id
    return f'<a href="{html.escape(href, quote=True)}">{html.escape(name)}</a>'


def link(title: str, url: str | None) -> str:
    if url:
        return f'<a href="{html.escape(url, quote=True)}">{html.escape(title)}</a>'
    return html.escape(title)


def paragraphs_html(text: str) -> str:
    """Plain text as escaped HTML paragraphs (single newlines become line breaks)."""
    parts = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "".join("<p>" + html.escape(p).replace("\n", "<br>") + "</p>" for p in parts)


# -- what the bot says --------------------------------------------------------------------
# Every fixed sentence is marked for the gettext catalogs (network/locale, `make i18n`):
# translated with `i18n.use(language)` where the person's language is known (the
# question's, bots/kb/language.py), English where it is not (a greeting in a new chat).

GREETING = N_(
    "Hello! I answer questions about the Public Libraries in Smart Cities and Communities "
    "Toolbox, with the page each answer comes from. Just ask, for example: how do we keep "
    "Wi-Fi on after closing? If I can't help, I'll pass your question to a person from the "
    "Need Assistance team (or send !human). !help lists everything I can do. If you wrote "
    "before I joined, please ask again."
)
UNREADABLE = N_(
    "One of your messages here did not reach me in a form I can read (its encryption key "
    "never arrived). Please send it again; if this keeps happening, sign out of old sessions "
    "or verify this one in your Matrix app."
)
UNSURE = N_("I'm not sure the toolbox covers that.")
# The start of the message to an asker whose question goes to the team.
INTROS = {"unsure": UNSURE, "action": N_("That needs a person to act.")}
_CHOICE_GONE = N_("That page is no longer offered; please ask your question again.")
LANGUAGE_NAMES = {
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "pt": "Portuguese",
    "de": "German",
    "it": "Italian",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "ar": "Arabic",
    "he": "Hebrew",
    "ru": "Russian",
    "el": "Greek",
    "hi": "Hindi",
    "th": "Thai",
}


def translated(text: str, lang: str) -> str:
    """``text`` (a marked English sentence) in ``lang``, English without a catalog."""
    with i18n.use(lang):
        return i18n.gettext(text)


def intro(kind: str, lang: str) -> str:
    """``INTROS[kind]`` in ``lang``, English when there is no translation."""
    return translated(INTROS[kind], lang)


def choice_gone(lang: str) -> str:
    """The answer to a choice of page that is no longer offered, in ``lang``."""
    return translated(_CHOICE_GONE, lang)


NO_QUESTION = N_(
    "Tell me what you need help with after !human, for example: !human how do we fund a makerspace?"
)
DOWNVOTE = N_(
    "Sorry that didn't help. Reply to my answer with !human and I'll ask a person from the "
    "Need Assistance team."
)
ALREADY_WITH_TEAM = N_("Your question is already with the Need Assistance team.")
NO_TOOLBOX = N_("The toolbox pages are not available.")
# After "I didn't catch a question there..." and "I'm not sure the toolbox covers that...".
SEND_HELP = N_("Send !help to see what I can do.")
SEND_HUMAN = N_("Send !human.")


# -- answers -----------------------------------------------------------------------------

HINT = say("hint")


def answer_text(answer: Answer, pages: Mapping[str, Page]) -> tuple[str, str]:
    """(body, html) of a confident answer, in the answer's language: the passage, its
    page, up to two related pages."""
    lang = answer.language
    lines = [answer.answer, ""]
    parts = [paragraphs_html(answer.answer)]
    if answer.title:
        source = say("source", lang)
        src = f"{source}: {answer.title}" + (f" - {answer.url}" if answer.url else "")
        lines.append(src)
        parts.append(f"<p>{source}: {link(answer.title, answer.url)}</p>")
    related = [pages[s] for s in answer.related if s in pages]
    if related:
        label = say("related", lang)
        lines.append(
            f"{label}: "
            + "; ".join(p.title + (f" ({p.source_url})" if p.source_url else "") for p in related)
        )
        parts.append(
            f"<p>{label}: " + ", ".join(link(p.title, p.source_url) for p in related) + "</p>"
        )
    hint = say("hint", lang)
    lines.append(hint)
    parts.append(f"<p><em>{html.escape(hint)}</em></p>")
    return "\n".join(lines), "".join(parts)


def choices_text(answer: Answer) -> tuple[str, str]:
    """(body, html) of the pages offered when the bot is unsure between them."""
    return answer.answer, paragraphs_html(answer.answer)


# -- reading events ----------------------------------------------------------------------


def relates_to(content: Mapping[str, Any]) -> Mapping[str, Any]:
    rel = content.get("m.relates_to")
    return rel if isinstance(rel, Mapping) else {}


def thread_root_of(content: Mapping[str, Any]) -> str | None:
    rel = relates_to(content)
    if rel.get("rel_type") == "m.thread" and isinstance(rel.get("event_id"), str):
        return str(rel["event_id"])
    return None


def reply_to_of(content: Mapping[str, Any]) -> str | None:
    """The event this message replies to; a thread's fallback reply does not count."""
    rel = relates_to(content)
    if rel.get("is_falling_back") is True:
        return None
    reply = rel.get("m.in_reply_to")
    if isinstance(reply, Mapping) and isinstance(reply.get("event_id"), str):
        return str(reply["event_id"])
    return None


def responds_to(content: Mapping[str, Any]) -> str | None:
    """The event a message responds to: the root of its thread, else the event it replies
    to. The thread root comes first because threaded clients point ``m.in_reply_to`` at the
    thread's latest message, not at what the thread is about."""
    return thread_root_of(content) or reply_to_of(content)


def is_edit(content: Mapping[str, Any]) -> bool:
    return relates_to(content).get("rel_type") == "m.replace" or "m.new_content" in content


def strip_reply_fallback(body: str) -> str:
    """The body without the legacy ``> <@user> quoted`` lines a reply may start with."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    return "\n".join(lines[i:]).strip()


def plain_text(content: Mapping[str, Any]) -> str:
    """What the person wrote: the body, without the reply fallback when the message is a
    reply (otherwise a leading ``>`` line is their own quote and stays)."""
    body = content.get("body")
    if not isinstance(body, str):
        return ""
    return (strip_reply_fallback(body) if reply_to_of(content) else body).strip()


def html_of(content: Mapping[str, Any]) -> str | None:
    """Sanitized formatted body (reply fallback dropped with ``mx-reply``), if any."""
    if content.get("format") != "org.matrix.custom.html":
        return None
    raw = content.get("formatted_body")
    if not isinstance(raw, str) or not raw.strip():
        return None
    return sanitize_html(raw, keep_images=False) or None


def mentions_user(
    content: Mapping[str, Any], text: str, user_id: str, names: Sequence[str]
) -> bool:
    """Whether the message addresses ``user_id``: in ``m.mentions`` or by id or name."""
    m = content.get("m.mentions")
    if isinstance(m, Mapping):
        ids = m.get("user_ids")
        if isinstance(ids, list) and user_id in ids:
            return True
    low = text.lower()
    if user_id.lower() in low:
        return True
    return any(
        re.search(rf"(?<![\w@]){re.escape(n.lower())}(?!\w)", low) for n in names if n.strip()
    )


def strip_mention(text: str, user_id: str, names: Sequence[str]) -> str:
    """The message without the bot's id or name (and the ``:`` or ``,`` after them)."""
    for token in [user_id, *[n for n in names if n.strip()]]:
        text = re.sub(rf"(?<![\w@]){re.escape(token)}(?!\w)\s*[:,]?", " ", text, flags=re.I)
    return " ".join(text.split())


def parse_command(text: str) -> tuple[str, str] | None:
    """("name", "args") for ``!name args``; None when the text is not a command."""
    m = _COMMAND_RE.match(text.strip())
    if m is None:
        return None
    return m.group(1).lower(), (m.group(2) or "").strip()


def looks_like_question(text: str) -> bool:
    """For help rooms, where people also just chat: a '?' or a question word first."""
    if "?" in text:
        return True
    words = re.findall(r"[a-z']+", text.lower())
    return bool(words) and words[0] in _QUESTION_WORDS


def vote_of(key: str) -> Literal["up", "down"] | None:
    """👍/👎 (any skin tone or variation selector, or +1/-1) as a vote."""
    k = _VARIATION_AND_SKIN.sub("", key.strip())
    if k in (THUMBS_UP, "+1", ":+1:", ":thumbsup:"):
        return "up"
    if k in (THUMBS_DOWN, "-1", ":-1:", ":thumbsdown:"):
        return "down"
    return None


def quote_text(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# -- Need Assistance cases -----------------------------------------------------------------

CASE_HOWTO = N_(
    "Claim it with 👍 on this message or !claim in this thread. Everything you write in the "
    "thread goes to the asker, except !note lines. Send !close when it is done."
)
# In the team email: a mail reader cannot react to a Matrix message, so say where to go.
CASE_EMAIL_HOWTO = N_(
    "To claim it, open the case thread in the team room (link above) and react 👍 to the "
    "bot's message there, or type !claim in the thread. Everything you write in the thread "
    "goes to the asker, except !note lines. Send !close in the thread when it is done."
)


@dataclass(frozen=True)
class Guess:
    """The bot's best page for a question it hands to a person."""

    slug: str
    title: str
    url: str
    score: float


def case_root(
    name: str, asker: str, where: str, question: str, guess: Guess | None, language: str = "en"
) -> Text:
    """The team-room message that opens a case (its thread is the case), with the language
    the question is written in."""
    quoted = quote_text(question)
    _ = i18n.gettext  # the team's language: the one in use (the network's)
    lang_name = LANGUAGE_NAMES.get(language, language)
    if language == "en":
        lang_line = _("Language: English")
    else:
        lang_line = _("Language: %(language)s - please answer in %(language)s.") % {
            "language": lang_name
        }
    if guess:
        values = {"title": guess.title, "score": f"{guess.score:.2f}"}
        g_text = _("Bot's best guess: %(title)s (%(url)s), score %(score)s") % {
            **values,
            "url": guess.url or guess.slug,
        }
        g_html = _("Bot's best guess: %(title)s, score %(score)s") % {
            **values,
            "title": link(guess.title, guess.url),
        }
    else:
        g_text = g_html = _("Bot's best guess: none (the toolbox does not seem to cover it)")
    head = _("New question from %(name)s (%(asker)s) in %(where)s:")
    text = (
        head % {"name": name, "asker": asker, "where": where}
        + f"\n> {quoted}\n{lang_line}\n{g_text}\n{_(CASE_HOWTO)}"
    )
    body = (
        "<p>"
        + head
        % {
            "name": f"<strong>{html.escape(name)}</strong>",
            "asker": html.escape(asker),
            "where": html.escape(where),
        }
        + f"</p><blockquote>{paragraphs_html(quoted)}</blockquote>"
        f"<p>{html.escape(lang_line)}</p><p>{g_html}</p>"
        f"<p><em>{html.escape(_(CASE_HOWTO))}</em></p>"
    )
    return text, body


_ACK = (
    N_(
        "{intro} I've passed your question to the Need Assistance team; a person will "
        "answer you {where}."
    ),
    # Translators: where the answer comes, in "a person will answer you {where}".
    (N_("here"), N_("in this thread")),
    N_("Anything else you write here goes to them too (use !ask for a quick toolbox answer)."),
    N_("Meanwhile, this page may help:"),
)


def case_ack(
    intro: str, is_direct: bool, away: str, suggest: Guess | None, language: str = "en"
) -> Text:
    """What the asker is told when their question goes to the team, in their language
    (for a language without a full translation, the knowledge base's short notice)."""
    if language not in i18n.languages():
        text = " ".join(p for p in (say("ask_person", language), away) if p)
        return text, f"<p>{html.escape(text)}</p>"
    with i18n.use(language):
        ack, (here, thread), more, meanwhile = (
            i18n.gettext(_ACK[0]),
            (i18n.gettext(_ACK[1][0]), i18n.gettext(_ACK[1][1])),
            i18n.gettext(_ACK[2]),
            i18n.gettext(_ACK[3]),
        )
    parts = [ack.format(intro=intro, where=here if is_direct else thread).strip()]
    if away:
        parts.append(away)
    if is_direct:
        parts.append(more)
    text = " ".join(parts)
    body = f"<p>{html.escape(text)}</p>"
    if suggest:
        text += f"\n{meanwhile} {suggest.title}" + (f" ({suggest.url})" if suggest.url else "")
        body += f"<p>{meanwhile} {link(suggest.title, suggest.url)}</p>"
    return text, body


# Room kept in a relay for the line that says it was shortened (escaped, at worst 6 bytes
# a character).
_NOTE_ROOM = 1024
RELAY_SHORTENED = N_(
    "[This message was too long for Matrix: the first {kept:,} of its {total:,} characters "
    "are shown.]"
)
ASKER_SHORTENED = N_(
    "Your message was long: the team sees the first {kept:,} of its {total:,} characters. "
    "Please send the rest in shorter messages."
)
TEAM_SHORTENED = N_(
    "Your answer was long: the asker sees the first {kept:,} of its {total:,} characters. "
    "Send the rest in shorter messages."
)
ASKER_NOT_SENT = N_(
    "Sorry, your message could not be passed on to the team: the server refused it. Please "
    "send it again in shorter parts; if that fails too, start a new question."
)
TEAM_NOT_SENT = N_(
    "Your answer could not be passed on to the asker: their server refused it. Try again in "
    "shorter parts, or reach them another way."
)


def relayed(head: str, text: str, body_html: str | None) -> Text:
    """A message passed on between the asker and the team, under a bold attribution."""
    return (
        f"{head} {text}",
        f"<p><strong>{html.escape(head)}</strong></p>" + (body_html or paragraphs_html(text)),
    )


def case_email(
    name: str, asker: str, where: str, question: str, guess: str, thread_url: str
) -> tuple[str, str, str]:
    """(subject, text, html) of the email to the team about a new case."""
    _ = i18n.gettext  # the team's mail: in the language in use (English by default)
    subject = _("[Need Assistance] {name}: {question}").format(
        name=name, question=quote_text(question, 80)
    )
    needs = _("A question needs a person from the Need Assistance team.")
    howto = _(CASE_EMAIL_HOWTO)
    text = (
        f"{needs}\n\n"
        + _("Question: {question}").format(question=question)
        + "\n"
        + _("Asked by: {name} ({asker}) in {where}").format(name=name, asker=asker, where=where)
        + "\n"
        + _("Bot's best guess: {guess}").format(guess=guess)
        + "\n\n"
        + _("Answer it in the case thread in the team room: {url}").format(url=thread_url)
        + f"\n{howto}\n"
    )
    asked = _("Asked by {name} ({asker}) in {where}.").format(
        name=html.escape(name), asker=html.escape(asker), where=html.escape(where)
    )
    best = html.escape(_("Bot's best guess: {guess}").format(guess=guess))
    body = (
        f"<p>{html.escape(needs)}</p>"
        f"<blockquote>{paragraphs_html(question)}</blockquote>"
        f"<p>{asked}<br>{best}</p>"
        f"<p>{link(_('Open the case thread in the team room'), thread_url)}.</p>"
        f"<p>{html.escape(howto)}</p>"
    )
    return subject, text, body
