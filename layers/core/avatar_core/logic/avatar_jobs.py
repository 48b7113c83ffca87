"""The avatar-job workflow shared by generations, face-avatar and instant-avatar jobs.

All are the same shape: submit once and keep the provider's job id at once, poll on the
provider's schedule (bounded), copy every result into our bucket before the provider
deletes it, record the outcome. What differs — which provider call, where results go,
which style each result has — is a small :class:`JobSpec` per kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from avatar_core.errors import (
    ACCOUNT_EXHAUSTED,
    PROVIDER_BUSY,
    Conflict,
    NotFound,
    PaidWorkKept,
    PaidWorkPending,
    ProviderRateLimited,
    SubmissionQueued,
    WorkflowUnavailable,
)
from avatar_core.logic.breaker import ProviderBreaker
from avatar_core.logic.owner_share import leave_share
from avatar_core.logic.polling import busy_poll, busy_submit, first_poll, next_poll
from avatar_core.logic.provider_queue import SubmitQueue, had_its_turn, in_turn, standing
from avatar_core.logic.quotas import job_work, never_paid, release
from avatar_core.logic.run_slots import RunSlots, end_frees_slot, job_holder, release_slot
from avatar_core.models.records import (
    AvatarRecord,
    FaceJobRecord,
    GenerationRecord,
    InstantJobRecord,
    JobStatusName,
)
from avatar_core.models.workflow import (
    CopyItem,
    CopyTask,
    JobOutcome,
    JobRef,
    PollState,
    StepFailure,
)
from avatar_core.observability import logger
from avatar_core.providers.base import JobState, JobStatus, PollAdvice, SubmittedJob
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository, JobRecord
from avatar_core.store.storage import (
    Storage,
    face_avatar_key,
    generation_avatar_key,
    instant_avatar_key,
)
from avatar_core.store.workflows import WorkflowStarter, WorkflowStopper

if TYPE_CHECKING:
    # Only the workflow's tasks talk to providers and copy results; the API functions that
    # launch jobs (launch_job) do not import the clients, requests or Pillow for them.
    from avatar_core.providers.picsart import PicsartClient
    from avatar_core.providers.qolaba import QolabaClient
    from avatar_core.store.result_copy import CopiedObject

R = TypeVar("R", GenerationRecord, FaceJobRecord, InstantJobRecord)
_OPEN = (JobStatusName.QUEUED, JobStatusName.RUNNING)

# The job kind each record type travels as (JobRef.kind): the workflow's tasks pick their
# spec by it.
JOB_KINDS: dict[type[JobRecord], str] = {
    GenerationRecord: "generation",
    FaceJobRecord: "face",
    InstantJobRecord: "instant",
}
# Whose account each kind's work runs on (and whose breaker it answers to).
JOB_PROVIDERS: dict[str, str] = {"generation": "picsart", "face": "qolaba", "instant": "picsart"}


def _expect(record: JobRecord, kind: type[R]) -> R:
    """The spec's own record type; anything else is a wiring bug, not bad input."""
    if not isinstance(record, kind):
        raise TypeError(f"expected a {kind.__name__}, got a {type(record).__name__}")
    return record


class JobGone(NotFound):
    """The job (or the model it belongs to) was deleted while its workflow ran."""


class JobCancelled(Conflict):
    """The job was cancelled before anything was sent to the provider: its workflow ends
    (the state machines catch this by name) and nothing is submitted."""


# What the API calls each kind of job in its messages.
JOB_NOUNS: dict[type[JobRecord], str] = {
    GenerationRecord: "generation",
    FaceJobRecord: "face-avatar job",
    InstantJobRecord: "instant-avatar job",
}


class Copier(Protocol):
    def copy(self, url: str, key: str) -> CopiedObject: ...


class JobSpec(Protocol):
    record_type: type[JobRecord]
    max_polls: int
    settings: Settings

    def submit(self, record: JobRecord) -> SubmittedJob: ...

    def status(self, record: JobRecord, provider_job_id: str) -> JobStatus: ...

    def advice(self, polls: int, last: JobStatus | None, waited: int | None) -> PollAdvice: ...

    def avatar_key(self, record: JobRecord, avatar_id: str) -> str: ...

    def styles(self, record: JobRecord) -> list[str | None]: ...


