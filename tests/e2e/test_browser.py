"""The try-it page drives the public API exactly as an app would, in a real browser.

Journeys: selfies uploaded from files straight to S3, checked, and a model trained while the
page watches; avatars in two styles from a trained model; a face-avatar batch; a rejected
selfie with its reason; out-of-range face parameters refused by the page, then by the server
when the page's checks are switched off. Screenshots of the main screens, at desktop and
phone width, land in ``test-output/screenshots/``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from local import photos
from local.client import ApiClient, wait_until
from local.stack import LocalStack
from tests.e2e.conftest import CHROMIUM, DESKTOP, PHONE
from tests.support import journeys


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return (
            "the Python package playwright is not installed (pip install -r requirements-dev.txt)"
        )
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    return None


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_missing() is not None, reason=f"browser tests need: {_missing()}"),
]

if _missing() is None:
    from playwright.sync_api import expect
else:  # pragma: no cover - the module is skipped
    expect = None

Shots = Callable[..., None]

ALL_IMAGES_LOADED = """
(selector) => {
  const images = [...document.querySelectorAll(selector)];
  return images.length > 0 && images.every((img) => img.complete && img.naturalWidth > 0);
}
"""


# --- helpers ------------------------------------------------------------------------------


def selfie_files(directory: Path, count: int, seed: int = 0) -> list[Path]:
    paths = []
    for index in range(count):
        path = directory / f"selfie-{index + 1}.jpg"
        path.write_bytes(photos.selfie_jpeg(seed + index, size=(600, 800)))
        paths.append(path)
    return paths


def sign_in(page: Any, app_url: str, user: str) -> None:
    page.goto(app_url)
    page.get_by_label("User name").fill(user)
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#session-user")).to_have_text(user)


def open_faces(page: Any) -> None:
    page.get_by_role("tab", name="Face avatars").click()
    expect(page.locator("#panel-faces")).to_be_visible()


def upload_reference(page: Any, directory: Path) -> None:
    reference = directory / "reference.jpg"
    reference.write_bytes(photos.selfie_jpeg(42, size=(700, 900)))
    page.locator("#reference-input").set_input_files(str(reference))
    expect(page.locator("#reference")).to_have_attribute("data-state", "accepted", timeout=30_000)


def skip_client_checks(page: Any) -> None:
    page.get_by_role("button", name="Settings").click()
    page.get_by_text("Skip client checks").click()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("body")).to_have_class("skip-checks")


def api_for(stack: LocalStack, user: str) -> ApiClient:
    return ApiClient(stack.api_url, stack.token(user))


def open_calls(page: Any) -> Any:
    page.get_by_role("button", name="How this was called").click()
    dialog = page.locator("#calls-dialog")
    expect(dialog).to_be_visible()
    return dialog


def axe_in_both_themes(page: Any) -> dict[str, list[str]]:
    """axe-core's serious and critical findings on what the page shows, light and dark."""
    from tests.e2e.test_accessibility import AXE, violations

    if not AXE.exists():
        return {}
    found = {}
    for theme in ("light", "dark"):
        page.emulate_media(color_scheme=theme)
        page.wait_for_timeout(300)  # buttons fade their colours in 0.15 s: measure them settled
        found[theme] = violations(page)
    page.emulate_media(color_scheme="light")
    return {theme: v for theme, v in found.items() if v}


def axe_everywhere(page: Any) -> dict[str, list[str]]:
    """axe-core's serious and critical findings on what the page shows, at desktop and phone
    size, each in both themes."""
    found = {}
    for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(viewport)
        for theme, violations in axe_in_both_themes(page).items():
            found[f"{name}, {theme}"] = violations
    return found


def confirm_delete(page: Any, says: str) -> None:
    """The confirm dialog asks before anything is deleted; it names what goes."""
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirm-text")).to_contain_text(says)
    dialog.get_by_role("button", name="Delete").click()
    expect(dialog).to_be_hidden()


def open_gallery(page: Any) -> Any:
    page.get_by_role("tab", name="Gallery").click()
    expect(page.locator("#panel-gallery")).to_be_visible()
    return page.locator("#gallery-grid")


# --- journeys -----------------------------------------------------------------------------


