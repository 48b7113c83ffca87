"""Avatar generation on the local stack: from a ready model to avatars in our own bucket."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
import requests

from local.client import ApiClient, wait_until
from local.stack import LocalStack
from tests.conftest import RESULT_CAP_BYTES
from tests.support.journeys import Emulator, model_with_selfies, trained_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def owner(stack: LocalStack) -> tuple[str, ApiClient]:
    user = f"gen-{uuid.uuid4().hex[:10]}"
    return user, ApiClient(stack.api_url, stack.token(user))


@pytest.fixture(scope="module")
def ready_model(stack: LocalStack, owner: tuple[str, ApiClient]) -> str:
    return trained_model(owner[1], stack, seed=40)


def generate(client: ApiClient, model_id: str, requests_: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.create_generation(model_id, requests_)
    assert response.status_code == 202, response.text
    generation_id = response.json()["generation_id"]
    return wait_until(
        lambda: client.get_generation(generation_id),
        lambda g: g["status"] in ("succeeded", "failed"),
        timeout=60,
    )


def result_objects(stack: LocalStack, user: str, model_id: str, generation_id: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(
        Bucket=stack.output("ResultsBucketName"),
        Prefix=f"avatars/{user}/{model_id}/{generation_id}/",
    )
    return [item["Key"] for item in listed.get("Contents", [])]


def test_avatars_in_several_styles_are_copied_into_our_bucket(
    stack: LocalStack, owner: tuple[str, ApiClient], ready_model: str
) -> None:
    user, client = owner
    generation = generate(
        client,
        ready_model,
        [
            {"style": "realistic", "count": 2},
            {"style": "anime", "count": 1, "prompt": "as a space explorer"},
            {"style": "sketch", "count": 1},
        ],
    )

    assert generation["status"] == "succeeded", generation.get("error")
    avatars = generation["avatars"]
    assert [a["style"] for a in avatars] == ["realistic", "realistic", "anime", "sketch"]
    keys = result_objects(stack, user, ready_model, generation["generation_id"])
    assert len(keys) == 4
    for avatar in avatars:
        assert avatar["url"].startswith(stack.moto_url), "the gallery must link to our bucket"
        assert stack.emulator.base_url not in avatar["url"]
        image = requests.get(avatar["url"], timeout=10)
        assert image.status_code == 200
        assert image.content[:2] == b"\xff\xd8"
        assert (avatar["width"], avatar["height"]) == (512, 512)
    listed = client.call("GET", f"/models/{ready_model}/generations").json()["items"]
    assert generation["generation_id"] in [g["generation_id"] for g in listed]


def test_a_provider_failure_is_reported_with_its_reason_in_the_api_and_the_console(
    stack: LocalStack, owner: tuple[str, ApiClient], ready_model: str, emulator: Emulator
) -> None:
    emulator.script(inference_outcome={"status": "FAILED", "message": "content policy refusal"})
    generation = generate(owner[1], ready_model, [{"style": "realistic", "count": 1}])
    assert generation["status"] == "failed"
    assert "content policy refusal" in generation["error"]
    sfn = boto3.client("stepfunctions")
    machine = stack.stack.state_machine_arns["GenerateAvatarsStateMachine"]
    arn = next(
        e["executionArn"]
        for e in sfn.list_executions(stateMachineArn=machine)["executions"]
        if e["name"] == f"generate-{generation['generation_id']}"
    )
    execution = wait_until(
        lambda: sfn.describe_execution(executionArn=arn),
        lambda e: e["status"] != "RUNNING",
        timeout=20,
    )
    assert execution["status"] == "FAILED"
    assert execution["cause"] == generation["error"], "the console says what the API says"
    assert json.loads(execution["input"]) == {
        "kind": "generation",
        "owner": owner[0],
        "job_id": generation["generation_id"],
        "model_id": ready_model,
    }


def test_a_result_that_expired_at_the_provider_is_reported_clearly(
    stack: LocalStack, owner: tuple[str, ApiClient], ready_model: str, emulator: Emulator
) -> None:
    emulator.script(result_ttl_seconds=0)
    generation = generate(owner[1], ready_model, [{"style": "realistic", "count": 2}])
    assert generation["status"] == "failed"
    assert "2 of 2 avatars could not be copied" in generation["error"]
    assert "expired" in generation["error"]
    assert result_objects(stack, owner[0], ready_model, generation["generation_id"]) == []


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("http://localhost:{port}/hostile/not-an-image", "localhost is not on the result host"),
        (
            "http://127.0.0.1:{port}/hostile/redirect-to-metadata",
            "169.254.169.254 is not on the result host",
        ),
        ("http://127.0.0.1:{port}/hostile/not-an-image", "labelled JPEG but its bytes are not"),
        (
            f"http://127.0.0.1:{{port}}/hostile/huge/{RESULT_CAP_BYTES // 2**20 + 2}",
            f"larger than the {RESULT_CAP_BYTES} bytes",
        ),
    ],
    ids=["host-off-the-allow-list", "redirect-to-metadata", "not-an-image", "over-the-cap"],
)
def test_hostile_results_are_refused_and_nothing_is_written(
    stack: LocalStack,
    owner: tuple[str, ApiClient],
    ready_model: str,
    emulator: Emulator,
    path: str,
    reason: str,
) -> None:
    emulator.script(result_urls=[path.format(port=stack.emulator.port)])
    generation = generate(owner[1], ready_model, [{"style": "realistic", "count": 1}])
    assert generation["status"] == "failed"
    assert reason in generation["error"]
    assert generation["avatars"] == []
    assert result_objects(stack, owner[0], ready_model, generation["generation_id"]) == []
    uploads = boto3.client("s3").list_multipart_uploads(Bucket=stack.output("ResultsBucketName"))
    assert not uploads.get("Uploads"), "no half-written multipart upload may be left"


def test_a_model_still_training_cannot_generate(client: ApiClient, emulator: Emulator) -> None:
    emulator.script(never_finish=["training"])
    model_id = model_with_selfies(client, 5, seed=60)
    assert client.start_training(model_id).status_code == 202
    response = client.create_generation(model_id, [{"style": "realistic", "count": 1}])
    assert response.status_code == 409
    assert "once it is ready" in response.json()["message"]
    client.delete_model(model_id)


@pytest.mark.parametrize(
    ("requests_", "field"),
    [
        ([{"style": "cubist", "count": 1}], "requests.0.style"),
        ([{"style": "realistic", "count": 0}], "requests.0.count"),
        ([{"style": "realistic", "count": "2"}], "requests.0.count"),
        ([{"style": "realistic", "count": 30}, {"style": "anime", "count": 20}], "requests"),
        ([], "requests"),
    ],
    ids=["unknown-style", "zero-count", "string-count", "over-the-total", "empty"],
)
def test_bad_generation_requests_answer_422_naming_the_field(
    owner: tuple[str, ApiClient], ready_model: str, requests_: list[Any], field: str
) -> None:
    response = owner[1].create_generation(ready_model, requests_)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_the_same_idempotency_key_starts_one_generation(
    owner: tuple[str, ApiClient], ready_model: str
) -> None:
    client = owner[1]
    body = [{"style": "realistic", "count": 1}]
    first = client.create_generation(ready_model, body, idempotency_key="gen-key-1")
    again = client.create_generation(ready_model, body, idempotency_key="gen-key-1")
    other = client.create_generation(
        ready_model, [{"style": "anime", "count": 1}], idempotency_key="gen-key-1"
    )
    assert first.status_code == again.status_code == 202
    assert first.json()["generation_id"] == again.json()["generation_id"]
    assert other.status_code == 422


def test_another_owner_sees_none_of_it(
    owner: tuple[str, ApiClient], ready_model: str, other_client: ApiClient
) -> None:
    generation = generate(owner[1], ready_model, [{"style": "realistic", "count": 1}])
    generation_id = generation["generation_id"]
    assert other_client.call("GET", f"/generations/{generation_id}").status_code == 404
    assert other_client.call("GET", f"/models/{ready_model}/generations").status_code == 404
    response = other_client.create_generation(ready_model, [{"style": "realistic", "count": 1}])
    assert response.status_code == 404