@dataclass
class GenerationSpec:
    """Avatars from a trained Picsart model."""

    repo: AvatarRepository
    provider: PicsartClient
    settings: Settings
    record_type: type[JobRecord] = GenerationRecord

    @property
    def max_polls(self) -> int:
        return self.settings.generation_max_polls

    def _provider_model_id(self, record: JobRecord) -> str:
        generation = _expect(record, GenerationRecord)
        model = self.repo.get_model(generation.owner, generation.model_id)
        if model is None or not model.provider_model_id:
            raise JobGone(f"model {generation.model_id} was deleted during the generation")
        return model.provider_model_id

    def submit(self, record: JobRecord) -> SubmittedJob:
        from avatar_core.providers.picsart import StyleRequest

        generation = _expect(record, GenerationRecord)
        requests = [StyleRequest.model_validate(r) for r in generation.requests]
        return self.provider.submit_generation(self._provider_model_id(record), requests)

    def status(self, record: JobRecord, provider_job_id: str) -> JobStatus:
        return self.provider.generation_status(self._provider_model_id(record), provider_job_id)

    def advice(self, polls: int, last: JobStatus | None, waited: int | None) -> PollAdvice:
        return self.provider.generation_poll_advice(polls, last, waited)

    def avatar_key(self, record: JobRecord, avatar_id: str) -> str:
        generation = _expect(record, GenerationRecord)
        return generation_avatar_key(
            generation.owner, generation.model_id, generation.job_id, avatar_id
        )

    def styles(self, record: JobRecord) -> list[str | None]:
        styles: list[str | None] = []
        for request in _expect(record, GenerationRecord).requests:
            styles += [str(request["style"])] * int(str(request["count"]))
        return styles


def _reference_url(
    repo: AvatarRepository, storage: Storage, settings: Settings, owner: str, image_id: str
) -> str:
    """A presigned GET of the fitted reference image, for a provider to fetch."""
    image = repo.get_face_image(owner, image_id)
    if image is None or not image.fitted_key or image.deleted_at is not None:
        raise JobGone(f"reference image {image_id} is gone")
    url, _ = storage.presign_get(
        storage.uploads_bucket, image.fitted_key, settings.provider_fetch_url_ttl_seconds
    )
    return url


@dataclass
class FaceSpec:
    """A batch of face avatars from one reference image, on Qolaba."""

    repo: AvatarRepository
    storage: Storage
    provider: QolabaClient
    settings: Settings
    record_type: type[JobRecord] = FaceJobRecord

    @property
    def max_polls(self) -> int:
        return self.settings.face_max_polls

    def submit(self, record: JobRecord) -> SubmittedJob:
        from avatar_core.providers.qolaba import FaceAvatarRequest

        job = _expect(record, FaceJobRecord)
        url = _reference_url(self.repo, self.storage, self.settings, job.owner, job.image_id)
        return self.provider.submit_face_avatar(
            FaceAvatarRequest.model_validate({**job.parameters, "image": url, "refID": job.job_id})
        )

    def status(self, record: JobRecord, provider_job_id: str) -> JobStatus:
        return self.provider.face_avatar_status(provider_job_id, record.job_id)

    def advice(self, polls: int, last: JobStatus | None, waited: int | None) -> PollAdvice:
        return self.provider.face_poll_advice(polls, last)

    def avatar_key(self, record: JobRecord, avatar_id: str) -> str:
        return face_avatar_key(record.owner, record.job_id, avatar_id)

    def styles(self, record: JobRecord) -> list[str | None]:
        batch = _expect(record, FaceJobRecord).parameters.get("batch", 1)
        return [None] * int(str(batch))


@dataclass
class InstantSpec:
    """Picsart Instant Avatars from one reference image: no trained model, one request."""

    repo: AvatarRepository
    storage: Storage
    provider: PicsartClient
    settings: Settings
    record_type: type[JobRecord] = InstantJobRecord

    @property
    def max_polls(self) -> int:
        return self.settings.instant_max_polls

    def submit(self, record: JobRecord) -> SubmittedJob:
        job = _expect(record, InstantJobRecord)
        url = _reference_url(self.repo, self.storage, self.settings, job.owner, job.image_id)
        return self.provider.submit_instant(
            image_url=url, subject=job.subject, count=job.count, prompt=job.prompt
        )

    def status(self, record: JobRecord, provider_job_id: str) -> JobStatus:
        return self.provider.instant_status(provider_job_id)

    def advice(self, polls: int, last: JobStatus | None, waited: int | None) -> PollAdvice:
        return self.provider.instant_poll_advice(polls, last)

    def avatar_key(self, record: JobRecord, avatar_id: str) -> str:
        return instant_avatar_key(record.owner, record.job_id, avatar_id)

    def styles(self, record: JobRecord) -> list[str | None]:
        return [None] * _expect(record, InstantJobRecord).count


