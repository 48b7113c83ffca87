"""Training on the local stack: the template's state machine, in-process Lambdas, the emulator."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest

from local.client import ApiClient, wait_until
from local.stack import LocalStack
from tests.support.journeys import (
    Emulator,
    model_item,
    model_with_selfies,
    wait_for_model,
)

pytestmark = pytest.mark.integration


def executions_of(stack: LocalStack, model_id: str) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions")
    arn = stack.stack.state_machine_arns["TrainModelStateMachine"]
    return [
        e
        for e in sfn.list_executions(stateMachineArn=arn)["executions"]
        if e["name"] == f"train-{model_id}"
    ]


def test_five_selfies_train_a_ready_model_and_the_selfies_are_deleted(
    stack: LocalStack, client: ApiClient, user: str, emulator: Emulator
) -> None:
    model_id = model_with_selfies(client, 5)
    response = client.start_training(model_id)
    assert response.status_code == 202
    assert response.json()["status"] == "training"

    model = wait_for_model(client, model_id)

    assert model["status"] == "ready"
    deleted_at = wait_until(
        lambda: client.get_model(model_id)["selfies_deleted_at"],
        lambda value: value is not None,
        timeout=20,
    )
    item = model_item(stack, user, model_id)
    assert deleted_at >= item["ready_at"], "selfies go only once the model is ready"
    assert item["provider_model_id"], "the provider's model id must be stored"
    assert emulator.trainings_for(model_id) == 1
    s3 = boto3.client("s3")
    bucket = stack.output("UploadsBucketName")
    for prefix in ("selfies", "normalised"):
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{user}/{model_id}/")
        assert listed.get("KeyCount", 0) == 0, f"{prefix} images survived training"
    (execution,) = executions_of(stack, model_id)
    assert execution["status"] == "SUCCEEDED"


def test_training_needs_five_accepted_selfies(client: ApiClient) -> None:
    model_id = model_with_selfies(client, 3)
    response = client.start_training(model_id)
    assert response.status_code == 409
    assert "at least 5 accepted selfies" in response.json()["message"]
    assert "upload 2 more" in response.json()["message"]
    assert client.get_model(model_id)["status"] == "collecting"


def test_a_provider_failure_marks_the_model_failed_with_its_reason(
    client: ApiClient, emulator: Emulator
) -> None:
    emulator.script(training_outcome="FAILED", message="GPU node lost during training")
    model_id = model_with_selfies(client, 5)
    assert client.start_training(model_id).status_code == 202

    model = wait_for_model(client, model_id)

    assert model["status"] == "failed"
    assert "GPU node lost during training" in model["error"]


def test_rate_limits_and_server_errors_are_retried_until_training_succeeds(
    client: ApiClient, emulator: Emulator
) -> None:
    emulator.script(
        fail_next=[
            {"route": "train_submit", "status": 429, "times": 2, "retry_after": 1},
            {"route": "train_status", "status": 500, "times": 3},
        ]
    )
    model_id = model_with_selfies(client, 5)
    assert client.start_training(model_id).status_code == 202

    model = wait_for_model(client, model_id, timeout=120)

    assert model["status"] == "ready"
    assert emulator.trainings_for(model_id) == 1
    faults = emulator.stats()["faults_injected"]
    assert faults.get("train_submit") == 2
    assert faults.get("train_status") == 3


def test_an_unreachable_selfie_url_fails_the_training_clearly(
    stack: LocalStack, client: ApiClient, user: str
) -> None:
    model_id = model_with_selfies(client, 5)
    s3 = boto3.client("s3")
    bucket = stack.output("UploadsBucketName")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"normalised/{user}/{model_id}/")
    s3.delete_object(Bucket=bucket, Key=listed["Contents"][0]["Key"])
    assert client.start_training(model_id).status_code == 202

    model = wait_for_model(client, model_id)

    assert model["status"] == "failed"
    assert "not accessible" in model["error"]


def test_a_training_that_never_finishes_fails_at_the_poll_bound(
    stack: LocalStack, client: ApiClient, emulator: Emulator
) -> None:
    emulator.script(never_finish=["training"])
    model_id = model_with_selfies(client, 5)
    assert client.start_training(model_id).status_code == 202

    model = wait_for_model(client, model_id, timeout=120)

    assert model["status"] == "failed"
    assert "had not finished training after 20 status checks" in model["error"]


def test_starting_twice_trains_once(
    stack: LocalStack, client: ApiClient, emulator: Emulator
) -> None:
    model_id = model_with_selfies(client, 5)
    statuses: list[int] = []

    def double_click() -> None:
        statuses.append(client.start_training(model_id).status_code)

    clicks = [threading.Thread(target=double_click) for _ in range(4)]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()
    retried = [client.start_training(model_id, idempotency_key="retry-1").status_code]

    model = wait_for_model(client, model_id)

    assert sorted(statuses).count(202) == 1
    assert sorted(statuses).count(409) == 3
    assert retried == [409]
    assert model["status"] == "ready"
    assert emulator.trainings_for(model_id) == 1
    assert len(executions_of(stack, model_id)) == 1


def test_a_retried_request_with_the_same_idempotency_key_answers_the_first_response(
    stack: LocalStack, client: ApiClient, emulator: Emulator
) -> None:
    model_id = model_with_selfies(client, 5)
    first = client.start_training(model_id, idempotency_key="key-1")
    again = client.start_training(model_id, idempotency_key="key-1")

    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert wait_for_model(client, model_id)["status"] == "ready"
    assert emulator.trainings_for(model_id) == 1
    assert len(executions_of(stack, model_id)) == 1


def test_another_owner_cannot_start_training(client: ApiClient, other_client: ApiClient) -> None:
    model_id = model_with_selfies(client, 5)
    assert other_client.start_training(model_id).status_code == 404
    assert client.get_model(model_id)["status"] == "collecting"
