"""Instant avatars: Picsart's current flow, one reference image in, ``count`` avatars out.

The reference is uploaded and checked exactly like a face-avatar reference (the same upload
route, ingest and record); the job runs on the shared avatar-job workflow.
"""

from __future__ import annotations

from avatar_core import ids
from avatar_core.errors import InvalidRequest, NotFound
from avatar_core.logic.avatar_jobs import JOB_PROVIDERS, cancel_job, delete_job, launch_job
from avatar_core.logic.breaker import ProviderBreaker
from avatar_core.logic.face_avatars import accepted_reference, release_reference
from avatar_core.logic.generations import avatars_out
from avatar_core.logic.models import require_subject
from avatar_core.logic.quotas import PaidWork, Quotas
from avatar_core.models.api import CreateInstantAvatarRequest, InstantJobOut, QueueOut
from avatar_core.models.records import InstantJobRecord
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage, instant_job_prefix
from avatar_core.store.workflows import WorkflowStarter, WorkflowStopper


def instant_execution_name(job_id: str) -> str:
    return f"instant-{job_id}"


def create_instant_job(
    repo: AvatarRepository,
    workflows: WorkflowStarter,
    settings: Settings,
    owner: str,
    request: CreateInstantAvatarRequest,
) -> InstantJobRecord:
    require_subject(request.subject, settings.instant_subjects)
    if request.count > settings.max_instant_avatars:
        raise InvalidRequest(
            f"count: {request.count} avatars asked for; at most "
            f"{settings.max_instant_avatars} per instant-avatar job",
            field="count",
        )
    image = accepted_reference(repo, owner, request.image_id)
    stamp = ids.now_iso()
    record = InstantJobRecord(
        owner=owner,
        job_id=ids.new_id(ids.INSTANT_JOB),
        image_id=image.image_id,
        subject=request.subject,
        count=request.count,
        prompt=request.prompt,
        created_at=stamp,
        updated_at=stamp,
    )
    ProviderBreaker(repo, settings).admit(JOB_PROVIDERS["instant"])
    with Quotas(repo, settings).reserved(owner, PaidWork.avatars(record.job_id, record.count)):
        launch_job(
            repo,
            workflows,
            settings.instant_state_machine_arn,
            instant_execution_name(record.job_id),
            record,
            settings.deadline(settings.job_deadline_seconds),
        )
    return record


def get_instant_job(repo: AvatarRepository, owner: str, job_id: str) -> InstantJobRecord:
    record = (
        repo.get_job(InstantJobRecord, owner, job_id)
        if ids.is_id(ids.INSTANT_JOB, job_id)
        else None
    )
    if not isinstance(record, InstantJobRecord):
        raise NotFound(f"instant-avatar job {job_id} not found")
    return record


def cancel_instant_job(
    repo: AvatarRepository,
    storage: Storage,
    workflows: WorkflowStopper,
    owner: str,
    job_id: str,
    settings: Settings | None = None,
) -> InstantJobRecord:
    """As a face-avatar job: cancelled, and its reference released at once."""
    record = cancel_job(repo, workflows, get_instant_job(repo, owner, job_id), settings)
    release_reference(repo, storage, owner, record.image_id, keep_record=True)
    return record


def delete_instant_job(
    repo: AvatarRepository,
    storage: Storage,
    workflows: WorkflowStopper,
    owner: str,
    job_id: str,
    settings: Settings | None = None,
) -> None:
    """As a face-avatar job: the job, its avatars, then its reference unless still needed."""
    record = get_instant_job(repo, owner, job_id)
    delete_job(repo, storage, workflows, record, instant_job_prefix(owner, job_id), settings)
    release_reference(repo, storage, owner, record.image_id, keep_record=False)


def instant_job_out(
    record: InstantJobRecord, storage: Storage, settings: Settings
) -> InstantJobOut:
    return InstantJobOut(
        job_id=record.job_id,
        image_id=record.image_id,
        subject=record.subject,
        count=record.count,
        prompt=record.prompt,
        status=record.status,
        avatars=avatars_out(record, storage, settings),
        error=record.error,
        queue=QueueOut.of(record.queue_standing()),
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
