"""Table-driven tests of network.polling.changes: which publisher changes are worth an edit of
a posted Matrix message (a reader would notice them) and which are a page counter ticking."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from network.polling.changes import worth_an_edit
from network.storage import ItemInput, StoredText

WHEN = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
OLD = StoredText("Branch hours", "https://lib.example/hours", "<p>Open 9-5. 1,204 views</p>", WHEN)


def new(
    summary: str = "<p>Open 9-5. 1,204 views</p>",
    *,
    title: str = "Branch hours",
    link: str | None = "https://lib.example/hours",
    start: datetime | None = WHEN,
) -> ItemInput:
    return ItemInput("k", "news", title, link, None, None, (), summary, (), start, "h")


@pytest.mark.parametrize(
    ("item", "edit"),
    [
        (new(), False),
        (new("<p>Open 9-5. 1,205 views</p>"), False),
        (new("<p>Open   9-5.</p>\n<p>12,000 views</p>"), False),
        (new("<p>Open 9-5. 2.1k views</p>"), False),
        (new("<p>Open 9-5. 1,204 views · 7 comments</p>"), True),  # a new sentence part
        (new("<p>Open 9-5. 1,204 views. Updated 5 minutes ago</p>"), True),
        (new("<p>Open 9-8. 1,204 views</p>"), True),  # other numbers are text
        (new("<p>Closed. 1,204 views</p>"), True),
        (new(title="Branch hours (changed)"), True),
        (new(link="https://lib.example/hours-2027"), True),
        (new(start=None), True),
    ],
)  # fmt: skip
def test_worth_an_edit(item: ItemInput, edit: bool) -> None:
    assert worth_an_edit(OLD, item) is edit


def test_counts_next_to_the_text_in_other_forms() -> None:
    def was(text: str) -> StoredText:
        return StoredText("T", None, text, None)

    for before, after in [
        ("Updated 3 minutes ago", "Updated 12 minutes ago"),
        ("Viewed 999 times", "Viewed 1,000 times"),
        ("Aufrufe: 40", "Aufrufe: 41"),
        ("12 comentarios", "13 comentarios"),
    ]:
        assert not worth_an_edit(was(before), new(after, title="T", link=None, start=None))
