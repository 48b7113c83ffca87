"""Cancel and delete on the local stack, as an app would use them.

A job or training not yet sent to the provider is cancelled at no cost, and nothing ever
reaches the provider; once sent, the provider's work is paid for, so cancel answers 409 and
the job runs to its end. Deleting a job takes its records and objects from both buckets; a
reference image goes once the jobs made from it have finished.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from local import photos
from local.client import ApiClient, wait_until
from local.stack import LocalStack
from tests.support.journeys import (
    Emulator,
    bucket_keys,
    executions,
    model_with_selfies,
    submits_held,
    wait_for_model,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def owner(stack: LocalStack) -> tuple[str, ApiClient]:
    user = f"cancel-{uuid.uuid4().hex[:10]}"
    return user, ApiClient(stack.api_url, stack.token(user))


def reference(client: ApiClient, seed: int) -> str:
    slot = client.call("POST", "/face-avatars/uploads", json={"content_type": "image/jpeg"})
    assert slot.status_code == 201, slot.text
    upload = slot.json()
    data = photos.selfie_jpeg(seed, size=(900, 1200))
    assert ApiClient.upload(upload, data).status_code in (200, 204)
    image = wait_until(
        lambda: client.call("GET", f"/face-avatars/uploads/{upload['image_id']}").json(),
        lambda image: image["status"] != "pending",
        timeout=30,
    )
    assert image["status"] == "accepted", image
    return str(image["image_id"])


def ended(client: ApiClient, path: str, timeout: float = 60) -> dict[str, Any]:
    return wait_until(
        lambda: client.call("GET", path).json(),
        lambda job: job["status"] in ("succeeded", "failed", "cancelled"),
        timeout=timeout,
    )


def used(client: ApiClient, limit: str) -> int:
    """How much of one of the owner's quotas GET /v1/me says is used."""
    limits = client.call("GET", "/me").json()["limits"]
    return int(next(item["used"] for item in limits if item["name"] == limit))


def sweep(stack: LocalStack) -> None:
    assert stack.stack is not None
    boto3.client("lambda").invoke(
        FunctionName=stack.stack.function_name("SweepFunction"), Payload=b"{}"
    )


def test_a_face_job_cancelled_before_submission_never_reaches_the_provider_nor_resumes(
    stack: LocalStack, owner: tuple[str, ApiClient], emulator: Emulator
) -> None:
    _, client = owner
    image_id = reference(client, 401)
    with submits_held(stack, "FaceSubmitFunction"):
        started = client.call("POST", "/face-avatars", json={"image_id": image_id, "batch": 1})
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        cancelled = client.call("POST", f"/face-avatars/{job_id}/cancel")
        again = client.call("POST", f"/face-avatars/{job_id}/cancel")

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    runs = wait_until(
        lambda: executions(stack, "FaceAvatarStateMachine", f"face-{job_id}"),
        lambda runs: runs and "RUNNING" not in runs.values(),
        timeout=30,
    )
    stack.wait_for_events()
    sweep(stack)
    assert list(runs) == [f"face-{job_id}"], "a cancelled job's stopped execution is not resumed"
    assert executions(stack, "FaceAvatarStateMachine", f"face-{job_id}") == runs
    assert emulator.stats()["face_jobs_submitted"] == 0, "nothing was sent to the provider"
    assert client.call("GET", f"/face-avatars/{job_id}").json()["status"] == "cancelled"
    image = client.call("GET", f"/face-avatars/uploads/{image_id}").json()
    assert image["deleted_at"], "a cancelled job's reference goes at once"
    assert bucket_keys(stack, "UploadsBucketName", image_id) == []


def test_a_job_already_sent_cannot_be_cancelled_and_still_succeeds(
    owner: tuple[str, ApiClient], emulator: Emulator
) -> None:
    _, client = owner
    image_id = reference(client, 402)
    emulator.script(fail_next=[{"route": "face_status", "slow_seconds": 2, "times": 1}])
    started = client.call("POST", "/face-avatars", json={"image_id": image_id, "batch": 2})
    job_id = started.json()["job_id"]
    wait_until(
        lambda: client.call("GET", f"/face-avatars/{job_id}").json(),
        lambda job: job["status"] == "running",
        timeout=20,
    )

    refused = client.call("POST", f"/face-avatars/{job_id}/cancel")
    deleting = client.call("DELETE", f"/face-avatars/{job_id}")

    assert refused.status_code == 409, refused.text
    assert "already sent to the provider" in refused.json()["message"]
    assert "paid for" in refused.json()["message"]
    assert "kept" in refused.json()["message"]
    assert deleting.status_code == 409 and "once it has finished" in deleting.json()["message"]
    job = ended(client, f"/face-avatars/{job_id}")
    assert job["status"] == "succeeded", job.get("error")
    assert len(job["avatars"]) == 2
    assert emulator.stats()["face_jobs_submitted"] == 1


def test_after_its_job_the_reference_is_deleted_and_a_new_job_needs_a_new_upload(
    stack: LocalStack, owner: tuple[str, ApiClient]
) -> None:
    _, client = owner
    image_id = reference(client, 403)
    started = client.call("POST", "/face-avatars", json={"image_id": image_id, "batch": 1})
    assert ended(client, f"/face-avatars/{started.json()['job_id']}")["status"] == "succeeded"

    image = wait_until(
        lambda: client.call("GET", f"/face-avatars/uploads/{image_id}").json(),
        lambda image: image.get("deleted_at") is not None,
        timeout=30,
    )
    refused = client.call("POST", "/face-avatars", json={"image_id": image_id, "batch": 1})

    assert image["status"] == "accepted"
    assert bucket_keys(stack, "UploadsBucketName", image_id) == []
    assert refused.status_code == 409 and "upload it again" in refused.json()["message"]


