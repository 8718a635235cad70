r"""Vocabulary of the toolbox knowledge base: how questions and pages become search terms.

Owns the tables that carry library staff's words to the pages' words, the lexicon of
library operations the toolbox never covers, the patterns of a request for a person, and
the analyser built on them. ``bots.kb.index`` ranks pages with it. The word and rewrite
tables are text files in ``bots/vocabulary/`` (shipped as package data), loaded once at
import. Analysing a text:

1. lower-case, then the phrase rewrites (``phrases.txt``, for pages and questions):
   multi-word vocabulary becomes one token ("maker space" -> makerspace, "hot spot" ->
   hotspot) and a turn of phrase names its topic ("nobody shows up" -> attend low);
2. questions only: out-of-scope rewrites and words (``out_of_scope_*.txt``) turn card
   renewals, opening hours, payroll or a jammed printer into tokens such as "oosrenew" that
   no page contains;
3. tokens; a ``Lexicon`` of the pages' words glues split compounds ("work shop") and, in
   questions, repairs typos one slipped key away ("makerspce", "chromebok");
4. stop words (``stop_words.txt``) dropped, snowball stems, and ``expand`` adds each stem's
   concept tokens (elderly, seniors, older adults -> #senior) from ``concepts.txt``.

Rewrite tables have one "regex => replacement" rule per line; an indented line continues
the pattern above it (write ``\s`` where a space falls at the break) and "-" as the
replacement drops the match. Concept and out-of-scope word tables are "name: words",
indented lines continuing the words; the other word lists are just words. In every file,
lines starting with "#" are comments and blank lines are ignored.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

import snowballstemmer

from bots.kb.language import fold

# --- asking for a person ------------------------------------------------------------------

_WHO = (
    r"(?:person|human|human being|people|someone|somebody|staff|staffer|staff member|"
    r"team|agent|representative|rep|librarian|operator|expert|specialist|member of (?:your )?staff)"
)
_DET = r"(?:(?:a|an|some|your|one of your|a member of your|a real|an actual|a live)\s+)?"
_PERSON_PATTERNS = [
    # "can I talk to a person", "I'd like to speak with someone from your team"
    rf"\b(?:talk|speak|chat|write)\s+(?:to|with)\s+{_DET}(?:real\s+|actual\s+|live\s+)?"
    r"(?:person|human|people|someone|somebody|operator|agent|representative|human being)\b",
    rf"\b(?:talk|speak|chat)\s+(?:to|with)\s+(?:a|some|your|one of your|a member of your)\s+"
    rf"(?:real\s+|actual\s+|live\s+)?{_WHO}s?\b",
    # "connect me with staff", "put me through to a librarian", "pass this to your team"
    rf"\b(?:connect|put|transfer|pass|hand|forward|refer|escalate|send|get)\s+"
    rf"(?:me|us|this|it|my question)\s+(?:through\s+|over\s+|on\s+)?(?:to|with|onto)\s+"
    rf"(?:the\s+)?{_DET}{_WHO}s?\b",
    # "I need a human", "I want a real person"
    r"\b(?:need|want|like|prefer|get|request|have)\s+(?:me\s+|us\s+)?"
    r"(?:to\s+(?:talk|speak)\s+(?:to|with)\s+)?"
    r"(?:a|an|some)\s+(?:real\s+|actual\s+|live\s+)?(?:human|person|human being)\b",
    r"\b(?:real|actual|live)\s+(?:person|human|people|librarian|agent|staff)\b",
    r"\b(?:someone|somebody|anyone)\s+(?:real|human)\b",
    r"\bhuman\s+(?:please|pls|help|agent|support)\b",
    r"\b(?:is|are)\s+(?:there|you)\s+(?:a\s+)?(?:human|real person)\b"
    r"(?!\s+(?:capital|rights|resources))",
    r"\b(?:not|no)\s+(?:a\s+|the\s+|more\s+)?bots?\b|\bstop\s+(?:the\s+)?bot\b",
    r"\b(?:escalate|operator|agent)\s+please\b",
    r"\b(?:help|answer|answers|support)\s+from\s+(?:a\s+|an\s+)?(?:real\s+|actual\s+|live\s+)?"
    r"(?:human|person|human being|somebody real|someone real|staff member)\b",
    # One whitespace run between parts: "\s*(?:please)?\s*[.!?]*\s*$" backtracked cubically
    # on "human" followed by a long run of spaces and anything else.
    r"^\s*(?:a\s+)?(?:human|person|agent|operator|someone)(?:\s*(?:please|pls))?[\s.!?]*$",
]
PERSON_RE = [re.compile(p, re.IGNORECASE) for p in _PERSON_PATTERNS]


# --- text analysis ------------------------------------------------------------------------

_STEMMER = snowballstemmer.stemmer("english")
_STEMMER_ES = snowballstemmer.stemmer("spanish")
# Words of any script: "información" is one word, not "informaci" and "n".
_TOKEN_RE = re.compile(r"[^\W_]+")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    # Pure-Python snowball is the slowest step of answering; words repeat a lot.
    return str(_STEMMER.stemWord(word))


@lru_cache(maxsize=65536)
def stem_es(word: str) -> str:
    """Spanish stem of a word written with or without its accents."""
    return str(_STEMMER_ES.stemWord(fold(word)))


def _table(name: str) -> str:
    """The data lines of ``bots/vocabulary/<name>``: comment and blank lines left out."""
    text = (files("bots.kb") / "words" / name).read_text(encoding="utf-8")
    return "\n".join(
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )


def _rewrites(table: str) -> list[tuple[re.Pattern[str], str]]:
    # An indented line continues the pattern above it; "-" as replacement drops the match.
    joined = re.sub(r"\n[ \t]+", "", table.strip())
    rules = [line.rsplit("=>", 1) for line in joined.splitlines()]
    return [(re.compile(pattern.rstrip()), out.strip()) for pattern, out in rules]


def _concept_index(table: str) -> dict[str, frozenset[str]]:
    index: dict[str, set[str]] = {}
    for group in re.split(r"\n(?=\S)", table.strip()):
        name, words = group.split(":", 1)
        for word in words.split():
            index.setdefault(stem(word), set()).add("#" + name)
    return {stem: frozenset(names) for stem, names in index.items()}


# The tables and why each exists are described in their files' headers.
_PHRASE_RE = _rewrites(_table("phrases.txt"))
_OUT_OF_SCOPE_RE = _rewrites(_table("out_of_scope_phrases.txt"))
_CONCEPTS = _table("concepts.txt")
CONCEPT_OF = _concept_index(_CONCEPTS)
CONCEPT_WORDS = frozenset(w for line in _CONCEPTS.splitlines() for w in line.split(":")[-1].split())
# Question words that name an out-of-scope topic, as written ("fines", not "fine") -> token.
_OUT_OF_SCOPE_OF = {
    word: stem(name)
    for group in re.split(r"\n(?=\S)", _table("out_of_scope_words.txt"))
    for name, words in [group.split(":", 1)]
    for word in words.split()
}
# Every out-of-scope token ("oosfacilities"...): no page can contain one.
OUT_OF_SCOPE = frozenset(stem(t) for _, out in _OUT_OF_SCOPE_RE for t in out.split()) | frozenset(
    _OUT_OF_SCOPE_OF.values()
)
_STOP = frozenset(_table("stop_words.txt").split())
_STOP_ES = frozenset(fold(w) for w in _table("stop_words_es.txt").split())
GENERIC = frozenset(stem(w) for w in _table("generic_words.txt").split())
FILLER = frozenset(stem(w) for w in _table("filler_words.txt").split())


def _normalise(text: str, query: bool) -> str:
    text = text.lower().replace("’", "'").replace("'", "")
    for pattern, replacement in _PHRASE_RE + (_OUT_OF_SCOPE_RE if query else []):
        text = pattern.sub(replacement, text)
    return text


def tokens(text: str, query: bool = False) -> list[str]:
    """Lower-cased, rewritten word tokens of ``text``, before stop words and stemming."""
    return _TOKEN_RE.findall(_normalise(text, query))


@dataclass(frozen=True)
class Tongue:
    """How one language's text becomes terms: its stemmer, stop words and tables."""

    code: str
    stem: Callable[[str], str]
    stop: frozenset[str]
    english_tables: bool  # phrase rewrites, out-of-scope words and concepts are English

    def tokens(self, text: str, query: bool = False) -> list[str]:
        if self.english_tables:
            return tokens(text, query)
        # Accents folded: people type "informacion" for "información".
        return [fold(w) for w in _TOKEN_RE.findall(_normalise(text, False))]


