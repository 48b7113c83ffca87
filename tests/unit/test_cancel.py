"""Cancel and delete: a job or training not yet sent to the provider is cancelled at no
cost; once its submission has begun the provider's work is paid for and kept. Against the
real repository (moto), and the race against a real moto server over HTTP."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from avatar_core import ids
from avatar_core.errors import Conflict, NotFound, PaidWorkKept
from avatar_core.logic import avatar_jobs, face_avatars, generations, training
from avatar_core.logic.avatar_jobs import JobCancelled
from avatar_core.logic.reconcile import Action, reconcile, sweep
from avatar_core.models.records import (
    FaceImageRecord,
    FaceJobRecord,
    GenerationRecord,
    JobStatusName,
    ModelStatus,
    SelfieStatus,
)
from avatar_core.models.workflow import JobOutcome, JobRef, ModelRef
from avatar_core.providers.base import JobStatus, PollAdvice, SubmittedJob
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository, JobRecord
from avatar_core.store.storage import Storage, face_avatar_key, generation_avatar_key
from avatar_core.store.workflows import execution_arn
from tests.unit.test_reconcile_logic import end_of
from tests.unit.test_training_logic import SETTINGS, FakeProvider, model_with_accepted

FACES = "arn:aws:states:us-east-1:123456789012:stateMachine:face"


@dataclass
class FakeWorkflows:
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    def start(self, state_machine_arn: str, name: str, payload: dict[str, object]) -> str:
        self.started.append(name)
        return execution_arn(state_machine_arn, name)

    def stop(self, execution_arn: str, cause: str) -> bool:
        self.stopped.append(execution_arn)
        return True


@dataclass
class CountingSpec:
    """The face-avatar spec's shape with a provider that only counts what it was sent."""

    repo: AvatarRepository
    record_type: type[JobRecord] = FaceJobRecord
    max_polls: int = 3
    settings: Settings = SETTINGS
    submitted: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, record: JobRecord) -> SubmittedJob:
        with self.lock:
            self.submitted.append(record.job_id)
        return SubmittedJob(job_id=f"task-{record.job_id}", provider_status="queued")

    def status(self, record: JobRecord, provider_job_id: str) -> JobStatus:
        raise AssertionError("not polled in these tests")

    def advice(self, polls: int, last: JobStatus | None, waited: int | None) -> PollAdvice:
        return PollAdvice(wait_seconds=20)

    def avatar_key(self, record: JobRecord, avatar_id: str) -> str:
        return face_avatar_key(record.owner, record.job_id, avatar_id)

    def styles(self, record: JobRecord) -> list[str | None]:
        return [None]


def accepted_image(repo: AvatarRepository, owner: str = "alice") -> str:
    stamp = ids.now_iso()
    image_id = ids.new_id(ids.FACE_IMAGE)
    image = FaceImageRecord(
        owner=owner,
        image_id=image_id,
        content_type="image/jpeg",
        upload_key=f"faces/{owner}/{image_id}",
        upload_expires_at="9999-01-01T00:00:00.000Z",
        created_at=stamp,
        updated_at=stamp,
    )
    repo.create_face_image(image)
    assert repo.settle_face_image(
        image, SelfieStatus.ACCEPTED, fitted_key=f"faces-fitted/{owner}/{image_id}"
    )
    return image_id


def queued_face_job(
    repo: AvatarRepository, image_id: str | None = None, owner: str = "alice"
) -> FaceJobRecord:
    stamp = ids.now_iso()
    job_id = ids.new_id(ids.FACE_JOB)
    record = FaceJobRecord(
        owner=owner,
        job_id=job_id,
        image_id=image_id or ids.new_id(ids.FACE_IMAGE),
        created_at=stamp,
        updated_at=stamp,
    )
    repo.create_job(record, deadline="2000-01-01T00:00:00.000Z")
    repo.set_job_execution(FaceJobRecord, owner, job_id, execution_arn(FACES, f"face-{job_id}"))
    job = repo.get_job(FaceJobRecord, owner, job_id)
    assert isinstance(job, FaceJobRecord)
    return job