def test_selfies_go_straight_to_s3_and_the_page_watches_the_model_train(
    page: Any, app_url: str, user: str, tmp_path: Path, shots: Shots
) -> None:
    page.goto(app_url)
    expect(page.get_by_role("heading", name="Turn selfies into avatars")).to_be_visible()
    shots("01-sign-in")
    sign_in(page, app_url, user)

    page.get_by_role("radio", name="Man", exact=True).check()
    page.get_by_role("textbox", name="Name optional").fill("Browser journey")
    page.get_by_role("button", name="Create model").click()
    expect(page.locator("#model-title")).to_have_text("Browser journey")
    expect(page.locator("#model-status")).to_have_text("Collecting")
    expect(page.locator("#model-list [aria-current='true']")).to_contain_text("Browser journey")

    uploads_to_s3: list[str] = []
    page.on(
        "requestfinished",
        lambda request: (
            uploads_to_s3.append(request.url)
            if request.method == "POST" and "/v1/" not in request.url
            else None
        ),
    )
    page.locator("#selfie-input").set_input_files([str(p) for p in selfie_files(tmp_path, 5)])

    tiles = page.locator("#selfie-grid .selfie")
    expect(page.locator("#selfie-grid .selfie.status-accepted")).to_have_count(5, timeout=30_000)
    expect(tiles).to_have_count(5)
    expect(page.locator("#selfie-counts")).to_contain_text("5 accepted")
    thumbs = page.locator("#selfie-grid img.selfie-thumb")
    assert all(src.startswith("blob:") for src in thumbs.evaluate_all("i => i.map(x => x.src)"))
    assert len(uploads_to_s3) == 5, uploads_to_s3
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()
    rules = page.locator("#selfie-rules")  # from GET /v1/selfie-rules, beside the upload
    expect(rules).to_contain_text("5–30 selfies per model")
    expect(rules).to_contain_text("in focus")
    shots("02-selfies-accepted")

    page.evaluate(
        """() => {
          window.seenStatuses = [];
          window.seenLines = [];
          const badge = document.querySelector('#model-status');
          new MutationObserver(() => window.seenStatuses.push(badge.textContent))
            .observe(badge, {childList: true, characterData: true, subtree: true});
          const line = document.querySelector('#training-status');
          new MutationObserver(() => window.seenLines.push(line.textContent))
            .observe(line, {childList: true, characterData: true, subtree: true});
        }"""
    )
    page.get_by_role("button", name="Start training").click()
    expect(page.locator("#model-status")).to_have_text("Ready", timeout=60_000)
    expect(page.locator("#training-status")).to_contain_text("Ready since")
    expect(page.locator("#training-pct")).to_have_text("100%")
    assert "Training" in page.evaluate("window.seenStatuses")
    # While it ran the page said how long training usually takes (the default: none seen yet).
    lines = page.evaluate("window.seenLines")
    assert any("usually about 20 minutes" in line for line in lines), lines
    expect(page.locator("#model-list [aria-current='true'] .badge")).to_have_text("Ready")
    expect(page.locator("#announcer")).not_to_be_empty()
    shots("03-model-ready")

    page.reload()
    expect(page.locator("#session-user")).to_have_text(user)
    expect(page.locator("#model-title")).to_have_text("Browser journey")


def test_a_ready_model_makes_avatars_in_two_styles_and_the_gallery_fills_in(
    page: Any, app_url: str, user: str, web_stack: LocalStack, shots: Shots
) -> None:
    # Needs GET /v1/styles and the generation routes.
    journeys.trained_model(api_for(web_stack, user), web_stack)
    sign_in(page, app_url, user)
    expect(page.locator("#model-status")).to_have_text("Ready", timeout=30_000)

    options = page.locator("#style-grid .style-option")
    expect(options.first).to_be_visible()
    assert options.count() >= 2, "the API offers fewer than two styles"
    for index, count in ((0, "2"), (1, "1")):
        option = options.nth(index)
        option.get_by_role("checkbox").check()
        option.get_by_role("spinbutton").fill(count)
    expect(page.locator("#generation-total")).to_contain_text("3 avatars in 2 styles")
    page.get_by_role("button", name="Generate avatars").click()

    generation = page.locator("#generations .generation").first
    expect(generation).to_have_attribute("data-status", "succeeded", timeout=60_000)
    images = generation.locator("img.avatar-img")
    expect(images).to_have_count(3)
    page.wait_for_function(ALL_IMAGES_LOADED, arg="#generations img.avatar-img")
    sources = images.evaluate_all("imgs => imgs.map(i => i.src)")
    assert all(src.startswith(web_stack.moto_url) for src in sources), sources
    shots("04-gallery")

    generation.get_by_role("button", name="Open Avatar 1 full size").click()
    lightbox = page.locator("#lightbox")
    expect(lightbox).to_be_visible()
    page.wait_for_function(ALL_IMAGES_LOADED, arg="#lightbox-img")
    with page.expect_download() as download:
        lightbox.get_by_role("button", name="Download").click()
    assert download.value.suggested_filename.endswith((".png", ".jpg", ".webp"))
    shots("05-lightbox", full_page=False)
    caption = page.locator("#lightbox-caption")
    expect(caption).to_contain_text("1 of 3")
    page.keyboard.press("ArrowRight")
    expect(caption).to_contain_text("2 of 3")
    page.get_by_role("button", name="Previous avatar").click()
    expect(caption).to_contain_text("1 of 3")
    page.keyboard.press("ArrowLeft")
    expect(caption).to_contain_text("3 of 3")
    page.keyboard.press("Escape")
    expect(lightbox).to_be_hidden()

    # The gallery gathers every job's avatars, each with what made it; the zip is made here.
    grid = open_gallery(page)
    expect(grid.locator(".avatar-tile")).to_have_count(3)
    styles = [options.nth(i).get_attribute("data-style") for i in (0, 1)]
    details = grid.locator(".avatar-details").all_inner_texts()
    assert sum(styles[0].replace("_", " ").lower() in d.lower() for d in details) == 2, details
    expect(page.locator("#gallery-status")).to_contain_text("3 avatars: 3 from your models")
    page.wait_for_function(ALL_IMAGES_LOADED, arg="#gallery-grid img.avatar-img")
    shots("10-gallery")
    found = axe_in_both_themes(page)
    assert found == {}, found
    grid.locator(".avatar-open").nth(2).click()
    expect(caption).to_contain_text("3 of 3")
    found = axe_in_both_themes(page)  # the lightbox over the full gallery
    assert found == {}, found
    page.keyboard.press("ArrowRight")
    expect(caption).to_contain_text("1 of 3")
    page.keyboard.press("Escape")
    with page.expect_download() as zipped:
        page.get_by_role("button", name="Download all (.zip)").click()
    path = zipped.value.path()
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None  # every CRC-32 matches
        names = archive.namelist()
        manifest = json.loads(archive.read("avatars.json"))
        images = [archive.read(name) for name in names if name != "avatars.json"]
    assert len(names) == 4 and len(manifest) == 3, names
    assert all(image.startswith((b"\x89PNG", b"\xff\xd8\xff", b"RIFF")) for image in images)
    assert {entry["kind"] for entry in manifest} == {"generation"}


