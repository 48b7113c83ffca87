"""The try-it page passes axe-core (the npm package, injected into the page) on every screen,
at desktop and phone sizes, with no serious or critical violation: contrast in both themes,
names for every control, landmarks, focusable dialogs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from local.stack import LocalStack
from tests.e2e.conftest import DESKTOP, PHONE
from tests.e2e.test_browser import api_for, expect, open_faces, pytestmark, sign_in
from tests.support import journeys

AXE = Path(__file__).resolve().parents[2] / ".tools" / "node_modules" / "axe-core" / "axe.min.js"
__all__ = ["pytestmark"]

if not AXE.exists():
    pytestmark = [
        *pytestmark,
        pytest.mark.skip(reason=f"axe-core is missing: {AXE} (make tools installs it)"),
    ]


def violations(page: Any) -> list[str]:
    """axe-core's serious and critical findings on what the page shows now."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at "
        + json.dumps([node["target"] for node in v["nodes"][:3]])
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_screen_has_no_serious_accessibility_violation(
    browser: Any, app_url: str, user: str, web_stack: LocalStack, size: dict[str, int], theme: str
) -> None:
    context = browser.new_context(viewport=size, color_scheme=theme)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        api = api_for(web_stack, user)
        model_id = journeys.model_with_selfies(api, 1, seed=90)
        page.goto(app_url)
        found = {"sign-in": violations(page)}
        sign_in(page, app_url, user)
        page.locator(f"#model-list [data-model-id='{model_id}']").click()
        expect(page.locator("#model-status")).to_have_text("Collecting")
        found["model"] = violations(page)
        page.get_by_role("button", name="Delete", exact=True).click()
        expect(page.locator("#confirm-dialog")).to_be_visible()
        found["confirm delete dialog"] = violations(page)
        page.keyboard.press("Escape")
        expect(page.locator("#confirm-dialog")).to_be_hidden()
        open_faces(page)
        found["face avatars"] = violations(page)
        page.get_by_role("tab", name="Gallery").click()
        expect(page.locator("#gallery-empty")).to_be_visible()
        found["gallery"] = violations(page)
        page.get_by_role("tab", name="Usage & data").click()
        expect(page.locator("#limit-list .limit").first).to_be_visible()
        found["usage and data"] = violations(page)
        page.get_by_role("button", name="How this was called").click()
        expect(page.locator("#calls-dialog .call").first).to_be_visible()
        found["how this was called"] = violations(page)
        page.keyboard.press("Escape")
        page.get_by_role("button", name="Settings").click()
        found["settings dialog"] = violations(page)
    finally:
        context.close()

    assert {screen: v for screen, v in found.items() if v} == {}
