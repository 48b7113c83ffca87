"""State transitions (what Step Functions bills) of one 20-minute training: our provider-paced,
progress-adaptive poll loop against a naive fixed 30-second loop, measured in one run.

Both run on the local stack with the same Lambdas and the same emulated 20-minute training;
the naive machine differs only in its Wait state. Transitions are counted from each
execution's history (every state entered is one transition).

    python bench/transitions.py
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/copy.py would shadow the standard library's copy module: keep bench/ off the path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT)]

import copy  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import boto3  # noqa: E402

from avatar_core.store.workflows import execution_arn  # noqa: E402
from local.client import ApiClient, wait_until  # noqa: E402
from local.stack import LocalConfig, LocalStack  # noqa: E402
from tests.support.journeys import model_with_selfies  # noqa: E402

PRICE_PER_1000 = 0.025
NAIVE_INTERVAL_SECONDS = 30
TRAINING_SECONDS = 20 * 60
# Lambda round trips take real time, which the clock scales too: a modest factor keeps that
# overhead small next to the 30-second naive wait, so the naive count is not flattered.
TIME_FACTOR = 60.0


def transitions(execution_arn: str) -> int:
    sfn = boto3.client("stepfunctions")
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events += page["events"]
        if "nextToken" not in page:
            break
        kwargs["nextToken"] = page["nextToken"]
    return sum(1 for e in events if e["type"].endswith("StateEntered"))


def naive_machine(stack: LocalStack) -> str:
    """The same definition with a fixed 30-second Wait in place of the provider's schedule."""
    sfn = boto3.client("stepfunctions")
    ours = sfn.describe_state_machine(
        stateMachineArn=stack.stack.state_machine_arns["TrainModelStateMachine"]
    )
    definition = json.loads(ours["definition"])
    naive = copy.deepcopy(definition)
    wait = naive["States"]["Wait for training"]
    wait.pop("SecondsPath")
    wait["Seconds"] = NAIVE_INTERVAL_SECONDS
    created = sfn.create_state_machine(
        name="naive-fixed-poll", definition=json.dumps(naive), roleArn=ours["roleArn"]
    )
    arn: str = created["stateMachineArn"]
    return arn


def train(stack: LocalStack, client: ApiClient, machine_arn: str | None, seed: int) -> str:
    """One training through the API (ours) or started directly on ``machine_arn`` (naive)."""
    model_id = model_with_selfies(client, 5, seed=seed)
    sfn = boto3.client("stepfunctions")
    if machine_arn is None:
        assert client.start_training(model_id).status_code == 202
        machine = stack.stack.state_machine_arns["TrainModelStateMachine"]
        execution = execution_arn(machine, f"train-{model_id}")
    else:
        # what the training API does before starting an execution: the model trains, as its
        # first attempt, and the workflow is told which attempt it works for
        table = boto3.resource("dynamodb").Table(stack.output("TableName"))
        table.update_item(
            Key={"PK": f"OWNER#{USER}", "SK": f"MODEL#{model_id}"},
            UpdateExpression="SET #s = :t, training_attempt = :one",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":t": "training", ":one": 1},
        )
        execution = sfn.start_execution(
            stateMachineArn=machine_arn,
            name=f"naive-{model_id}",
            input=json.dumps({"owner": USER, "model_id": model_id, "attempt": 1}),
        )["executionArn"]
    wait_until(
        lambda: sfn.describe_execution(executionArn=execution)["status"],
        lambda status: status != "RUNNING",
        timeout=600,
        interval=0.5,
    )
    final = client.get_model(model_id)
    if final["status"] != "ready":
        raise RuntimeError(f"training did not finish: {final}")
    return execution


USER = "bench-user"


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    config = LocalConfig(
        api_port=0,
        time_factor=TIME_FACTOR,
        emulator_overrides={"training_seconds": TRAINING_SECONDS},
        # the naive loop needs more than our 20-poll bound to see a 20-minute training through
        function_env={"TRAINING_MAX_POLLS": "100"},
    )
    started = time.monotonic()
    with LocalStack(config) as stack:
        client = ApiClient(stack.api_url, stack.token(USER))
        ours = transitions(train(stack, client, None, seed=1))
        naive = transitions(train(stack, client, naive_machine(stack), seed=2))
    ratio = ours / naive
    print(
        f"one training of {TRAINING_SECONDS // 60} emulated minutes (time factor {TIME_FACTOR:g})"
    )
    cost_ours, cost_naive = ours * PRICE_PER_1000 / 1000, naive * PRICE_PER_1000 / 1000
    print(f"  provider-paced adaptive loop: {ours:4d} transitions  ${cost_ours:.6f}")
    print(
        f"  naive fixed {NAIVE_INTERVAL_SECONDS}s loop:        {naive:4d} transitions  "
        f"${cost_naive:.6f}"
    )
    print(f"  ratio ours/naive: {ratio:.2f} (target <= 0.25) {'PASS' if ratio <= 0.25 else 'MISS'}")
    print(f"  per 100,000 trainings: ${cost_ours * 1e5:.2f} vs ${cost_naive * 1e5:.2f}")
    print(f"  measured in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