def ref_of(job: FaceJobRecord) -> JobRef:
    return JobRef(kind="face", owner=job.owner, job_id=job.job_id)


def status_of(repo: AvatarRepository, job: JobRecord) -> JobStatusName:
    current = repo.get_job(type(job), job.owner, job.job_id)
    assert current is not None
    return current.status


# -- jobs -------------------------------------------------------------------------------------


def test_a_queued_job_is_cancelled_its_execution_stopped_and_the_provider_never_called(
    repo: AvatarRepository,
) -> None:
    job = queued_face_job(repo)
    workflows, spec = FakeWorkflows(), CountingSpec(repo)

    cancelled = avatar_jobs.cancel_job(repo, workflows, job)
    with pytest.raises(JobCancelled):
        avatar_jobs.submit_job(repo, spec, ref_of(job))

    assert cancelled.status is JobStatusName.CANCELLED
    assert workflows.stopped == [job.execution_arn], "only its own execution is stopped"
    assert spec.submitted == [], "nothing reaches the provider after a cancel"
    assert status_of(repo, job) is JobStatusName.CANCELLED


def test_cancelling_twice_answers_the_cancelled_job_and_stops_once(repo: AvatarRepository) -> None:
    job = queued_face_job(repo)
    workflows = FakeWorkflows()

    avatar_jobs.cancel_job(repo, workflows, job)
    again = avatar_jobs.cancel_job(repo, workflows, job)

    assert again.status is JobStatusName.CANCELLED
    assert len(workflows.stopped) == 1


def test_once_the_submission_began_cancel_is_refused_saying_the_work_is_paid_and_kept(
    repo: AvatarRepository,
) -> None:
    job = queued_face_job(repo)
    spec = CountingSpec(repo)
    avatar_jobs.submit_job(repo, spec, ref_of(job))

    with pytest.raises(PaidWorkKept, match=r"paid for.*kept"):
        avatar_jobs.cancel_job(repo, FakeWorkflows(), job)

    assert status_of(repo, job) is JobStatusName.RUNNING


def test_a_submit_that_crashed_after_marking_the_job_proceeds_and_cancel_stays_refused(
    repo: AvatarRepository,
) -> None:
    job = queued_face_job(repo)
    spec = CountingSpec(repo)
    assert repo.begin_job_submission(FaceJobRecord, job.owner, job.job_id)  # then it crashed

    with pytest.raises(PaidWorkKept):
        avatar_jobs.cancel_job(repo, FakeWorkflows(), job)
    poll = avatar_jobs.submit_job(repo, spec, ref_of(job))

    assert poll.provider_job_id == f"task-{job.job_id}"
    assert spec.submitted == [job.job_id]


def test_a_finished_job_cannot_be_cancelled(repo: AvatarRepository) -> None:
    job = queued_face_job(repo)
    repo.finish_job(FaceJobRecord, job.owner, job.job_id, JobStatusName.FAILED, "boom")

    with pytest.raises(Conflict, match="already failed"):
        avatar_jobs.cancel_job(repo, FakeWorkflows(), job)


def test_a_stopped_execution_of_a_cancelled_job_is_not_resumed_nor_swept(
    repo: AvatarRepository,
) -> None:
    job = queued_face_job(repo)
    avatar_jobs.cancel_job(repo, FakeWorkflows(), job)
    workflows = FakeWorkflows()
    payload = {"kind": "face", "owner": job.owner, "job_id": job.job_id}

    outcome = reconcile(repo, workflows, SETTINGS, end_of(f"face-{job.job_id}", payload))

    assert outcome.action is Action.UNCHANGED
    assert workflows.started == []
    assert repo.list_overdue("9999", 10) == [], "a cancelled job is never overdue"
    assert status_of(repo, job) is JobStatusName.CANCELLED


def test_cancel_of_another_owners_job_is_not_found(repo: AvatarRepository) -> None:
    job = queued_face_job(repo)
    with pytest.raises(NotFound):
        face_avatars.cancel_face_job(
            repo, Storage("uploads", "results"), FakeWorkflows(), "mallory", job.job_id
        )
    assert status_of(repo, job) is JobStatusName.QUEUED


