"""Hostile uploads through the local stack, as a client would send them: every file from
``tests/support/hostile_files.py`` goes up through a presigned POST - every other one as a
selfie, the rest as a face-avatar reference, so that each kind reaches both ingest paths -
and ingest settles each one, accepted or rejected with a reason, without a Lambda failure
and without leaving anything half-written in the bucket. (Every file meets both paths'
logic in ``tests/unit/test_hostile_files.py``.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from avatar_core.logic import photo_checks
from local import photos
from local.client import ApiClient, wait_until
from local.stack import LocalStack
from tests.support.hostile_files import HostileFile, hostile_files
from tests.support.journeys import upload_and_settle

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::UserWarning:PIL"),  # "Corrupt EXIF data" etc.
]

# An empty file never reaches ingest: the presigned POST's content-length-range starts at 1,
# so S3 (and the local stack's POST policy check) refuses it; see the test below.
CASES = [case for case in hostile_files() if case.data]
SELFIES, REFERENCES = CASES[0::2], CASES[1::2]
MODEL_CAPACITY = 30  # pending + accepted selfies a model holds
CONTENT_REFUSALS = (
    photo_checks.MOSTLY_TRANSPARENT,
    photo_checks.SINGLE_COLOUR,
    photo_checks.BLURRED,
)
DUPLICATE_PREFIX = photo_checks.duplicate_message(1).split("1")[0]


def batches(cases: list[HostileFile], size: int) -> Iterator[list[HostileFile]]:
    for start in range(0, len(cases), size):
        yield cases[start : start + size]


def ingest_failures(stack: LocalStack) -> list[tuple[str, str, str]]:
    assert stack.runtime is not None
    return [failure for failure in stack.runtime.failures if failure[0] == "IngestFunction"]


def keys_under(stack: LocalStack, prefix: str) -> set[str]:
    s3 = boto3.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=stack.output("UploadsBucketName"), Prefix=prefix
    )
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def judged_on_its_content(reason: str | None) -> bool:
    """Decoded, then refused by the photo checks: many of the corpus's files that decode are
    flat images or variants of one photo, which would waste a training. Those checks are
    measured by bench/selfie_checks.py and promised in tests/unit/test_photo_checks.py."""
    return reason in CONTENT_REFUSALS or (reason or "").startswith(DUPLICATE_PREFIX)


def check_settled(case: HostileFile, status: str, reason: str | None) -> list[str]:
    """What is wrong with how ``case`` was settled, if anything."""
    problems = []
    if status not in ("accepted", "rejected"):
        problems.append(f"{case.name}: still {status}")
    elif status == "rejected" and not reason:
        problems.append(f"{case.name}: rejected without a reason")
    elif (
        case.expectation == "accept" and status != "accepted" and not judged_on_its_content(reason)
    ):
        problems.append(f"{case.name}: rejected ({reason}), expected accepted")
    elif case.expectation == "reject" and status != "rejected":
        problems.append(f"{case.name}: accepted, expected rejected")
    return problems


def test_every_hostile_selfie_is_settled_and_a_rejected_one_leaves_nothing(
    stack: LocalStack, client: ApiClient, user: str
) -> None:
    # A model holds 30 pending + accepted selfies, so the files are spread over several.
    failures_before = len(ingest_failures(stack))
    problems: list[str] = []
    for batch in batches(SELFIES, MODEL_CAPACITY):
        model_id = client.create_model("woman")["model_id"]
        settled = upload_and_settle(client, model_id, [(c.content_type, c.data) for c in batch])

        for case, selfie in zip(batch, settled, strict=True):
            problems += check_settled(case, selfie["status"], selfie.get("reason"))
        accepted = {s["selfie_id"] for s in settled if s["status"] == "accepted"}
        rejected = {s["selfie_id"] for s in settled if s["status"] == "rejected"}
        counts = client.get_model(model_id)["selfies"]
        assert counts == {"pending": 0, "accepted": len(accepted), "rejected": len(rejected)}
        assert counts["accepted"] + counts["rejected"] == len(batch)

        originals = keys_under(stack, f"selfies/{user}/{model_id}/")
        normalised = keys_under(stack, f"normalised/{user}/{model_id}/")
        for selfie_id in rejected:
            assert f"selfies/{user}/{model_id}/{selfie_id}" not in originals
            assert f"normalised/{user}/{model_id}/{selfie_id}.jpg" not in normalised
        assert normalised == {f"normalised/{user}/{model_id}/{i}.jpg" for i in accepted}

    assert problems == []
    assert ingest_failures(stack)[failures_before:] == []


@pytest.fixture(scope="module")
def reference_owner(stack: LocalStack) -> tuple[ApiClient, str]:
    owner = f"hostile-{uuid.uuid4().hex[:10]}"
    return ApiClient(stack.api_url, stack.token(owner)), owner


def upload_reference(client: ApiClient, case: HostileFile) -> dict[str, Any]:
    slot = client.call("POST", "/face-avatars/uploads", json={"content_type": case.content_type})
    assert slot.status_code == 201, slot.text
    upload = slot.json()
    response = ApiClient.upload(upload, case.data)
    assert response.status_code in (200, 204), response.text
    image: dict[str, Any] = wait_until(
        lambda: client.call("GET", f"/face-avatars/uploads/{upload['image_id']}").json(),
        lambda image: image["status"] != "pending",
        timeout=30,
    )
    return image


def test_every_hostile_face_reference_is_settled_and_the_original_never_kept(
    stack: LocalStack, reference_owner: tuple[ApiClient, str]
) -> None:
    client, owner = reference_owner
    failures_before = len(ingest_failures(stack))
    problems: list[str] = []
    images = []
    for case in REFERENCES:
        image = upload_reference(client, case)
        images.append(image)
        problems += check_settled(case, image["status"], image.get("reason"))
        if image["status"] == "accepted":
            assert image["width"] and image["height"], case.name
            assert max(image["width"], image["height"]) <= 1536, case.name

    # The original goes either way; only an accepted reference has a fitted copy.
    assert keys_under(stack, f"faces/{owner}/") == set()
    fitted = keys_under(stack, f"faces-fitted/{owner}/")
    accepted = {i["image_id"] for i in images if i["status"] == "accepted"}
    assert fitted == {f"faces-fitted/{owner}/{image_id}" for image_id in accepted}
    assert problems == []
    assert ingest_failures(stack)[failures_before:] == []


def test_an_empty_file_is_refused_by_the_upload_itself_and_nothing_is_stored(
    stack: LocalStack, client: ApiClient, user: str
) -> None:
    model_id = client.create_model("woman")["model_id"]
    slot = client.request_uploads(model_id, ["image/jpeg"])[0]

    response = ApiClient.upload(slot, b"")

    assert response.status_code == 400 and "<Code>EntityTooSmall</Code>" in response.text
    assert keys_under(stack, f"selfies/{user}/{model_id}/") == set()
    assert client.get_model(model_id)["selfies"]["accepted"] == 0


def test_a_file_posted_again_to_a_refused_slot_is_not_kept(
    stack: LocalStack, client: ApiClient, user: str
) -> None:
    # The presigned POST stays valid for minutes after the refusal; a client may retry it.
    model_id = client.create_model("man")["model_id"]
    (slot,) = client.request_uploads(model_id, ["image/jpeg"])
    hostile = next(c for c in CASES if c.name == "polyglot/html-then-jpeg")
    assert ApiClient.upload(slot, hostile.data).status_code in (200, 204)
    assert ApiClient.upload(slot, photos.selfie_jpeg(45, size=(600, 800))).status_code in (200, 204)

    (selfie,) = client.list_selfies(model_id)
    assert (selfie["status"], selfie["reason"]) == (
        "rejected",
        "not a JPEG, PNG, HEIC or WebP image",
    )
    assert client.get_model(model_id)["selfies"] == {"pending": 0, "accepted": 0, "rejected": 1}
    assert keys_under(stack, f"selfies/{user}/{model_id}/") == set()
    assert keys_under(stack, f"normalised/{user}/{model_id}/") == set()
