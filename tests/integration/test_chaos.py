"""Whole journeys with provider faults on and every S3 event delivered twice."""

from __future__ import annotations

import pytest

from local import chaos
from local.client import ApiClient
from local.stack import LocalStack
from tests.support.bench import run_bench
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


def test_journeys_under_workflow_chaos_end_every_record_and_pay_once() -> None:
    """Operators stop executions at random points, StartExecution is throttled, Lambda tasks
    time out after doing their work and the reconcile function crashes half the time: every
    record still ends, nothing is paid twice and no client sees a 5xx. A stack of its own
    (bench/chaos.py in a fresh process), since its deadlines are short for the sweep."""
    figures = run_bench("chaos.py", "--only", "workflow", "--journeys", "3", "--concurrency", "3")

    assert figures["terminal"] == figures["journeys"] == 3, figures["unfinished"]
    assert figures["records_open"] == 0
    assert figures["stored_but_unsettled"] == 0
    assert figures["paid_twice"] == {"training": 0, "inference": 0, "face": 0}
    assert figures["lost_jobs"] == {"training": 0, "inference": 0, "face": 0}
    assert figures["client_5xx"] == 0
    assert sum(figures["workflow_faults"].values()) > 0, "no workflow fault was injected"