# -- trainings --------------------------------------------------------------------------------


@pytest.fixture()
def storage(aws: None) -> Storage:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="uploads")
    s3.create_bucket(Bucket="results")
    return Storage("uploads", "results")


def test_a_training_not_yet_submitted_is_cancelled_keeps_its_selfies_and_trains_again(
    repo: AvatarRepository, storage: Storage
) -> None:
    model_id = model_with_accepted(repo, 5)
    workflows = FakeWorkflows()
    started = training.start_training(repo, workflows, SETTINGS, "alice", model_id)
    provider = FakeProvider(repo, "alice", model_id)

    cancelled = training.cancel_training(repo, workflows, SETTINGS, "alice", model_id)
    with pytest.raises(training.TrainingCancelled):
        training.submit_training(
            repo, storage, provider, SETTINGS, ModelRef(owner="alice", model_id=model_id)
        )
    again = training.start_training(repo, workflows, SETTINGS, "alice", model_id)

    assert cancelled.status is ModelStatus.CANCELLED
    assert cancelled.retry_until is not None and cancelled.selfies_deleted_at is None
    assert workflows.stopped == [started.training_execution_arn]
    assert provider.submitted == [], "nothing reaches the provider after a cancel"
    assert again.status is ModelStatus.TRAINING and again.training_attempt == 2


def test_a_training_already_handed_to_the_provider_cannot_be_cancelled(
    repo: AvatarRepository, storage: Storage
) -> None:
    model_id = model_with_accepted(repo, 5)
    training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
    training.submit_training(
        repo,
        storage,
        FakeProvider(repo, "alice", model_id),
        SETTINGS,
        ModelRef(owner="alice", model_id=model_id),
    )

    with pytest.raises(PaidWorkKept, match="paid for"):
        training.cancel_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)

    model = repo.get_model("alice", model_id)
    assert model is not None and model.status is ModelStatus.TRAINING


def test_a_start_that_got_through_unseen_keeps_the_model_once_its_submit_began(
    repo: AvatarRepository,
) -> None:
    model_id = model_with_accepted(repo, 5)
    before = repo.begin_training("alice", model_id, 5)
    assert repo.begin_training_submission("alice", model_id, 1)  # its execution did start

    undone = repo.undo_training_start(before, 1)

    model = repo.get_model("alice", model_id)
    assert not undone
    assert model is not None and model.status is ModelStatus.TRAINING


def test_a_model_that_is_not_training_cannot_be_cancelled(repo: AvatarRepository) -> None:
    model_id = model_with_accepted(repo, 1)
    with pytest.raises(Conflict, match="only a training can be cancelled"):
        training.cancel_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)


def test_a_cancelled_models_selfies_are_deleted_by_the_sweep_after_its_retry_window(
    repo: AvatarRepository, storage: Storage
) -> None:
    model_id = model_with_accepted(repo, 5)
    training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
    no_retry = SETTINGS.model_copy(update={"failed_selfie_retention_hours": 0})
    training.cancel_training(repo, FakeWorkflows(), no_retry, "alice", model_id)
    boto3.client("s3").put_object(
        Bucket="uploads", Key=f"normalised/alice/{model_id}/s.jpg", Body=b"x"
    )

    report = sweep(repo, FakeWorkflows(), _NoExecutions(), storage, no_retry)

    model = repo.get_model("alice", model_id)
    assert report.selfies_deleted == 1
    assert model is not None and model.status is ModelStatus.CANCELLED
    assert model.selfies_deleted_at is not None


class _NoExecutions:
    def describe(self, execution_arn: str) -> dict[str, Any] | None:
        raise AssertionError("a cancelled model has no execution to look up")


# -- deleting ---------------------------------------------------------------------------------


