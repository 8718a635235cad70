"""What the knowledge base says to a person, in each language it speaks.

One place for every fixed sentence of an answer, so a new language is one more column.
`say(key, lang)` falls back to English for a language without a translation. The notice
that a person will answer is also given in a few languages the toolbox has no pages in,
so someone writing in French is at least told, in French, what happens next.
"""

from __future__ import annotations

__all__ = ["TEXTS", "say"]

TEXTS: dict[str, dict[str, str]] = {
    "not_sure": {
        "en": "I'm not sure the toolbox covers that. I can ask a person from the Need "
        "Assistance team for you.",
        "es": "No estoy seguro de que la caja de herramientas trate eso. Puedo pedir a una "
        "persona del equipo de Asistencia que te responda.",
    },
    "ask_person": {
        "en": "I'll ask a person from the Need Assistance team to answer you.",
        "es": "Le pediré a una persona del equipo de Asistencia que te responda.",
        "fr": "Je demande à une personne de l'équipe d'assistance de vous répondre.",
        "pt": "Vou pedir a uma pessoa da equipe de assistência que responda a você.",
        "de": "Ich bitte eine Person aus dem Hilfe-Team, Ihnen zu antworten.",
        "it": "Chiederò a una persona del team di assistenza di risponderti.",
    },
    "action": {
        "en": "That needs a person to act, so I'll ask the Need Assistance team to help you.",
        "es": "Eso necesita que una persona actúe, así que le pediré ayuda al equipo de "
        "Asistencia.",
    },
    "empty": {
        "en": "I didn't catch a question there. Ask me about the toolbox, or ask for a person.",
        "es": "No encontré una pregunta. Pregúntame sobre la caja de herramientas o pide "
        "hablar con una persona.",
    },
    "chat": {
        "en": "Happy to help! Ask me anything about the toolbox whenever you like.",
        "es": "¡Con gusto! Pregúntame lo que quieras sobre la caja de herramientas.",
    },
    "meanwhile": {
        "en": 'Meanwhile, from "{title}":',
        "es": 'Mientras tanto, de "{title}":',
    },
    "offer_team": {
        "en": "I'm not fully sure this is what you need: send !human and I'll ask a person "
        "from the Need Assistance team.",
        "es": "No estoy del todo seguro de que sea lo que necesitas: escribe !human y se lo "
        "pediré a una persona del equipo de Asistencia.",
    },
    "choices": {
        "en": "Did you mean:",
        "es": "¿Te refieres a:",
    },
    "choices_end": {
        "en": "Reply with the number, or type !human to ask a person.",
        "es": "Responde con el número, o escribe !human para preguntar a una persona.",
    },
    "source": {"en": "Source", "es": "Fuente"},
    "related": {"en": "Related", "es": "Relacionado"},
    "hint": {
        "en": "React 👍 or 👎 to tell me if this helped; send !human to ask a person.",
        "es": "Reacciona con 👍 o 👎 para decirme si te ayudó; escribe !human para hablar "
        "con una persona.",
    },
}


def say(key: str, lang: str = "en", **fields: str) -> str:
    """The sentence ``key`` in ``lang`` (English when there is no translation)."""
    variants = TEXTS[key]
    text = variants.get(lang, variants["en"])
    return text.format(**fields) if fields else text