def launch_job(
    repo: AvatarRepository,
    workflows: WorkflowStarter,
    state_machine_arn: str,
    execution_name: str,
    record: JobRecord,
    deadline: str,
) -> None:
    """Store the queued job, then start its workflow, once, under a name a person can read.

    If the workflow cannot be started the job is removed again (it never ran and cost
    nothing), so no record waits for an execution that does not exist; the caller answers
    503 and the client's retry makes a new job.
    """
    kind = JOB_KINDS[type(record)]
    repo.create_job(record, deadline)
    try:
        arn = workflows.start(
            state_machine_arn,
            execution_name,
            JobRef(
                kind=kind,
                owner=record.owner,
                job_id=record.job_id,
                model_id=record.model_id if isinstance(record, GenerationRecord) else None,
            ).model_dump(exclude_none=True),
        )
    except WorkflowUnavailable:
        repo.delete_unstarted_job(type(record), record.owner, record.job_id)
        raise
    repo.set_job_execution(type(record), record.owner, record.job_id, arn)


def cancel_job(
    repo: AvatarRepository, workflows: WorkflowStopper, record: R, settings: Settings | None = None
) -> R:
    """Cancel a job that has not been sent to the provider, at no cost, and stop its
    workflow. The conditional write closes the race with the submit task: either this
    cancel wins and nothing is ever submitted, or the submit began first and the work is
    paid for (409). Cancelling a cancelled job answers it as it is. ``settings``: the
    stack's, for the run slot a job the provider refused for now (429) may hold."""
    return _expect(_cancel(repo, workflows, record, settings), type(record))


def _cancel(
    repo: AvatarRepository,
    workflows: WorkflowStopper,
    record: JobRecord,
    settings: Settings | None = None,
) -> JobRecord:
    kind = type(record)
    noun = JOB_NOUNS[kind]
    cancelled = repo.cancel_job(kind, record.owner, record.job_id)
    if cancelled is None:
        current = repo.get_job(kind, record.owner, record.job_id)
        if current is None:
            raise NotFound(f"{noun} {record.job_id} not found")
        if current.status is JobStatusName.CANCELLED:
            return current
        if current.status not in _OPEN:
            raise Conflict(f"the {noun} has already {current.status.value}; nothing to cancel")
        raise PaidWorkKept(
            f"the {noun} was already sent to the provider, so its work is paid for: it runs "
            "to its end and its avatars will be kept"
        )
    if cancelled.execution_arn:
        workflows.stop(cancelled.execution_arn, f"{noun} {record.job_id} cancelled by its owner")
    job_cancelled(repo, cancelled, settings)
    return cancelled


def job_cancelled(
    repo: AvatarRepository, record: JobRecord, settings: Settings | None = None
) -> None:
    """Runs once after each successful cancel: the job is cancelled and nothing was sent to
    the provider, so its quota is given back."""
    kind = JOB_KINDS[type(record)]
    logger.info(
        "job cancelled before it was submitted",
        extra={"kind": kind, "job_id": record.job_id, "owner": record.owner},
    )
    release(repo, record.owner, job_work(kind, record.job_id))
    if settings is not None:
        # a submit the provider refused for now (429) keeps its run slot: free again; one
        # still queued holds a place in its owner's share of the queue
        holder = job_holder(record.job_id)
        release_slot(repo, settings, JOB_PROVIDERS[kind], holder)
        leave_share(repo, settings, JOB_PROVIDERS[kind], record.owner, holder)


def delete_job(
    repo: AvatarRepository,
    storage: Storage,
    workflows: WorkflowStopper,
    record: JobRecord,
    results_prefix: str,
    settings: Settings | None = None,
) -> None:
    """Delete a job and its avatars. A job still waiting to be submitted is cancelled
    first (at no cost); one the provider has is refused until it ends (409), so no copy
    can land after its objects went. Objects first, the record last: a failure half-way
    leaves the job listed, and deleting it again finishes the work."""
    noun = JOB_NOUNS[type(record)]
    if record.status in _OPEN:
        if record.provider_job_id or record.submitting_at:
            raise PaidWorkKept(
                f"the {noun} is still running at the provider, which is paid for; delete it "
                "once it has finished"
            )
        _cancel(repo, workflows, record, settings)
    storage.delete_prefix(storage.results_bucket, results_prefix)
    repo.delete_finished_job(type(record), record.owner, record.job_id)


def avatar_id(job_id: str, index: int) -> str:
    """Deterministic, so a retried check or copy names the same avatar."""
    return f"av_{job_id.split('_', 1)[-1]}_{index:02d}"


