"""The try-it page (``web/``) in headless Chromium, against an embedded local stack.

Debian's ``/usr/bin/chromium`` is driven by the ``playwright`` package; no browser is ever
downloaded (``test_browser.py`` skips, saying what is missing, without either).
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local.stack import ROOT, LocalStack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WEB_DIR = ROOT / "web"
SCREENSHOTS = ROOT / "test-output" / "screenshots"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def web_stack(stack: LocalStack) -> LocalStack:
    """The session's local stack (one per process: moto's state is global): it serves
    ``web/`` with the dev-token endpoint on, as ``make run`` does."""
    assert stack.config.static_dir == WEB_DIR
    return stack


@pytest.fixture(scope="module")
def browser(web_stack: LocalStack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh desktop-sized page; fails the test on any uncaught error in the page's code."""
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    uncaught: list[str] = []
    page.on("pageerror", lambda error: uncaught.append(str(error)))
    yield page
    context.close()
    assert uncaught == [], f"uncaught errors in the page: {uncaught}"


@pytest.fixture()
def app_url(web_stack: LocalStack) -> str:
    return web_stack.api_url.removesuffix("/v1") + "/"


@pytest.fixture()
def user() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def _screenshot_dir() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@pytest.fixture()
def shots(page: Any, _screenshot_dir: Path) -> Callable[..., None]:
    """``shots("name")`` saves the page at desktop and at phone width (``full_page=False``:
    the viewport only, for dialogs), and checks that the phone layout never scrolls sideways."""

    def take(name: str, full_page: bool = True) -> None:
        slug = re.sub(r"[^a-z0-9-]+", "-", name.lower())
        # a full-page picture pins the fixed toasts where the viewport ended, mid-page, where
        # they read as part of the content: they are left out of those pictures only
        style = "#toasts { visibility: hidden; }" if full_page else None
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(250)
        page.screenshot(
            path=str(_screenshot_dir / f"{slug}-desktop.png"), full_page=full_page, style=style
        )
        page.set_viewport_size(PHONE)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(250)
        page.screenshot(
            path=str(_screenshot_dir / f"{slug}-phone.png"), full_page=full_page, style=style
        )
        overflow = page.evaluate("document.documentElement.scrollWidth")
        page.set_viewport_size(DESKTOP)
        assert overflow <= PHONE["width"], f"{name}: the page is {overflow}px wide on a phone"

    return take