def test_deleting_a_face_job_removes_its_records_and_objects_and_nobody_elses(
    stack: LocalStack, owner: tuple[str, ApiClient], other_client: ApiClient
) -> None:
    _, client = owner
    kept_job = client.call(
        "POST", "/face-avatars", json={"image_id": reference(client, 404), "batch": 1}
    ).json()["job_id"]
    image_id = reference(client, 405)
    job_id = client.call("POST", "/face-avatars", json={"image_id": image_id, "batch": 2}).json()[
        "job_id"
    ]
    assert ended(client, f"/face-avatars/{job_id}")["status"] == "succeeded"
    assert ended(client, f"/face-avatars/{kept_job}")["status"] == "succeeded"
    assert len(bucket_keys(stack, "ResultsBucketName", job_id)) == 2

    assert other_client.call("DELETE", f"/face-avatars/{job_id}").status_code == 404
    deleted = client.call("DELETE", f"/face-avatars/{job_id}")

    assert deleted.status_code == 204, deleted.text
    assert client.call("GET", f"/face-avatars/{job_id}").status_code == 404
    assert client.call("GET", f"/face-avatars/uploads/{image_id}").status_code == 404
    assert client.call("DELETE", f"/face-avatars/{job_id}").status_code == 404
    assert bucket_keys(stack, "ResultsBucketName", job_id) == []
    assert bucket_keys(stack, "UploadsBucketName", image_id) == []
    assert len(bucket_keys(stack, "ResultsBucketName", kept_job)) == 1
    assert client.call("GET", f"/face-avatars/{kept_job}").json()["status"] == "succeeded"


def test_a_reference_an_open_job_needs_is_not_deleted_until_that_job_is_cancelled(
    stack: LocalStack, owner: tuple[str, ApiClient]
) -> None:
    _, client = owner
    image_id = reference(client, 406)
    with submits_held(stack, "InstantSubmitFunction"):
        body = {"image_id": image_id, "subject": "man", "count": 1}
        job_id = client.call("POST", "/instant-avatars", json=body).json()["job_id"]
        refused = client.call("DELETE", f"/face-avatars/uploads/{image_id}")
        deleted_job = client.call("DELETE", f"/instant-avatars/{job_id}")

    assert refused.status_code == 409 and job_id in refused.json()["message"]
    assert deleted_job.status_code == 204, deleted_job.text
    assert client.call("GET", f"/instant-avatars/{job_id}").status_code == 404
    assert client.call("GET", f"/face-avatars/uploads/{image_id}").status_code == 404
    assert bucket_keys(stack, "UploadsBucketName", image_id) == []


def test_a_training_cancelled_before_submission_costs_nothing_and_trains_again_later(
    stack: LocalStack, client: ApiClient, emulator: Emulator
) -> None:
    model_id = model_with_selfies(client, 5, seed=410)
    with submits_held(stack, "TrainSubmitFunction"):
        assert client.start_training(model_id).status_code == 202
        cancelled = client.call("POST", f"/models/{model_id}/training/cancel")
    wait_until(
        lambda: executions(stack, "TrainModelStateMachine", f"train-{model_id}"),
        lambda runs: runs and "RUNNING" not in runs.values(),
        timeout=30,
    )

    assert cancelled.status_code == 200, cancelled.text
    model = cancelled.json()
    assert model["status"] == "cancelled" and model["retry_until"]
    assert model["provider_accepted"] is False
    assert emulator.trainings_for(model_id) == 0, "nothing was sent to the provider"
    assert used(client, "trainings_per_day") == 0, "a cancelled training's quota comes back"
    assert client.start_training(model_id).status_code == 202, "it can be trained again"
    assert wait_for_model(client, model_id)["status"] == "ready"
    assert emulator.trainings_for(model_id) == 1
    refused = client.call("POST", f"/models/{model_id}/training/cancel")
    assert refused.status_code == 409, refused.text

    # its generations: one cancelled before submission, one deleted once it succeeded
    with submits_held(stack, "GenerationSubmitFunction"):
        queued = client.create_generation(model_id, [{"style": "realistic", "count": 1}])
        generation_id = queued.json()["generation_id"]
        cancel = client.call("POST", f"/generations/{generation_id}/cancel")
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    made = client.create_generation(model_id, [{"style": "realistic", "count": 2}])
    made_id = made.json()["generation_id"]
    assert ended(client, f"/generations/{made_id}")["status"] == "succeeded"
    assert len(bucket_keys(stack, "ResultsBucketName", made_id)) == 2
    assert used(client, "avatars_per_day") == 2, "the cancelled generation's avatar came back"

    for gone in (generation_id, made_id):
        assert client.call("DELETE", f"/generations/{gone}").status_code == 204
        assert client.call("GET", f"/generations/{gone}").status_code == 404
    assert bucket_keys(stack, "ResultsBucketName", made_id) == []
    assert emulator.stats()["inferences_submitted"] == 1
