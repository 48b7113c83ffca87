"""A busy provider costs no job; an exhausted provider account stops new paid work at the door.

Both run the real state machines on the local stack against the emulator: the 429s and the
402 are the emulator's answers over HTTP, not mocks of the client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from local.client import ApiClient, wait_until
from local.stack import LocalStack
from tests.support.journeys import Emulator, model_with_selfies, trained_model, wait_for_model

pytestmark = pytest.mark.integration

# The state machines' Retry on a provider error allowed 6 attempts: more 429s than that used to
# fall through to "Record training failed" while the provider was still training.
MORE_THAN_THE_RETRIES = 10


def test_a_training_throttled_for_longer_than_any_retry_budget_still_ends_ready(
    stack: LocalStack, client: ApiClient, emulator: Emulator
) -> None:
    model_id = model_with_selfies(client, 5, seed=310)
    emulator.script(
        fail_next=[
            {
                "route": "train_status",
                "status": 429,
                "retry_after": 1,
                "times": MORE_THAN_THE_RETRIES,
            }
        ]
    )
    assert client.start_training(model_id).status_code == 202

    model = wait_for_model(client, model_id, timeout=120)

    assert model["status"] == "ready", model.get("error")
    assert emulator.trainings_for(model_id) == 1, "waiting out 429s never submits again"
    assert emulator.stats()["faults_injected"]["train_status"] == MORE_THAN_THE_RETRIES


@pytest.fixture()
def breaker_closed_after(stack: LocalStack) -> Iterator[Any]:
    """The breaker is stack-wide: whatever the test leaves, the next test finds it closed."""
    table = boto3.resource("dynamodb").Table(stack.output("TableName"))
    yield table
    table.delete_item(Key={"PK": "BREAKER#picsart", "SK": "BREAKER"})


def test_an_exhausted_account_fails_the_job_at_once_and_pauses_new_work_until_a_probe_passes(
    stack: LocalStack, client: ApiClient, emulator: Emulator, breaker_closed_after: Any
) -> None:
    model_id = trained_model(client, stack, seed=320)
    emulator.reset()
    emulator.script(fail_next=[{"route": "infer_submit", "status": 402, "times": 1}])

    first = client.create_generation(model_id, [{"style": "realistic", "count": 1}])
    assert first.status_code == 202, first.text
    failed = wait_until(
        lambda: client.get_generation(first.json()["generation_id"]),
        lambda g: g["status"] in ("succeeded", "failed"),
        timeout=60,
    )
    assert failed["status"] == "failed"
    assert "the Picsart account is out of credits" in failed["error"]
    stats = emulator.stats()
    assert stats["faults_injected"] == {"infer_submit": 1}
    assert stats["requests_by_route"].get("infer_submit") == 1, "exhaustion is not retried"

    paused = client.create_generation(model_id, [{"style": "realistic", "count": 1}])
    assert paused.status_code == 503, paused.text
    assert int(paused.headers["Retry-After"]) >= 1
    assert "out of credits" in paused.json()["message"]
    assert "nothing was started or charged" in paused.json()["message"]

    # The cool-off passes (the operator topped the account up meanwhile): one request goes
    # as the probe, the provider takes it, and the breaker closes by itself.
    table = breaker_closed_after
    table.update_item(
        Key={"PK": "BREAKER#picsart", "SK": "BREAKER"},
        UpdateExpression="SET probe_after = :past",
        ExpressionAttributeValues={":past": "2000-01-01T00:00:00Z"},
    )
    probe = client.create_generation(model_id, [{"style": "realistic", "count": 1}])
    assert probe.status_code == 202, probe.text
    probed = wait_until(
        lambda: client.get_generation(probe.json()["generation_id"]),
        lambda g: g["status"] in ("succeeded", "failed"),
        timeout=60,
    )
    assert probed["status"] == "succeeded"
    assert "Item" not in table.get_item(Key={"PK": "BREAKER#picsart", "SK": "BREAKER"})
    after = client.create_generation(model_id, [{"style": "realistic", "count": 1}])
    assert after.status_code == 202, after.text
