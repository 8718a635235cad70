"""Which changes a publisher makes to an item already posted are worth a Matrix edit.

A reader notices a new title, a new link, a new time for an event, or a real change of the
text, numbers included ("Open 9-5" becoming "Open 9-8"). A count next to the text (views,
comments, likes, "updated 3 minutes ago") changes on every poll; editing for it would send an
edit to every room each poll for as long as the edit window lasts. So counts, recognised by
the word that says what they count, are compared as "a count"; every other number is text.
"""

from __future__ import annotations

import re

from feeds.sanitize import html_to_text
from network.storage import ItemInput, StoredText

# What page counters count, in the languages of the network's feeds (lower case).
_COUNTED = (
    r"views?|viewed|times|reads?|comments?|likes?|shares?|downloads?|visits?|hits|replies"
    r"|reactions?|votes?|visitas|vistas|comentarios|vues|commentaires|aufrufe|kommentare"
)
_AGO = r"(?:seconds?|minutes?|hours?|days?|weeks?)\s+ago"
_NUMBER = r"\d+(?:[.,\u00a0\u202f ]\d{3})*(?:[.,]\d+)?[kKmM]?"
# "1,204 views", "Views: 1204", "3 minutes ago": the number becomes "#".
_COUNT = re.compile(
    rf"{_NUMBER}(?P<after>\s*(?:{_COUNTED}|{_AGO})\b)|\b(?P<before>(?:{_COUNTED})\s*:?\s*){_NUMBER}",
    re.IGNORECASE,
)


def comparable_text(summary_html: str) -> str:
    """The summary's visible words, whitespace collapsed and every count the same."""
    text = " ".join(html_to_text(summary_html).split())
    return _COUNT.sub(lambda m: (m["before"] or "") + "#" + (m["after"] or ""), text)


def worth_an_edit(old: StoredText, new: ItemInput) -> bool:
    """True when a reader of the posted message would notice the change from `old`."""
    return (
        old.title != new.title
        or old.link != new.link
        or old.event_start != new.event_start
        or comparable_text(old.summary_html) != comparable_text(new.summary_html)
    )