def test_a_face_avatar_job_shows_its_batch_as_a_grid(
    page: Any, app_url: str, user: str, tmp_path: Path, shots: Shots
) -> None:
    # Needs the face-avatar routes.
    sign_in(page, app_url, user)
    open_faces(page)
    expect(page.locator("#jobs-empty")).to_be_visible()
    upload_reference(page, tmp_path)
    expect(page.locator("#reference-status")).to_contain_text("reference.jpg")

    page.get_by_label("Batch").fill("3")
    page.get_by_label("Gender").select_option("female")
    page.get_by_text("Remove background").click()
    page.get_by_label("Background colour as #RRGGBB").fill("#1A2B3C")
    page.get_by_role("button", name="Make face avatars").click()

    expect(page.locator("#job-status")).to_have_text("Done", timeout=60_000)
    expect(page.locator("#job-grid img.avatar-img")).to_have_count(3)
    page.wait_for_function(ALL_IMAGES_LOADED, arg="#job-grid img.avatar-img")
    expect(page.locator("#job-grid .avatar-tile.checker")).to_have_count(3)
    expect(page.locator("#job-list .item")).to_have_count(1)
    expect(page.locator("#job-list .item")).to_contain_text("Batch of 3")
    # Once its job ended, the server deleted the reference (ReferenceRetentionSeconds 0).
    expect(page.locator("#reference")).to_have_attribute("data-state", "deleted", timeout=15_000)
    expect(page.locator("#job-actions").get_by_role("button", name="Delete")).to_be_visible()
    shots("06-face-avatars")


def test_instant_avatars_come_from_the_same_reference_photo(
    page: Any, app_url: str, user: str, tmp_path: Path, shots: Shots
) -> None:
    sign_in(page, app_url, user)
    open_faces(page)
    upload_reference(page, tmp_path)
    expect(page.locator("#reference-status")).to_contain_text("reference.jpg")
    form = page.locator("#instant-form")
    expect(form.get_by_label("Subject").locator("option")).to_have_text(["man", "woman", "couple"])

    form.get_by_label("Subject").select_option("couple")
    form.get_by_label("Count").fill("2")
    form.get_by_label("Prompt").fill("on a beach at sunset")
    form.get_by_role("button", name="Make instant avatars").click()

    expect(page.locator("#instant-status")).to_have_text("Done", timeout=60_000)
    expect(page.locator("#instant-grid img.avatar-img")).to_have_count(2)
    page.wait_for_function(ALL_IMAGES_LOADED, arg="#instant-grid img.avatar-img")
    expect(page.locator("#instant-line")).to_contain_text("2 couple avatars")
    shots("07-instant-avatars")

    grid = open_gallery(page)
    expect(grid.locator(".avatar-tile")).to_have_count(2)
    expect(grid.locator(".avatar-details").first).to_contain_text("Instant · couple")
    expect(grid.locator(".avatar-details").first).to_contain_text("on a beach at sunset")


