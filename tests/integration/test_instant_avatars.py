"""Instant avatars on the local stack, and answers a provider might give that we never saw.

An instant-avatar job takes one reference image (uploaded like a face reference), submits
once to Picsart's Instant Avatar, polls on its schedule and copies every 2048x2048 result
into our bucket under the owner's prefix.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import boto3
import pytest
import requests
from PIL import Image

from local import photos
from local.client import ApiClient, wait_until
from local.stack import LocalStack
from tests.support.journeys import Emulator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def owner(stack: LocalStack) -> tuple[str, ApiClient]:
    user = f"instant-{uuid.uuid4().hex[:10]}"
    return user, ApiClient(stack.api_url, stack.token(user))


def upload_reference(client: ApiClient, data: bytes) -> dict[str, Any]:
    slot = client.call("POST", "/face-avatars/uploads", json={"content_type": "image/jpeg"})
    assert slot.status_code == 201, slot.text
    upload = slot.json()
    assert ApiClient.upload(upload, data).status_code in (200, 204)
    return wait_until(
        lambda: client.call("GET", f"/face-avatars/uploads/{upload['image_id']}").json(),
        lambda image: image["status"] != "pending",
        timeout=30,
    )


@pytest.fixture()
def reference(owner: tuple[str, ApiClient]) -> str:
    """A fresh reference per test: one is deleted once the jobs made from it have finished."""
    image = upload_reference(owner[1], photos.selfie_jpeg(91, size=(900, 1200)))
    assert image["status"] == "accepted"
    return str(image["image_id"])


def finished(client: ApiClient, path: str, job_id: str, timeout: float = 60) -> dict[str, Any]:
    return wait_until(
        lambda: client.call("GET", f"{path}/{job_id}").json(),
        lambda job: job["status"] in ("succeeded", "failed"),
        timeout=timeout,
    )


def job_item(stack: LocalStack, user: str, sort_key: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb").Table(stack.output("TableName"))
    item: dict[str, Any] = table.get_item(Key={"PK": f"OWNER#{user}", "SK": sort_key})["Item"]
    return item


def test_an_instant_avatar_job_runs_end_to_end_into_our_bucket(
    stack: LocalStack, owner: tuple[str, ApiClient], reference: str, emulator: Emulator
) -> None:
    user, client = owner
    body = {"image_id": reference, "subject": "woman", "count": 2, "prompt": "in a sunlit cafe"}

    started = client.call("POST", "/instant-avatars", json=body, headers={"Idempotency-Key": "k1"})
    again = client.call("POST", "/instant-avatars", json=body, headers={"Idempotency-Key": "k1"})
    assert started.status_code == 202, started.text
    assert again.json()["job_id"] == started.json()["job_id"]
    job = finished(client, "/instant-avatars", started.json()["job_id"])

    assert job["status"] == "succeeded", job.get("error")
    assert (job["subject"], job["count"], job["prompt"]) == ("woman", 2, "in a sunlit cafe")
    assert len(job["avatars"]) == 2
    for avatar in job["avatars"]:
        assert avatar["url"].startswith(stack.moto_url), "links point at our bucket"
        assert stack.emulator.base_url not in avatar["url"]
        image = Image.open(io.BytesIO(requests.get(avatar["url"], timeout=10).content))
        assert image.size == (avatar["width"], avatar["height"]) == (2048, 2048)
        red, green, blue = image.convert("RGB").getpixel((4, 2046))
        assert red > 150 and green < 80 and blue < 80, "the emulator's EMULATED band"
    keys = [
        item["Key"]
        for item in boto3.client("s3")
        .list_objects_v2(
            Bucket=stack.output("ResultsBucketName"),
            Prefix=f"instant-avatars/{user}/{job['job_id']}/",
        )
        .get("Contents", [])
    ]
    assert len(keys) == 2
    assert emulator.stats()["instant_jobs_submitted"] == 1, "submitted once, despite the retry"
    item = job_item(stack, user, f"INSTANT#{job['job_id']}")
    assert item["execution_arn"].endswith(f":instant-{job['job_id']}")
    assert item["provider_job_id"]
    listed = client.call("GET", "/instant-avatars").json()["items"]
    assert job["job_id"] in [j["job_id"] for j in listed]


def test_another_owner_cannot_see_or_use_the_job_or_the_reference(
    stack: LocalStack, owner: tuple[str, ApiClient], reference: str
) -> None:
    _, client = owner
    job = client.call(
        "POST", "/instant-avatars", json={"image_id": reference, "subject": "man", "count": 1}
    ).json()
    stranger = ApiClient(stack.api_url, stack.token(f"stranger-{uuid.uuid4().hex[:8]}"))

    assert stranger.call("GET", f"/instant-avatars/{job['job_id']}").status_code == 404
    refused = stranger.call(
        "POST", "/instant-avatars", json={"image_id": reference, "subject": "man", "count": 1}
    )
    assert refused.status_code == 404
    assert stranger.call("GET", "/instant-avatars").json()["items"] == []
    finished(client, "/instant-avatars", job["job_id"])


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"subject": "dog"}, "subject", "available: man, woman, couple"),
        ({"count": 11}, "count", "at most 10"),
        ({"count": "2"}, "count", "integer"),
        ({"prompt": ""}, "prompt", "at least 1"),
    ],
)
def test_bad_instant_requests_are_refused_naming_the_field(
    owner: tuple[str, ApiClient], reference: str, change: dict, field: str, words: str
) -> None:
    body = {"image_id": reference, "subject": "woman", "count": 1, **change}

    response = owner[1].call("POST", "/instant-avatars", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert words in response.json()["message"]


def test_the_subjects_on_offer_are_shown_and_enforced(owner: tuple[str, ApiClient]) -> None:
    _, client = owner
    offer = client.call("GET", "/styles").json()

    assert offer["subjects"] == ["man", "woman", "couple", "dog", "cat"]
    assert offer["instant_subjects"] == ["man", "woman", "couple"]
    refused = client.call("POST", "/models", json={"subject": "robot"})
    assert refused.status_code == 422
    assert refused.json()["field"] == "subject"
    assert "available: man, woman, couple, dog, cat" in refused.json()["message"]


def test_a_qolaba_job_answering_a_status_word_we_do_not_know_ends_by_its_output(
    stack: LocalStack, owner: tuple[str, ApiClient], reference: str, emulator: Emulator
) -> None:
    user, client = owner
    # none of the words this job answers is one we know: it must be judged by its fields
    emulator.script(
        status_words={"PENDING": "QUEUED", "STARTED": "WORKING", "SUCCESS": "COMPLETED"}
    )

    started = client.call("POST", "/face-avatars", json={"image_id": reference, "batch": 2})
    assert started.status_code == 202, started.text
    job = finished(client, "/face-avatars", started.json()["job_id"])

    assert job["status"] == "succeeded", job.get("error")
    assert len(job["avatars"]) == 2
    for avatar in job["avatars"]:
        assert requests.get(avatar["url"], timeout=10).content[:2] == b"\xff\xd8"
    item = job_item(stack, user, f"FACE#{job['job_id']}")
    assert item["unknown_provider_status"] in ("QUEUED", "WORKING", "COMPLETED")
    jobs = requests.get(f"{stack.emulator.base_url}/_emulator/jobs", timeout=5).json()
    assert [j.get("ref_id") for j in jobs if j["kind"] == "face"] == [job["job_id"]]


def test_a_job_that_never_leaves_an_unknown_word_fails_saying_what_the_provider_said(
    owner: tuple[str, ApiClient], reference: str, emulator: Emulator
) -> None:
    _, client = owner
    emulator.script(status_words={"IN_PROGRESS": "RENDERING"}, never_finish=["instant"])

    started = client.call(
        "POST", "/instant-avatars", json={"image_id": reference, "subject": "man", "count": 1}
    )
    job = finished(client, "/instant-avatars", started.json()["job_id"], timeout=120)

    assert job["status"] == "failed"
    assert "status checks" in job["error"]
    assert "a status we do not know (RENDERING)" in job["error"]
    assert len(job["error"]) < 2600
