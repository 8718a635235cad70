"""Every sentence the live feed management says to a person, in one place, marked for the
gettext catalogs (network/i18n.py).

``M.NAME`` (``from network.feedadmin import messages as M``) is the sentence ``NAME`` in
the language in use when it is read, so replies follow `network.i18n.use` like the pages.
"""

from __future__ import annotations

from network.i18n import N_, gettext

_TEXTS: dict[str, str] = {
    "USAGE": N_(
        "Usage: !feed add URL [news|webinar] [title] | !feed list | !feed remove ID | "
        "!feed template ID TEMPLATE | !feed filter ID keep|block REGEX | !feed pause ID | "
        "!feed resume ID"
    ),
    "HELP": N_("add, list and change this room's feeds (power level {level} to change)"),
    "NOT_ALLOWED": N_(
        "Sorry, changing this room's feeds needs power level {level} in this room (you have "
        "{have}). Ask a room moderator, or a network coordinator on the dashboard."
    ),
    "NOT_HTTP": N_("Only http:// and https:// feeds can be added; {url!r} is neither."),
    "NOT_A_FEED": N_("Nothing was added: {url} is not a feed ({why})."),
    "FETCH_FAILED": N_("Nothing was added: {why}"),
    "DISCOVERED": N_(
        "{url} is a web page, not a feed, but it links to {n} feed(s). Add one with "
        "!feed add NUMBER (or its address):"
    ),
    "NO_CHOICE": N_("There is no list of feeds to choose from here; give the feed's address."),
    "BAD_CHOICE": N_("Choose a number from 1 to {n}."),
    "ALREADY": N_("{url} is already a feed here ({feed_id}); nothing was added."),
    "ADDED": N_(
        "Added feed {feed_id}: {title} ({kind}). Its {count} current item(s) are marked as seen; "
        "new items will be posted here."
    ),
    "PREVIEW": N_("The latest items, as they would be posted:"),
    "NO_ITEMS": N_("The feed has no items yet."),
    "NO_FEEDS": N_("No feeds post to this room."),
    "LIST_HEAD": N_("Feeds posting to this room:"),
    "UNKNOWN_FEED": N_("There is no feed {feed_id!r} here; !feed list shows this room's feeds."),
    "FILE_FEED": N_(
        "{feed_id} comes from the config file, which wins over live changes; ask a coordinator "
        "to change it there."
    ),
    "OTHER_ROOM": N_("{feed_id} posts to other rooms; change it on the dashboard."),
    "REMOVED": N_("Removed feed {feed_id}; nothing more from it will be posted."),
    "PAUSED": N_(
        "Paused feed {feed_id}; nothing is fetched or posted until !feed resume {feed_id}."
    ),
    "RESUMED": N_("Resumed feed {feed_id}."),
    "TEMPLATE_SET": N_(
        "Feed {feed_id} now posts with this template. The first item would look like:"
    ),
    "TEMPLATE_CLEARED": N_("Feed {feed_id} posts with the default layout again."),
    "TEMPLATE_BAD": N_("The template was not saved: {why}"),
    "FILTER_BAD": N_("The filter was not saved: {why}"),
    "FILTER_SET": N_(
        "Feed {feed_id} now {verb} items matching {pattern!r}; {shown} of its latest {n} "
        "would be posted."
    ),
    "ROUTE_BAD": N_("The route was not saved: {why}"),
    "BAD_KIND": N_("Unknown kind {kind!r}; use news, webinar or cohort-update."),
}


def __getattr__(name: str) -> str:
    """``M.USAGE`` and the like, translated now (a module attribute lookup lands here)."""
    try:
        return gettext(_TEXTS[name])
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