ENGLISH = Tongue("en", stem, _STOP, english_tables=True)
SPANISH = Tongue("es", stem_es, _STOP_ES, english_tables=False)
TONGUES = {t.code: t for t in (ENGLISH, SPANISH)}


_MIN_TYPO_LEN = 6  # shorter words have too many real neighbours one edit away
_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
# Keys next to each other on a QWERTY keyboard: a slipped finger changes a letter into a
# neighbour ("compuyer"), while "sending" and "lending" are two different words.
_NEAR_KEYS = frozenset(
    (a, b)
    for r, row in enumerate(_KEY_ROWS)
    for c, a in enumerate(row)
    for r2 in (r - 1, r, r + 1)
    if 0 <= r2 < len(_KEY_ROWS)
    for c2 in (c - 1, c, c + 1)
    if 0 <= c2 < len(_KEY_ROWS[r2]) and (b := _KEY_ROWS[r2][c2]) != a
)


# Spelling by ear is trusted only for long words: short ones sound like too many others
# ("pizza" and "pass", "duty" and "data").
_MIN_SHORT_LEN, _MIN_SOUND_LEN, _MIN_SOUND_KEY, _MAX_ABBREVIATION = 3, 6, 4, 5
_SOUND_RULES = [
    (re.compile(r"ph"), "f"),
    (re.compile(r"gh"), ""),
    (re.compile(r"ck|q|c(?=[aou])|c$"), "k"),
    (re.compile(r"c"), "s"),
    (re.compile(r"z"), "s"),
    (re.compile(r"(?<=.)[aeiouyhw]"), ""),
    (re.compile(r"(.)\1+"), r"\1"),
]


