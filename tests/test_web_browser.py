"""The subscription pages in headless Chromium, used as a person uses them: subscribe, open
the confirmation link from the email that arrived, change preferences, unsubscribe; then
one-click unsubscribe by POST while opening the link (GET) changes nothing. Every page is
checked for labels, one h1, a lang attribute, text contrast and fitting a phone screen."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from network.devtools.mailsink import MailSink
from network.service import Service
from network.web.app import make_web_app
from tests.digestkit import (
    Clock,
    DigestEnv,
    item,
    link_to,
    parts,
    publish,
    subscriber,
)

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs /usr/bin/chromium"),
]
PHONE: ViewportSize = {"width": 390, "height": 844}

# Runs in the page (the pages themselves have no JavaScript): what a screen reader and a
# phone user need. Returns a list of problems, empty when the page is fine.
A11Y_CHECK = """
() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push("html has no lang attribute");
  const h1 = document.querySelectorAll("h1").length;
  if (h1 !== 1) problems.push(`${h1} h1 elements`);
  const ids = new Set();
  for (const el of document.querySelectorAll("[id]")) {
    if (ids.has(el.id)) problems.push(`duplicate id ${el.id}`);
    ids.add(el.id);
  }
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    const label = el.id && document.querySelector(`label[for="${el.id}"]`);
    if (!(label && label.textContent.trim()) && !el.closest("label")
        && !el.getAttribute("aria-label")) problems.push(`no label for ${el.name}`);
    if ((el.type === "radio" || el.type === "checkbox")
        && !el.closest("fieldset")?.querySelector("legend"))
      problems.push(`${el.name} is not in a fieldset with a legend`);
  }
  for (const el of document.querySelectorAll("a, button"))
    if (!el.textContent.trim()) problems.push(`${el.tagName} without text`);
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  for (const el of document.querySelectorAll("p, label, legend, a, button, li, .hint, h1, h2")) {
    if (!el.textContent.trim()) continue;
    const fg = rgb(getComputedStyle(el).color).slice(0, 3);
    const [l1, l2] = [lum(fg), lum(background(el))].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)} for "${el.textContent.trim().slice(0, 30)}"`);
  }
  if (document.documentElement.scrollWidth > window.innerWidth)
    problems.push(`wider than the screen (${document.documentElement.scrollWidth}px)`);
  return problems;
}
"""


@dataclass
class Env:
    service: Service
    clock: Clock
    sink: MailSink
    base: str


@pytest.fixture
async def env(digest_env: DigestEnv) -> AsyncIterator[Env]:
    d = digest_env
    server = TestServer(make_web_app(d.service.web), host="127.0.0.1", port=d.settings.web.port)
    await server.start_server()
    try:
        yield Env(d.service, d.clock, d.sink, d.settings.web.public_url)
    finally:
        await server.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield b
        finally:
            await b.close()


async def accessible(page: Page) -> None:
    problems: list[Any] = await page.evaluate(A11Y_CHECK)
    assert problems == [], f"{page.url}: {problems}"


async def test_a_person_subscribes_confirms_changes_and_leaves(
    env: Env, browser: Browser, tmp_path: Path
) -> None:
    svc, sink = env.service, env.sink
    page = await browser.new_page(viewport=PHONE)
    await page.goto(f"{env.base}/subscribe")
    await accessible(page)
    await page.screenshot(path=str(tmp_path / "subscribe-390.png"), full_page=True)

    # A mistake first: the page says what is wrong and keeps what was typed.
    await page.get_by_label("Email address").fill("ana@")
    await page.get_by_role("button", name="Subscribe").click()
    await page.get_by_role("heading", name="Please check the form").wait_for()
    await accessible(page)
    assert await page.get_by_label("Email address").input_value() == "ana@"

    await page.get_by_label("Email address").fill("ana@example.org")
    # Every kind is preselected; Ana does not want cohort updates.
    assert await page.get_by_label("Webinars", exact=True).is_checked()
    await page.get_by_label("Cohort updates", exact=True).uncheck()
    await page.get_by_label("Daily digest", exact=True).check()
    await page.get_by_label("Time (daily and weekly digests)").select_option(label="7:00\u202fAM")
    # Berlin is not among the network's likely zones (the US ones): Ana searches for it,
    # and the form comes back with what she typed and Berlin selected.
    await page.get_by_label("Not in the list? Search by city").fill("berlin")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_text("1 time zone matches “berlin”").wait_for()
    await accessible(page)
    assert await page.get_by_label("Time zone").input_value() == "Europe/Berlin"
    assert await page.get_by_label("Email address").input_value() == "ana@example.org"
    assert not await page.get_by_label("Cohort updates", exact=True).is_checked()
    await page.get_by_role("button", name="Subscribe").click()
    await page.get_by_role("heading", name="Check your inbox").wait_for()
    await accessible(page)

    [msg] = sink.to("ana@example.org")
    text, _ = parts(msg)
    await page.goto(link_to(text, "confirm"))
    await accessible(page)
    await page.screenshot(path=str(tmp_path / "confirm-390.png"), full_page=True)
    assert (
        "daily digest at 7:00\u202fAM (Europe/Berlin) of: Webinars, News"
        in await page.inner_text("main")
    )
    assert await svc.storage.subscriber_by_key("ana@example.org") is None
    await page.get_by_role("button", name="Confirm my subscription").click()
    await page.get_by_role("heading", name="You are subscribed").wait_for()
    await accessible(page)
    sub = await svc.storage.subscriber_by_key("ana@example.org")
    assert sub is not None and sub.prefs.topics == ("kind:webinar", "kind:news")

    await page.get_by_role("link", name="Change your subscription").click()
    await page.get_by_role("heading", name="Your subscription").wait_for()
    await accessible(page)
    await page.screenshot(path=str(tmp_path / "manage-390.png"), full_page=True)
    assert await page.get_by_label("Webinars", exact=True).is_checked()
    await page.get_by_label("News", exact=True).uncheck()
    await page.get_by_label("Weekly digest", exact=True).check()
    await page.get_by_label("Day (weekly digest)").select_option(label="Friday")
    await page.get_by_role("button", name="Save my changes").click()
    await page.get_by_text("Your changes are saved").wait_for()
    await accessible(page)
    sub = await svc.storage.subscriber_by_key("ana@example.org")
    assert sub is not None
    assert (sub.prefs.topics, sub.prefs.frequency, sub.prefs.weekday, sub.prefs.hour) == (
        ("kind:webinar",), "weekly", 4, 7,
    )  # fmt: skip

    await page.get_by_role("button", name="Unsubscribe").click()
    await page.get_by_role("heading", name="You are unsubscribed").wait_for()
    await accessible(page)
    sub = await svc.storage.subscriber_by_key("ana@example.org")
    assert sub is not None and sub.status == "unsubscribed"


async def test_one_click_post_unsubscribes_and_opening_the_link_does_not(
    env: Env, browser: Browser
) -> None:
    svc, clock = env.service, env.clock
    sub = await subscriber(svc, "reader@example.org", frequency="immediate", now=clock.now)
    await publish(svc, "news", [item("a", "Alpha")], clock.now)
    await svc.digests.run_once()
    [msg] = env.sink.to("reader@example.org")
    one_click = msg["List-Unsubscribe"].split(",")[0].strip(" <>")

    page = await browser.new_page(viewport=PHONE)
    await page.goto(one_click)  # what a link scanner or a curious click does
    await page.get_by_role("button", name="Unsubscribe").wait_for()
    await accessible(page)
    await page.reload()
    assert (await svc.storage.subscriber(sub.id)).status == "active"  # type: ignore[union-attr]

    # What the mailbox provider sends for the "Unsubscribe" button in its interface.
    async with aiohttp.ClientSession() as http:
        async with http.post(
            one_click,
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as resp:
            assert resp.status == 200
    assert (await svc.storage.subscriber(sub.id)).status == "unsubscribed"  # type: ignore[union-attr]
    await page.reload()
    await page.get_by_role("heading", name="You are unsubscribed").wait_for()
