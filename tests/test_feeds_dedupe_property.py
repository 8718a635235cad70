"""A property of `feeds.schedule.dedupe_keys` over many polls of a feed whose items gain,
lose, reuse and swap guids: every item is posted once, and no post is edited into another
item's text. The poller's storage is modelled by a dict, queried as the poller queries it."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.schedule import KeyEntry, dedupe_keys

GUIDS = ("g0", "g1", "g2", "g3")
ITEMS = 6

# One listing: an item (by number) with the guid the publisher gives it this time, or None
# when it has no guid (its key is then its link). A poll is a document's list of listings.
listing = st.tuples(st.integers(0, ITEMS - 1), st.one_of(st.none(), st.sampled_from(GUIDS)))
polls = st.lists(st.lists(listing, max_size=8), min_size=1, max_size=8)


def entry(item: int, guid: str | None) -> KeyEntry:
    link = f"http://news.example/{item}"
    return KeyEntry(guid or link, f"Item {item}", link, f"content of item {item}")


@settings(max_examples=400, deadline=None)
@given(polls)
def test_every_item_posted_once_and_no_post_edited_into_another(
    documents: list[list[tuple[int, str | None]]],
) -> None:
    stored: dict[str, KeyEntry] = {}
    post_shows: dict[str, int] = {}  # stored key -> the item its Matrix post shows
    posted: Counter[int] = Counter()
    for document in documents:
        entries = [entry(item, guid) for item, guid in document]
        keys_in_doc = {e.key for e in entries}
        hashes_in_doc = {e.content_hash for e in entries}
        # What FeedStore.stored_key_facts returns: stored items by key or content hash.
        facts = [
            s for s in stored.values() if s.key in keys_in_doc or s.content_hash in hashes_in_doc
        ]
        keys = dedupe_keys(entries, facts)
        given_keys = [k for k in keys if k is not None]
        assert len(given_keys) == len(set(given_keys)), keys
        for (item, _), e, key in zip(document, entries, keys, strict=True):
            if key is None:
                continue
            known = stored.get(key)
            if known is None:
                posted[item] += 1
                post_shows[key] = item
            elif known.content_hash != e.content_hash:
                assert post_shows[key] == item, f"the post of item {post_shows[key]} edited"
            stored[key] = e._replace(key=key)
    seen = {item for document in documents for item, _ in document}
    assert dict(posted) == dict.fromkeys(seen, 1)
