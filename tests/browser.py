"""Headless Chromium for tests of what a browser does (the web page, hls.js playback).

Debian's ``chromium`` (installed by ``scripts/setup.sh``) driven by the Python ``playwright``
package; playwright's own browser download is never used. Import the fixtures into a test
module::

    from tests.browser import browser_fixture, page_fixture, page_watch_fixture  # noqa: F401

``page`` records every uncaught page error and every console error; a test that ends with any
fails (:class:`PageWatch` keeps them, ``page_watch.allow(...)`` lets a test expect one).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "PageWatch", "browser_fixture", "page_fixture", "page_watch_fixture"]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # let <video> start without a click
    "--autoplay-policy=no-user-gesture-required",
]


@dataclass
class PageWatch:
    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


# registered under the short names (browser, page, page_watch) so tests can take them as arguments
@pytest.fixture(name="browser")
async def browser_fixture() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        instance = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture(name="page_watch")
def page_watch_fixture() -> PageWatch:
    return PageWatch()


@pytest.fixture(name="page")
async def page_fixture(browser: Browser, page_watch: PageWatch) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    tab = await context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            page_watch.errors.append(f"console: {message.text}")

    def on_error(error: Error) -> None:
        page_watch.errors.append(f"pageerror: {error.message}")

    tab.on("console", on_console)
    tab.on("pageerror", on_error)
    try:
        yield tab
    finally:
        await context.close()
    unexpected = page_watch.unexpected()
    assert not unexpected, f"the page reported errors: {unexpected}"
