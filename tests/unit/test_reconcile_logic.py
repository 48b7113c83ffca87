"""Reconciliation's rules against the real repository (moto): events arrive at least once
and out of order, paid work is never resubmitted, and a record that cannot be resumed ends
``failed`` with a reason a person can act on."""

from __future__ import annotations

from typing import Any

import pytest

from avatar_core import ids
from avatar_core.errors import PaidWorkPending
from avatar_core.logic import training
from avatar_core.logic.reconcile import Action, EndStatus, ExecutionEnd, reconcile, resume_name
from avatar_core.models.records import GenerationRecord, JobStatusName, ModelStatus
from avatar_core.models.workflow import StepFailure, TrainingFailed
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.workflows import execution_arn
from tests.unit.test_training_logic import SETTINGS, FakeWorkflows, model_with_accepted

MACHINE = SETTINGS.train_state_machine_arn
JOBS = "arn:aws:states:us-east-1:123456789012:stateMachine:generate"


def end_of(
    name: str, payload: dict[str, Any], status: str = "ABORTED", machine: str = MACHINE, **more: Any
) -> ExecutionEnd:
    return ExecutionEnd(
        execution_arn=execution_arn(machine, name),
        state_machine_arn=machine,
        name=name,
        status=status,
        input=payload,
        **more,
    )


def training_model(repo: AvatarRepository, provider_id: str | None) -> tuple[str, ExecutionEnd]:
    model_id = model_with_accepted(repo, 5)
    training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
    if provider_id:
        assert repo.store_provider_model_id("alice", model_id, 1, provider_id)
    payload = {"owner": "alice", "model_id": model_id, "attempt": 1}
    return model_id, end_of(f"train-{model_id}", payload)


def test_resume_names_count_up_from_the_original() -> None:
    assert resume_name("train-m1", 1) == "train-m1-r1"
    assert resume_name("train-m1-t2-r1", 2) == "train-m1-t2-r2"


def test_a_stopped_training_with_a_stored_id_resumes_once_however_often_the_event_comes(
    repo: AvatarRepository,
) -> None:
    model_id, end = training_model(repo, "prov-1")
    workflows = FakeWorkflows()

    first = reconcile(repo, workflows, SETTINGS, end)
    again = reconcile(repo, workflows, SETTINGS, end)

    assert first.action is Action.RESUMED and again.action is Action.UNCHANGED
    assert [name for _, name, _ in workflows.started] == [f"train-{model_id}-r1"]
    assert workflows.started[0][2] == {"owner": "alice", "model_id": model_id, "attempt": 1}
    model = repo.get_model("alice", model_id)
    assert model is not None and model.status is ModelStatus.TRAINING
    assert model.training_execution_arn == execution_arn(MACHINE, f"train-{model_id}-r1")


def test_a_training_stopped_before_the_provider_accepted_it_fails_saying_so(
    repo: AvatarRepository,
) -> None:
    model_id, end = training_model(repo, None)

    outcome = reconcile(repo, FakeWorkflows(), SETTINGS, end)

    model = repo.get_model("alice", model_id)
    assert outcome.action is Action.FAILED
    assert model is not None and model.status is ModelStatus.FAILED
    assert "stopped by an operator" in (model.error or "")
    assert "nothing was charged" in (model.error or "")
    assert model.retry_until is not None
    assert repo.get_quota_ledger("alice", "trainings").entries == {}, "its quota came back"


def test_a_training_stopped_after_the_provider_accepted_it_keeps_counting(
    repo: AvatarRepository,
) -> None:
    settings = SETTINGS.model_copy(update={"max_resumes": 0})
    model_id, end = training_model(repo, "prov-1")

    assert reconcile(repo, FakeWorkflows(), settings, end).action is Action.FAILED
    assert f"{model_id}#1" in repo.get_quota_ledger("alice", "trainings").entries


def test_a_timed_out_training_says_after_how_long(repo: AvatarRepository) -> None:
    model_id, end = training_model(repo, None)
    timed_out = end.model_copy(
        update={"status": EndStatus.TIMED_OUT, "start_ms": 0, "stop_ms": 4 * 3600 * 1000}
    )

    reconcile(repo, FakeWorkflows(), SETTINGS, timed_out)

    model = repo.get_model("alice", model_id)
    assert model is not None and "timed out after 4 hours" in (model.error or "")


def test_resumes_are_bounded_then_the_training_fails(repo: AvatarRepository) -> None:
    model_id, end = training_model(repo, "prov-1")
    workflows = FakeWorkflows()
    for _ in range(SETTINGS.max_resumes):
        outcome = reconcile(repo, workflows, SETTINGS, end)
        assert outcome.action is Action.RESUMED
        end = end_of(outcome.detail, end.input)

    last = reconcile(repo, workflows, SETTINGS, end)

    assert last.action is Action.FAILED
    assert len(workflows.started) == SETTINGS.max_resumes
    model = repo.get_model("alice", model_id)
    assert model is not None and model.status is ModelStatus.FAILED


