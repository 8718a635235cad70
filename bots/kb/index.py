"""The toolbox knowledge base: loading the Markdown pages and answering questions from them.

Owns the page format (TOML front matter between ``+++`` lines, then ``## `` sections), the
retrieval model and the confidence rule that decides when the bot hands a question to a
person. Retrieval is pure Python because the corpus is a few dozen pages; the words are
``bots.kb.vocabulary``'s (phrase rewrites, typo repair, stems, concept tokens such as
elderly / seniors / older adults -> #senior, and out-of-scope tokens such as "oosrenew"):

- a page scores by BM25 over a weighted document (title, example questions, headings,
  body), plus BM25 of its best section, a title bonus and the cosine similarity of its
  closest example question;
- the answer is the page's section that answers the question, whole (a list of steps is
  never cut), chosen by its words and by what kind of section the question wants
  (getting started, why, costs...);
- confidence blends that score with coverage, the idf-weighted share of the question the
  page contains. Words for library operations the toolbox never covers (renewals, opening
  hours, payroll, a jammed printer) weigh most and no page covers them, so such questions
  escalate even when a toolbox word ("hotspot", "meeting room") is in them.

``ask`` decides with more than that one score: the language (`bots.kb.language`; Spanish
questions are answered from the Spanish pages in ``pages/es``, other languages go to a
person), what the person wants (`bots.kb.intent`: a request for a person to act goes to
the team even when toolbox words are in it, chit-chat gets a friendly reply), and a middle
band: two pages nearly tied are offered as choices, and a question barely in scope is
answered with the team offered in the same message. In a long message the sentences that
ask weigh more than the background around them.

Building the index and training the classifier take about a second, so `load` keeps the
result in a cache file keyed by a hash of the pages, tables and this code.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import re
import tempfile
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bots.kb.intent import IntentModel, examples, focus
from bots.kb.language import detect
from bots.kb.replies import say
from bots.kb.vocabulary import (
    CONCEPT_OF,
    CONCEPT_WORDS,
    ENGLISH,
    FILLER,
    GENERIC,
    OUT_OF_SCOPE,
    PERSON_RE,
    TONGUES,
    Lexicon,
    Tongue,
    expand,
    terms,
)
from network.errors import LibhubError

log = logging.getLogger(__name__)

__all__ = [
    "Answer",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "Page",
    "Section",
    "wants_person",
]

REQUIRED_KEYS = ("slug", "title", "section", "tier", "source_url", "questions")
TIERS = ("", "getting-started", "making-progress", "advancing-your-role")
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

# Calibrated on tests/data/kb_questions.toml, the tune halves of kb_heldout.toml and
# kb_styles.toml: in-scope questions score from about 0.3 up, questions the toolbox never
# covers below about 0.25. Between LOW and the floor the bot answers and offers the team.
CONFIDENCE_FLOOR = 0.3
CONFIDENCE_LOW = 0.3
_W_COVERAGE = 0.5  # confidence = 0.5 * coverage + 0.5 * page score
# A related page must reach this share of the best page's score, and this score at least.
RELATED_FLOOR, RELATED_MIN_SCORE = 0.45, 0.1
# Two pages nearly tied (the second within this share of the first) and confidence under
# SURE: the bot offers the best ones as choices instead of guessing.
CHOICE_RATIO, CHOICE_SURE, MAX_CHOICES = 0.97, 0.42, 3
# Intent thresholds (tuned on the tune halves): a request for action must be likelier than
# ACTION_MIN; from ACTION_UNSURE up the bot answers and offers the team. Chat wins when the
# toolbox has little to say about the message, or when it is very clearly chat.
ACTION_MIN, ACTION_UNSURE = 0.75, 0.5
CHAT_MIN, CHAT_MAX_CONFIDENCE = 0.6, 0.45
CHAT_SURE, CHAT_SURE_MAX_CONFIDENCE = 0.9, 0.7
# Words of the sentences around the question weigh this much of the question's own.
CONTEXT_FACTOR = 0.5
MAX_PASSAGE_CHARS = 900  # a whole section; the longest is about 620 characters

NOT_SURE = say("not_sure")
ASK_PERSON = say("ask_person")
EMPTY = say("empty")


class KnowledgeBaseError(LibhubError, ValueError):
    """A knowledge-base page is missing, malformed or clashes with another page."""


@dataclass(frozen=True)
class Section:
    heading: str
    text: str


@dataclass(frozen=True)
class Page:
    slug: str
    title: str
    section: str
    tier: str
    source_url: str
    questions: tuple[str, ...]
    sections: tuple[Section, ...]


@dataclass(frozen=True)
class Answer:
    """What the bot says to a question. ``page`` is the page answered (None when none);
    ``escalate`` is true whenever a person will be asked; ``related`` lists the other pages
    shown; ``choices`` the pages offered when unsure between them; ``guess`` the page a
    person on the team is pointed to when nothing was answered."""

    page: str | None
    title: str | None
    answer: str
    url: str | None
    score: float
    escalate: bool
    related: tuple[str, ...]
    intent: str = "info"
    language: str = "en"
    choices: tuple[str, ...] = ()
    guess: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "page": self.page,
            "title": self.title,
            "answer": self.answer,
            "url": self.url,
            "score": self.score,
            "escalate": self.escalate,
            "related": list(self.related),
            "intent": self.intent,
            "language": self.language,
            "choices": list(self.choices),
        }


PERSON_SCAN = 4000  # characters looked at: the ask for a person is not past a long letter


_LETTER = re.compile(r"[^\W\d_]")  # any letter of any script


def wants_person(text: str) -> bool:
    """True when the message asks, in words, to be handed to a human."""
    head = text[:PERSON_SCAN]
    return any(p.search(head) for p in PERSON_RE)


# --- loading ------------------------------------------------------------------------------


def _parse_page(path: Path) -> Page:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise KnowledgeBaseError(f"{path}: cannot read knowledge-base page: {e}") from e
    lines = raw.splitlines()
    if not lines or lines[0].strip() != "+++":
        raise KnowledgeBaseError(f"{path}: page must start with a '+++' front-matter line")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "+++")
    except StopIteration:
        raise KnowledgeBaseError(f"{path}: front matter has no closing '+++' line") from None
    try:
        meta = tomllib.loads("\n".join(lines[1:end]))
    except tomllib.TOMLDecodeError as e:
        raise KnowledgeBaseError(f"{path}: front matter is not valid TOML: {e}") from e
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise KnowledgeBaseError(f"{path}: front matter is missing key(s): {', '.join(missing)}")
    unknown = sorted(set(meta) - set(REQUIRED_KEYS))
    if unknown:
        raise KnowledgeBaseError(f"{path}: unknown front-matter key(s): {', '.join(unknown)}")
    for key in REQUIRED_KEYS[:-1]:
        if not isinstance(meta[key], str):
            raise KnowledgeBaseError(f"{path}: front-matter key {key!r} must be a string")
    questions = meta["questions"]
    if not (
        isinstance(questions, list) and questions and all(isinstance(q, str) for q in questions)
    ):
        raise KnowledgeBaseError(f"{path}: 'questions' must be a non-empty list of strings")
    slug: str = meta["slug"]
    if not SLUG_RE.match(slug):
        raise KnowledgeBaseError(f"{path}: slug {slug!r} must be lowercase words joined by '-'")
    if meta["tier"] not in TIERS:
        raise KnowledgeBaseError(f"{path}: tier {meta['tier']!r} must be one of {TIERS}")
    if meta["source_url"] and not meta["source_url"].startswith(("https://", "http://")):
        raise KnowledgeBaseError(f'{path}: source_url must be an http(s) URL or ""')
    sections = _split_sections(lines[end + 1 :], meta["title"])
    if not sections:
        raise KnowledgeBaseError(f"{path}: page has no body text under '## ' headings")
    return Page(
        slug=slug,
        title=meta["title"],
        section=meta["section"],
        tier=meta["tier"],
        source_url=meta["source_url"],
        questions=tuple(questions),
        sections=tuple(sections),
    )


def _split_sections(lines: list[str], title: str) -> list[Section]:
    sections: list[Section] = []
    heading, buf = title, list[str]()  # text before the first heading belongs to the page
    for line in [*lines, "## "]:
        if line.startswith("## "):
            text = " ".join(" ".join(buf).split())
            if text:
                sections.append(Section(heading, text))
            heading, buf = line[3:].strip(), []
        else:
            buf.append(line)
    return sections


# --- retrieval ----------------------------------------------------------------------------

_K1, _B = 1.2, 0.5
# Field weights of the page document: the example questions are how people really ask.
_W_TITLE, _W_QUESTIONS, _W_HEADINGS, _W_BODY = 3.0, 2.0, 1.5, 1.0
# A page's score mixes BM25 over the whole page, its best section (a question is usually
# about one part of a page), words of its title, and its closest example question.
_W_BM25, _W_SECTION, _W_TITLE_HIT, _W_QSIM = 0.35, 0.15, 0.25, 0.15
_QTF = 0.5
# "Where do we start?" decides the page only when nothing else in the question does.
_SOFT = frozenset({"begin", "#begin"})
_SOFT_FACTOR = 0.3
# A word no page uses is usually a synonym the concept table lacks ("ancient", "fad"), so it
# weighs less than a rare corpus word; a capitalised unknown name (France, Memorial Day) is
# what the question is about; words for library operations the toolbox never covers
# (renewals, fines, payroll) weigh most, so one of them sends the question to a person.
_UNKNOWN_FACTOR, _PROPER_FACTOR, _OUT_OF_SCOPE_FACTOR = 0.7, 1.0, 3.0
_FILLER_WEIGHT, _MIN_WEIGHT = 0.4, 1.5
_CHAT_WORD_LEN = 3  # an unknown lower-case word this short is chat, an upper-case one a name
# A section whose heading is the kind of answer the question wants (see section_cues.txt)
# gets this share of the best section score on top.
_CUE_BONUS = 0.6


def _cue_table() -> dict[str, frozenset[str]]:
    """Word -> the kinds of section it asks for ("start" -> begin), from section_cues.txt."""
    text = (files("bots.kb") / "words" / "section_cues.txt").read_text(encoding="utf-8")
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        kind, _, words = line.partition(":")
        for w in words.split():
            out.setdefault(w.lower(), set()).add(kind.strip())
    return {w: frozenset(k) for w, k in out.items()}


@dataclass(frozen=True)
class _Ranked:
    slug: str
    score: float
    coverage: float


@dataclass(frozen=True)
class _Query:
    """A question analysed once: BM25 weights, coverage units and its expanded terms."""

    weights: Mapping[str, float]  # expanded terms the pages know -> query weight
    units: Mapping[str, float]  # the question's own words -> how much of its meaning
    qvec: Mapping[str, float]  # unit vector for the example-question similarity
    total: float  # everything the question weighs, known to the pages or not
    cues: frozenset[str] = frozenset()  # kinds of section asked for


@dataclass(frozen=True)
class _Section:
    tf: Mapping[str, int]
    norm: float  # BM25 length normalisation of this section
    cues: frozenset[str]  # kinds of answer its heading promises


def _unit(vec: Mapping[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(v * v for v in vec.values()))
    return {t: v / norm for t, v in vec.items()} if norm else {}


def _cues_of(text: str, table: Mapping[str, frozenset[str]]) -> frozenset[str]:
    found: set[str] = set()
    for w in re.findall(r"[^\W_]+", text.lower()):
        found |= table.get(w, frozenset())
    return frozenset(found)


class _Retriever:
    """BM25 over one language's pages; immutable after construction."""

    def __init__(self, pages: Mapping[str, Page], tongue: Tongue) -> None:
        self.pages = dict(sorted(pages.items()))
        self.tongue = tongue
        self._concepts = tongue.english_tables
        self._cue_table = _cue_table()
        self._index()

    def _terms(self, text: str, query: bool = False) -> list[str]:
        return self._lexicon.terms(text, query)

    def _expand(self, terms_: list[str]) -> list[str]:
        return expand(terms_, self._concepts)

    def _index(self) -> None:
        words = Counter(CONCEPT_WORDS if self._concepts else ())
        for page in self.pages.values():
            for text in (page.title, *page.questions, *(s.heading for s in page.sections)):
                words.update(self.tongue.tokens(text))
            for section in page.sections:
                words.update(self.tongue.tokens(section.text))
        self._lexicon = Lexicon(words, self.tongue)
        self._page_tf: dict[str, dict[str, float]] = {}
        self._page_norm: dict[str, float] = {}
        self._title_terms: dict[str, frozenset[str]] = {}
        df: Counter[str] = Counter()
        sec_df: Counter[str] = Counter()
        sec_tfs: dict[str, list[Counter[str]]] = {}
        for slug, page in self.pages.items():
            tf: dict[str, float] = {}
            for weight, texts in (
                (_W_TITLE, [page.title]),
                (_W_QUESTIONS, list(page.questions)),
                (_W_HEADINGS, [s.heading for s in page.sections]),
                (_W_BODY, [s.text for s in page.sections]),
            ):
                for text in texts:
                    for term in self._expand(self._terms(text)):
                        tf[term] = tf.get(term, 0.0) + weight
            self._page_tf[slug] = tf
            df.update(tf.keys())
            self._title_terms[slug] = frozenset(self._expand(self._terms(page.title)))
            sec_tfs[slug] = [
                Counter(self._expand(self._terms(f"{s.heading} " * 3 + s.text)))
                for s in page.sections
            ]
            for stf in sec_tfs[slug]:
                sec_df.update(stf.keys())
        n = len(self.pages)
        self._idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        self._idf_unknown = math.log(1 + (n + 0.5) / 0.5)
        avg_len = sum(sum(tf.values()) for tf in self._page_tf.values()) / n
        for slug, tf in self._page_tf.items():
            self._page_norm[slug] = _K1 * (1 - _B + _B * sum(tf.values()) / avg_len)
        ns = sum(len(v) for v in sec_tfs.values())
        self._sec_idf = {t: math.log(1 + (ns - d + 0.5) / (d + 0.5)) for t, d in sec_df.items()}
        sec_avg = sum(sum(c.values()) for v in sec_tfs.values() for c in v) / ns
        self._sections: dict[str, tuple[_Section, ...]] = {}
        self._qvecs: dict[str, tuple[dict[str, float], ...]] = {}
        for slug, page in self.pages.items():
            self._sections[slug] = tuple(
                _Section(
                    tf=stf,
                    norm=_K1 * (1 - _B + _B * sum(stf.values()) / sec_avg),
                    cues=_cues_of(sec.heading, self._cue_table),
                )
                for sec, stf in zip(page.sections, sec_tfs[slug], strict=True)
            )
            self._qvecs[slug] = tuple(
                _unit(
                    {t: c * self._idf[t] for t, c in Counter(self._expand(self._terms(q))).items()}
                )
                for q in page.questions
            )

    def analyse(self, question: str) -> _Query | None:
        qterms = self._terms(question, query=True)
        asked = focus(question)
        # In a long message the background sentences must not outvote the question.
        context = (
            Counter(qterms) - Counter(self._terms(asked, query=True)) if asked != question else {}
        )
        counts = Counter(self._expand(qterms))
        qw = {
            t: self._idf[t]
            * (1 + _QTF * (c - 1))
            * (_SOFT_FACTOR if t in _SOFT else 1.0)
            * (CONTEXT_FACTOR if context.get(t) == counts.get(t) else 1.0)
            for t, c in sorted(counts.items())
            if t in self._idf
        }
        if not qw:
            return None
        proper = _proper_nouns(question, self.tongue) | _acronyms(question)
        # Sorted, so float sums (and therefore ties) do not depend on the hash seed.
        weights = {
            t: self._unit_weight(t, t in proper) * (CONTEXT_FACTOR if t in context else 1.0)
            for t in sorted(set(qterms))
        }
        # Words no page knows still belong to the question: they lower every page's score
        # alike, so ranking is unchanged but the absolute score stays honest.
        unknown = {t: w for t, w in weights.items() if t not in self._idf and not CONCEPT_OF.get(t)}
        return _Query(
            weights=qw,
            units={t: w for t, w in weights.items() if t not in GENERIC},
            qvec=_unit(qw | unknown),
            total=sum(qw.values()) + sum(unknown.values()),
            cues=_cues_of(asked, self._cue_table),
        )

    def rank_all(self, query: _Query) -> list[_Ranked]:
        qw = query.weights
        ranked: list[_Ranked] = []
        for slug, tf in self._page_tf.items():
            norm = self._page_norm[slug]
            bm25 = sum(w * tf[t] / (tf[t] + norm) for t, w in qw.items() if t in tf)
            section = max(
                sum(w * s.tf[t] / (s.tf[t] + s.norm) for t, w in qw.items() if t in s.tf)
                for s in self._sections[slug]
            )
            qsim = max(
                sum(v * qv.get(t, 0.0) for t, v in query.qvec.items()) for qv in self._qvecs[slug]
            )
            title_hit = sum(
                w for t, w in qw.items() if t in self._title_terms[slug] and t not in GENERIC
            )
            score = (
                _W_BM25 * bm25 + _W_SECTION * section + _W_TITLE_HIT * title_hit
            ) / query.total + _W_QSIM * qsim
            ranked.append(_Ranked(slug, score, self._coverage(query.units, tf)))
        ranked.sort(key=lambda r: (-r.score, r.slug))
        return ranked

    @staticmethod
    def _coverage(units: Mapping[str, float], tf: Mapping[str, float]) -> float:
        """Share of the question's meaning (idf-weighted terms) that the page contains."""
        total = covered = 0.0
        for term, weight in units.items():
            total += weight
            if term in OUT_OF_SCOPE:
                continue  # a page mentioning "renewal" in passing does not cover renewals
            if term in tf or any(c in tf for c in CONCEPT_OF.get(term, ())):
                covered += weight
        return covered / total if total else 0.0

    def _unit_weight(self, term: str, proper: bool) -> float:
        if term in OUT_OF_SCOPE:
            return self._idf_unknown * _OUT_OF_SCOPE_FACTOR
        if (term in FILLER or term in _SOFT) and not proper:
            return _FILLER_WEIGHT
        if term in self._idf:
            # A word most pages use ("computer") can still be the whole point of a question.
            return max(self._idf[term], _MIN_WEIGHT)
        concepts = [self._idf[c] for c in CONCEPT_OF.get(term, ()) if c in self._idf]
        if concepts:
            return max(*concepts, _MIN_WEIGHT)
        if term.isdigit():
            return _FILLER_WEIGHT  # "a 2 person library", "$2000": numbers rarely name the topic
        if len(term) <= _CHAT_WORD_LEN and not proper:
            return _FILLER_WEIGHT  # "lol", "tbh", "btw": chat words no page uses, not topics
        return self._idf_unknown * (_PROPER_FACTOR if proper else _UNKNOWN_FACTOR)

    def passage(self, slug: str, query: _Query | None) -> str:
        """The page's section that answers the question, whole."""
        page = self.pages[slug]
        if query is None:
            return _whole(page.sections[0].text)
        q = sorted(query.weights)
        scores = []
        for sec in self._sections[slug]:
            scores.append(
                sum(
                    self._sec_idf[t] * sec.tf[t] * (_K1 + 1) / (sec.tf[t] + sec.norm)
                    for t in q
                    if t in sec.tf
                )
            )
        top = max(scores) if scores else 0.0
        if query.cues:
            # "How do we start a makerspace?" wants the getting-started section even when
            # the why-it-matters one shares more words with the question.
            scores = [
                s + (_CUE_BONUS * max(top, 1.0) if sec.cues & query.cues else 0.0)
                for s, sec in zip(scores, self._sections[slug], strict=True)
            ]
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # ties: earlier
        return _whole(page.sections[best].text)


