"""Headless Chromium for the browser tests, and axe-core (bundled by axe-playwright-python,
run offline in the page) as the standard WCAG rule set.

`axe_violations` runs the rules tagged wcag2a, wcag2aa and wcag21aa (WCAG 2.1 level AA)
and returns a readable line per violation, empty when the page passes.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WCAG21_AA = ["wcag2a", "wcag2aa", "wcag21aa"]

needs_chromium = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs /usr/bin/chromium"),
]

_AXE = Axe()


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def axe_violations(page: Page) -> list[str]:
    """One line per WCAG 2.1 A/AA violation axe-core finds in the page as it is now."""
    options = {"runOnly": {"type": "tag", "values": WCAG21_AA}, "resultTypes": ["violations"]}
    results = await _AXE.run(page, options=options)
    found: list[dict[str, Any]] = results.response.get("violations", [])
    lines = []
    for v in found:
        targets = [" ".join(map(str, n.get("target", []))) for n in v.get("nodes", [])[:3]]
        lines.append(f"{v['id']} ({v.get('impact')}): {v.get('help')} at {targets}")
    return lines


async def assert_axe_clean(page: Page, what: str = "") -> None:
    problems = await axe_violations(page)
    assert problems == [], f"{what or page.url}: {problems}"
