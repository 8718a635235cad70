"""Two languages done properly: every string marked in the code and templates has a
translation in every catalog (extracted afresh, as `make i18n` does, so a new string
without one fails here), the compiled catalogs are those of the .po files, a third
language is only a catalog, pages follow the browser's language, and each subscriber's
mail follows the language they chose."""

from __future__ import annotations

import gettext
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from network import i18n
from network.subscriptions import zones
from network.templating import environment
from network.web.app import make_web_app
from tests.digestkit import DigestEnv, link_to, parts

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ROOT / "network" / "locale"


def extract(into: Path) -> Path:
    """The message template of the code as it is now, by the same command as `make i18n`."""
    pot = into / "libhub.pot"
    CommandLineInterface().run(  # type: ignore[no-untyped-call]
        ["pybabel", "--quiet", "extract", "-F", str(LOCALES / "babel.cfg"), "-k", "N_",
         "--add-comments=Translators:", "--no-location", "-o", str(pot), str(ROOT / "network"),
         str(ROOT / "bots")]
    )  # fmt: skip
    return pot


def translated_languages() -> list[str]:
    return [lang for lang in i18n.languages() if lang != i18n.SOURCE]


def test_every_marked_string_is_translated_in_every_language(tmp_path: Path) -> None:
    with extract(tmp_path).open("rb") as f:
        template = read_po(f)
    wanted = {m.id for m in template if m.id}
    assert len(wanted) > 200  # the pages, the mail and the dashboard are all marked
    assert translated_languages() == ["es"]
    for lang in translated_languages():
        with (LOCALES / lang / "LC_MESSAGES" / "libhub.po").open("rb") as f:
            catalog = read_po(f, locale=lang)
        problems = []
        for msgid in sorted(wanted, key=str):
            message = catalog.get(msgid)
            strings = message.string if message else ""
            forms = strings if isinstance(strings, tuple) else (strings,)
            if message is None or message.fuzzy or not all(forms):
                problems.append(f"not translated: {msgid!r}")
                continue
            # The placeholders survive translation: %(name)s in both.
            names = set(re.findall(r"%\((\w+)\)", str(msgid)))
            for form in forms:
                if set(re.findall(r"%\((\w+)\)", str(form))) != names:
                    problems.append(f"placeholders differ: {msgid!r} -> {form!r}")
        assert problems == [], f"{lang}: run `make i18n` and translate:\n" + "\n".join(problems)


def test_compiled_catalogs_are_those_of_the_po_files() -> None:
    for lang in translated_languages():
        folder = LOCALES / lang / "LC_MESSAGES"
        with (folder / "libhub.po").open("rb") as f:
            catalog = read_po(f, locale=lang)
        with (folder / "libhub.mo").open("rb") as f:
            compiled = gettext.GNUTranslations(f)
        for message in catalog:
            if not message.id:
                continue
            if isinstance(message.id, tuple | list):
                singular, plural = str(message.id[0]), str(message.id[1])
                forms = message.string
                assert isinstance(forms, tuple | list)
                assert compiled.ngettext(singular, plural, 1) == forms[0], "run `make i18n`"
            else:
                assert compiled.gettext(str(message.id)) == message.string, "run `make i18n`"


