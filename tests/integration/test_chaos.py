"""Whole journeys with provider faults on and every S3 event delivered twice."""

from __future__ import annotations

import pytest

from local import chaos
from local.client import ApiClient
from local.stack import LocalStack
from tests.support.journeys import Emulator, model_with_selfies, wait_for_model

pytestmark = pytest.mark.integration


def test_journeys_under_clear_faults_lose_nothing_and_pay_once(stack: LocalStack) -> None:
    figures, journeys = chaos.run(stack, journeys=2, concurrency=2, chaos=chaos.CLEAR_FAULTS)

    assert [j.errors for j in journeys] == [[], []]
    assert figures.terminal == figures.journeys == 2
    assert figures.models_ready == figures.generations_succeeded == figures.faces_succeeded == 2
    assert figures.lost_jobs == {"training": 0, "inference": 0, "face": 0}
    assert figures.paid_twice == {"training": 0, "inference": 0, "face": 0}
    assert figures.avatars_never_copied == 0
    assert figures.client_5xx == 0
    assert figures.faults_injected > 0, "the run proves nothing if no fault was injected"


def test_a_submit_whose_answer_is_lost_is_never_sent_again(
    stack: LocalStack, client: ApiClient
) -> None:
    emulator = Emulator(stack)
    emulator.reset()
    emulator.script(fail_next=[{"route": "train_submit", "lose_response": True}])
    model_id = model_with_selfies(client, 5, seed=90)
    assert client.start_training(model_id).status_code == 202

    model = wait_for_model(client, model_id)

    assert model["status"] == "failed"
    assert "may have started the job, so it was not sent again" in model["error"]
    assert emulator.trainings_for(model_id) == 1, "paid once, never twice"
    emulator.reset()
