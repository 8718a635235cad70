"""The toolbox knowledge base: loading the Markdown pages and answering questions from them.

Owns the page format (TOML front matter between ``+++`` lines, then ``## `` sections), the
retrieval model and the confidence rule that decides when the bot hands a question to a
person. Retrieval is pure Python because the corpus is a few dozen pages; the words are
``bots.kb.vocabulary``'s (phrase rewrites, typo repair, stems, concept tokens such as
elderly / seniors / older adults -> #senior, and out-of-scope tokens such as "oosrenew"):

- a page scores by BM25 over a weighted document (title, example questions, headings,
  body), plus BM25 of its best section, a title bonus and the cosine similarity of its
  closest example question;
- the answer is 1-3 sentences from the page's best-matching section;
- confidence blends that score with coverage, the idf-weighted share of the question the
  page contains. Words for library operations the toolbox never covers (renewals, opening
  hours, payroll, a jammed printer) weigh most and no page covers them, so such questions
  escalate even when a toolbox word ("hotspot", "meeting room") is in them.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bots.kb.vocabulary import (
    CONCEPT_OF,
    CONCEPT_WORDS,
    FILLER,
    GENERIC,
    OUT_OF_SCOPE,
    PERSON_RE,
    Lexicon,
    expand,
    stem,
    terms,
    tokens,
)
from network.errors import LibhubError

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

# Calibrated on tests/data/kb_questions.toml and the tune half of kb_heldout.toml: in-scope
# questions score from about 0.3 up, questions the toolbox never covers below about 0.25.
CONFIDENCE_FLOOR = 0.3
_W_COVERAGE = 0.5  # confidence = 0.5 * coverage + 0.5 * page score
# A related page must reach this share of the best page's score, and this score at least.
RELATED_FLOOR, RELATED_MIN_SCORE = 0.45, 0.1
MAX_PASSAGE_CHARS = 400

NOT_SURE = (
    "I'm not sure the toolbox covers that. I can ask a person from the Need Assistance "
    "team for you."
)
ASK_PERSON = "I'll ask a person from the Need Assistance team to answer you."
EMPTY = "I didn't catch a question there. Ask me about the toolbox, or ask for a person."


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
    page: str | None
    title: str | None
    answer: str
    url: str | None
    score: float
    escalate: bool
    related: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "page": self.page,
            "title": self.title,
            "answer": self.answer,
            "url": self.url,
            "score": self.score,
            "escalate": self.escalate,
            "related": list(self.related),
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


@dataclass(frozen=True)
class _Section:
    tf: Mapping[str, int]
    norm: float  # BM25 length normalisation of this section
    sentences: tuple[str, ...]
    sentence_terms: tuple[frozenset[str], ...]


def _unit(vec: Mapping[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(v * v for v in vec.values()))
    return {t: v / norm for t, v in vec.items()} if norm else {}


class KnowledgeBase:
    """The loaded pages plus a small BM25 index over them; immutable after ``load``."""

    def __init__(self, pages: Mapping[str, Page]) -> None:
        self._pages = dict(sorted(pages.items()))
        self._index()

    @classmethod
    def load(cls, directory: Path) -> KnowledgeBase:
        """Read every ``*.md`` page in ``directory``.

        Raises:
            KnowledgeBaseError: the directory has no pages, a page is malformed, or two
                pages share a slug (the message names the file(s)).
        """
        files = sorted(directory.glob("*.md"))
        if not files:
            raise KnowledgeBaseError(f"{directory}: no knowledge-base pages (*.md) found")
        pages: dict[str, Page] = {}
        origin: dict[str, Path] = {}
        for path in files:
            page = _parse_page(path)
            if page.slug in pages:
                raise KnowledgeBaseError(
                    f"{path}: duplicate slug {page.slug!r}, already used by {origin[page.slug]}"
                )
            pages[page.slug], origin[page.slug] = page, path
        return cls(pages)

    @property
    def pages(self) -> Mapping[str, Page]:
        return MappingProxyType(self._pages)

    def _terms(self, text: str, query: bool = False) -> list[str]:
        return self._lexicon.terms(text, query)

    def _index(self) -> None:
        words = Counter(CONCEPT_WORDS)
        for page in self._pages.values():
            for text in (page.title, *page.questions, *(s.heading for s in page.sections)):
                words.update(tokens(text))
            for section in page.sections:
                words.update(tokens(section.text))
        self._lexicon = Lexicon(words)
        self._page_tf: dict[str, dict[str, float]] = {}
        self._page_norm: dict[str, float] = {}
        self._title_terms: dict[str, frozenset[str]] = {}
        df: Counter[str] = Counter()
        sec_df: Counter[str] = Counter()
        sec_tfs: dict[str, list[Counter[str]]] = {}
        for slug, page in self._pages.items():
            tf: dict[str, float] = {}
            for weight, texts in (
                (_W_TITLE, [page.title]),
                (_W_QUESTIONS, list(page.questions)),
                (_W_HEADINGS, [s.heading for s in page.sections]),
                (_W_BODY, [s.text for s in page.sections]),
            ):
                for text in texts:
                    for term in expand(self._terms(text)):
                        tf[term] = tf.get(term, 0.0) + weight
            self._page_tf[slug] = tf
            df.update(tf.keys())
            self._title_terms[slug] = frozenset(expand(self._terms(page.title)))
            sec_tfs[slug] = [
                Counter(expand(self._terms(f"{s.heading} " * 3 + s.text))) for s in page.sections
            ]
            for stf in sec_tfs[slug]:
                sec_df.update(stf.keys())
        n = len(self._pages)
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
        for slug, page in self._pages.items():
            secs = []
            for sec, stf in zip(page.sections, sec_tfs[slug], strict=True):
                sentences = tuple(_SENTENCE_RE.split(sec.text))
                secs.append(
                    _Section(
                        tf=stf,
                        norm=_K1 * (1 - _B + _B * sum(stf.values()) / sec_avg),
                        sentences=sentences,
                        sentence_terms=tuple(frozenset(expand(self._terms(s))) for s in sentences),
                    )
                )
            self._sections[slug] = tuple(secs)
            self._qvecs[slug] = tuple(
                _unit({t: c * self._idf[t] for t, c in Counter(expand(self._terms(q))).items()})
                for q in page.questions
            )

    def _analyse(self, question: str) -> _Query | None:
        qterms = self._terms(question, query=True)
        counts = Counter(expand(qterms))
        # A concept named by several words ("sewing", "Cricut", "crafters") is the topic.
        qw = {
            t: self._idf[t] * (1 + _QTF * (c - 1)) * (_SOFT_FACTOR if t in _SOFT else 1.0)
            for t, c in sorted(counts.items())
            if t in self._idf
        }
        if not qw:
            return None
        proper = _proper_nouns(question)
        # Sorted, so float sums (and therefore ties) do not depend on the hash seed.
        weights = {t: self._unit_weight(t, t in proper) for t in sorted(set(qterms))}
        # Words no page knows still belong to the question: they lower every page's score
        # alike, so ranking is unchanged but the absolute score stays honest.
        unknown = {t: w for t, w in weights.items() if t not in self._idf and not CONCEPT_OF.get(t)}
        return _Query(
            weights=qw,
            units={t: w for t, w in weights.items() if t not in GENERIC},
            qvec=_unit(qw | unknown),
            total=sum(qw.values()) + sum(unknown.values()),
        )

    def _rank_all(self, query: _Query) -> list[_Ranked]:
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
        return self._idf_unknown * (_PROPER_FACTOR if proper else _UNKNOWN_FACTOR)

    def rank(self, question: str, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` best pages for ``question`` as (slug, score), best first."""
        query = self._analyse(question)
        if query is None:
            return []
        return [(r.slug, round(r.score, 4)) for r in self._rank_all(query)[:k]]

    def ask(self, question: str) -> Answer:
        """Answer ``question`` from the best page, or say it should go to a person."""
        person = wants_person(question)
        if person:  # "talk to a real human about X" is a question about X
            for pattern in PERSON_RE:
                question = pattern.sub(" ", question)
        query = self._analyse(question)
        if query is None:
            # Words the analyser cannot read (Chinese, Arabic...) are still a question: a
            # person may read it, so it is "not sure", not "I didn't catch a question".
            words = terms(question) or _LETTER.search(question)
            text = ASK_PERSON if person else (NOT_SURE if words else EMPTY)
            return Answer(None, None, text, None, 0.0, True, ())
        ranked = self._rank_all(query)
        best = ranked[0]
        confidence = round(_W_COVERAGE * best.coverage + (1 - _W_COVERAGE) * best.score, 4)
        if confidence < CONFIDENCE_FLOOR:
            text = ASK_PERSON if person else NOT_SURE
            return Answer(None, None, text, None, confidence, True, ())
        page = self._pages[best.slug]
        floor = max(best.score * RELATED_FLOOR, RELATED_MIN_SCORE)
        related = tuple(r.slug for r in ranked[1:] if r.score >= floor)[:2]
        passage = self._passage(page.slug, query)
        if person:
            passage = f'{ASK_PERSON} Meanwhile, from "{page.title}": {passage}'
        return Answer(
            page=page.slug,
            title=page.title,
            answer=passage,
            url=page.source_url,
            score=confidence,
            escalate=person,
            related=related,
        )

    def _passage(self, slug: str, query: _Query) -> str:
        """1-3 sentences from the page's section that best matches the question."""
        q = sorted(query.weights)
        best, best_s = self._sections[slug][0], -1.0
        for sec in self._sections[slug]:
            s = sum(
                self._sec_idf[t] * sec.tf[t] * (_K1 + 1) / (sec.tf[t] + sec.norm)
                for t in q
                if t in sec.tf
            )
            if s > best_s + 1e-9:  # ties go to the earlier section
                best, best_s = sec, s
        scores = [
            sum(self._sec_idf.get(t, 0.0) for t in sorted(terms_ & set(q)))
            for terms_ in best.sentence_terms
        ]
        return _pick_sentences(list(best.sentences), scores)


