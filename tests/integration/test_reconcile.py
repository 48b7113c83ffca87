"""Every job ends, whatever ends its workflow: an operator's stop in the console is met by
Step Functions' own status-change event, and the record is brought to the truth.

Before reconciliation, a training stopped in the console read ``training`` for ever (a new
start answered 409) and a stopped generation read ``running`` for ever.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from local.client import ApiClient, wait_until
from local.stack import LocalStack
from tests.support.journeys import (
    Emulator,
    generation_stopped_by_an_operator,
    model_item,
    model_with_selfies,
    stop_execution,
    trained_model,
)

pytestmark = pytest.mark.integration


def executions(stack: LocalStack, machine: str, prefix: str) -> dict[str, str]:
    """Name → status of the machine's executions whose name starts with ``prefix``."""
    sfn = boto3.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=stack.stack.state_machine_arns[machine])
    return {e["name"]: e["status"] for e in listed["executions"] if e["name"].startswith(prefix)}


def hold_polls(emulator: Emulator, route: str, times: int) -> None:
    """The provider's next status answers take 2 s: the execution is still running when the
    operator stops it (moto ends a stopped execution once its running task returns)."""
    emulator.script(fail_next=[{"route": route, "slow_seconds": 2, "times": times}])


def submitted(emulator: Emulator, key: str) -> int:
    return int(emulator.stats().get(key, 0))


def test_a_training_stopped_by_an_operator_after_submit_resumes_and_gets_ready_paid_once(
    stack: LocalStack, client: ApiClient, user: str, emulator: Emulator
) -> None:
    model_id = model_with_selfies(client, 5, seed=70)
    before = submitted(emulator, "trainings_submitted")
    hold_polls(emulator, "train_status", 1)
    assert client.start_training(model_id).status_code == 202
    wait_until(
        lambda: model_item(stack, user, model_id),
        lambda item: "provider_model_id" in item,
        timeout=20,
    )

    stop_execution(stack, "TrainModelStateMachine", f"train-{model_id}")
    model = wait_until(
        lambda: client.get_model(model_id),
        lambda m: m["status"] != "training",
        timeout=90,
    )

    assert model["status"] == "ready", model
    names = wait_until(
        lambda: executions(stack, "TrainModelStateMachine", f"train-{model_id}"),
        lambda found: "RUNNING" not in found.values(),
        timeout=30,
    )
    assert names == {f"train-{model_id}": "ABORTED", f"train-{model_id}-r1": "SUCCEEDED"}
    assert submitted(emulator, "trainings_submitted") - before == 1, "paid for once"


def test_a_generation_stopped_by_an_operator_after_submit_resumes_and_copies_its_avatars(
    stack: LocalStack, client: ApiClient, user: str, emulator: Emulator
) -> None:
    model_id = trained_model(client, stack, seed=71)
    before = submitted(emulator, "inferences_submitted")

    generation = generation_stopped_by_an_operator(stack, client, model_id, count=2)
    generation_id = generation["generation_id"]

    assert generation["status"] == "succeeded", generation
    assert len(generation["avatars"]) == 2
    assert submitted(emulator, "inferences_submitted") - before == 1, "paid for once"
    names = wait_until(
        lambda: executions(stack, "GenerateAvatarsStateMachine", f"generate-{generation_id}"),
        lambda found: "RUNNING" not in found.values(),
        timeout=30,
    )
    assert names == {
        f"generate-{generation_id}": "ABORTED",
        f"generate-{generation_id}-r1": "SUCCEEDED",
    }


def test_a_model_stopped_twice_past_its_resumes_is_failed_with_a_reason_and_can_be_retrained(
    stack: LocalStack, client: ApiClient, user: str, emulator: Emulator
) -> None:
    model_id = model_with_selfies(client, 5, seed=72)
    hold_polls(emulator, "train_status", 3)
    assert client.start_training(model_id).status_code == 202
    # the operator stops every execution: the first and each resume (MaxResumes is 2)
    for name in (f"train-{model_id}", f"train-{model_id}-r1", f"train-{model_id}-r2"):
        wait_until(
            lambda name=name: executions(stack, "TrainModelStateMachine", name).get(name),
            lambda status: status == "RUNNING",
            timeout=30,
        )
        wait_until(
            lambda: model_item(stack, user, model_id),
            lambda item: "provider_model_id" in item,
            timeout=20,
        )
        stop_execution(stack, "TrainModelStateMachine", name)

    model: dict[str, Any] = wait_until(
        lambda: client.get_model(model_id),
        lambda m: m["status"] != "training",
        timeout=30,
    )

    assert model["status"] == "failed"
    assert "stopped by an operator" in model["error"]
    assert model["retry_until"], "a failed model says until when it can be trained again"
    retried = client.start_training(model_id)
    assert retried.status_code == 202, retried.text
    assert (
        wait_until(
            lambda: client.get_model(model_id), lambda m: m["status"] != "training", timeout=90
        )["status"]
        == "ready"
    )
    assert f"train-{model_id}-t2" in executions(
        stack, "TrainModelStateMachine", f"train-{model_id}"
    )