def test_a_rejected_selfie_shows_its_reason_and_a_model_can_be_deleted(
    page: Any, app_url: str, user: str, web_stack: LocalStack, tmp_path: Path, shots: Shots
) -> None:
    sign_in(page, app_url, user)
    page.get_by_role("button", name="Create model").click()
    expect(page.locator("#model-status")).to_have_text("Collecting")
    notes = tmp_path / "holiday-notes.jpg"
    notes.write_bytes(photos.text_file_named_jpg())
    good = selfie_files(tmp_path, 1, seed=7)[0]
    page.locator("#selfie-input").set_input_files([str(notes), str(good)])

    rejected = page.locator("#selfie-grid .selfie.status-rejected")
    expect(rejected).to_have_count(1, timeout=30_000)
    expect(page.locator("#selfie-grid .selfie.status-accepted")).to_have_count(1)
    expect(rejected.locator(".selfie-name")).to_have_text("holiday-notes.jpg")
    model_id = page.locator("#model-list [aria-current='true']").get_attribute("data-model-id")
    api = api_for(web_stack, user)
    reasons = [s["reason"] for s in api.list_selfies(model_id) if s["status"] == "rejected"]
    assert len(reasons) == 1 and reasons[0]
    expect(rejected.locator(".selfie-reason")).to_have_text(reasons[0])
    expect(page.locator("#selfie-counts")).to_contain_text("1 accepted · 1 rejected")
    expect(page.locator("#training-hint")).to_contain_text("4 more to go")
    expect(page.get_by_role("button", name="Start training")).to_be_disabled()
    shots("07-rejected-selfie")

    page.get_by_role("button", name="Delete", exact=True).click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    shots("08-delete-confirmation", full_page=False)
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.locator("#model-list .item")).to_have_count(1)
    page.get_by_role("button", name="Delete", exact=True).click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator("#model-list .item")).to_have_count(0)
    expect(page.locator("#models-empty")).to_be_visible()
    expect(page.locator("#model-empty")).to_be_visible()
    assert api.list_models()["items"] == []


def test_without_the_dev_token_endpoint_the_page_asks_for_a_token(
    page: Any, app_url: str, user: str, web_stack: LocalStack
) -> None:
    web_stack.dev_tokens(False)  # as on a deployed stack
    try:
        page.goto(app_url)
        page.get_by_label("User name").fill("not a valid name")
        page.get_by_role("button", name="Continue").click()
        expect(page.locator("#signin-user-error")).to_contain_text("no spaces")

        page.get_by_label("User name").fill(user)
        page.get_by_role("button", name="Continue").click()
        token_field = page.get_by_label("Bearer token")
        expect(token_field).to_be_visible()
        expect(token_field).to_be_focused()

        token_field.fill("not-a-jwt")
        page.get_by_role("button", name="Continue").click()
        expect(page.locator("#signin-error")).to_contain_text("Unauthorized")
        expect(page.locator("#workspace")).to_be_hidden()

        page.get_by_label("Bearer token").fill(web_stack.token(user))
        page.get_by_role("button", name="Continue").click()
        expect(page.locator("#session-user")).to_have_text(user)
        expect(page.locator("#models-empty")).to_be_visible()
    finally:
        web_stack.dev_tokens(True)


def test_an_out_of_range_face_parameter_is_refused_by_the_page_before_sending(
    page: Any, app_url: str, user: str
) -> None:
    sent: list[str] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.url)
            if request.method == "POST" and request.url.endswith("/v1/face-avatars")
            else None
        ),
    )
    sign_in(page, app_url, user)
    open_faces(page)
    batch = page.get_by_label("Batch")
    expect(batch).to_have_attribute("max", "8")
    expect(page.get_by_label("Width (px)")).to_have_attribute("min", "256")

    batch.fill("9")
    page.get_by_label("Width (px)").fill("100")
    page.get_by_label("Guidance scale").fill("31")
    page.get_by_role("button", name="Make face avatars").click()

    expect(page.locator("#face-batch-error")).to_have_text("Batch must be between 1 and 8 (got 9).")
    expect(page.locator("#face-width-error")).to_have_text(
        "Width must be between 256 and 1536 (got 100)."
    )
    expect(page.locator("#face-guidance-error")).to_have_text(
        "Guidance scale must be between 1 and 30 (got 31)."
    )
    expect(batch).to_have_attribute("aria-invalid", "true")
    expect(batch).to_be_focused()
    expect(page.locator("#face-error")).to_contain_text("Choose a reference photo first.")
    assert sent == []

    batch.fill("8")
    expect(page.locator("#face-batch-error")).to_be_hidden()
    expect(batch).not_to_have_attribute("aria-invalid", "true")