def _whole(text: str) -> str:
    """A section's text; only an unusually long one is shortened, at a sentence end."""
    if len(text) <= MAX_PASSAGE_CHARS:
        return text
    kept = ""
    for sentence in _SENTENCE_RE.split(text):
        if kept and len(kept) + 1 + len(sentence) > MAX_PASSAGE_CHARS:
            break
        kept = f"{kept} {sentence}".strip()
    return kept[:MAX_PASSAGE_CHARS]


_PROPER_RE = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")


def _proper_nouns(text: str, tongue: Tongue = ENGLISH) -> frozenset[str]:
    """Stems of capitalised words that do not start a sentence."""
    return frozenset(tongue.stem(w.lower()) for w in _PROPER_RE.findall(text.strip()))


_ACRONYM_RE = re.compile(r"\b[A-Z]{2,}s?\b")


def _acronyms(text: str) -> frozenset[str]:
    """Upper-case words ("MARC", "DVD"): names of things, however short."""
    return frozenset(w.lower().removesuffix("s") for w in _ACRONYM_RE.findall(text))


# Not after an initial ("G. Brian Burke").
_SENTENCE_RE = re.compile(r"(?<!\s[A-Z]\.)(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


# --- deciding -----------------------------------------------------------------------------

_CACHE_VERSION = "1"


class KnowledgeBase:
    """The loaded pages (English, and Spanish where written), an index per language and
    the intent classifier; immutable after ``load``."""

    def __init__(
        self, pages: Mapping[str, Page], translations: Mapping[str, Mapping[str, Page]] = {}
    ) -> None:
        self._retrievers = {"en": _Retriever(pages, ENGLISH)}
        for lang, lang_pages in sorted(translations.items()):
            if lang in TONGUES and lang_pages:
                self._retrievers[lang] = _Retriever(lang_pages, TONGUES[lang])
        labelled = examples()
        for r in self._retrievers.values():
            labelled += [(q, "info") for p in r.pages.values() for q in p.questions]
        self._intent = IntentModel.train(labelled)

    @classmethod
    def load(cls, directory: Path, cache: bool = True) -> KnowledgeBase:
        """Read every ``*.md`` page in ``directory`` and, if there, ``<lang>/*.md``.

        The built index is kept in the user's cache folder, keyed by a hash of the pages,
        the vocabulary tables and this code: the next load reads it back instead of
        indexing again.

        Raises:
            KnowledgeBaseError: the directory has no pages, a page is malformed, or two
                pages share a slug (the message names the file(s)).
        """
        files_ = sorted(directory.glob("*.md"))
        if not files_:
            raise KnowledgeBaseError(f"{directory}: no knowledge-base pages (*.md) found")
        lang_files = {
            lang: sorted((directory / lang).glob("*.md"))
            for lang in TONGUES
            if lang != "en" and (directory / lang).is_dir()
        }
        path = (
            _cache_path(files_ + [f for fs in lang_files.values() for f in fs]) if cache else None
        )
        if path is not None:
            cached = _read_cache(path)
            if cached is not None:
                return cached
        kb = cls(
            _load_pages(files_),
            {lang: _load_pages(fs) for lang, fs in lang_files.items() if fs},
        )
        if path is not None:
            _write_cache(path, kb)
        return kb

    @property
    def pages(self) -> Mapping[str, Page]:
        """The English pages by slug."""
        return MappingProxyType(self._retrievers["en"].pages)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self._retrievers)

    def pages_in(self, lang: str) -> Mapping[str, Page]:
        """The pages in ``lang`` (English where there is no translation)."""
        return MappingProxyType(self._retrievers.get(lang, self._retrievers["en"]).pages)

    def intents(self, question: str) -> dict[str, float]:
        """P(info / action / chat) for ``question``; the sentences that ask count most."""
        whole = self._intent.probabilities(question)
        asked = focus(question)
        if asked == question:
            return whole
        part = self._intent.probabilities(asked)
        return {i: 0.6 * part[i] + 0.4 * whole[i] for i in whole}

    def rank(self, question: str, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` best pages for ``question`` as (slug, score), best first."""
        retriever = self._retrievers.get(detect(question), self._retrievers["en"])
        query = retriever.analyse(question)
        if query is None:
            return []
        return [(r.slug, round(r.score, 4)) for r in retriever.rank_all(query)[:k]]

    def answer_page(self, slug: str, question: str, lang: str = "en") -> Answer:
        """The answer from page ``slug`` (one the person chose among the choices offered)."""
        retriever = self._retrievers.get(lang, self._retrievers["en"])
        page = retriever.pages[slug]
        passage = retriever.passage(slug, retriever.analyse(question))
        return Answer(
            slug,
            page.title,
            passage,
            page.source_url,
            1.0,
            False,
            (),
            language=retriever.tongue.code,
        )

    def ask(self, question: str) -> Answer:
        """Answer ``question`` from the best page, offer choices, or say it should go to a
        person (see the module docstring for how it decides)."""
        lang = detect(question)
        person = wants_person(question)
        if person:  # "talk to a real human about X" is a question about X
            for pattern in PERSON_RE:
                question = pattern.sub(" ", question)
        retriever = self._retrievers.get(lang)
        if retriever is None:
            # A language the toolbox has no pages in: a person answers, told so in it.
            words = terms(question) or _LETTER.search(question)
            text = say("ask_person", lang) if words or person else EMPTY
            return Answer(None, None, text, None, 0.0, True, (), language=lang)
        probs = self.intents(question)
        query = retriever.analyse(question)
        if query is None:
            if probs["chat"] >= CHAT_MIN and not person:
                return Answer(None, None, say("chat", lang), None, 0.0, False, (), "chat", lang)
            # Words the analyser cannot read (Chinese, Arabic...) are still a question: a
            # person may read it, so it is "not sure", not "I didn't catch a question".
            words = terms(question) or _LETTER.search(question)
            key = "ask_person" if person else ("not_sure" if words else "empty")
            return Answer(None, None, say(key, lang), None, 0.0, True, (), language=lang)
        ranked = retriever.rank_all(query)
        best = ranked[0]
        confidence = round(_W_COVERAGE * best.coverage + (1 - _W_COVERAGE) * best.score, 4)
        chat = (probs["chat"] >= CHAT_MIN and confidence < CHAT_MAX_CONFIDENCE) or (
            probs["chat"] >= CHAT_SURE and confidence < CHAT_SURE_MAX_CONFIDENCE
        )
        if chat and not person:
            return Answer(None, None, say("chat", lang), None, confidence, False, (), "chat", lang)
        if probs["action"] >= ACTION_MIN and not person:
            # A person must act; the most related page goes to the team, not to the asker.
            return Answer(
                None,
                None,
                say("action", lang),
                None,
                confidence,
                True,
                (),
                "action",
                lang,
                guess=best.slug,
            )
        if confidence < (CONFIDENCE_FLOOR if person else CONFIDENCE_LOW):
            text = say("ask_person" if person else "not_sure", lang)
            return Answer(
                None, None, text, None, confidence, True, (), language=lang, guess=best.slug
            )
        floor = max(best.score * RELATED_FLOOR, RELATED_MIN_SCORE)
        if (
            not person
            and confidence < CHOICE_SURE
            and len(ranked) > 1
            and ranked[1].score >= CHOICE_RATIO * best.score
        ):
            choices = tuple(r.slug for r in ranked if r.score >= CHOICE_RATIO * best.score)
            titles = retriever.pages
            lines = [say("choices", lang)]
            lines += [f"{i}. {titles[s].title}" for i, s in enumerate(choices[:MAX_CHOICES], 1)]
            lines.append(say("choices_end", lang))
            return Answer(
                None,
                None,
                "\n".join(lines),
                None,
                confidence,
                False,
                (),
                language=lang,
                choices=choices[:MAX_CHOICES],
                guess=best.slug,
            )
        page = retriever.pages[best.slug]
        related = tuple(r.slug for r in ranked[1:] if r.score >= floor)[:2]
        passage = retriever.passage(page.slug, query)
        if person:
            passage = (
                f"{say('ask_person', lang)} {say('meanwhile', lang, title=page.title)} {passage}"
            )
        elif confidence < CONFIDENCE_FLOOR or probs["action"] >= ACTION_UNSURE:
            # Unsure whether the toolbox is what they need: answer and offer the team.
            passage = f"{passage}\n\n{say('offer_team', lang)}"
        return Answer(
            page=page.slug,
            title=page.title,
            answer=passage,
            url=page.source_url,
            score=confidence,
            escalate=person,
            related=related,
            language=lang,
        )


def _load_pages(paths: list[Path]) -> dict[str, Page]:
    pages: dict[str, Page] = {}
    origin: dict[str, Path] = {}
    for path in paths:
        page = _parse_page(path)
        if page.slug in pages:
            raise KnowledgeBaseError(
                f"{path}: duplicate slug {page.slug!r}, already used by {origin[page.slug]}"
            )
        pages[page.slug], origin[page.slug] = page, path
    return pages


def _cache_path(paths: list[Path]) -> Path | None:
    """Where the index of these pages is cached; None when nothing can be read."""
    digest = hashlib.sha256(_CACHE_VERSION.encode())
    code = files("bots.kb")
    try:
        for name in ("index.py", "vocabulary.py", "intent.py", "language.py"):
            digest.update((code / name).read_bytes())
        for table in sorted((code / "words").iterdir(), key=lambda t: t.name):
            digest.update(table.name.encode() + table.read_bytes())
        digest.update((code / "data" / "intents.toml").read_bytes())
        for path in paths:
            digest.update(str(path.name).encode() + path.read_bytes())
    except OSError:
        return None  # a page that cannot be read is reported by the load itself
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "libhub" / f"kb-{digest.hexdigest()[:32]}.pickle"


def _read_cache(path: Path) -> KnowledgeBase | None:
    try:
        with path.open("rb") as f:
            kb = pickle.load(f)  # our own file, named by the hash of what it was built from
    except FileNotFoundError:
        return None
    except Exception as e:  # a damaged or outdated cache is rebuilt, never fatal
        log.warning("knowledge-base cache %s unreadable (%s); indexing again", path, e)
        return None
    return kb if isinstance(kb, KnowledgeBase) else None


def _write_cache(path: Path, kb: KnowledgeBase) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kb-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(kb, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError as e:  # a read-only home only costs the next start-up its indexing
        log.info("knowledge-base cache not written to %s: %s", path, e)
