"""Training logic against the real repository (moto) and a fake provider."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from avatar_core import ids
from avatar_core.errors import Conflict
from avatar_core.logic import polling, training
from avatar_core.logic.models import create_model
from avatar_core.models.api import CreateModelRequest
from avatar_core.models.records import ModelStatus, SelfieRecord, SelfieStatus
from avatar_core.models.workflow import ModelRef, PollState
from avatar_core.providers.base import JobState, JobStatus, PollAdvice, SubmittedJob
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage
from avatar_core.store.workflows import execution_arn

SETTINGS = Settings(
    table_name="avatars",
    uploads_bucket="uploads",
    results_bucket="results",
    train_state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:train",
    training_max_polls=3,
)


@dataclass
class FakeProvider:
    repo: AvatarRepository
    owner: str = ""
    model_id: str = ""
    statuses: list[JobStatus] = field(default_factory=list)
    submitted: list[dict[str, Any]] = field(default_factory=list)
    stored_when_submitted: list[str | None] = field(default_factory=list)

    def submit_training(self, *, image_urls: list[str], subject: str) -> SubmittedJob:
        self.submitted.append({"urls": image_urls, "subject": subject})
        model = self.repo.get_model(self.owner, self.model_id)
        self.stored_when_submitted.append(model.provider_model_id if model else None)
        return SubmittedJob(job_id="prov-model-1", provider_status="ACCEPTED")

    def training_status(self, provider_model_id: str) -> JobStatus:
        return self.statuses.pop(0)

    def training_poll_advice(
        self, polls_so_far: int, last: JobStatus | None = None, waited_seconds: int | None = None
    ) -> PollAdvice:
        return PollAdvice(wait_seconds=300 if polls_so_far == 0 else 120)


@dataclass
class FakeWorkflows:
    started: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)

    def start(self, state_machine_arn: str, name: str, payload: dict[str, object]) -> str:
        self.started.append((state_machine_arn, name, payload))
        return execution_arn(state_machine_arn, name)


def model_with_accepted(repo: AvatarRepository, accepted: int, owner: str = "alice") -> str:
    model = create_model(repo, Settings(), owner, CreateModelRequest(subject="woman"))
    stamp = ids.now_iso()
    selfies = [
        SelfieRecord(
            owner=owner,
            model_id=model.model_id,
            selfie_id=ids.new_id(ids.SELFIE),
            content_type="image/jpeg",
            upload_key="k",
            upload_expires_at="9999-01-01T00:00:00.000Z",
            created_at=stamp,
            updated_at=stamp,
        )
        for _ in range(accepted)
    ]
    if selfies:
        repo.reserve_selfies(model, selfies, 30)
    for selfie in selfies:
        key = f"normalised/{owner}/{model.model_id}/{selfie.selfie_id}.jpg"
        assert repo.settle_selfie(selfie, SelfieStatus.ACCEPTED, normalised_key=key)
    return model.model_id


@pytest.fixture()
def storage(aws: None) -> Storage:
    boto3.client("s3").create_bucket(Bucket="uploads")
    return Storage("uploads", "results")


def test_given_five_selfies_when_started_then_one_named_execution_and_training_status(
    repo: AvatarRepository,
) -> None:
    model_id = model_with_accepted(repo, 5)
    workflows = FakeWorkflows()

    model = training.start_training(repo, workflows, SETTINGS, "alice", model_id)

    assert model.status is ModelStatus.TRAINING
    assert [name for _, name, _ in workflows.started] == [f"train-{model_id}"]
    assert model.training_execution_arn.endswith(f"train-{model_id}")


@pytest.mark.parametrize(
    ("accepted", "message"),
    [(0, "upload 5 more"), (4, "upload 1 more")],
)
def test_given_too_few_selfies_when_started_then_409_says_how_many_more(
    repo: AvatarRepository, accepted: int, message: str
) -> None:
    model_id = model_with_accepted(repo, accepted)
    with pytest.raises(Conflict, match=message):
        training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)


def test_given_a_training_model_when_started_again_then_409_and_no_second_execution(
    repo: AvatarRepository,
) -> None:
    model_id = model_with_accepted(repo, 5)
    workflows = FakeWorkflows()
    training.start_training(repo, workflows, SETTINGS, "alice", model_id)
    with pytest.raises(Conflict, match="already training"):
        training.start_training(repo, workflows, SETTINGS, "alice", model_id)
    assert len(workflows.started) == 1


def test_when_submitted_the_provider_id_is_stored_before_returning_and_never_resubmitted(
    repo: AvatarRepository, storage: Storage
) -> None:
    model_id = model_with_accepted(repo, 5)
    training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
    provider = FakeProvider(repo, "alice", model_id)
    ref = ModelRef(owner="alice", model_id=model_id)

    first = training.submit_training(repo, storage, provider, SETTINGS, ref)
    stored = repo.get_model("alice", model_id)
    retried = training.submit_training(repo, storage, provider, SETTINGS, ref)

    assert stored is not None and stored.provider_model_id == "prov-model-1"
    assert first.provider_job_id == retried.provider_job_id == "prov-model-1"
    assert len(provider.submitted) == 1, "a retried submit must not train twice"
    assert provider.stored_when_submitted == [None]
    assert 150 <= first.wait_seconds <= 450, "first check after 5 minutes, give or take jitter"
    urls = provider.submitted[0]["urls"]
    assert len(urls) == 5 and all("normalised/alice/" in url for url in urls)


class Latest(random.Random):
    """Jitter that always draws the top of its range (the schedule's own wait)."""

    def uniform(self, a: float, b: float) -> float:
        return max(a, b)


def test_polls_are_bounded_and_the_wait_follows_the_provider(
    repo: AvatarRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(polling, "RNG", Latest())  # the schedule's own waits, to follow sums
    model_id = model_with_accepted(repo, 5)
    provider = FakeProvider(repo)
    provider.statuses = [
        JobStatus(state=JobState.RUNNING, provider_status="IN_PROGRESS", progress=p)
        for p in (10, 20, 30)
    ]
    ref = ModelRef(owner="alice", model_id=model_id)
    poll = PollState(provider_job_id="prov-model-1", wait_seconds=300)

    seen = []
    for _ in range(3):
        poll = training.check_training(repo, provider, SETTINGS, ref, poll)
        seen.append((poll.polls, poll.waited_seconds, poll.exhausted))

    assert seen == [(1, 300, False), (2, 420, False), (3, 540, True)]
    model = repo.get_model("alice", model_id)
    assert model is not None and model.training_progress == 30
