"""What the knowledge base says to a person, in each language it speaks.

One place for every fixed sentence of an answer. The English is the source text, marked
for the gettext catalogs the web pages and mail use (network/locale, `make i18n`), so a
language with a catalog (Spanish) is translated there and a new one is a catalog.
`say(key, lang)` reads the catalog of ``lang``; English when there is none. The notice
that a person will answer is also given in a few languages the network has no catalog
for (`UNCATALOGUED`), so someone writing in French is at least told, in French, what
happens next.
"""

from __future__ import annotations

from network import i18n
from network.i18n import N_

__all__ = ["TEXTS", "UNCATALOGUED", "say"]

TEXTS: dict[str, str] = {
    "not_sure": N_(
        "I'm not sure the toolbox covers that. I can ask a person from the Need "
        "Assistance team for you."
    ),
    "ask_person": N_("I'll ask a person from the Need Assistance team to answer you."),
    "action": N_("That needs a person to act, so I'll ask the Need Assistance team to help you."),
    "empty": N_("I didn't catch a question there. Ask me about the toolbox, or ask for a person."),
    "chat": N_("Happy to help! Ask me anything about the toolbox whenever you like."),
    "meanwhile": N_('Meanwhile, from "{title}":'),
    "offer_team": N_(
        "I'm not fully sure this is what you need: send !human and I'll ask a person "
        "from the Need Assistance team."
    ),
    "choices": N_("Did you mean:"),
    "choices_end": N_("Reply with the number, or type !human to ask a person."),
    "source": N_("Source"),
    "related": N_("Related"),
    "hint": N_("React 👍 or 👎 to tell me if this helped; send !human to ask a person."),
}

# Languages without a catalog: only what must reach the person, here.
UNCATALOGUED: dict[str, dict[str, str]] = {
    "ask_person": {
        "fr": "Je demande à une personne de l'équipe d'assistance de vous répondre.",
        "pt": "Vou pedir a uma pessoa da equipe de assistência que responda a você.",
        "de": "Ich bitte eine Person aus dem Hilfe-Team, Ihnen zu antworten.",
        "it": "Chiederò a una persona del team di assistenza di risponderti.",
    },
}


def say(key: str, lang: str = "en", **fields: str) -> str:
    """The sentence ``key`` in ``lang`` (English when there is no translation)."""
    if lang not in i18n.languages() and lang in UNCATALOGUED.get(key, {}):
        text = UNCATALOGUED[key][lang]
    else:
        with i18n.use(lang):
            text = i18n.gettext(TEXTS[key])
    return text.format(**fields) if fields else text