def _window(sentences: list[str], start: int) -> list[str]:
    chosen: list[str] = []
    for sentence in sentences[start:]:
        if len(chosen) == 3 or (chosen and len(" ".join([*chosen, sentence])) > MAX_PASSAGE_CHARS):
            break
        chosen.append(sentence)
    return chosen


_PROPER_RE = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")


def _proper_nouns(text: str) -> frozenset[str]:
    """Stems of capitalised words that do not start a sentence."""
    return frozenset(stem(w.lower()) for w in _PROPER_RE.findall(text.strip()))


# Not after an initial ("G. Brian Burke").
_SENTENCE_RE = re.compile(r"(?<!\s[A-Z]\.)(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_BACK_REFERENCE = re.compile(r"^(?:This|That|These|Those|It|They|Then|Second|Third)\b")


def _pick_sentences(sentences: list[str], scores: list[float]) -> str:
    best = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    # Read the section from its start (sections open with their point) unless that would
    # leave out the sentence that actually answers the question.
    chosen = _window(sentences, 0)
    if best >= len(chosen):
        start = best
        while start > 0 and _BACK_REFERENCE.match(sentences[start]):
            start -= 1  # keep what "this" or "second" refers to
        chosen = _window(sentences, start)
        if len(chosen) == 1 and start > 0:
            chosen = _window(sentences, start - 1)[:2]  # one lone sentence reads abruptly
    passage = " ".join(chosen)
    if len(passage) > MAX_PASSAGE_CHARS:
        passage = passage[: MAX_PASSAGE_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return passage
