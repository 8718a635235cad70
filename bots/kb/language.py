"""Which language a question is written in, offline, from stop-word profiles.

Owns Unicode word splitting for every language ("información" is one word), accent
folding, and the language guess: each known language has a profile of its most frequent
short words, and letters only it uses (ñ, ¿ for Spanish; ç, œ for French); the language
whose profile covers most of the text wins, English when nothing speaks for another.
Texts in a script other than Latin are named by their script ("zh", "ar", "ru"...), so
the bot can at least say that a person will answer.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["KNOWN", "detect", "fold", "words"]

_WORD_RE = re.compile(r"[^\W_]+")

# Frequent function words: they say the language whatever the topic is.
_PROFILES: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the a an and or of to in on for with is are was be we our us i my you your it this "
        "that what how why where when who which do does can could should would have has "
        "there any some about from at by not no just so if into get need want like".split()
    ),
    "es": frozenset(
        "el la los las un una unos unas y o de del al en con por para es son está están "
        "estamos somos ser hay que qué cómo como cuál cuáles dónde donde cuándo quién por "
        "porque nuestro nuestra nuestros nuestras nosotros mi mis tu su sus se lo le les "
        "me nos este esta estos estas eso esto muy más pero sin sobre tenemos tengo puedo "
        "podemos debemos quiero queremos necesito necesitamos hacer ayuda biblioteca "
        "hola gracias favor también ya cuando".split()
    ),
    "fr": frozenset(
        "le la les un une des et ou de du au aux en avec pour par est sont nous notre nos "
        "je mon ma mes vous votre vos il elle ce cette ces qui que quoi comment pourquoi "
        "où quand dans sur pas ne plus mais aussi faire avons peut pouvons bibliothèque "
        "bonjour merci".split()
    ),
    "pt": frozenset(
        "o a os as um uma uns umas e ou de do da dos das no na nos nas em com por para é "
        "são está estão nós nosso nossa eu meu minha você seu sua que como onde quando "
        "não mas também fazer temos podemos biblioteca olá obrigado obrigada".split()
    ),
    "de": frozenset(
        "der die das ein eine und oder von zu im in mit für ist sind wir unser unsere ich "
        "mein meine sie ihr es was wie warum wo wann wer nicht aber auch können haben "
        "bibliothek hallo danke bitte".split()
    ),
    "it": frozenset(
        "il lo la i gli le un una e o di del della in con per è sono siamo noi nostro "
        "nostra io mio mia che come dove quando perché non ma anche fare abbiamo possiamo "
        "biblioteca ciao grazie".split()
    ),
}
# Letters and marks one language of the profiles uses and English does not.
_MARKS: dict[str, str] = {"es": "ñ¿¡", "fr": "çœèêëîïûù", "pt": "ãõ", "de": "ßäöü"}
# Greetings and thanks: a one-word message in them still says its language.
_STRONG: dict[str, frozenset[str]] = {
    "es": frozenset("hola gracias buenos buenas días dias saludos adiós ayúdame".split()),
    "fr": frozenset("bonjour merci salut bonsoir".split()),
    "pt": frozenset("olá obrigado obrigada oi".split()),
    "de": frozenset("hallo danke guten".split()),
    "it": frozenset("ciao grazie buongiorno".split()),
}
KNOWN = tuple(_PROFILES)
_SCRIPTS = (
    ("CJK", "zh"),
    ("HIRAGANA", "ja"),
    ("KATAKANA", "ja"),
    ("HANGUL", "ko"),
    ("ARABIC", "ar"),
    ("HEBREW", "he"),
    ("CYRILLIC", "ru"),
    ("GREEK", "el"),
    ("DEVANAGARI", "hi"),
    ("THAI", "th"),
)


def words(text: str) -> list[str]:
    """Lower-cased words of any script; digits count as words, punctuation does not."""
    return _WORD_RE.findall(text.lower())


def fold(word: str) -> str:
    """The word without accents ("información" -> "informacion"); ñ stays apart from n."""
    decomposed = unicodedata.normalize("NFD", word.replace("ñ", "\x00"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("\x00", "ñ")


def _script(text: str) -> str | None:
    counts: dict[str, int] = {}
    for ch in text:
        if ch.isalpha() and ord(ch) > 0x24F:
            name = unicodedata.name(ch, "")
            for key, lang in _SCRIPTS:
                if name.startswith(key) or f" {key} " in f" {name} ":
                    counts[lang] = counts.get(lang, 0) + 1
                    break
    letters = sum(ch.isalpha() for ch in text)
    if not counts or not letters:
        return None
    lang, n = max(counts.items(), key=lambda kv: kv[1])
    return lang if n * 2 >= letters else None


def detect(text: str) -> str:
    """ISO 639-1 code of the language ``text`` is most likely in; "en" when unsure."""
    script = _script(text)
    if script is not None:
        return script
    ws = words(text)
    low = text.lower()
    scores = {lang: 0.0 for lang in _PROFILES}
    for w in ws:
        for lang, profile in _PROFILES.items():
            if w in profile:
                scores[lang] += 1.0
        for lang, strong in _STRONG.items():
            if w in strong:
                scores[lang] += 1.0
    for lang, marks in _MARKS.items():
        scores[lang] += 1.5 * sum(low.count(m) for m in marks)
    best = max(scores, key=lambda lang: (scores[lang], lang == "en"))
    # English is the default: another language needs two signs and a clear lead.
    if best != "en" and scores[best] >= 2 and scores[best] > 1.2 * scores["en"]:
        return best
    return "en"
