"""WCAG 2.1 AA by a standard rule set: axe-core (wcag2a, wcag2aa, wcag21aa) in headless
Chromium on every public page in each of its states, the staff dashboard's pages, and the
HTML of every kind of email, in English and in Spanish. Then a person who only uses the
keyboard (Tab, Enter, Space) subscribes, confirms from the email, changes the subscription
and leaves; and a Spanish reader goes from the subscribe page to a digest in Spanish."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, BrowserContext, Page

from network import i18n
from network.devtools.mailsink import MailSink
from network.service import Service
from network.storage.live_feeds import FeedFilterRecord, LiveFeedRecord, LiveRouteRecord
from network.subscriptions.postman import render_message
from network.subscriptions.render import DigestItem, render_digest, render_immediate
from network.web.app import make_web_app
from network.web.dashboard import issue_login_token, login_url
from tests.browserkit import assert_axe_clean, axe_violations, chromium, needs_chromium
from tests.digestkit import Clock, DigestEnv, item, link_to, parts, publish

pytestmark = needs_chromium

LANGUAGES = ("en", "es")
# What the browser says it prefers, as a Mexican-Spanish or a US-English system does.
ACCEPT = {"en": "en-US,en;q=0.9", "es": "es-MX,es;q=0.9,en;q=0.5"}


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
    async with chromium() as b:
        yield b


async def context_in(browser: Browser, lang: str) -> BrowserContext:
    return await browser.new_context(
        locale=lang, extra_http_headers={"Accept-Language": ACCEPT[lang]}
    )


async def checked(page: Page, lang: str, what: str) -> None:
    """The page is in ``lang``, links to the accessibility statement and passes axe."""
    assert await page.get_attribute("html", "lang") == lang, what
    assert await page.locator('footer a[href="/accessibility"]').count() == 1, what
    await assert_axe_clean(page, f"{what} ({lang})")


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_every_public_page_and_state_passes_axe(
    env: Env, browser: Browser, lang: str
) -> None:
    page = await (await context_in(browser, lang)).new_page()
    with i18n.use(lang):
        check_inbox = i18n.gettext("Check your inbox")
        subscribed = i18n.gettext("You are subscribed")
        unsubscribed = i18n.gettext("You are unsubscribed")

    await page.goto(f"{env.base}/subscribe")
    await checked(page, lang, "subscribe, empty")
    await page.fill("#address", "ana@")
    await page.locator('form[action="/subscribe"] button[type=submit]').last.click()
    await page.locator(".error-summary").wait_for()
    await checked(page, lang, "subscribe, errors shown")
    await page.fill("#tz_search", "madrid")
    await page.click('button[name="find_zone"]')
    await page.locator("#tz-found").wait_for()
    assert await page.input_value("#tz") == "Europe/Madrid"
    await checked(page, lang, "subscribe, time zone found")
    await page.fill("#address", "ana@example.org")
    await page.locator('form[action="/subscribe"] button[type=submit]').last.click()
    await page.get_by_role("heading", name=check_inbox).wait_for()
    await checked(page, lang, "subscribe, sent")

    [msg] = env.sink.to("ana@example.org")
    await page.goto(link_to(parts(msg)[0], "confirm"))
    await checked(page, lang, "confirm")
    await page.locator("main form button").click()
    await page.get_by_role("heading", name=subscribed).wait_for()
    await checked(page, lang, "confirmed")

    await page.locator("main a").first.click()
    await page.locator("#topics").wait_for()
    await checked(page, lang, "manage")
    await page.locator('input[name="topics"]').first.uncheck()
    await page.locator('input[name="topics"]').nth(1).uncheck()
    await page.locator('input[name="topics"]').nth(2).uncheck()
    await page.locator('input[value="save"] ~ button[type=submit]').last.click()
    await page.locator(".error-summary").wait_for()
    await checked(page, lang, "manage, errors shown")
    await page.locator('input[name="topics"]').first.check()
    await page.locator('input[value="save"] ~ button[type=submit]').last.click()
    await page.locator(".notice").wait_for()
    await checked(page, lang, "manage, saved")
    await page.locator("button.secondary").click()
    await page.get_by_role("heading", name=unsubscribed).wait_for()
    await checked(page, lang, "unsubscribed")

    for path, what in (
        ("/manage", "ask for a manage link"),
        ("/accessibility", "accessibility statement"),
        ("/confirm/not-a-token", "a broken link"),
    ):
        await page.goto(f"{env.base}{path}")
        await checked(page, lang, what)
    await page.goto(f"{env.base}/manage")
    await page.fill("#address", "ana@example.org")
    await page.locator("main form button").click()
    await page.get_by_role("heading", name=check_inbox).wait_for()
    await checked(page, lang, "manage link sent")
    await env.service.postman.idle()
    sent = env.sink.to("ana@example.org")
    assert len(sent) == 1  # unsubscribed: no manage link goes out
    await page.context.close()


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_dashboard_pages_pass_axe(env: Env, browser: Browser, lang: str) -> None:
    page = await (await context_in(browser, lang)).new_page()
    await page.goto(f"{env.base}/dashboard/login")
    await checked(page, lang, "dashboard login")
    await page.fill("#token", "not-a-token")
    await page.locator("main form button").first.click()
    await page.locator("p.error").wait_for()
    await checked(page, lang, "dashboard login refused")
    token = issue_login_token(env.service.settings, "dana", now=datetime.now(UTC))
    await page.goto(login_url(env.service.settings, token))
    await page.locator("main form button").first.click()
    await page.locator("#feeds").wait_for()
    await checked(page, lang, "dashboard overview")
    await page.goto(f"{env.base}/dashboard/outbox")
    await checked(page, lang, "dashboard outbox")
    # The feeds page with a live feed, so its forms are there too.
    if not await env.service.storage.live_feeds():
        await env.service.storage.add_live_feed(
            LiveFeedRecord(
                id="riverside", url="https://riverside.example.org/news.xml", kind="news",
                title="Riverside news", rooms=("#riverside:example.org",), channels=(),
                template="", filters=(FeedFilterRecord("block", "closed"),), paused=True,
                added_by="dana", added_at=datetime.now(UTC),
            )
        )  # fmt: skip
    await page.goto(f"{env.base}/dashboard/feeds")
    await page.locator("#feed-riverside").wait_for()
    await checked(page, lang, "dashboard feeds")
    # The routes page with a live route, so its table and remove form are there too.
    if not await env.service.storage.live_routes():
        await env.service.storage.add_live_route(
            LiveRouteRecord(
                id=0, feeds=(), kinds=("webinar",), rooms=("#events:example.org",),
                channels=(), matrix_template="{{ title }}", channel_template="",
                added_by="dana", added_at=datetime.now(UTC),
            ),
            detail="kinds=webinar",
        )  # fmt: skip
    await page.goto(f"{env.base}/dashboard/routes")
    await page.locator("#live-routes tbody tr[id]").first.wait_for()
    await checked(page, lang, "dashboard routes")
    await page.context.close()


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_public_archive_and_calendar_pages_pass_axe(
    env: Env, browser: Browser, lang: str
) -> None:
    """The archive (everything, a topic, a search that finds and one that does not), the
    calendars page and the accessibility statement, with the dates in the page's language."""
    await publish(
        env.service,
        "news",
        [item("a1", "Hotspot lending expands", summary="<p>Twelve branches lend hotspots.</p>")],
        datetime(2026, 5, 20, 15, tzinfo=UTC),
    )
    page = await (await context_in(browser, lang)).new_page()
    for path, what in (
        ("/archive", "archive"),
        ("/archive/topic/kind-news", "archive of a topic"),
        ("/archive?q=hotspots", "archive search with results"),
        ("/archive?q=zeppelin", "archive search without results"),
        ("/calendar", "webinar calendars"),
        ("/accessibility", "accessibility statement"),
    ):
        await page.goto(f"{env.base}{path}")
        await checked(page, lang, what)
        if "hotspots" in path or path.startswith("/archive/"):
            date = await page.locator("main time").first.inner_text()
            assert date == {"en": "May 20, 2026", "es": "20 de mayo de 2026"}[lang], what
    await page.context.close()


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_dashboard_review_and_trends_pages_pass_axe(
    env: Env, browser: Browser, lang: str
) -> None:
    """Moderation (nothing waiting), the audit log and the trends charts and table, with
    their words in the page's language."""
    page = await (await context_in(browser, lang)).new_page()
    token = issue_login_token(env.service.settings, "dana", now=datetime.now(UTC))
    await page.goto(login_url(env.service.settings, token))
    await page.locator("main form button").first.click()
    await page.locator("#feeds").wait_for()
    with i18n.use(lang):
        names = [i18n.gettext(w) for w in ("Moderation", "Audit log", "Trends")]
    for path, name in zip(("moderation", "audit", "trends"), names, strict=True):
        await page.goto(f"{env.base}/dashboard/{path}")
        await page.get_by_role("heading", name=name, exact=True).wait_for()
        await checked(page, lang, f"dashboard {path}")
    await page.context.close()