def test_a_late_event_of_an_execution_that_was_replaced_changes_nothing(
    repo: AvatarRepository,
) -> None:
    model_id, end = training_model(repo, "prov-1")
    reconcile(repo, FakeWorkflows(), SETTINGS, end)  # resumed as -r1
    stale_failure = end.model_copy(
        update={"status": EndStatus.FAILED, "error": "States.TaskFailed"}
    )

    outcome = reconcile(repo, FakeWorkflows(), SETTINGS, stale_failure)

    assert outcome.action is Action.UNCHANGED
    model = repo.get_model("alice", model_id)
    assert model is not None and model.status is ModelStatus.TRAINING


def test_an_event_for_a_finished_model_changes_nothing(repo: AvatarRepository) -> None:
    model_id, end = training_model(repo, "prov-1")
    repo.finish_training("alice", model_id, ModelStatus.READY, ready_at=ids.now_iso())

    assert reconcile(repo, FakeWorkflows(), SETTINGS, end).action is Action.UNCHANGED


def test_a_queued_generation_whose_workflow_failed_before_submitting_is_failed(
    repo: AvatarRepository,
) -> None:
    stamp = ids.now_iso()
    generation_id = ids.new_id(ids.GENERATION)
    repo.create_job(
        GenerationRecord(
            owner="alice",
            generation_id=generation_id,
            model_id="m",
            created_at=stamp,
            updated_at=stamp,
        )
    )
    payload = {"kind": "generation", "owner": "alice", "job_id": generation_id}
    end = end_of(
        f"generate-{generation_id}",
        payload,
        status="FAILED",
        machine=JOBS,
        error="Lambda.Unknown",
        cause='{"errorMessage": "Task timed out after 60.00 seconds"}',
    )

    outcome = reconcile(repo, FakeWorkflows(), SETTINGS, end)

    record = repo.get_job(GenerationRecord, "alice", generation_id)
    assert outcome.action is Action.FAILED
    assert record is not None and record.status is JobStatusName.FAILED
    assert "Task timed out after 60.00 seconds" in (record.error or "")


@pytest.mark.parametrize("payload", [{}, {"something": "else"}, {"kind": "unknown"}])
def test_an_execution_that_is_not_ours_changes_nothing(
    repo: AvatarRepository, payload: dict[str, Any]
) -> None:
    end = end_of("other", payload)
    assert reconcile(repo, FakeWorkflows(), SETTINGS, end).action is Action.UNCHANGED


def test_a_submit_that_timed_out_after_the_provider_accepted_is_not_recorded_failed(
    repo: AvatarRepository,
) -> None:
    model_id, _ = training_model(repo, "prov-1")
    timed_out = TrainingFailed(
        owner="alice",
        model_id=model_id,
        error=StepFailure(Error="Sandbox.Timedout", Cause="Task timed out after 60.00 seconds"),
    )

    with pytest.raises(PaidWorkPending):
        training.record_failed(repo, SETTINGS, timed_out)

    model = repo.get_model("alice", model_id)
    assert model is not None and model.status is ModelStatus.TRAINING, (
        "the execution ends instead, and reconciliation resumes the paid training"
    )


def test_a_submit_that_failed_before_the_provider_accepted_is_recorded_failed(
    repo: AvatarRepository,
) -> None:
    model_id, _ = training_model(repo, None)
    failed = TrainingFailed(
        owner="alice", model_id=model_id, error=StepFailure(Error="Sandbox.Timedout")
    )

    training.record_failed(repo, SETTINGS, failed)

    model = repo.get_model("alice", model_id)
    assert model is not None and model.status is ModelStatus.FAILED


def test_a_job_that_succeeds_after_a_resume_shows_no_error(repo: AvatarRepository) -> None:
    stamp = ids.now_iso()
    record = GenerationRecord(
        owner="alice",
        generation_id=ids.new_id(ids.GENERATION),
        model_id="mdl",
        status=JobStatusName.RUNNING,
        error="the workflow timed out before the provider finished",
        created_at=stamp,
        updated_at=stamp,
    )
    repo.create_job(record)

    assert repo.finish_job(GenerationRecord, "alice", record.job_id, JobStatusName.SUCCEEDED)

    finished = repo.get_job(GenerationRecord, "alice", record.job_id)
    assert finished is not None
    assert finished.status is JobStatusName.SUCCEEDED and finished.error is None