def _load(repo: AvatarRepository, spec: JobSpec, ref: JobRef) -> JobRecord:
    record = repo.get_job(spec.record_type, ref.owner, ref.job_id)
    if record is None:
        raise JobGone(f"{ref.kind} {ref.job_id} was deleted while it ran")
    return record


def _submittable(repo: AvatarRepository, spec: JobSpec, ref: JobRef) -> JobRecord:
    """The job, once it is marked as being submitted (see :meth:`begin_job_submission`):
    from here on a cancel answers that the work is paid for. A cancel that came first
    ends the workflow here, before anything reaches the provider."""
    record = _load(repo, spec, ref)
    if record.provider_job_id is None and record.status is JobStatusName.QUEUED:
        if repo.begin_job_submission(spec.record_type, ref.owner, ref.job_id):
            return record
        record = _load(repo, spec, ref)
    if record.provider_job_id is not None:
        return record
    if record.status is JobStatusName.CANCELLED:
        raise JobCancelled(f"{ref.kind} {ref.job_id} was cancelled before it was submitted")
    raise Conflict(f"{ref.kind} {ref.job_id} is {record.status.value}, not queued")


def submit_job(
    repo: AvatarRepository,
    spec: JobSpec,
    ref: JobRef,
    poll: PollState | None = None,
    queue: SubmitQueue | None = None,
) -> PollState:
    """``poll`` is the loop's state when the provider refused an earlier submit for now, or
    the job waits its turn in the provider's ``queue``."""
    record = _submittable(repo, spec, ref)
    if record.provider_job_id is None:
        try:
            job = in_turn(
                queue, poll, lambda: spec.submit(record), job_holder(ref.job_id), ref.owner
            )
        except SubmissionQueued as queued:
            # The provider is at its limit and others came first: wait our turn, in view.
            place = standing(queued, spec.settings.limiter_time_factor)
            repo.note_job_queued(spec.record_type, ref.owner, ref.job_id, place)
            return busy_submit(poll, queued, _schedule_seconds(spec))
        except PROVIDER_BUSY as busy:
            # Refused for now (429, 5xx): nothing was bought; wait as advised, submit again.
            if isinstance(busy, ProviderRateLimited):  # a 429 took nothing: cancel is free
                repo.note_job_queued(spec.record_type, ref.owner, ref.job_id, None)
            return had_its_turn(busy_submit(poll, busy, _schedule_seconds(spec)), queue)
        except ACCOUNT_EXHAUSTED as exhausted:
            ProviderBreaker(repo, spec.settings).trip(exhausted.provider, exhausted)
            raise
        ProviderBreaker(repo, spec.settings).accepted(JOB_PROVIDERS[ref.kind])
        logger.info(
            "provider accepted job", extra={"provider_job_id": job.job_id, **ref.model_dump()}
        )
        provider_job_id = repo.claim_provider_job(
            spec.record_type, ref.owner, ref.job_id, job.job_id
        )
    else:
        provider_job_id = record.provider_job_id
    return first_poll(provider_job_id, spec.advice(0, None, None).wait_seconds)


def _schedule_seconds(spec: JobSpec) -> int:
    """The regular interval between polls: what a busy answer's backoff starts from."""
    return spec.advice(1, None, None).wait_seconds


def check_job(
    repo: AvatarRepository,
    spec: JobSpec,
    ref: JobRef,
    poll: PollState,
    slots: RunSlots | None = None,
) -> PollState:
    """``slots``: the cap's run slots, whose lease this poll renews (the job runs)."""
    record = _load(repo, spec, ref)
    if slots is not None:
        slots.renew(job_holder(ref.job_id))
    try:
        status = spec.status(record, poll.provider_job_id)
    except PROVIDER_BUSY as busy:
        # Throttled or down: not a failure of a job the provider is running for us.
        return busy_poll(poll, busy, _schedule_seconds(spec))
    except ACCOUNT_EXHAUSTED as exhausted:
        # The job is paid for: wait for the account, never fail it for that.
        ProviderBreaker(repo, spec.settings).trip(exhausted.provider, exhausted)
        return busy_poll(poll, exhausted, spec.settings.breaker_cool_off_seconds)
    if not status.known_status and repo.note_unknown_status(
        spec.record_type, ref.owner, ref.job_id, status.provider_status or "(no status)"
    ):
        # Once per job and word: the record remembers which word it has already reported.
        logger.warning(
            "provider answered a status word we do not know",
            extra={
                "provider_status": status.provider_status,
                "judged": status.state.value,
                "answer": status.note,
                **ref.model_dump(),
            },
        )
    items: list[CopyItem] = []
    if status.state is JobState.SUCCEEDED:
        styles = spec.styles(record)
        items = [
            CopyItem(
                index=index,
                url=url,
                avatar_id=avatar_id(ref.job_id, index),
                style=styles[index] if index < len(styles) else None,
            )
            for index, url in enumerate(status.result_urls)
        ]
    return next_poll(poll, status, spec.advice, spec.max_polls, items)