def _sample_items(now: datetime) -> list[DigestItem]:
    def one(i: int, kind: str, title: str, start: datetime | None = None) -> DigestItem:
        return DigestItem(
            item_id=i, kind=kind, title=title, link=f"https://libraries.example.org/{i}",
            summary_html="<p>Twelve branches now lend <strong>hotspots</strong>.</p>",
            published=now - timedelta(hours=i), feed_title="State Library news",
            event_start=start, author="Ana",
        )  # fmt: skip

    return [
        one(1, "webinar", "Webinar: Wi-Fi after hours", now + timedelta(days=3)),
        one(2, "news", "Hotspot lending expands"),
        one(3, "cohort-update", "Ignacio opens a makerspace"),
    ]


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_every_email_template_passes_axe(browser: Browser, lang: str) -> None:
    now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    items = _sample_items(now)
    common = {
        "subscriber_tz": "America/Chicago",
        "network_name": "Prairie Libraries",
        "manage_url": "https://hub.example.org/manage/t",
        "unsubscribe_url": "https://hub.example.org/unsubscribe/t",
        "ics_url": lambda i: f"https://hub.example.org/webinars/{i.item_id}.ics",
        "now": now,
        "language": lang,
    }
    digest = render_digest(items, frequency="daily", **common)  # type: ignore[arg-type]
    weekly = render_digest(items[1:2], frequency="weekly", **common)  # type: ignore[arg-type]
    notice = render_immediate(items[:1], **common)  # type: ignore[arg-type]
    with i18n.use(lang):
        confirmation = render_message(
            subject=i18n.gettext("Confirm your subscription"),
            heading=i18n.gettext("Please confirm your subscription"),
            paragraphs=["…"],
            action_url="https://hub.example.org/confirm/t",
            action_label=i18n.gettext("Confirm my subscription"),
            footnote=i18n.gettext("If you did not ask for this, you can ignore this message."),
            network_name="Prairie Libraries",
        )
    page = await (await context_in(browser, lang)).new_page()
    for name, message in (
        ("daily digest", digest),
        ("weekly digest", weekly),
        ("immediate notice", notice),
        ("personal message", confirmation),
    ):
        assert message is not None
        await page.set_content(message.html)
        assert await page.get_attribute("html", "lang") == lang
        await assert_axe_clean(page, f"email: {name} ({lang})")
    await page.context.close()