@pytest.fixture
def third_language(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A copy of the catalogs plus a French one of two strings, as a translator adds it."""
    locales = tmp_path / "locale"
    shutil.copytree(LOCALES, locales)
    with (LOCALES / "es" / "LC_MESSAGES" / "libhub.po").open("rb") as f:
        catalog = read_po(f, locale="es")
    french = type(catalog)(locale="fr", domain="libhub")
    french.add("Subscribe", "S’abonner")
    french.add("Accessibility", "Accessibilité")
    (locales / "fr" / "LC_MESSAGES").mkdir(parents=True)
    with (locales / "fr" / "LC_MESSAGES" / "libhub.mo").open("wb") as f:
        write_mo(f, french)
    monkeypatch.setattr(i18n, "LOCALE_DIR", locales)
    i18n.languages.cache_clear()
    i18n.translations.cache_clear()
    yield "fr"
    i18n.languages.cache_clear()
    i18n.translations.cache_clear()


def test_a_third_language_is_a_catalog_not_code(third_language: str) -> None:
    assert i18n.languages() == ("en", "es", "fr")
    assert i18n.negotiate("fr-CA,fr;q=0.9,en;q=0.5") == "fr"
    assert i18n.language_name("fr") == "Français"
    with i18n.use("fr"):
        html = environment().get_template("web/message.html.j2").render(
            network_name="Réseau", title="T", paragraphs=[], links=[], kind="notice",
            errors={}, path="/x", languages=[(c, i18n.language_name(c)) for c in i18n.languages()],
        )  # fmt: skip
        assert (
            i18n.format_day(datetime(2026, 11, 30, 12, tzinfo=UTC), UTC) == "lundi 30 novembre 2026"
        )
    assert '<html lang="fr">' in html and "S’abonner" in html and "Accessibilité" in html
    assert 'hreflang="es">Español</a>' in html


@pytest.mark.parametrize(
    ("header", "lang"),
    [("es-MX,es;q=0.9,en;q=0.8", "es"), ("en-US,en;q=0.9,es;q=0.8", "en"), ("es-419", "es"),
     ("fr-FR,fr;q=0.9", "en"), ("de, es;q=0.3", "es"), ("es;q=0, en", "en"), ("", "en"),
     ("garbage;;q=x", "en")],
)  # fmt: skip
def test_accept_language_picks_the_best_offered_language(header: str, lang: str) -> None:
    assert i18n.negotiate(header) == lang


def test_time_zones_are_a_short_list_and_a_search_by_city() -> None:
    likely = zones.likely("America/New_York")
    assert likely[:3] == ("America/New_York", "America/Chicago", "America/Denver")
    assert {"America/Phoenix", "America/Los_Angeles", "Pacific/Honolulu"} <= set(likely)
    assert len(likely) == len(set(likely)) <= 10
    assert zones.likely("America/Chicago")[1] == "America/Chicago"  # the network's own zone
    with i18n.use("en"):
        assert zones.label("America/Chicago") == "Central Time (Chicago)"
        assert zones.search("boise") == ("America/Boise",)
        assert zones.search("  SÃO paulo ") == ("America/Sao_Paulo",)
        assert zones.search("zzzz") == ()
    with i18n.use("es"):
        assert zones.label("America/New_York") == "hora oriental (Nueva York)"
        assert zones.search("nueva york") == ("America/New_York",)
        assert zones.search("Ciudad de México")[0] == "America/Mexico_City"


# -- over HTTP -------------------------------------------------------------------------------


@pytest.fixture
async def client(digest_env: DigestEnv) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    c = TestClient(TestServer(make_web_app(digest_env.service.web), host="127.0.0.1"))
    await c.start_server()
    try:
        yield c
    finally:
        await c.close()


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m
    return m.group(1)


FORM = {"address": "lucia@example.org", "topics": "kind:news", "frequency": "daily",
        "tz": "America/Chicago", "hour": "8", "weekday": "0"}  # fmt: skip


async def test_pages_follow_the_browser_then_the_language_links(client: TestClient) -> None:  # type: ignore[type-arg]
    spanish = {"Accept-Language": "es-MX,es;q=0.9"}
    resp = await client.get("/subscribe", headers=spanish)
    html = await resp.text()
    assert resp.headers["Content-Language"] == "es"
    assert '<html lang="es">' in html and "Suscríbase a Prairie Libraries" in html
    assert '<option value="es" lang="es" selected>' in html  # the email language, too
    assert "lunes" in html and "Zonas horarias de la red" in html
    # The footer's English link: English from then on, whatever the browser says.
    resp = await client.get("/subscribe?lang=en", headers=spanish)
    assert '<html lang="en">' in await resp.text()
    assert "libhub_lang=en" in resp.headers["Set-Cookie"]
    resp = await client.get("/accessibility", headers=spanish)
    html = await resp.text()
    assert '<html lang="en">' in html and "WCAG" in html
    assert 'href="/accessibility?lang=es" lang="es" hreflang="es">Español</a>' in html


async def test_the_mail_follows_the_language_chosen_not_the_page(
    client: TestClient,  # type: ignore[type-arg]
    digest_env: DigestEnv,
) -> None:
    svc, sink = digest_env.service, digest_env.sink
    html = await (await client.get("/subscribe")).text()  # an English page
    resp = await client.post(
        "/subscribe", data={**FORM, "language": "es", "csrf": csrf_of(html)}, allow_redirects=False
    )
    assert resp.status == 303
    [msg] = sink.to("lucia@example.org")
    assert msg["Subject"] == "Confirme su suscripción a Prairie Libraries"
    confirm = "/" + link_to(parts(msg)[0], "confirm").split("/", 3)[3]
    html = await (await client.get(confirm)).text()
    resp = await client.post(confirm, data={"csrf": csrf_of(html)})
    assert resp.status == 200
    sub = await svc.storage.subscriber_by_key("lucia@example.org")
    assert sub is not None and sub.prefs.language == "es"
    # On the manage page she switches her mail to English; the manage link comes in it.
    manage = "/" + svc.subscriptions.links.manage(sub.id, digest_env.clock()).split("/", 3)[3]
    html = await (await client.get(manage)).text()
    form = {**FORM, "language": "en", "action": "save", "csrf": csrf_of(html)}
    assert "Your changes are saved" in await (await client.post(manage, data=form)).text()
    sub = await svc.storage.subscriber_by_key("lucia@example.org")
    assert sub is not None and sub.prefs.language == "en"
    html = await (await client.get("/manage")).text()
    await client.post("/manage", data={"address": "lucia@example.org", "csrf": csrf_of(html)})
    await svc.postman.idle()
    assert sink.to("lucia@example.org")[-1]["Subject"] == "Your Prairie Libraries subscription"


async def test_time_zone_search_keeps_the_form_and_enter_still_subscribes(
    client: TestClient,  # type: ignore[type-arg]
    digest_env: DigestEnv,
) -> None:
    html = await (await client.get("/subscribe")).text()
    assert html.count('<option value="America/') <= 10  # a short list, not 500 names
    token = csrf_of(html)
    found = {**FORM, "csrf": token, "find_zone": "1", "tz_search": "madrid"}
    resp = await client.post("/subscribe", data=found)
    html = await resp.text()
    assert resp.status == 200 and digest_env.sink.received == []  # nothing sent yet
    assert '<option value="Europe/Madrid" selected>' in html
    assert "1 time zone matches “madrid”" in html and 'value="lucia@example.org"' in html
    # Enter in a text field presses the form's first button, the search: with nothing to
    # search for, that is the subscribe it looks like.
    plain = {**FORM, "csrf": token, "find_zone": "1", "tz_search": " ", "tz": "Europe/Madrid"}
    resp = await client.post("/subscribe", data=plain, allow_redirects=False)
    assert resp.status == 303
    [msg] = digest_env.sink.to("lucia@example.org")
    assert "(Europe/Madrid)" in " ".join(parts(msg)[0].split())