def copy_result(
    repo: AvatarRepository, storage: Storage, copier: Copier, spec: JobSpec, task: CopyTask
) -> dict[str, object]:
    record = _load(repo, spec, task)
    key = spec.avatar_key(record, task.item.avatar_id)
    copied = copier.copy(task.item.url, key)
    avatar = AvatarRecord(
        avatar_id=task.item.avatar_id,
        index=task.item.index,
        key=copied.key,
        content_type=copied.content_type,
        width=copied.width,
        height=copied.height,
        size=copied.size,
        style=task.item.style,
    )
    if not repo.put_avatar(spec.record_type, task.owner, task.job_id, avatar):
        storage.delete_result(key)
        raise JobGone(f"{task.kind} {task.job_id} was deleted while its results were copied")
    return {"avatar_id": avatar.avatar_id, "copied": True}


def record_outcome(
    repo: AvatarRepository, spec: JobSpec, outcome: JobOutcome, reference_retention_seconds: int
) -> dict[str, object]:
    """Succeeded when every result was copied; otherwise failed, keeping what was copied.
    Face and instant jobs then release their reference image, after the retention."""
    recorded: dict[str, object] = dict(_record_outcome(repo, spec, outcome))
    recorded["reference"] = spec.record_type is not GenerationRecord
    recorded["retention_seconds"] = reference_retention_seconds
    return recorded


def _record_outcome(repo: AvatarRepository, spec: JobSpec, outcome: JobOutcome) -> dict[str, str]:
    failed = outcome.outcome == "failed"
    # a submit whose answer was lost may run at the provider: its slot is left to its lease
    frees_slot = end_frees_slot(
        failed and outcome.in_submit(), outcome.error.Error if outcome.error else None
    )
    try:
        return _record_end(repo, spec, outcome)
    except PaidWorkPending:
        frees_slot = False  # it runs at the provider: its slot stays for the resume
        raise
    finally:
        provider, holder = JOB_PROVIDERS[outcome.kind], job_holder(outcome.job_id)
        if frees_slot:
            release_slot(repo, spec.settings, provider, holder)
        if failed and outcome.in_submit():  # it may have failed still queued, in its share
            leave_share(repo, spec.settings, provider, outcome.owner, holder)


def _record_end(repo: AvatarRepository, spec: JobSpec, outcome: JobOutcome) -> dict[str, str]:
    if outcome.outcome == "failed":
        reason = outcome.failure_reason()
        if outcome.in_submit():
            record = repo.get_job(spec.record_type, outcome.owner, outcome.job_id)
            if record is not None and record.provider_job_id and record.status in _OPEN:
                raise PaidWorkPending(
                    f"the provider accepted job {record.provider_job_id} but the submit step "
                    f"failed ({reason}); the workflow ends so it is resumed, not failed"
                )
        finished = repo.finish_job(
            spec.record_type, outcome.owner, outcome.job_id, JobStatusName.FAILED, reason
        )
        if finished and outcome.in_submit():
            record = repo.get_job(spec.record_type, outcome.owner, outcome.job_id)
            if never_paid(
                outcome.error.Error if outcome.error else None,
                record.provider_job_id if record else None,
            ):
                release(repo, outcome.owner, job_work(outcome.kind, outcome.job_id))
        return {"status": JobStatusName.FAILED.value, "reason": reason}
    failures = [copy for copy in outcome.copies if not copy.get("copied")]
    if not outcome.copies:
        reason = "the provider reported success but returned no images"
    elif failures:
        first = _copy_error(failures[0])
        reason = (
            f"{len(failures)} of {len(outcome.copies)} avatars could not be copied "
            f"from the provider: {first}"
        )
    else:
        repo.finish_job(spec.record_type, outcome.owner, outcome.job_id, JobStatusName.SUCCEEDED)
        return {"status": JobStatusName.SUCCEEDED.value, "reason": ""}
    repo.finish_job(spec.record_type, outcome.owner, outcome.job_id, JobStatusName.FAILED, reason)
    return {"status": JobStatusName.FAILED.value, "reason": reason}


def _copy_error(failure: dict[str, object]) -> str:
    error = failure.get("error")
    if isinstance(error, dict):
        return StepFailure.model_validate(error).reason()
    return "unknown error"
