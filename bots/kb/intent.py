"""What a person wants from the bot: information, a person to act, or a bit of chat.

Owns the intent classifier and where the question sits in a long message. The classifier
is multinomial naive Bayes over word unigrams, word bigrams and character 4-grams (so
typos, abbreviations and Spanish inflections still share features with the examples),
trained when the knowledge base is built from ``bots/kb/data/intents.toml`` plus the
pages' example questions as "info". Pure Python: training takes milliseconds and the
model is cached with the index.

A long message is mostly context ("we are a rural branch, our director..."): `focus`
picks the sentences that ask (a question mark, a question or request word first), so the
background does not outvote the question.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files

from bots.kb.language import fold, words

__all__ = ["INTENTS", "IntentModel", "examples", "features", "focus"]

INTENTS = ("info", "action", "chat")
_ALPHA = 0.3  # Laplace smoothing
# Word features say more than character grams; grams carry typos and inflections.
_W_WORD, _W_BIGRAM, _W_GRAM = 1.0, 1.0, 0.25
_GRAM = 4


def features(text: str) -> dict[str, float]:
    """Weighted features of ``text``: each counted once, whatever its repetitions."""
    ws = [fold(w) for w in words(text)]
    out: defaultdict[str, float] = defaultdict(float)
    for w in set(ws):
        out["w:" + w] = _W_WORD
        padded = f" {w} "
        for i in range(max(1, len(padded) - _GRAM + 1)):
            out["c:" + padded[i : i + _GRAM]] += _W_GRAM
    for a, b in set(itertools.pairwise(ws)):
        out[f"b:{a} {b}"] = _W_BIGRAM
    if "?" in text or "¿" in text:
        out["p:?"] = _W_WORD
    return dict(out)


@dataclass(frozen=True)
class IntentModel:
    """Per-intent log priors and feature log likelihoods, plus the unseen-feature floor."""

    log_prior: Mapping[str, float]
    log_like: Mapping[str, Mapping[str, float]]
    log_unseen: Mapping[str, float]

    @classmethod
    def train(cls, labelled: Iterable[tuple[str, str]]) -> IntentModel:
        counts: dict[str, defaultdict[str, float]] = {i: defaultdict(float) for i in INTENTS}
        for text, intent in labelled:
            for f, w in features(text).items():
                counts[intent][f] += w
        vocab = set().union(*counts.values())
        v = len(vocab)
        log_like: dict[str, dict[str, float]] = {}
        log_unseen: dict[str, float] = {}
        for intent, c in counts.items():
            total = sum(c.values()) + _ALPHA * v
            log_like[intent] = {f: math.log((n + _ALPHA) / total) for f, n in c.items()}
            log_unseen[intent] = math.log(_ALPHA / total)
        # Equal priors: the example file's proportions say nothing about real traffic.
        prior = {i: math.log(1 / len(INTENTS)) for i in INTENTS}
        return cls(prior, log_like, log_unseen)

    def probabilities(self, text: str) -> dict[str, float]:
        """P(intent | text), with the evidence tempered so long texts are not overconfident."""
        feats = features(text)
        if not feats:
            return {i: 1 / len(INTENTS) for i in INTENTS}
        known = [f for f in feats if any(f in ll for ll in self.log_like.values())]
        mass = sum(feats[f] for f in known) or 1.0
        scores = {}
        for intent in INTENTS:
            ll, unseen = self.log_like[intent], self.log_unseen[intent]
            s = sum(feats[f] * ll.get(f, unseen) for f in known)
            scores[intent] = self.log_prior[intent] + s / math.sqrt(mass)
        top = max(scores.values())
        exp = {i: math.exp(s - top) for i, s in scores.items()}
        z = sum(exp.values())
        return {i: e / z for i, e in exp.items()}


def examples() -> list[tuple[str, str]]:
    """The labelled examples shipped in ``bots/kb/data/intents.toml``."""
    raw = (files("bots.kb") / "data" / "intents.toml").read_text(encoding="utf-8")
    data = tomllib.loads(raw)
    return [(text, intent) for intent in INTENTS for text in data.get(intent, [])]


# A sentence ends at . ! ? or a line break; "¿" opens a Spanish question.
# (A zero-width split before "¿": "\s+(?=¿)" backtracks quadratically on long blank runs.)
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+|(?=¿)")
_ASKING = re.compile(
    r"^\W*(?:how|what|whats|what's|where|when|why|which|who|whom|can|could|would|will|should|"
    r"is|are|do|does|did|any|anyone|anybody|please|pls|plz|need|i need|we need|help|hw|wat|"
    r"tips|ideas|advice|cómo|como|qué|que|cuál|cual|dónde|donde|cuándo|cuando|por qué|"
    r"quién|puedo|podemos|pueden|necesito|necesitamos|hay|alguien|por favor)\b",
    re.IGNORECASE,
)
_MIN_FOCUS_WORDS = 3


def focus(text: str) -> str:
    """The sentences of ``text`` that ask something; the whole text when none or all do."""
    sentences = [s.strip() for s in _SENTENCES.split(text) if s and s.strip()]
    if len(sentences) < 2:
        return text
    asking = [s for s in sentences if s.endswith("?") or s.startswith("¿") or _ASKING.match(s)]
    if not asking or len(asking) == len(sentences):
        return text
    picked = " ".join(asking)
    if len(words(picked)) < _MIN_FOCUS_WORDS:  # "any ideas?" needs the sentence before it
        i = sentences.index(asking[0])
        picked = " ".join(sentences[max(0, i - 1) : i + 1] + asking[1:])
    return picked
