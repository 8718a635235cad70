"""Social post limits (pure): Mastodon 500 characters with every URL counted as 23, Bluesky
300 grapheme clusters; the text is shortened at a word, the link never; plus URL redaction
and the refusal of an invalid apprise URL."""

from __future__ import annotations

import pytest

from network.delivery.channels import (
    ChannelSender,
    PostLimit,
    fit_post,
    grapheme_len,
    graphemes,
    post_length,
    post_limit,
    redact,
)
from network.errors import DeliveryError

MASTODON = PostLimit(500, 23)
BLUESKY = PostLimit(300)
LINK = "https://libraries.example.org/news/2026/11/hotspot-lending-expands-to-twelve-branches"


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("abc", 3),
        ("e\u0301", 1),  # e + combining acute
        ("a\u0308\u0323", 1),  # two combining marks
        ("👨‍👩‍👧‍👦", 1),  # ZWJ family
        ("👍🏽", 1),  # skin tone modifier
        ("❤️", 1),  # variation selector
        ("🇫🇷🇩🇪", 2),  # two flags
        ("🇫🇷🇩", 2),  # a flag and a lone regional letter
        ("\u1100\u1161\u11a8", 1),  # Hangul jamo L V T
        ("한국어", 3),
        ("\r\n", 1),
        ("", 0),
    ],
)
def test_grapheme_clusters(text: str, count: int) -> None:
    assert grapheme_len(text) == count
    assert "".join(graphemes(text)) == text


def test_limits_by_scheme() -> None:
    assert post_limit("mastodon://token@mastodon.example.org") == MASTODON
    assert post_limit("toots://token@host") == MASTODON
    assert post_limit("bluesky://handle:pass@") == BLUESKY
    assert post_limit("json://127.0.0.1/x") is None


def test_mastodon_counts_every_url_as_23() -> None:
    assert post_length(f"Read {LINK}", MASTODON) == len("Read ") + 23
    assert post_length(f"Read {LINK}", BLUESKY) == len("Read ") + len(LINK)


def test_text_that_fits_is_unchanged() -> None:
    text = f"Short news\n\n{LINK}"
    assert fit_post(text, LINK, MASTODON) == text
    assert fit_post(text, LINK, BLUESKY) == text


def test_mastodon_shortens_the_text_and_keeps_the_link_whole() -> None:
    text = "Hotspot lending " + "expands to more branches " * 40 + f"\n\n{LINK}"
    out = fit_post(text, LINK, MASTODON)
    assert out.endswith(f"…\n\n{LINK}")
    assert post_length(out, MASTODON) <= 500
    # Cut at a word: the prose before the ellipsis ends with a whole word of the original.
    prose = out[: -len(f"…\n\n{LINK}")]
    assert text.startswith(prose) and prose.endswith(("branches", "more", "to", "expands"))
    # The URL counts 23, so far more than 500 - len(LINK) characters of prose fit.
    assert len(prose) > 500 - 2 - 23 - 30


def test_link_in_the_middle_of_a_template_moves_whole_to_the_end() -> None:
    text = f"New: Hotspots {LINK} " + "details " * 80
    out = fit_post(text, LINK, BLUESKY)
    assert out.count(LINK) == 1 and out.endswith(f"\n\n{LINK}")
    assert grapheme_len(out) <= 300
    assert out.startswith("New: Hotspots details")


def test_bluesky_counts_graphemes_and_never_splits_one() -> None:
    cluster = "e\u0301\u0323"  # one grapheme, three code points
    family = "👨‍👩‍👧‍👦"
    text = (cluster + family + " ") * 200
    out = fit_post(f"{text}{LINK}", LINK, BLUESKY)
    assert grapheme_len(out) <= 300 and len(out) > 300  # more code points than graphemes
    prose = out[: -len(f"…\n\n{LINK}")]
    assert out.endswith(f"…\n\n{LINK}")
    # Every cluster kept is a whole cluster of the original.
    assert set(graphemes(prose)) <= {cluster, family, " "}
    assert graphemes(prose)[-1] in (cluster, family)


def test_link_longer_than_the_post_is_kept_alone() -> None:
    long_link = "https://example.org/" + "x" * 400
    assert fit_post("Title " + long_link, long_link, BLUESKY) == long_link


def test_no_link_just_shortens() -> None:
    out = fit_post("word " * 200, "", BLUESKY)
    assert out.endswith("…") and grapheme_len(out) <= 300


def test_redact_hides_credentials_and_paths() -> None:
    assert (
        redact("mastodon://s3cret-token@mastodon.example.org/@me")
        == "mastodon://mastodon.example.org/…"
    )
    assert redact("json://user:pw@127.0.0.1:8080/hook?x=1") == "json://127.0.0.1:8080/…"
    # Where the "host" is the token, only apprise's masked form is shown.
    for url, secret in (
        ("tgram://123456789:AAHsecretBotToken/12345", "secretBotToken"),
        ("pbul://o.SECRETACCESSTOKEN/", "SECRETACCESS"),
        ("ntfy://ntfy.sh/secret-topic-name", "secret-topic"),
        ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", "JHMHI8q"),
    ):
        shown = redact(url)
        assert secret not in shown and shown.startswith(url.split("://")[0] + "://"), shown
    assert redact("nonsense://") == "nonsense://…" and redact("no scheme") == "(not a URL)"
    assert redact("nosuchscheme://token@host/path") == "nosuchscheme://host/…"


async def test_invalid_apprise_url_is_a_permanent_error() -> None:
    with pytest.raises(DeliveryError) as caught:
        await ChannelSender().send("nosuchscheme://secret@host/x", title="t", body="b")
    assert caught.value.transient is False
    assert "not a valid apprise URL" in str(caught.value) and "secret" not in str(caught.value)
