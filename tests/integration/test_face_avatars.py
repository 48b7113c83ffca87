"""Face avatars on the local stack: one reference face in, a consistent batch out."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
import requests
from PIL import Image

from local import photos
from local.client import ApiClient, wait_until
from local.stack import LocalStack
from tests.support.journeys import Emulator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def owner(stack: LocalStack) -> ApiClient:
    return ApiClient(stack.api_url, stack.token(f"face-{uuid.uuid4().hex[:10]}"))


def upload_reference(client: ApiClient, data: bytes, content_type: str = "image/jpeg") -> dict:
    slot = client.call("POST", "/face-avatars/uploads", json={"content_type": content_type})
    assert slot.status_code == 201, slot.text
    upload = slot.json()
    assert ApiClient.upload(upload, data).status_code in (200, 204)
    return wait_until(
        lambda: client.call("GET", f"/face-avatars/uploads/{upload['image_id']}").json(),
        lambda image: image["status"] != "pending",
        timeout=30,
    )


def accepted_reference(client: ApiClient, seed: int = 77) -> str:
    image = upload_reference(client, photos.selfie_jpeg(seed, size=(900, 1200)))
    assert image["status"] == "accepted"
    return str(image["image_id"])


@pytest.fixture()
def reference(owner: ApiClient) -> str:
    """A fresh reference per test: one is deleted once the jobs made from it have finished."""
    return accepted_reference(owner)


def run_job(client: ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.call("POST", "/face-avatars", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    return wait_until(
        lambda: client.call("GET", f"/face-avatars/{job_id}").json(),
        lambda job: job["status"] in ("succeeded", "failed"),
        timeout=60,
    )


def pixels(url: str) -> Image.Image:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.content))


def test_a_large_reference_is_fitted_inside_1536_keeping_its_aspect(owner: ApiClient) -> None:
    image = upload_reference(owner, photos.selfie_jpeg(3, size=(3000, 2000)))
    assert image["status"] == "accepted"
    assert (image["width"], image["height"]) == (1536, 1024)


def test_a_small_reference_is_kept_as_it_is(owner: ApiClient) -> None:
    image = upload_reference(owner, photos.selfie_png(4, size=(700, 500)), "image/png")
    assert (image["status"], image["width"], image["height"]) == ("accepted", 700, 500)


def test_a_bad_reference_is_rejected_with_its_reason(owner: ApiClient) -> None:
    image = upload_reference(owner, photos.text_file_named_jpg())
    assert image["status"] == "rejected"
    assert "not a JPEG, PNG, HEIC or WebP" in image["reason"]
    response = owner.call("POST", "/face-avatars", json={"image_id": image["image_id"]})
    assert response.status_code == 409
    assert "rejected" in response.json()["message"]


def test_a_batch_comes_back_in_our_bucket_with_the_background_asked_for(
    stack: LocalStack, owner: ApiClient, reference: str
) -> None:
    job = run_job(
        owner,
        {"image_id": reference, "batch": 3, "width": 384, "height": 512, "bg_color": "#1E90FF"},
    )
    assert job["status"] == "succeeded", job.get("error")
    assert len(job["avatars"]) == 3
    for avatar in job["avatars"]:
        assert avatar["url"].startswith(stack.moto_url)
        image = pixels(avatar["url"]).convert("RGB")
        assert image.size == (384, 512)
        red, green, blue = image.getpixel((3, 3))
        assert abs(red - 0x1E) < 24 and abs(green - 0x90) < 24 and abs(blue - 0xFF) < 24


def test_remove_background_gives_transparent_pngs(owner: ApiClient, reference: str) -> None:
    job = run_job(owner, {"image_id": reference, "batch": 1, "remove_background": True})
    assert job["status"] == "succeeded", job.get("error")
    (avatar,) = job["avatars"]
    assert avatar["content_type"] == "image/png"
    image = pixels(avatar["url"])
    assert image.mode == "RGBA"
    assert image.getpixel((2, 2))[3] == 0, "the corner should be transparent"


def test_the_default_prompt_names_the_gender_and_a_custom_prompt_is_sent_as_is(
    owner: ApiClient, reference: str
) -> None:
    default = run_job(owner, {"image_id": reference, "batch": 1, "gender": "male"})
    custom = run_job(
        owner,
        {
            "image_id": accepted_reference(owner, 78),
            "batch": 1,
            "gender": "male",
            "prompt": "a watercolour portrait",
        },
    )
    assert "pleasurable nice man, looking at camera" in default["parameters"]["prompt"]
    assert custom["parameters"]["prompt"] == "a watercolour portrait"


def test_every_bound_is_accepted(owner: ApiClient, reference: str) -> None:
    lowest = {"batch": 1, "width": 256, "height": 256, "num_inference_steps": 1}
    highest = {"batch": 8, "width": 1536, "height": 1536, "num_inference_steps": 50}
    for image_id, bounds, guidance in (
        (reference, lowest, 1),
        (accepted_reference(owner, 79), highest, 30),
    ):
        response = owner.call(
            "POST",
            "/face-avatars",
            json={"image_id": image_id, **bounds, "guidance_scale": guidance},
        )
        assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch", 0),
        ("batch", 9),
        ("width", 255),
        ("width", 1537),
        ("height", 255),
        ("height", 1537),
        ("num_inference_steps", 0),
        ("num_inference_steps", 51),
        ("guidance_scale", 0.5),
        ("guidance_scale", 30.5),
        ("batch", "4"),
        ("remove_background", "true"),
        ("bg_color", "#12345"),
        ("gender", "unknown"),
    ],
)
def test_out_of_range_or_wrong_typed_parameters_answer_422_naming_the_field(
    owner: ApiClient, reference: str, field: str, value: Any
) -> None:
    response = owner.call("POST", "/face-avatars", json={"image_id": reference, field: value})
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert field in response.json()["message"]


def test_a_provider_failure_keeps_the_providers_words(
    owner: ApiClient, reference: str, emulator: Emulator
) -> None:
    emulator.script(face_outcome={"status": "FAILURE", "message": "no face detected"})
    job = run_job(owner, {"image_id": reference, "batch": 1})
    assert job["status"] == "failed"
    assert "no face detected" in job["error"]


def test_another_owner_sees_none_of_it(
    owner: ApiClient, reference: str, other_client: ApiClient
) -> None:
    job = run_job(owner, {"image_id": reference, "batch": 1})
    assert other_client.call("GET", f"/face-avatars/{job['job_id']}").status_code == 404
    assert other_client.call("GET", f"/face-avatars/uploads/{reference}").status_code == 404
    response = other_client.call("POST", "/face-avatars", json={"image_id": reference})
    assert response.status_code == 404
    listed = other_client.call("GET", "/face-avatars").json()["items"]
    assert job["job_id"] not in [j["job_id"] for j in listed]
    assert job["job_id"] in [
        j["job_id"] for j in owner.call("GET", "/face-avatars").json()["items"]
    ]
