"""Steps of the product's journeys, shared by the integration tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import requests

from avatar_core.settings import Settings
from local import photos
from local.client import ApiClient, wait_until
from local.stack import LocalStack


def upload_and_settle(
    client: ApiClient, model_id: str, files: list[tuple[str, bytes]]
) -> list[dict[str, Any]]:
    """Upload each (content_type, data) through its presigned POST; wait until none is pending."""
    slots = client.request_uploads(model_id, [content_type for content_type, _ in files])
    for slot, (_, data) in zip(slots, files, strict=True):
        response = ApiClient.upload(slot, data)
        assert response.status_code in (200, 204), response.text
    selfies = wait_until(
        lambda: client.list_selfies(model_id),
        lambda items: all(s["status"] != "pending" for s in items),
        timeout=30,
    )
    by_id = {s["selfie_id"]: s for s in selfies}
    return [by_id[slot["selfie_id"]] for slot in slots]


def model_with_selfies(client: ApiClient, count: int, subject: str = "woman", seed: int = 0) -> str:
    model_id: str = client.create_model(subject)["model_id"]
    files = [("image/jpeg", photos.selfie_jpeg(seed + i, size=(600, 800))) for i in range(count)]
    settled = upload_and_settle(client, model_id, files)
    assert [s["status"] for s in settled] == ["accepted"] * count
    return model_id


def wait_for_model(client: ApiClient, model_id: str, timeout: float = 60) -> dict[str, Any]:
    return wait_until(
        lambda: client.get_model(model_id),
        lambda model: model["status"] in ("ready", "failed"),
        timeout=timeout,
    )


def trained_model(client: ApiClient, stack: LocalStack, seed: int = 0) -> str:
    model_id = model_with_selfies(client, 5, seed=seed)
    response = client.start_training(model_id)
    assert response.status_code == 202, response.text
    assert wait_for_model(client, model_id)["status"] == "ready"
    return model_id


def stop_execution(stack: LocalStack, machine: str, name: str) -> None:
    """What an operator does in the Step Functions console: stop an execution by name."""
    assert stack.stack is not None
    arn = stack.stack.state_machine_arns[machine]
    prefix, _, machine_name = arn.rpartition(":stateMachine:")
    boto3.client("stepfunctions").stop_execution(
        executionArn=f"{prefix}:execution:{machine_name}:{name}",
        error="Operator.Stop",
        cause="stopped from the console",
    )


def model_item(stack: LocalStack, owner: str, model_id: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb").Table(stack.output("TableName"))
    item: dict[str, Any] = table.get_item(Key={"PK": f"OWNER#{owner}", "SK": f"MODEL#{model_id}"})[
        "Item"
    ]
    return item


class Emulator:
    """The provider emulator's loopback admin hooks."""

    def __init__(self, stack: LocalStack) -> None:
        self.base_url = stack.emulator.base_url

    def script(self, **script: Any) -> None:
        requests.post(
            f"{self.base_url}/_emulator/script", json=script, timeout=5
        ).raise_for_status()

    def reset(self) -> None:
        requests.post(f"{self.base_url}/_emulator/reset", timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = requests.get(f"{self.base_url}/_emulator/stats", timeout=5)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def limit(self, **requests_per_minute: int) -> None:
        """The providers' rate limits until the next reset: ``limit(picsart=6)``."""
        requests.post(
            f"{self.base_url}/_emulator/limits", json=requests_per_minute, timeout=5
        ).raise_for_status()

    def trainings_for(self, model_id: str) -> int:
        by_source = self.stats()["trainings_by_source"]
        return sum(count for source, count in by_source.items() if model_id in source)


def generation_stopped_by_an_operator(
    stack: LocalStack, client: ApiClient, model_id: str, count: int
) -> dict[str, Any]:
    """A generation an operator stops in the console once the provider has it (its first
    status answer takes 2 s, so it is still running then); answers it once it has ended."""
    Emulator(stack).script(fail_next=[{"route": "infer_status", "slow_seconds": 2, "times": 1}])
    response = client.create_generation(model_id, [{"style": "realistic", "count": count}])
    assert response.status_code == 202, response.text
    generation_id = response.json()["generation_id"]
    wait_until(
        lambda: client.get_generation(generation_id),
        lambda g: g["status"] == "running",
        timeout=20,
    )
    stop_execution(stack, "GenerateAvatarsStateMachine", f"generate-{generation_id}")
    finished: dict[str, Any] = wait_until(
        lambda: client.get_generation(generation_id),
        lambda g: g["status"] in ("succeeded", "failed"),
        timeout=60,
    )
    return finished


def delete_account(client: ApiClient) -> dict[str, Any]:
    """``DELETE /v1/me``: the deletion, running (or the one already running)."""
    response = client.call("DELETE", "/me")
    assert response.status_code == 202, response.text
    deletion: dict[str, Any] = response.json()
    return deletion


def deletion_finished(client: ApiClient, timeout: float = 120) -> dict[str, Any]:
    """Follow ``GET /v1/me/deletion`` until the deletion has succeeded or failed."""
    finished: dict[str, Any] = wait_until(
        lambda: client.call("GET", "/me/deletion").json(),
        lambda d: d.get("status") in ("succeeded", "failed"),
        timeout=timeout,
    )
    return finished


def generation_that_never_finishes(stack: LocalStack, client: ApiClient, model_id: str) -> str:
    """A generation the provider keeps running (until the emulator is reset): its id, once
    the provider has it."""
    Emulator(stack).script(never_finish=["inference"])
    response = client.create_generation(model_id, [{"style": "realistic", "count": 1}])
    assert response.status_code == 202, response.text
    generation_id: str = response.json()["generation_id"]
    wait_until(
        lambda: client.get_generation(generation_id),
        lambda g: g["status"] == "running",
        timeout=20,
    )
    return generation_id


@contextmanager
def submits_held(stack: LocalStack, *functions: str) -> Iterator[None]:
    """The named workflow functions (logical ids) wait, before they run, until the block
    ends: a job or training started inside it has not been submitted to the provider yet.
    Their executions are running meanwhile, as between StartExecution and the submit."""
    runtime = stack.runtime
    assert runtime is not None
    release = threading.Event()
    earlier = runtime.fault

    def hold(logical_id: str) -> str | None:
        if logical_id in functions:
            release.wait(timeout=60)
        return earlier(logical_id) if earlier is not None else None

    runtime.fault = hold
    try:
        yield
    finally:
        release.set()
        runtime.fault = earlier


def executions(stack: LocalStack, machine: str, prefix: str) -> dict[str, str]:
    """Name → status of the machine's executions whose name starts with ``prefix``."""
    assert stack.stack is not None
    listed = boto3.client("stepfunctions").list_executions(
        stateMachineArn=stack.stack.state_machine_arns[machine]
    )
    return {e["name"]: e["status"] for e in listed["executions"] if e["name"].startswith(prefix)}


def bucket_keys(stack: LocalStack, bucket_output: str, containing: str) -> list[str]:
    """Every key of the bucket (``UploadsBucketName`` or ``ResultsBucketName``) that
    contains ``containing``, as the local AWS endpoint lists them."""
    paginator = boto3.client("s3").get_paginator("list_objects_v2")
    return sorted(
        item["Key"]
        for page in paginator.paginate(Bucket=stack.output(bucket_output))
        for item in page.get("Contents", [])
        if containing in item["Key"]
    )


def function_settings(stack: LocalStack, logical_id: str) -> Settings:
    """The settings the running stack's function reads: its environment as deployed, under
    the stack's local overrides (as the in-process runtime applies them)."""
    assert stack.stack is not None
    name = stack.stack.function_name(logical_id)
    configured = boto3.client("lambda").get_function_configuration(FunctionName=name)
    deployed = configured.get("Environment", {}).get("Variables", {})
    return Settings.from_env({**deployed, **stack._local_overrides()})