# -- the keyboard alone ----------------------------------------------------------------------


async def tab_to(page: Page, selector: str, *, limit: int = 80) -> None:
    """Press Tab until the element ``selector`` has the focus (and shows it)."""
    target = page.locator(selector)
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await target.evaluate("el => el === document.activeElement"):
            outline = await target.evaluate("el => getComputedStyle(el).outlineStyle")
            assert outline != "none", f"{selector} has the focus but does not show it"
            return
    raise AssertionError(f"{selector} cannot be reached with Tab")


async def test_keyboard_only_subscribe_confirm_manage_unsubscribe(
    env: Env, browser: Browser
) -> None:
    svc = env.service
    page = await (await context_in(browser, "en")).new_page()
    await page.goto(f"{env.base}/subscribe")
    await tab_to(page, "#address")
    await page.keyboard.type("kim@example.org")
    await tab_to(page, 'input[value="kind:cohort-update"]')
    await page.keyboard.press("Space")  # no cohort updates
    await tab_to(page, 'form[action="/subscribe"] button[type=submit]:not([name])')
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name="Check your inbox").wait_for()

    [msg] = env.sink.to("kim@example.org")
    await page.goto(link_to(parts(msg)[0], "confirm"))  # the link in the email
    await tab_to(page, "main form button")
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name="You are subscribed").wait_for()
    sub = await svc.storage.subscriber_by_key("kim@example.org")
    assert sub is not None and sub.prefs.topics == ("kind:webinar", "kind:news")

    await tab_to(page, "main a")  # "Change your subscription"
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name="Your subscription").wait_for()
    await tab_to(page, 'input[value="kind:news"]')
    await page.keyboard.press("Space")
    await tab_to(page, 'input[value="save"] ~ button[type=submit]')
    await page.keyboard.press("Enter")
    await page.get_by_text("Your changes are saved").wait_for()
    sub = await svc.storage.subscriber_by_key("kim@example.org")
    assert sub is not None and sub.prefs.topics == ("kind:webinar",)

    await tab_to(page, "button.secondary")  # Unsubscribe
    await page.keyboard.press("Space")
    await page.get_by_role("heading", name="You are unsubscribed").wait_for()
    sub = await svc.storage.subscriber_by_key("kim@example.org")
    assert sub is not None and sub.status == "unsubscribed"
    await page.context.close()


