"""Routing (pure): conditions, whole-word filters, targets per URL, which route template wins,
and broken templates as config errors naming the key."""

from __future__ import annotations

import pytest

from network.errors import ConfigError
from network.routing.router import Router
from network.settings.model import parse_settings
from network.storage import ItemInput, Target

BASE = """
[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@libhub:localhost"
password_env = "PW"
[[feeds]]
id = "news"
url = "http://x/news.xml"
rooms = ["#all:x"]
[[feeds]]
id = "webinars"
url = "http://x/webinars.xml"
kind = "webinar"
[channels.social]
urls = ["json://127.0.0.1/a", "json://127.0.0.1/b"]
[channels.alerts]
urls = ["json://127.0.0.1/b", "json://127.0.0.1/c"]
"""


def item(
    title: str = "Hotspots", kind: str = "news", summary: str = "", cats: tuple[str, ...] = ()
) -> ItemInput:
    return ItemInput(
        key="k", kind=kind, title=title, link="http://x/1", published=None, author=None,
        categories=cats, summary_html=summary, enclosures=(), event_start=None, content_hash="h",
    )  # fmt: skip


def router(routes: str) -> Router:
    return Router(parse_settings(BASE + routes))


def test_feed_targets_and_route_conditions() -> None:
    r = router(
        """
[[routes]]
kinds = ["webinar"]
include = ["maker space", "wi-fi"]
exclude = ["cancelled"]
rooms = ["#makers:x"]
channels = ["social", "alerts"]
"""
    )
    assert r.targets("news", item()) == [Target("matrix", "#all:x")]
    hit = item("Webinar: Wi-Fi after hours", kind="webinar")
    assert r.targets("webinars", hit) == [
        Target("matrix", "#makers:x"),
        Target("apprise", "json://127.0.0.1/a", "social"),
        Target("apprise", "json://127.0.0.1/b", "social"),  # once, though in two channels
        Target("apprise", "json://127.0.0.1/c", "alerts"),
    ]
    # Phrases match whole words, in the summary and the categories too, case-insensitively.
    assert r.targets("webinars", item("Webinar", "webinar", "<p>Our <b>Maker Space</b></p>"))
    assert r.targets("webinars", item("Webinar", "webinar", cats=("WI-FI",)))
    assert not r.targets("webinars", item("Webinar: makers spaces", "webinar"))
    assert not r.targets("webinars", item("Wi-Fi webinar CANCELLED", "webinar"))
    assert not r.targets("webinars", item("Wi-Fi", kind="news"))


TEMPLATED = """
[[routes]]
kinds = ["webinar"]
rooms = ["#all:x"]
[[routes]]
feeds = ["news"]
rooms = ["#all:x", "#other:x"]
matrix_template = "first: {{ title }}"
channel_template = "first: {{ title }}"
channels = ["alerts"]
[[routes]]
rooms = ["#all:x"]
matrix_template = "second: {{ title }}"
channels = ["social"]
channel_template = "second: {{ title }}"
"""


def test_first_matching_route_with_a_template_wins() -> None:
    r = router(TEMPLATED)
    webinar = item("Live", kind="webinar")
    # Route 0 matches but has no template: it does not hide route 1.
    tpl = r.matrix_template("news", webinar, "#all:x")
    assert tpl is not None and tpl.source == "first: {{ title }}"
    # Route 1 does not match the webinars feed: route 2 is the first with a template.
    tpl = r.matrix_template("webinars", webinar, "#all:x")
    assert tpl is not None and tpl.source == "second: {{ title }}"
    # No route with a template names that room for that feed: default layout.
    assert r.matrix_template("webinars", webinar, "#other:x") is None
    # Channels: by channel name, or by URL when the URL is in a route's channel.
    c = r.channel_template("news", webinar, "json://127.0.0.1/c", "alerts")
    assert c is not None and c.source == "first: {{ title }}"
    c = r.channel_template("webinars", webinar, "json://127.0.0.1/a", "social")
    assert c is not None and c.source == "second: {{ title }}"
    c = r.channel_template("news", webinar, "json://127.0.0.1/b", "social")
    assert c is not None and c.source == "first: {{ title }}"  # /b is in alerts too


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ title ", "routes[0].matrix_template: template syntax error (template line 1): "),
        ("{% if title %}{{ title }}", "routes[0].matrix_template: template syntax error"),
        (
            "{{ titel }} {{ link }}",
            "routes[0].matrix_template: unknown template variable(s) titel; available: feed_title, "
            "feed_link, title, link, date, author, summary, summary_text, kind, event_start",
        ),
        (
            "{{ title.__class__.__mro__ }}",
            "routes[0].matrix_template: template fails on a sample item: ",
        ),
        ("{{ link[8] }}", "routes[0].matrix_template: template fails on a sample item: "),
        ("{{ title.nope }}", "routes[0].matrix_template: template fails on a sample item: "),
        (
            "{% if false %}x{% endif %}",
            "routes[0].matrix_template: template renders an empty message",
        ),
        (
            "x" * 5000,
            "routes[0].matrix_template: template is 5000 characters long; keep it under 4000",
        ),
    ],
)
def test_broken_matrix_template_is_a_config_error(template: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(BASE + f"[[routes]]\nrooms = ['#r:x']\nmatrix_template = '''{template}'''\n")
    assert str(caught.value).startswith(message), str(caught.value)


def test_broken_channel_template_and_templates_without_targets() -> None:
    with pytest.raises(ConfigError, match=r"^routes\[1\]\.channel_template: unknown template"):
        parse_settings(
            BASE
            + "[[routes]]\nrooms = ['#r:x']\n"
            + "[[routes]]\nchannels = ['social']\nchannel_template = '{{ summary_txt }}'\n"
        )
    with pytest.raises(
        ConfigError, match=r"^routes\[0\]\.matrix_template: matrix_template needs rooms"
    ):
        parse_settings(
            BASE + "[[routes]]\nchannels = ['social']\nmatrix_template = '{{ title }}'\n"
        )