def _sound(word: str) -> str:
    """A rough sound key: the first letter, then consonants with alike sounds merged, so
    words spelt by ear meet the word meant ("tecnology" and "technology", "fone" and
    "phone")."""
    for pattern, out in _SOUND_RULES:
        word = pattern.sub(out, word)
    return word


def _subsequence(short: str, long_: str) -> bool:
    it = iter(long_)
    return all(ch in it for ch in short)


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _typo_of(typed: str, word: str) -> bool:
    """True when ``typed`` is ``word`` with a letter dropped, doubled or added, two letters
    swapped, or one letter changed into a key next to it."""
    if typed == word or abs(len(typed) - len(word)) > 1:
        return False
    if len(typed) == len(word):
        diff = [i for i in range(len(word)) if typed[i] != word[i]]
        if len(diff) == 1:
            return (typed[diff[0]], word[diff[0]]) in _NEAR_KEYS
        i = diff[0]
        return (
            len(diff) == 2
            and diff[1] == i + 1
            and (typed[i], typed[i + 1]) == (word[i + 1], word[i])
        )
    short, long_ = sorted((typed, word), key=len)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


class Lexicon:
    """The words the pages and the concept table use, to repair what a hurried writer types.

    It glues split compounds ("work shop", "lap top", "3 d") when the glued form is a known
    word, and in questions replaces an unknown word by the known word one edit away
    ("makerspce", "libary", "chromebok"), preferring the word the pages use most.
    """

    def __init__(self, counts: Counter[str], tongue: Tongue = ENGLISH) -> None:
        self._counts = counts
        self._tongue = tongue
        self._stem = tongue.stem
        self._stop = tongue.stop
        self._stems = frozenset(self._stem(w) for w in counts) | FILLER | GENERIC
        self._by_sound: dict[str, list[str]] | None = None  # built on the first need
        self._by_delete: dict[str, list[str]] = {}
        for word in sorted(counts):
            if len(word) >= _MIN_TYPO_LEN - 1 and word.isalpha():
                for key in sorted({word} | _deletes(word)):
                    self._by_delete.setdefault(key, []).append(word)

    def correct(self, word: str) -> str:
        if (
            word in self._counts
            or not word.isalpha()
            or word in self._stop
            or self._stem(word) in self._stems  # "scheduled" is not a typo of "schedule"
        ):
            return word
        if len(word) < _MIN_TYPO_LEN:
            return self._shorthand(word)
        candidates = {
            c
            for key in {word} | _deletes(word)
            for c in self._by_delete.get(key, ())
            if _typo_of(word, c) and c not in self._stop
        }
        if candidates:
            return min(candidates, key=lambda c: (-self._counts[c], c))
        return self._shorthand(word)

    def _shorthand(self, word: str) -> str:
        """The known word that ``word`` spells by ear ("tecnology", "fone") or shortens
        ("ppl", "govt", "bldg", "mtg"); ``word`` itself when none or several tie."""
        if len(word) < _MIN_SHORT_LEN or not word.isalpha():
            return word
        if self._by_sound is None:
            self._by_sound = {}
            self._by_initial: dict[str, list[str]] = {}
            for known in sorted(self._counts):
                if known.isalpha() and len(known) >= _MIN_SHORT_LEN and known not in self._stop:
                    self._by_sound.setdefault(_sound(known), []).append(known)
                    self._by_initial.setdefault(known[0], []).append(known)
        if len(word) >= _MIN_SOUND_LEN and len(_sound(word)) >= _MIN_SOUND_KEY:
            alike = [
                c
                for c in self._by_sound.get(_sound(word), [])
                if abs(len(c) - len(word)) <= 2 and c[:2] == word[:2]
            ]
            if alike:
                return min(alike, key=lambda c: (-self._counts[c], c))
        if len(word) <= _MAX_ABBREVIATION and sum(c in "aeiou" for c in word) <= 1:
            longer = [
                c
                for c in self._by_initial.get(word[0], ())
                if len(c) > len(word)
                and len(word) / len(c) >= 0.3
                and _subsequence(word, c)
                and word[-1] in c[-3:] + c[len(word) :]
            ]
            if longer:
                return min(longer, key=lambda c: (-self._counts[c], c))
        return word

    def terms(self, text: str, query: bool = False) -> list[str]:
        """Stemmed content terms of ``text``, in order, without stop words."""
        words = self._tongue.tokens(text, query)
        english = self._tongue.english_tables
        out: list[str] = []
        i = 0
        while i < len(words):
            pair = words[i : i + 2]
            if len(pair) == 2 and not self._stop.issuperset(pair) and "".join(pair) in self._counts:
                out.append("".join(pair))
                i += 2
            else:
                word = words[i]
                if query and word not in _OUT_OF_SCOPE_OF:
                    word = self.correct(word)
                out.append(word)
                i += 1
        if query and english:
            out = [_OUT_OF_SCOPE_OF.get(t, t) for t in out]
        return [self._stem(t) for t in out if t not in self._stop]


def terms(text: str) -> list[str]:
    """Stemmed content terms of ``text`` without a lexicon (enough to tell empty input)."""
    return [stem(t) for t in tokens(text) if t not in _STOP]


def expand(terms: list[str], concepts: bool = True) -> list[str]:
    """The terms, each followed by the concept tokens it belongs to (English only)."""
    if not concepts:
        return list(terms)
    out: list[str] = []
    for t in terms:
        out.append(t)
        out.extend(sorted(CONCEPT_OF.get(t, ())))
    return out