# -- Spanish from end to end -----------------------------------------------------------------


async def test_spanish_reader_subscribes_confirms_and_gets_a_spanish_digest(
    env: Env, browser: Browser
) -> None:
    svc, clock, sink = env.service, env.clock, env.sink
    page = await (await context_in(browser, "es")).new_page()
    await page.goto(f"{env.base}/subscribe")
    # The browser asked for Spanish: the page and the email language default to it.
    await page.get_by_role("heading", name="Suscríbase a Prairie Libraries").wait_for()
    assert await page.input_value("#language") == "es"
    await page.get_by_label("Correo electrónico").fill("lucia@example.org")
    await page.get_by_label("Resumen diario", exact=True).check()
    await page.get_by_label("Zona horaria").select_option("America/Chicago")
    await page.get_by_role("button", name="Suscribirse").click()
    await page.get_by_role("heading", name="Revise su bandeja de entrada").wait_for()

    [confirmation] = sink.to("lucia@example.org")
    assert confirmation["Subject"] == "Confirme su suscripción a Prairie Libraries"
    text, html = parts(confirmation)
    assert "un resumen diario a las 8:00 (America/Chicago)" in " ".join(text.split())
    assert '<html lang="es">' in html
    await page.goto(link_to(text, "confirm"))
    await page.get_by_role("button", name="Confirmar mi suscripción").click()
    await page.get_by_role("heading", name="Su suscripción está activa").wait_for()
    sub = await svc.storage.subscriber_by_key("lucia@example.org")
    assert sub is not None and sub.prefs.language == "es"

    webinar_start = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
    await publish(svc, "news", [item("n1", "Hotspot lending expands")], clock.now)
    await publish(
        svc, "webinars", [item("w1", "Webinar: Wi-Fi after hours", "webinar", start=webinar_start)],
        clock.now,
    )  # fmt: skip
    clock.advance(days=1)  # past her next 08:00 in Chicago
    report = await svc.digests.run_once()
    assert report.sent == 1
    [_, digest] = sink.to("lucia@example.org")
    assert digest["Subject"].startswith("Prairie Libraries: Resumen diario, 24 nov")
    assert "1 próximo seminario web, 1 noticia" in digest["Subject"]
    text, html = parts(digest)
    assert "PRÓXIMOS SEMINARIOS WEB" in text and ">Noticias</h2>" in html
    assert "martes, 24 de noviembre de 2026" in text  # the digest's date, CLDR Spanish
    assert "lunes, 30 de noviembre de 2026, 12:00 CST" in text  # the webinar, her zone
    assert "Añadir al calendario" in html and "Gestione su suscripción" in html
    await page.set_content(html)
    await assert_axe_clean(page, "the Spanish digest as it arrived")
    await page.context.close()


async def test_axe_reports_a_page_that_breaks_the_rules(browser: Browser) -> None:
    """The rule set really runs: a page without a language, a label or an image text fails."""
    page = await browser.new_page()
    await page.set_content(
        '<html><body><img src="x.png"><input type="text"><p style="color:#aaa">Low</p></body></html>'
    )
    found = " ".join(await axe_violations(page))
    for rule in ("html-has-lang", "image-alt", "label", "color-contrast"):
        assert rule in found
    await page.close()
