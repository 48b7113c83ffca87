"""Subjects are configuration, and an answer we cannot place is reported once per job."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from avatar_core import ids
from avatar_core.errors import InvalidRequest
from avatar_core.logic import avatar_jobs
from avatar_core.logic.models import create_model
from avatar_core.models.api import CreateModelRequest
from avatar_core.models.records import FaceJobRecord
from avatar_core.models.workflow import JobOutcome, JobRef, PollState
from avatar_core.providers.base import JobState, JobStatus, PollAdvice
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository


def test_the_subjects_on_offer_come_from_configuration() -> None:
    settings = Settings.from_env({"MODEL_SUBJECTS": "man, woman", "INSTANT_SUBJECTS": "woman"})

    assert settings.model_subjects == ["man", "woman"]
    assert settings.instant_subjects == ["woman"]
    assert Settings().model_subjects == ["man", "woman", "couple", "dog", "cat"]
    assert Settings().instant_subjects == ["man", "woman", "couple"]


def test_a_subject_the_stack_does_not_offer_is_refused_naming_what_is(
    repo: AvatarRepository,
) -> None:
    settings = Settings(model_subjects=["man", "woman"])

    with pytest.raises(InvalidRequest) as refused:
        create_model(repo, settings, "alice", CreateModelRequest(subject="dog"))

    assert refused.value.field == "subject"
    assert refused.value.message == "subject: 'dog' is not offered; available: man, woman"
    assert create_model(repo, settings, "alice", CreateModelRequest(subject="man")).subject == "man"


@dataclass
class UnknownWordSpec:
    """A face-job spec whose provider keeps answering a word nobody documented."""

    answers: list[JobStatus]
    record_type: type = FaceJobRecord
    max_polls: int = 3
    seen: list[str] = field(default_factory=list)

    def status(self, record: object, provider_job_id: str) -> JobStatus:
        return self.answers.pop(0)

    def advice(self, polls: int, last: JobStatus | None, waited: int | None) -> PollAdvice:
        return PollAdvice(wait_seconds=5)

    def styles(self, record: object) -> list[str | None]:
        return []


def unknown(word: str) -> JobStatus:
    return JobStatus(
        state=JobState.RUNNING,
        provider_status=word,
        known_status=False,
        note=f"the provider answered a status we do not know ({word}): {{...}}",
    )


def test_an_unknown_word_is_logged_once_per_job_and_a_job_given_up_on_says_what_it_was(
    repo: AvatarRepository, caplog: pytest.LogCaptureFixture
) -> None:
    stamp = ids.now_iso()
    job = FaceJobRecord(
        owner="alice",
        job_id=ids.new_id(ids.FACE_JOB),
        image_id="img_x",
        created_at=stamp,
        updated_at=stamp,
    )
    repo.create_job(job)
    ref = JobRef(kind="face", owner="alice", job_id=job.job_id)
    spec = UnknownWordSpec([unknown("WORKING"), unknown("WORKING"), unknown("RENDERING")])
    poll = PollState(provider_job_id="task-1", wait_seconds=5)
    caplog.set_level(logging.WARNING)

    for _ in range(3):
        poll = avatar_jobs.check_job(repo, spec, ref, poll)  # type: ignore[arg-type]

    reported = [r for r in caplog.records if "status word we do not know" in r.getMessage()]
    assert [r.provider_status for r in reported] == ["WORKING", "RENDERING"]  # type: ignore[attr-defined]
    assert poll.exhausted
    outcome = JobOutcome(kind="face", owner="alice", job_id=job.job_id, outcome="failed", poll=poll)
    reason = outcome.failure_reason()
    assert reason.startswith("the provider had not finished after 3 status checks")
    assert "a status we do not know (RENDERING)" in reason