def test_with_client_checks_off_the_servers_422_is_shown_in_the_forms_words(
    page: Any, app_url: str, user: str, web_stack: LocalStack, tmp_path: Path, shots: Shots
) -> None:
    sign_in(page, app_url, user)
    open_faces(page)
    upload_reference(page, tmp_path)
    skip_client_checks(page)

    page.get_by_label("Batch").fill("9")
    page.get_by_label("Height (px)").fill("2000")
    page.get_by_role("button", name="Make face avatars").click()

    image_id = page.locator("#reference").get_attribute("data-image-id")
    api = api_for(web_stack, user)
    direct = api.call(
        "POST", "/face-avatars", json={"image_id": image_id, "batch": 9, "height": 2000}
    )
    assert direct.status_code == 422
    raw = direct.json()["errors"]
    assert "height: Input should be less than or equal to 1536" in raw, raw

    expect(page.locator("#face-batch-error")).to_have_text("Batch must be at most 8.")
    expect(page.locator("#face-height-error")).to_have_text("Height must be at most 1,536 px.")
    error = page.locator("#face-error")
    expect(error).to_contain_text("Height must be at most 1,536 px.")
    expect(error).not_to_contain_text("Input should")
    expect(page.get_by_label("Batch")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Height (px)")).to_have_attribute("aria-invalid", "true")
    assert api.call("GET", "/face-avatars").json()["items"] == []
    shots("09-server-422")

    # The API's own words stay available to developers, with the call as curl.
    calls = open_calls(page)
    expect(calls.locator(".call-line").first).to_have_text(f"POST {web_stack.api_url}/face-avatars")
    expect(calls.locator(".call-status").first).to_contain_text("422")
    expect(calls.locator(".call-answer").first).to_contain_text(
        "height: Input should be less than or equal to 1536"
    )
    curl = calls.locator(".call-curl").first.inner_text()
    assert curl.startswith(f"curl -i -X POST '{web_stack.api_url}/face-avatars'"), curl
    assert "Authorization: Bearer $TOKEN" in curl and '"height":2000' in curl
    assert web_stack.token(user) not in calls.inner_text()  # the token is elided
    expect(calls.locator(".call").first.get_by_text("Bearer …")).to_be_visible()
    shots("11-how-this-was-called", full_page=False)
    calls.get_by_role("button", name="Close").click()


@pytest.mark.parametrize(
    ("status", "retry_after", "message", "shown"),
    [
        (
            429,
            "60",
            "concurrent training limit reached: 2 of 2 trainings are running; start another "
            "once one has finished",
            "Concurrent training limit reached: 2 of 2 trainings are running; start another "
            "once one has finished. Try again in 60 seconds.",
        ),
        (
            429,
            "3000",
            "daily avatar limit reached: 200 of 200 avatars in the last 24 hours (2 asked for); "
            "next at 14:05 UTC",
            "Daily avatar limit reached: 200 of 200 avatars in the last 24 hours (2 asked for); "
            "next at 14:05 UTC.",
        ),
        (
            503,
            "1800",
            "new paid work is paused: this service's limit of 1000 paid submissions per hour "
            "is reached; it resumes at 14:00 UTC",
            "New paid work is paused: this service's limit of 1000 paid submissions per hour "
            "is reached; it resumes at 14:00 UTC.",
        ),
        (
            503,
            "30",
            "the provider is busy",
            "The provider is busy. Try again in 30 seconds.",
        ),
    ],
    ids=["quota", "quota-says-when", "spending-guard-says-when", "unavailable"],
)
def test_a_throttled_or_unavailable_answer_says_when_to_try_again(
    page: Any, app_url: str, user: str, status: int, retry_after: str, message: str, shown: str
) -> None:
    # The stack's own 429/503 answers, worded as logic/quotas.py words them (the page starts
    # the sentence with a capital), for a request the page makes; "Try again …" from
    # Retry-After only where the message does not already say when.
    page.route(
        "**/v1/instant-avatars",
        lambda route: route.fulfill(
            status=status,
            headers={"Retry-After": retry_after, "Content-Type": "application/json"},
            body=json.dumps({"message": message, "field": None}),
        ),
    )
    sign_in(page, app_url, user)
    open_faces(page)
    skip_client_checks(page)
    page.locator("#instant-form").get_by_role("button", name="Make instant avatars").click()
    expect(page.locator("#instant-error")).to_have_text(shown)


def test_on_a_phone_the_model_comes_first_and_nothing_hides_under_the_header_or_toasts(
    browser: Any, app_url: str, user: str, web_stack: LocalStack
) -> None:
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        api = api_for(web_stack, user)
        first = api.create_model("woman", "First")["model_id"]
        api.create_model("man", "Second")
        sign_in(page, app_url, user)
        page.locator(f"#model-list [data-model-id='{first}']").click()
        expect(page.locator("#model-title")).to_have_text("First")

        detail = page.locator("#model-detail").bounding_box()
        sidebar = page.locator(".sidebar").bounding_box()
        assert detail["y"] < sidebar["y"], (detail, sidebar)  # the selected model first
        drop = page.locator("#selfie-drop")
        expect(drop.get_by_role("button", name="Choose photos")).to_be_visible()
        assert "Drop" not in drop.inner_text()

        header = page.locator(".topbar").bounding_box()
        page.wait_for_function(
            """(bottom) => {
              const top = document.querySelector('#model-view').getBoundingClientRect().top;
              return top >= bottom - 1;
            }""",
            arg=header["y"] + header["height"],
        )
        # Steps reached by scrolling into view land below the sticky header.
        page.evaluate("document.querySelector('#step-avatars').scrollIntoView()")
        page.wait_for_timeout(300)
        step = page.locator("#step-avatars").bounding_box()
        assert step["y"] >= header["y"] + header["height"] - 1, (step, header)

        page.get_by_role("button", name="Delete", exact=True).click()
        page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
        toast = page.locator(".toast").first
        expect(toast).to_be_visible()
        box = toast.bounding_box()
        assert box["y"] >= header["y"] + header["height"]
        assert box["y"] + box["height"] <= PHONE["height"]
        # Between toasts the stack lets clicks through to the page.
        assert (
            page.evaluate("getComputedStyle(document.querySelector('#toasts')).pointerEvents")
            == "none"
        )
    finally:
        context.close()


def test_the_expected_time_comes_from_jobs_seen_finish_else_the_defaults(
    page: Any, app_url: str
) -> None:
    page.goto(app_url)
    said = page.evaluate(
        """async () => {
          localStorage.removeItem('ap.durations');
          const d = await import('./durations.js');
          const before = ['training', 'generation', 'face', 'instant'].map(d.expectedText);
          d.observe('face', 'a', '2026-01-01T00:00:00Z', '2026-01-01T00:03:00Z');
          d.observe('face', 'b', '2026-01-01T00:00:00Z', '2026-01-01T00:05:00Z');
          d.observe('face', 'b', '2026-01-01T00:00:00Z', '2026-01-01T09:00:00Z');
          d.observe('face', 'c', '2026-01-01T00:00:00Z', '2026-01-01T00:07:00Z');
          return [...before, d.expectedText('face')];
        }"""
    )
    assert said == [
        "usually about 20 minutes",
        "usually about 1 minute",
        "usually about 40 seconds",
        "usually about 40 seconds",
        "usually about 5 minutes",  # the median; job b counted once
    ]


def test_a_failed_training_offers_train_again_while_the_selfies_are_kept(
    page: Any, app_url: str, user: str, web_stack: LocalStack
) -> None:
    api = api_for(web_stack, user)
    emulator = journeys.Emulator(web_stack)
    emulator.script(training_outcome={"status": "FAILED", "message": "faces too blurry"})
    model_id = journeys.model_with_selfies(api, 5, seed=80)
    assert api.start_training(model_id).status_code == 202
    assert journeys.wait_for_model(api, model_id)["status"] == "failed"
    emulator.reset()

    sign_in(page, app_url, user)
    page.locator(f"#model-list [data-model-id='{model_id}']").click()

    expect(page.locator("#model-status")).to_have_text("Failed")
    expect(page.locator("#training-hint")).to_contain_text("Your selfies are kept until")
    expect(page.locator("#training-hint")).to_contain_text("may have been billed")
    page.get_by_role("button", name="Train again").click()
    expect(page.locator("#model-status")).to_have_text("Training", timeout=10_000)


def test_the_event_log_shows_what_the_app_was_told_live(
    page: Any, app_url: str, user: str, shots: Shots
) -> None:
    sign_in(page, app_url, user)
    page.get_by_role("button", name="Create model").click()
    expect(page.locator("#model-status")).to_have_text("Collecting")

    page.get_by_role("tab", name="Events").click()
    log = page.locator("#event-list")
    expect(log.locator(".event-item").first).to_contain_text("model.created", timeout=20_000)
    expect(page.locator("#events-count")).to_have_text("1")

    page.get_by_role("tab", name="Custom model").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    expect(page.locator("#models-empty")).to_be_visible()
    page.get_by_role("tab", name="Events").click()
    expect(log.locator(".event-item").first).to_contain_text("model.deleted", timeout=20_000)
    shots("08-events")


def test_usage_shows_each_limit_and_what_we_hold(
    page: Any, app_url: str, user: str, shots: Shots
) -> None:
    sign_in(page, app_url, user)
    page.get_by_role("button", name="Create model").click()
    expect(page.locator("#model-status")).to_have_text("Collecting")
    page.get_by_role("tab", name="Usage & data").click()
    limits = page.locator("#limit-list")
    expect(limits.locator(".limit")).to_have_count(5)
    expect(limits.locator(".limit").first).to_contain_text("Trainings running at once")
    expect(limits.locator(".limit").first).to_contain_text("0 of 2")
    expect(page.locator("#holdings-text")).to_have_text("We keep 1 model of yours.")
    shots("09-usage")


# --- cancel and delete on jobs, and references the server deleted (issue 13) ---------------

PAID_FOR = "was already sent to the provider, so its work is paid for"


def test_a_queued_generation_is_cancelled_for_free_a_sent_one_is_kept_and_ended_ones_deleted(
    page: Any, app_url: str, user: str, web_stack: LocalStack, shots: Shots
) -> None:
    api = api_for(web_stack, user)
    emulator = journeys.Emulator(web_stack)
    model_id = journeys.trained_model(api, web_stack, seed=120)
    sign_in(page, app_url, user)
    expect(page.locator("#model-status")).to_have_text("Ready", timeout=30_000)
    option = page.locator("#style-grid .style-option").first
    option.get_by_role("checkbox").check()
    option.get_by_role("spinbutton").fill("1")
    blocks = page.locator("#generations .generation")

    # Not yet sent to the provider: cancelled at no cost.
    with journeys.submits_held(web_stack, "GenerationSubmitFunction"):
        page.get_by_role("button", name="Generate avatars").click()
        expect(blocks.first).to_have_attribute("data-status", "queued")
        queued_id = blocks.first.get_attribute("data-generation-id")
        queued = page.locator(f"[data-generation-id='{queued_id}']")
        queued.get_by_role("button", name="Cancel").click()
        expect(queued).to_have_attribute("data-status", "cancelled")
    expect(queued).to_contain_text("Cancelled before it reached the provider: nothing was charged.")
    expect(page.locator(".toast").filter(has_text="Generation cancelled")).to_be_visible()
    assert api.get_generation(queued_id)["status"] == "cancelled"

    # Already sent: the API says it is paid for and kept, and the page says so.
    try:
        running_id = journeys.generation_that_never_finishes(web_stack, api, model_id)
        # The page never made it: it lists it, as another device's work.
        page.reload()
        running = page.locator(f"[data-generation-id='{running_id}']")
        expect(running).to_have_attribute("data-status", "running", timeout=30_000)
        running.get_by_role("button", name="Cancel").click()
        expect(running.locator(".job-note")).to_have_text(
            "The generation was already sent to the provider, so its work is paid for: it runs "
            "to its end and its avatars will be kept."
        )
        expect(running).to_have_attribute("data-status", "running")
        shots("12-generation-paid-for-kept")
        found = axe_everywhere(page)
        assert found == {}, found
    finally:
        emulator.reset()  # the emulator forgets the job: the workflow gives up on it
    expect(running).to_have_attribute("data-status", re.compile("succeeded|failed"), timeout=60_000)
    expect(running.locator(".job-note")).to_have_count(0)  # it ended: the cancel's answer is moot

    # Ended ones are deleted, once confirmed; the cancelled one too.
    running.get_by_role("button", name="Delete").click()
    confirm_delete(page, "deleted for good")
    expect(running).to_have_count(0)
    queued.get_by_role("button", name="Delete").click()
    confirm_delete(page, "deleted for good")
    expect(queued).to_have_count(0)
    for gone in (running_id, queued_id):
        assert api.call("GET", f"/generations/{gone}").status_code == 404


def test_face_and_instant_jobs_cancel_before_submission_and_the_freed_reference_is_asked_again(
    page: Any, app_url: str, user: str, web_stack: LocalStack, tmp_path: Path, shots: Shots
) -> None:
    api = api_for(web_stack, user)
    sign_in(page, app_url, user)
    open_faces(page)
    upload_reference(page, tmp_path)
    image_id = page.locator("#reference").get_attribute("data-image-id")
    page.get_by_label("Batch").fill("1")
    instant = page.locator("#instant-form")
    instant.get_by_label("Count").fill("1")

    with journeys.submits_held(web_stack, "FaceSubmitFunction", "InstantSubmitFunction"):
        page.get_by_role("button", name="Make face avatars").click()
        expect(page.locator("#job-status")).to_have_text("Queued")
        instant.get_by_role("button", name="Make instant avatars").click()
        expect(page.locator("#instant-status")).to_have_text("Queued")

        page.locator("#instant-actions").get_by_role("button", name="Cancel").click()
        expect(page.locator("#instant-status")).to_have_text("Cancelled")
        expect(page.locator("#instant-line")).to_contain_text("nothing was charged")
        upload = api.call("GET", f"/face-avatars/uploads/{image_id}").json()
        assert upload["deleted_at"] is None, "the queued face job still needs the reference"

        page.locator("#job-actions").get_by_role("button", name="Cancel").click()
        expect(page.locator("#job-status")).to_have_text("Cancelled")
        expect(page.locator("#job-line")).to_contain_text("nothing was charged")

    # The last job made from the reference was cancelled: the server deleted the reference,
    # and the page reads its deleted_at and asks for the photo again instead of failing.
    reference = page.locator("#reference")
    expect(reference).to_have_attribute("data-state", "deleted", timeout=15_000)
    expect(page.locator("#reference-status")).to_contain_text("deleted once its last job finished")
    expect(page.get_by_role("button", name="Choose the photo again")).to_be_visible()
    assert api.call("GET", f"/face-avatars/uploads/{image_id}").json()["deleted_at"]
    page.get_by_role("button", name="Make face avatars").click()
    expect(page.locator("#face-error")).to_contain_text("choose the photo again")
    instant.get_by_role("button", name="Make instant avatars").click()
    expect(page.locator("#instant-error")).to_contain_text("choose the photo again")
    shots("13-faces-cancelled-reference-gone")
    found = axe_everywhere(page)
    assert found == {}, found

    # Ended jobs are deleted, once confirmed, with what they made.
    page.locator("#job-actions").get_by_role("button", name="Delete").click()
    confirm_delete(page, "reference photo")
    expect(page.locator("#job-list .item")).to_have_count(0)
    expect(page.locator("#jobs-empty")).to_be_visible()
    page.locator("#instant-actions").get_by_role("button", name="Delete").click()
    confirm_delete(page, "deleted for good")
    expect(page.locator("#instant-line")).to_have_text("No instant-avatar job yet.")
    assert api.call("GET", "/face-avatars").json()["items"] == []
    assert api.call("GET", "/instant-avatars").json()["items"] == []


def test_a_reference_deleted_after_a_job_answers_409_and_a_sent_face_job_is_kept(
    page: Any, app_url: str, user: str, web_stack: LocalStack, tmp_path: Path
) -> None:
    api = api_for(web_stack, user)
    emulator = journeys.Emulator(web_stack)
    sign_in(page, app_url, user)
    open_faces(page)
    upload_reference(page, tmp_path)
    image_id = page.locator("#reference").get_attribute("data-image-id")
    page.get_by_label("Batch").fill("1")

    # Another client (the app on another device) used the same upload; once that job ended
    # the server deleted it. The page only learns from the 409, and asks for the photo again.
    made = api.call("POST", "/face-avatars", json={"image_id": image_id, "batch": 1})
    assert made.status_code == 202, made.text
    wait_until(
        lambda: api.call("GET", f"/face-avatars/uploads/{image_id}").json(),
        lambda upload: bool(upload["deleted_at"]),
        timeout=60,
    )
    page.get_by_role("button", name="Make face avatars").click()
    expect(page.locator("#face-error")).to_contain_text("choose the photo again")
    expect(page.locator("#reference")).to_have_attribute("data-state", "deleted")

    # A new photo; a job the provider already has cannot be cancelled: it is paid for, kept.
    upload_reference(page, tmp_path)
    try:
        emulator.script(never_finish=["face"])
        page.get_by_role("button", name="Make face avatars").click()
        expect(page.locator("#job-status")).to_have_text("Running", timeout=30_000)
        page.locator("#job-actions").get_by_role("button", name="Cancel").click()
        expect(page.locator("#job-note")).to_have_text(
            f"The face-avatar job {PAID_FOR}: it runs to its end and its avatars will be kept."
        )
        found = axe_everywhere(page)
        assert found == {}, found
    finally:
        emulator.reset()  # the emulator forgets the job: the workflow gives up on it
    expect(page.locator("#job-status")).to_have_text(re.compile("Done|Failed"), timeout=60_000)
    expect(page.locator("#job-note")).to_be_hidden()
    # Its reference goes once the job ended; the page reads deleted_at and says so.
    expect(page.locator("#reference")).to_have_attribute("data-state", "deleted", timeout=15_000)


def test_a_training_is_cancelled_before_the_provider_has_it_and_after_that_it_is_kept(
    page: Any, app_url: str, user: str, web_stack: LocalStack
) -> None:
    api = api_for(web_stack, user)
    emulator = journeys.Emulator(web_stack)
    model_id = journeys.model_with_selfies(api, 5, seed=130)
    sign_in(page, app_url, user)
    page.locator(f"#model-list [data-model-id='{model_id}']").click()
    expect(page.locator("#model-status")).to_have_text("Collecting")

    with journeys.submits_held(web_stack, "TrainSubmitFunction"):
        page.get_by_role("button", name="Start training").click()
        expect(page.locator("#model-status")).to_have_text("Training")
        page.get_by_role("button", name="Cancel training").click()
        expect(page.locator("#model-status")).to_have_text("Cancelled")
    hint = page.locator("#training-hint")
    expect(hint).to_contain_text("nothing was charged")
    expect(hint).to_contain_text("Your selfies are kept until")
    expect(page.get_by_role("button", name="Cancel training")).to_be_hidden()
    found = axe_everywhere(page)
    assert found == {}, found

    try:
        emulator.script(never_finish=["training"])
        page.get_by_role("button", name="Train again").click()
        expect(page.locator("#model-status")).to_have_text("Training")
        wait_until(lambda: emulator.trainings_for(model_id), lambda n: n == 1, timeout=30)
        page.get_by_role("button", name="Cancel training").click()
        expect(page.locator("#training-note")).to_have_text(
            "The training was already handed to the provider, so it is paid for: it runs to "
            "its end and the trained model will be kept."
        )
        expect(page.locator("#model-status")).to_have_text("Training")
        assert emulator.trainings_for(model_id) == 1, "sent once: the cancelled one never was"
    finally:
        emulator.reset()


def test_on_a_375_px_phone_the_five_tabs_fit(browser: Any, app_url: str, user: str) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        sign_in(page, app_url, user)
        tabs = page.get_by_role("tab")
        expect(tabs).to_have_count(5)
        for index in range(5):
            box = tabs.nth(index).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (index, box)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.get_by_role("tab", name="Usage & data").click()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        context.close()
