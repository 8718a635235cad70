"""How the knowledge base understands librarians as they write (issue 13): intent, language,
the section answered, the middle band, and accuracy on question sets in many styles.

The accuracy test pools the in-scope questions written without reading the pages
(kb_heldout, kb_fresh, kb_styles) and the Spanish set, and reports each criterion for the
"tune" half (thresholds and examples were tuned on it) and the "test" half (only measured),
failing below the figures the issue asks for on either half.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bots.kb.index import KnowledgeBase
from bots.kb.language import detect, fold, words

ROOT = Path(__file__).resolve().parent.parent
TOOLBOX = ROOT / "bots" / "kb" / "pages"
DATA = Path(__file__).resolve().parent / "data"

MIN_RIGHT, MAX_NEEDLESS, MIN_TO_PERSON, MIN_SPANISH = 0.85, 0.08, 0.90, 0.70


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load(TOOLBOX)


def _load(name: str) -> dict[str, list[dict[str, Any]]]:
    return tomllib.loads((DATA / name).read_text(encoding="utf-8"))


def _half(cases: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    return [c for c in cases if c["split"] == split]


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("how do we start a makerspace", "en"),
        ("¿Cómo empezamos un espacio maker en la biblioteca?", "es"),
        ("necesito ayuda con el wifi de la biblioteca", "es"),
        ("hola", "es"),
        ("Comment créer un fablab dans notre bibliothèque ?", "fr"),
        ("Como podemos emprestar hotspots na biblioteca?", "pt"),
        ("图书馆的热点怎么借", "zh"),
        ("what about ancianos and teens", "en"),
        ("ok", "en"),
    ],
)
def test_language_detection(text: str, lang: str) -> None:
    assert detect(text) == lang


def test_unicode_words_stay_whole() -> None:
    assert words("Información para niños") == ["información", "para", "niños"]
    assert fold("información") == "informacion" and fold("niño") == "niño"


@pytest.mark.parametrize(
    ("text", "intent", "escalate"),
    [
        ("please register our branch for the spring cohort", "action", True),
        ("can someone reset the hotspot we borrowed from the network", "action", True),
        ("could you proofread our grant narrative", "action", True),
        ("¿me pueden reservar la sala de reuniones el jueves?", "action", True),
        ("thanks so much!", "chat", False),
        ("good morning", "chat", False),
        ("muchas gracias", "chat", False),
        ("how do we start lending hotspots to patrons?", "info", False),
        ("¿cómo prestamos tabletas a las familias?", "info", False),
    ],
)
def test_intent_decides_who_answers(
    kb: KnowledgeBase, text: str, intent: str, escalate: bool
) -> None:
    answer = kb.ask(text)
    assert (answer.intent, answer.escalate) == (intent, escalate), answer
    if intent == "action":
        assert answer.page is None and answer.guess is not None  # the team gets a page
    if intent == "chat":
        assert answer.page is None and not answer.choices


@pytest.mark.parametrize(
    ("text", "slug", "fragment"),
    [
        ("how do we start a makerspace", "makerspaces", "Begin by choosing goals"),
        ("why does a makerspace matter for a smart community", "makerspaces", "spark local"),
        ("how do we keep Wi-Fi on after closing?", "wi-fi-access-after-hours", "Third"),
        ("¿cómo empezamos un espacio maker?", "makerspaces", "Empiece por elegir"),
    ],
)
def test_the_section_that_answers_whole(
    kb: KnowledgeBase, text: str, slug: str, fragment: str
) -> None:
    answer = kb.ask(text)
    assert answer.page == slug and fragment in answer.answer
    pages = kb.pages_in(answer.language)
    assert any(answer.answer == s.text for s in pages[slug].sections)  # never cut
    assert answer.url == pages[slug].source_url


def test_long_message_is_answered_by_its_question(kb: KnowledgeBase) -> None:
    text = (
        "Our board met last night and spent an hour on the budget and the new roof. Our "
        "director also mentioned the strategic plan. Anyway, how do we keep the Wi-Fi on "
        "for people in the parking lot after we close?"
    )
    assert kb.ask(text).page == "wi-fi-access-after-hours"


def test_middle_band_offers_choices_and_answers_the_chosen(kb: KnowledgeBase) -> None:
    text = (
        "our teens are bored and we have an empty storage room. could we turn it into a "
        "place where they build and tinker with stuff?"
    )
    answer = kb.ask(text)
    assert answer.page is None and not answer.escalate and 2 <= len(answer.choices) <= 3
    assert answer.answer.startswith("Did you mean:") and "!human" in answer.answer
    chosen = kb.answer_page(answer.choices[1], text)
    assert chosen.page == answer.choices[1] and chosen.answer


def test_unsure_about_intent_answers_and_offers_the_team(kb: KnowledgeBase) -> None:
    # Reserving a room could be a booking for staff to make or a question about the
    # room-use policy: the bot answers and offers the team in the same message.
    answer = kb.ask("can the knitting club reserve our room")
    assert not answer.escalate and answer.page == "public-meeting-spaces"
    assert "!human" in answer.answer


def test_other_languages_go_to_a_person_in_their_language(kb: KnowledgeBase) -> None:
    answer = kb.ask("Comment créer un fablab dans notre bibliothèque ?")
    assert answer.escalate and answer.page is None and answer.language == "fr"
    assert "équipe" in answer.answer
    chinese = kb.ask("图书馆的热点怎么借")
    assert chinese.escalate and chinese.language == "zh" and "person" in chinese.answer


def test_index_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = KnowledgeBase.load(TOOLBOX)
    cached = list((tmp_path / "libhub").glob("kb-*.pickle"))
    assert len(cached) == 1
    again = KnowledgeBase.load(TOOLBOX)
    question = "how do we start a makerspace"
    assert again.ask(question) == first.ask(question)
    cached[0].write_bytes(b"damaged")  # a broken cache is rebuilt, not fatal
    assert KnowledgeBase.load(TOOLBOX).ask(question) == first.ask(question)


def test_accuracy_on_questions_in_every_style(
    kb: KnowledgeBase, record_property: Callable[[str, object], None]
) -> None:
    sets = {name: _load(name) for name in ("kb_heldout.toml", "kb_fresh.toml", "kb_styles.toml")}
    spanish = _load("kb_spanish.toml")
    lines, failures = [], []
    for split in ("tune", "test"):
        in_scope = [c for d in sets.values() for c in _half(d["question"], split)]
        to_person = [
            c
            for d in sets.values()
            for key in ("out_of_scope", "action")
            for c in _half(d.get(key, []), split)
        ]
        to_person += _half(spanish["action"], split) + _half(spanish["out_of_scope"], split)
        chat = _half(sets["kb_styles.toml"]["chat"], split) + _half(spanish["chat"], split)
        es = _half(spanish["question"], split)
        right = needless = 0
        for c in in_scope:
            a = kb.ask(c["text"])
            right += a.page in {c["slug"], *c.get("alt", [])} and not a.escalate
            needless += a.escalate
        sent = sum(kb.ask(c["text"]).escalate for c in to_person)
        chatted = sum(kb.ask(c["text"]).intent == "chat" for c in chat)
        es_right = sum(
            (a := kb.ask(c["text"])).page == c["slug"] and not a.escalate and a.language == "es"
            for c in es
        )
        figures = {
            "in-scope answered with the right page": (right / len(in_scope), MIN_RIGHT, ">="),
            "in-scope sent to a person needlessly": (needless / len(in_scope), MAX_NEEDLESS, "<="),
            "out-of-scope and action sent to a person": (
                sent / len(to_person),
                MIN_TO_PERSON,
                ">=",
            ),
            "Spanish in-scope answered right": (es_right / len(es), MIN_SPANISH, ">="),
            "chit-chat answered as chat": (chatted / len(chat), 0.0, ">="),
        }
        for label, (value, bound, op) in figures.items():
            lines.append(f"{split} half: {label} {value:.1%} (needs {op} {bound:.0%})")
            record_property(f"{split}_{label.replace(' ', '_')}", round(value, 4))
            if (op == ">=" and value < bound) or (op == "<=" and value > bound):
                failures.append(lines[-1])
    print("\n".join(lines))
    assert not failures, "\n".join(lines)
