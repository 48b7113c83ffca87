"""A workflow that cannot be started never strands its record, and a failed model can be
trained again while its selfies are kept.

Before this, a throttled StartExecution left the model ``training`` with no execution behind
it (every retry answered 409) and a generation ``queued`` forever; a failed model could only
be replaced by a new one, with new selfies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from avatar_core import ids
from avatar_core.api import create_resolver
from avatar_core.errors import Conflict, WorkflowUnavailable
from avatar_core.logic import training
from avatar_core.logic.avatar_jobs import launch_job
from avatar_core.models.records import GenerationRecord, ModelStatus
from avatar_core.models.workflow import ModelRef, TrainingFailed
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage
from avatar_core.store.workflows import Workflows
from tests.unit.test_api_errors import event
from tests.unit.test_training_logic import (
    SETTINGS,
    FakeProvider,
    FakeWorkflows,
    model_with_accepted,
    storage,
)

__all__ = ["storage"]  # the fixture, shared with the training logic tests
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:train"


@dataclass
class BusyWorkflows(FakeWorkflows):
    """Step Functions refusing the first ``busy`` starts, as after botocore's retries."""

    busy: int = 1
    refused: list[str] = field(default_factory=list)

    def start(self, state_machine_arn: str, name: str, payload: dict[str, object]) -> str:
        if self.busy > 0:
            self.busy -= 1
            self.refused.append(name)
            raise WorkflowUnavailable("throttled")
        return super().start(state_machine_arn, name, payload)


def _stubbed(code: str, status: int) -> tuple[Workflows, Stubber]:
    import boto3

    client = boto3.client("stepfunctions", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_client_error("start_execution", service_error_code=code, http_status_code=status)
    stubber.activate()
    return Workflows(client), stubber


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("ServiceUnavailable", 503), ("InternalFailure", 500)],
)
def test_a_start_refused_by_step_functions_is_workflow_unavailable(code: str, status: int) -> None:
    workflows, _ = _stubbed(code, status)
    with pytest.raises(WorkflowUnavailable, match="nothing was started"):
        workflows.start(MACHINE, "train-x", {})


def test_a_start_of_an_existing_name_answers_that_execution() -> None:
    workflows, _ = _stubbed("ExecutionAlreadyExists", 400)
    assert workflows.start(MACHINE, "train-x", {}).endswith(":execution:train:train-x")


def test_a_start_refused_for_our_own_mistake_is_not_dressed_up_as_a_503() -> None:
    workflows, _ = _stubbed("InvalidExecutionInput", 400)
    with pytest.raises(ClientError):
        workflows.start(MACHINE, "train-x", {})


def test_the_api_answers_503_with_retry_after_when_a_workflow_cannot_start() -> None:
    app = create_resolver()

    @app.post("/v1/start")
    def start() -> None:
        raise WorkflowUnavailable("the workflow service is busy", retry_after_seconds=17)

    answer = app.resolve(event("POST", "/v1/start"), None)

    assert answer["statusCode"] == 503
    assert answer["headers"]["Retry-After"] == "17"
    assert "busy" in answer["body"]


def test_a_training_whose_start_fails_is_back_to_collecting_and_the_retry_starts_it(
    repo: AvatarRepository,
) -> None:
    model_id = model_with_accepted(repo, 5)
    workflows = BusyWorkflows(busy=1)

    with pytest.raises(WorkflowUnavailable):
        training.start_training(repo, workflows, SETTINGS, "alice", model_id)
    after_refusal = repo.get_model("alice", model_id)
    retried = training.start_training(repo, workflows, SETTINGS, "alice", model_id)

    assert after_refusal is not None and after_refusal.status is ModelStatus.COLLECTING
    assert retried.status is ModelStatus.TRAINING
    # the refused attempt's name is never reused: had it started unseen, it would be stale
    assert workflows.refused == [f"train-{model_id}"]
    assert [name for _, name, _ in workflows.started] == [f"train-{model_id}-t2"]
    assert workflows.started[0][2]["attempt"] == 2


def test_a_generation_whose_start_fails_leaves_no_queued_job(repo: AvatarRepository) -> None:
    stamp = ids.now_iso()
    record = GenerationRecord(
        owner="alice",
        generation_id=ids.new_id(ids.GENERATION),
        model_id="m",
        created_at=stamp,
        updated_at=stamp,
    )
    with pytest.raises(WorkflowUnavailable):
        launch_job(repo, BusyWorkflows(busy=1), MACHINE, "gen-x", record, "9999")
    assert repo.get_job(GenerationRecord, "alice", record.generation_id) is None


def _failed_model(repo: AvatarRepository) -> str:
    model_id = model_with_accepted(repo, 5)
    training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
    failure = TrainingFailed(owner="alice", model_id=model_id, attempt=1)
    training.record_failed(repo, SETTINGS, failure)
    return model_id


def test_a_failed_model_says_until_when_it_can_be_trained_again(repo: AvatarRepository) -> None:
    model = repo.get_model("alice", _failed_model(repo))

    assert model is not None and model.status is ModelStatus.FAILED
    assert model.retry_until is not None
    expected = ids.now() + timedelta(hours=SETTINGS.failed_selfie_retention_hours)
    deadline = datetime.fromisoformat(model.retry_until.replace("Z", "+00:00"))
    assert abs((deadline - expected).total_seconds()) < 60


def test_a_failed_model_whose_selfies_are_kept_trains_again_under_a_new_name(
    repo: AvatarRepository, storage: Storage
) -> None:
    model_id = _failed_model(repo)
    workflows = FakeWorkflows()

    model = training.start_training(repo, workflows, SETTINGS, "alice", model_id)
    provider = FakeProvider(repo, "alice", model_id)
    training.submit_training(
        repo, storage, provider, SETTINGS, ModelRef(owner="alice", model_id=model_id, attempt=2)
    )

    assert model.status is ModelStatus.TRAINING and model.error is None
    assert model.retry_until is None and model.training_attempt == 2
    assert [name for _, name, _ in workflows.started] == [f"train-{model_id}-t2"]
    assert len(provider.submitted) == 1


def test_a_workflow_of_an_earlier_attempt_submits_nothing(
    repo: AvatarRepository, storage: Storage
) -> None:
    model_id = _failed_model(repo)
    training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
    provider = FakeProvider(repo, "alice", model_id)
    stale = ModelRef(owner="alice", model_id=model_id, attempt=1)

    with pytest.raises(training.StaleTraining):
        training.submit_training(repo, storage, provider, SETTINGS, stale)
    training.record_failed(repo, SETTINGS, TrainingFailed(**stale.model_dump()))

    assert provider.submitted == []
    model = repo.get_model("alice", model_id)
    assert model is not None and model.status is ModelStatus.TRAINING, (
        "a stale workflow's failure must not fail the attempt that runs now"
    )


def test_a_failed_model_whose_selfies_are_gone_cannot_be_retrained(
    repo: AvatarRepository,
) -> None:
    model_id = _failed_model(repo)
    repo.update_model("alice", model_id, selfies_deleted_at=ids.now_iso())

    with pytest.raises(Conflict, match="no longer kept"):
        training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)


def test_a_failed_model_past_its_retry_deadline_cannot_be_retrained(
    repo: AvatarRepository,
) -> None:
    model_id = _failed_model(repo)
    repo.update_model("alice", model_id, retry_until=ids.iso(ids.now() - timedelta(minutes=1)))

    with pytest.raises(Conflict):
        training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
