"""The scheduled sweep, the backstop behind the end events: it reads the sparse Active index
(never a Scan), reconciles records past their deadline whose execution is not running, and
deletes a failed model's selfies once its retry window has passed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import boto3

from avatar_core import ids
from avatar_core.logic import training
from avatar_core.logic.reconcile import sweep
from avatar_core.models.records import GenerationRecord, JobStatusName, ModelStatus
from avatar_core.models.workflow import TrainingFailed
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage
from avatar_core.store.workflows import execution_arn
from tests.unit.test_training_logic import SETTINGS, FakeWorkflows, model_with_accepted, storage

__all__ = ["storage"]  # the fixture, shared with the training logic tests
PAST = "2000-01-01T00:00:00.000Z"
JOBS = "arn:aws:states:us-east-1:123456789012:stateMachine:generate"
SWEEP_SETTINGS = SETTINGS.model_copy(update={"generate_state_machine_arn": JOBS})


@dataclass
class FakeExecutions:
    """DescribeExecution: the known executions by ARN."""

    known: dict[str, dict[str, Any]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def describe(self, arn: str) -> dict[str, Any] | None:
        self.asked.append(arn)
        return self.known.get(arn)


def overdue_training(repo: AvatarRepository) -> str:
    model_id = model_with_accepted(repo, 5)
    repo.begin_training("alice", model_id, 5, deadline=PAST)
    return model_id


def overdue_generation(repo: AvatarRepository) -> str:
    """A queued generation past its deadline (as if its end event never reached us)."""
    stamp = ids.now_iso()
    generation_id = ids.new_id(ids.GENERATION)
    record = GenerationRecord(
        owner="alice", generation_id=generation_id, model_id="m", created_at=stamp, updated_at=stamp
    )
    repo.create_job(record, deadline=PAST)
    return generation_id


def run(repo: AvatarRepository, storage: Storage, executions: FakeExecutions) -> Any:
    workflows = FakeWorkflows()
    report = sweep(repo, workflows, executions, storage, SWEEP_SETTINGS)
    return report, workflows


def test_a_training_whose_execution_never_existed_is_failed_saying_so(
    repo: AvatarRepository, storage: Storage
) -> None:
    model_id = overdue_training(repo)

    report, workflows = run(repo, storage, FakeExecutions())

    model = repo.get_model("alice", model_id)
    assert report.reconciled == {"failed": 1}
    assert model is not None and model.status is ModelStatus.FAILED
    assert "unknown to Step Functions" in (model.error or "")
    assert workflows.started == []


def test_a_training_whose_execution_still_runs_is_left_alone(
    repo: AvatarRepository, storage: Storage
) -> None:
    model_id = overdue_training(repo)
    arn = execution_arn(SETTINGS.train_state_machine_arn, f"train-{model_id}")

    report, _ = run(repo, storage, FakeExecutions({arn: {"status": "RUNNING"}}))

    model = repo.get_model("alice", model_id)
    assert report.running == 1 and report.reconciled == {}
    assert model is not None and model.status is ModelStatus.TRAINING


def test_a_paid_generation_whose_stop_event_was_lost_is_resumed(
    repo: AvatarRepository, storage: Storage
) -> None:
    generation_id = overdue_generation(repo)
    arn = execution_arn(JOBS, f"generate-{generation_id}")
    repo.set_job_execution(GenerationRecord, "alice", generation_id, arn)
    repo.claim_provider_job(GenerationRecord, "alice", generation_id, "prov-job-1")
    executions = FakeExecutions({arn: {"status": "ABORTED", "input": "{}"}})

    report, workflows = run(repo, storage, executions)

    assert report.reconciled == {"resumed": 1}
    assert [name for _, name, _ in workflows.started] == [f"generate-{generation_id}-r1"]
    job = repo.get_job(GenerationRecord, "alice", generation_id)
    assert job is not None and job.status is JobStatusName.RUNNING


def test_a_failed_models_selfies_go_once_its_retry_window_has_passed(
    repo: AvatarRepository, storage: Storage
) -> None:
    model_id = model_with_accepted(repo, 5)
    training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
    training.record_failed(repo, SETTINGS, TrainingFailed(owner="alice", model_id=model_id))
    s3 = boto3.client("s3")
    for key in (f"selfies/alice/{model_id}/a", f"normalised/alice/{model_id}/a.jpg"):
        s3.put_object(Bucket="uploads", Key=key, Body=b"x")

    early, _ = run(repo, storage, FakeExecutions())
    passed = ids.iso(ids.now() - timedelta(minutes=1))
    repo.update_model("alice", model_id, retry_until=passed)
    boto3.resource("dynamodb").Table("avatars").update_item(
        Key={"PK": "OWNER#alice", "SK": f"MODEL#{model_id}"},
        UpdateExpression="SET active_until = :passed",
        ExpressionAttributeValues={":passed": passed},
    )
    late, _ = run(repo, storage, FakeExecutions())
    again, _ = run(repo, storage, FakeExecutions())

    assert early.examined == 0, "inside the retry window nothing is due"
    assert late.selfies_deleted == 2
    assert s3.list_objects_v2(Bucket="uploads").get("KeyCount") == 0
    model = repo.get_model("alice", model_id)
    assert model is not None and model.selfies_deleted_at is not None
    assert not training.retrainable(model)
    assert again.examined == 0, "a model whose selfies are gone leaves the index"


def test_finished_records_are_not_in_the_index_at_all(
    repo: AvatarRepository, storage: Storage
) -> None:
    model_id = overdue_training(repo)
    repo.finish_training("alice", model_id, ModelStatus.READY, ready_at=ids.now_iso())

    report, _ = run(repo, storage, FakeExecutions())

    assert report.examined == 0


def test_a_queued_job_whose_start_was_never_recorded_is_looked_up_by_name_and_failed(
    repo: AvatarRepository, storage: Storage
) -> None:
    generation_id = overdue_generation(repo)  # the API died before it started the workflow
    executions = FakeExecutions()

    report, _ = run(repo, storage, executions)

    assert executions.asked == [execution_arn(JOBS, f"generate-{generation_id}")]
    assert report.reconciled == {"failed": 1}
    job = repo.get_job(GenerationRecord, "alice", generation_id)
    assert job is not None and job.status is JobStatusName.FAILED
    assert "nothing was charged" in (job.error or "")
