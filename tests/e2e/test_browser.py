"""The try-it page drives the public API exactly as an app would, in a real browser.

Journeys: selfies uploaded from files straight to S3, checked, and a model trained while the
page watches; avatars in two styles from a trained model; a face-avatar batch; a rejected
selfie with its reason; out-of-range face parameters refused by the page, then by the server
when the page's checks are switched off. Screenshots of the main screens, at desktop and
phone width, land in ``test-output/screenshots/``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from local import photos
from local.client import ApiClient
from local.stack import LocalStack
from tests.e2e.conftest import CHROMIUM
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
          const badge = document.querySelector('#model-status');
          new MutationObserver(() => window.seenStatuses.push(badge.textContent))
            .observe(badge, {childList: true, characterData: true, subtree: true});
        }"""
    )
    page.get_by_role("button", name="Start training").click()
    expect(page.locator("#model-status")).to_have_text("Ready", timeout=60_000)
    expect(page.locator("#training-status")).to_contain_text("Ready since")
    expect(page.locator("#training-pct")).to_have_text("100%")
    assert "Training" in page.evaluate("window.seenStatuses")
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
    page.keyboard.press("Escape")
    expect(lightbox).to_be_hidden()


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


def test_with_client_checks_off_the_servers_422_is_shown_as_the_server_words_it(
    page: Any, app_url: str, user: str, web_stack: LocalStack, tmp_path: Path, shots: Shots
) -> None:
    # Needs the face-avatar routes.
    sign_in(page, app_url, user)
    open_faces(page)
    upload_reference(page, tmp_path)
    skip_client_checks(page)

    page.get_by_label("Batch").fill("9")
    page.get_by_role("button", name="Make face avatars").click()

    image_id = page.locator("#reference").get_attribute("data-image-id")
    api = api_for(web_stack, user)
    direct = api.call("POST", "/face-avatars", json={"image_id": image_id, "batch": 9})
    assert direct.status_code == 422
    message = direct.json()["message"]
    assert "batch" in message

    error = page.locator("#face-error")
    expect(error).to_have_text(message)
    expect(page.get_by_label("Batch")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#face-batch-error")).to_have_text(message)
    assert api.call("GET", "/face-avatars").json()["items"] == []
    shots("09-server-422")


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