def _keys(bucket: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_deleting_a_finished_generation_removes_its_avatars_and_record_only(
    repo: AvatarRepository, storage: Storage
) -> None:
    stamp = ids.now_iso()
    records = [
        GenerationRecord(
            owner="alice",
            generation_id=ids.new_id(ids.GENERATION),
            model_id="mdl",
            created_at=stamp,
            updated_at=stamp,
        )
        for _ in range(2)
    ]
    s3 = boto3.client("s3")
    for record in records:
        repo.create_job(record)
        repo.finish_job(GenerationRecord, "alice", record.job_id, JobStatusName.SUCCEEDED)
        key = generation_avatar_key("alice", "mdl", record.job_id, "av_1")
        s3.put_object(Bucket="results", Key=key, Body=b"x")
    gone, kept = records

    generations.delete_generation(repo, storage, FakeWorkflows(), "alice", gone.job_id)

    assert repo.get_job(GenerationRecord, "alice", gone.job_id) is None
    assert repo.get_job(GenerationRecord, "alice", kept.job_id) is not None
    assert _keys("results") == [generation_avatar_key("alice", "mdl", kept.job_id, "av_1")]
    with pytest.raises(NotFound):
        generations.delete_generation(repo, storage, FakeWorkflows(), "alice", gone.job_id)


def test_deleting_a_job_the_provider_has_is_refused(repo: AvatarRepository) -> None:
    job = queued_face_job(repo)
    avatar_jobs.submit_job(repo, CountingSpec(repo), ref_of(job))
    storage = Storage("uploads", "results")

    with pytest.raises(PaidWorkKept, match="once it has finished"):
        face_avatars.delete_face_job(repo, storage, FakeWorkflows(), "alice", job.job_id)

    assert status_of(repo, job) is JobStatusName.RUNNING


def test_deleting_a_queued_face_job_cancels_it_then_deletes_it_and_a_reference_no_one_needs(
    repo: AvatarRepository, storage: Storage
) -> None:
    image_id = accepted_image(repo)
    s3 = boto3.client("s3")
    s3.put_object(Bucket="uploads", Key=f"faces-fitted/alice/{image_id}", Body=b"x")
    job = queued_face_job(repo, image_id)
    workflows = FakeWorkflows()

    face_avatars.delete_face_job(repo, storage, workflows, "alice", job.job_id)

    assert workflows.stopped == [job.execution_arn]
    assert repo.get_job(FaceJobRecord, "alice", job.job_id) is None
    assert repo.get_face_image("alice", image_id) is None
    assert _keys("uploads") == []


def test_a_reference_another_open_job_needs_is_kept_and_cannot_be_deleted_alone(
    repo: AvatarRepository, storage: Storage
) -> None:
    image_id = accepted_image(repo)
    s3 = boto3.client("s3")
    s3.put_object(Bucket="uploads", Key=f"faces-fitted/alice/{image_id}", Body=b"x")
    first, second = queued_face_job(repo, image_id), queued_face_job(repo, image_id)

    face_avatars.delete_face_job(repo, storage, FakeWorkflows(), "alice", first.job_id)
    with pytest.raises(Conflict, match=second.job_id):
        face_avatars.delete_face_image(repo, storage, "alice", image_id)

    assert repo.get_face_image("alice", image_id) is not None
    assert _keys("uploads") == [f"faces-fitted/alice/{image_id}"]
    avatar_jobs.cancel_job(repo, FakeWorkflows(), second)
    face_avatars.delete_face_image(repo, storage, "alice", image_id)
    assert repo.get_face_image("alice", image_id) is None
    assert _keys("uploads") == []


# -- reference retention ----------------------------------------------------------------------


def test_a_finished_jobs_workflow_learns_to_release_its_reference_a_generations_not(
    repo: AvatarRepository,
) -> None:
    job = queued_face_job(repo)
    outcome = JobOutcome(
        outcome="failed", kind="face", owner="alice", job_id=job.job_id, error=None
    )

    recorded = avatar_jobs.record_outcome(repo, CountingSpec(repo), outcome, 30)
    generation = avatar_jobs.record_outcome(
        repo, CountingSpec(repo, record_type=GenerationRecord), outcome, 30
    )

    assert recorded["reference"] is True and recorded["retention_seconds"] == 30
    assert generation["reference"] is False


def test_after_its_job_the_reference_is_deleted_and_its_record_says_when(
    repo: AvatarRepository, storage: Storage
) -> None:
    image_id = accepted_image(repo)
    boto3.client("s3").put_object(Bucket="uploads", Key=f"faces-fitted/alice/{image_id}", Body=b"x")
    job = queued_face_job(repo, image_id)
    repo.finish_job(FaceJobRecord, "alice", job.job_id, JobStatusName.SUCCEEDED)

    deleted = face_avatars.release_finished_job_reference(
        repo, storage, "face", "alice", job.job_id
    )

    image = repo.get_face_image("alice", image_id)
    assert deleted and _keys("uploads") == []
    assert image is not None and image.deleted_at is not None
    with pytest.raises(Conflict, match="upload it again"):
        face_avatars.accepted_reference(repo, "alice", image_id)


def test_a_reference_shared_with_an_open_job_stays_until_that_job_ends(
    repo: AvatarRepository, storage: Storage
) -> None:
    image_id = accepted_image(repo)
    boto3.client("s3").put_object(Bucket="uploads", Key=f"faces-fitted/alice/{image_id}", Body=b"x")
    first, second = queued_face_job(repo, image_id), queued_face_job(repo, image_id)
    repo.finish_job(FaceJobRecord, "alice", first.job_id, JobStatusName.SUCCEEDED)

    kept = face_avatars.release_finished_job_reference(repo, storage, "face", "alice", first.job_id)
    repo.finish_job(FaceJobRecord, "alice", second.job_id, JobStatusName.FAILED, "boom")
    released = face_avatars.release_finished_job_reference(
        repo, storage, "face", "alice", second.job_id
    )

    assert not kept and released
    assert _keys("uploads") == []


def test_cancelling_a_face_job_releases_its_reference_at_once(
    repo: AvatarRepository, storage: Storage
) -> None:
    image_id = accepted_image(repo)
    boto3.client("s3").put_object(Bucket="uploads", Key=f"faces-fitted/alice/{image_id}", Body=b"x")
    job = queued_face_job(repo, image_id)

    face_avatars.cancel_face_job(repo, storage, FakeWorkflows(), "alice", job.job_id)

    image = repo.get_face_image("alice", image_id)
    assert image is not None and image.deleted_at is not None
    assert _keys("uploads") == []


# -- the race, over HTTP against a real moto server -------------------------------------------


def _together(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls on threads released at once; each answer is its result or its error."""
    gate = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        gate.wait(timeout=30)
        try:
            return call()
        except Exception as error:  # the loser's error is an outcome here
            return error

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_of_a_cancel_and_a_submit_racing_exactly_one_wins(server_repo: AvatarRepository) -> None:
    repo = server_repo
    spec = CountingSpec(repo)
    rng = random.Random(13)
    wins = {"cancel": 0, "submit": 0}
    for _ in range(30):
        job = queued_face_job(repo)
        submitted_before = len(spec.submitted)
        # the cancel comes a few milliseconds late or not at all, so both sides get to win
        delay = rng.uniform(0, 0.015)

        def cancel(job: FaceJobRecord = job, delay: float = delay) -> FaceJobRecord:
            time.sleep(delay)
            return avatar_jobs.cancel_job(repo, FakeWorkflows(), job)

        cancelled, submitted = _together(
            cancel, lambda job=job: avatar_jobs.submit_job(repo, spec, ref_of(job))
        )

        sent = len(spec.submitted) - submitted_before
        final = status_of(repo, job)
        if isinstance(cancelled, FaceJobRecord):
            wins["cancel"] += 1
            assert isinstance(submitted, JobCancelled), submitted
            assert sent == 0 and final is JobStatusName.CANCELLED
        else:
            wins["submit"] += 1
            assert isinstance(cancelled, PaidWorkKept), cancelled
            assert sent == 1 and final is JobStatusName.RUNNING
    assert sum(wins.values()) == 30
