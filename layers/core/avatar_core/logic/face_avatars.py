"""Face avatars: one reference face in, a consistent batch of avatars out (Qolaba).

The prompt rule is the seed's: with no prompt, the default prompt is used with
``{gender_word}`` filled from ``gender``; a custom prompt replaces it entirely and
``gender`` is not injected into it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from avatar_core import ids
from avatar_core.errors import Conflict, NotFound
from avatar_core.logic.avatar_jobs import JOB_PROVIDERS, cancel_job, delete_job, launch_job
from avatar_core.logic.breaker import ProviderBreaker
from avatar_core.logic.generations import avatars_out
from avatar_core.logic.quotas import PaidWork, Quotas
from avatar_core.models.api import (
    CreateFaceAvatarRequest,
    FaceJobOut,
    FaceUploadOut,
    FaceUploadRequest,
    QueueOut,
)
from avatar_core.models.records import (
    FaceImageRecord,
    FaceJobRecord,
    InstantJobRecord,
    SelfieStatus,
)
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage, face_job_prefix, face_upload_key
from avatar_core.store.workflows import WorkflowStarter, WorkflowStopper

DEFAULT_PROMPT = (
    "SFW Content, black plain background, joyous dating profile, VECTOR CARTOON ILLUSTRATION, "
    "half-body shot portrait enjoyable pleasing pleasurable nice {gender_word}, looking at "
    "camera, Relaxed, Charming, Cordial, Gracious, 5 o clock shadow, 3d bitmoji avatar render, "
    "pixar, high def textures 8k, highly detailed, 3d render, award winning, no background "
    "elements"
)
# What each accepted ``gender`` becomes in the default prompt; no gender reads "person".
GENDER_WORDS = {"male": "man", "female": "woman", "non_binary": "person"}
NO_GENDER_WORD = "person"


def effective_prompt(prompt: str | None, gender: str | None) -> str:
    if prompt is not None:
        return prompt
    return DEFAULT_PROMPT.format(gender_word=GENDER_WORDS.get(gender or "", NO_GENDER_WORD))


def face_execution_name(job_id: str) -> str:
    return f"face-{job_id}"


def request_face_upload(
    repo: AvatarRepository,
    storage: Storage,
    settings: Settings,
    owner: str,
    request: FaceUploadRequest,
) -> FaceUploadOut:
    stamp = ids.now()
    expires_at = ids.iso(stamp + timedelta(seconds=settings.upload_url_ttl_seconds))
    image_id = ids.new_id(ids.FACE_IMAGE)
    record = FaceImageRecord(
        owner=owner,
        image_id=image_id,
        content_type=request.content_type,
        upload_key=face_upload_key(owner, image_id),
        upload_expires_at=expires_at,
        created_at=ids.iso(stamp),
        updated_at=ids.iso(stamp),
    )
    repo.create_face_image(record)
    post = storage.presign_upload(
        record.upload_key,
        request.content_type,
        settings.upload_max_bytes,
        settings.upload_url_ttl_seconds,
    )
    return FaceUploadOut(image_id=image_id, url=post.url, fields=post.fields, expires_at=expires_at)


def get_face_image(repo: AvatarRepository, owner: str, image_id: str) -> FaceImageRecord:
    record = repo.get_face_image(owner, image_id) if ids.is_id(ids.FACE_IMAGE, image_id) else None
    if record is None:
        raise NotFound(f"reference image {image_id} not found")
    return record


def accepted_reference(repo: AvatarRepository, owner: str, image_id: str) -> FaceImageRecord:
    """The owner's reference image, once ingest accepted it (face and instant avatars)."""
    image = get_face_image(repo, owner, image_id)
    if image.status is SelfieStatus.PENDING:
        raise Conflict("the reference image is still being checked; retry when it is accepted")
    if image.status is SelfieStatus.REJECTED:
        raise Conflict(f"the reference image was rejected ({image.reason}); upload another one")
    if image.deleted_at is not None:
        raise Conflict(
            f"the reference image was deleted at {image.deleted_at}, once the jobs made from "
            "it had finished; upload it again"
        )
    return image


def _delete_reference_objects(storage: Storage, image: FaceImageRecord) -> None:
    storage.delete_upload(image.upload_key)
    if image.fitted_key:
        storage.delete_upload(image.fitted_key)


def delete_face_image(repo: AvatarRepository, storage: Storage, owner: str, image_id: str) -> None:
    """Delete a reference image, objects first and its record last (a failure half-way
    leaves it listed, to be deleted again); refused while an open job still needs it."""
    image = get_face_image(repo, owner, image_id)
    users = repo.open_jobs_using_image(owner, image_id)
    if users:
        raise Conflict(
            f"the reference image is still needed by {len(users)} open job(s) "
            f"({', '.join(users)}); cancel them or wait until they finish, then delete it"
        )
    _delete_reference_objects(storage, image)
    repo.delete_face_image(owner, image_id)


def release_reference(
    repo: AvatarRepository, storage: Storage, owner: str, image_id: str, keep_record: bool
) -> bool:
    """A job made from this reference ended or was deleted: its image goes, unless another
    open job of the owner still needs it (that job releases it when it ends). True when the
    image was deleted.

    With ``keep_record`` the record stays, marked ``deleted_at`` first so that no new job
    takes the reference while its objects go (a retry after a failure half-way deletes
    them again); without, the objects go first and the record last, as every delete."""
    image = repo.get_face_image(owner, image_id)
    if image is None or repo.open_jobs_using_image(owner, image_id):
        return False
    if keep_record:
        repo.mark_face_image_deleted(owner, image_id)
        _delete_reference_objects(storage, image)
    else:
        _delete_reference_objects(storage, image)
        repo.delete_face_image(owner, image_id)
    return True


# The job kinds made from a reference image, as their workflows name them (JobRef.kind).
REFERENCE_JOB_KINDS: dict[str, type[FaceJobRecord] | type[InstantJobRecord]] = {
    "face": FaceJobRecord,
    "instant": InstantJobRecord,
}


def release_finished_job_reference(
    repo: AvatarRepository, storage: Storage, kind: str, owner: str, job_id: str
) -> bool:
    """The workflow's last step for a face/instant job, after ``ReferenceRetentionSeconds``:
    the reference goes unless another open job still needs it. A job deleted meanwhile took
    its reference along already."""
    record = repo.get_job(REFERENCE_JOB_KINDS[kind], owner, job_id)
    if not isinstance(record, FaceJobRecord | InstantJobRecord):
        return False
    return release_reference(repo, storage, owner, record.image_id, keep_record=True)


def resolved_parameters(request: CreateFaceAvatarRequest, app_id: str) -> dict[str, Any]:
    """The exact body fields sent upstream (the image URL is added at submit time)."""
    parameters = request.model_dump(exclude={"image_id"})
    parameters["prompt"] = effective_prompt(request.prompt, request.gender)
    if request.gender is None:
        parameters["gender"] = ""
    parameters["app_id"] = app_id or None
    return parameters


def create_face_job(
    repo: AvatarRepository,
    workflows: WorkflowStarter,
    settings: Settings,
    owner: str,
    request: CreateFaceAvatarRequest,
) -> FaceJobRecord:
    image = accepted_reference(repo, owner, request.image_id)
    stamp = ids.now_iso()
    record = FaceJobRecord(
        owner=owner,
        job_id=ids.new_id(ids.FACE_JOB),
        image_id=image.image_id,
        parameters=resolved_parameters(request, settings.qolaba_app_id),
        created_at=stamp,
        updated_at=stamp,
    )
    images = int(str(record.parameters.get("batch", 1)))
    ProviderBreaker(repo, settings).admit(JOB_PROVIDERS["face"])
    with Quotas(repo, settings).reserved(owner, PaidWork.face_batch(record.job_id, images)):
        launch_job(
            repo,
            workflows,
            settings.face_state_machine_arn,
            face_execution_name(record.job_id),
            record,
            settings.deadline(settings.job_deadline_seconds),
        )
    return record


def get_face_job(repo: AvatarRepository, owner: str, job_id: str) -> FaceJobRecord:
    record = repo.get_job(FaceJobRecord, owner, job_id) if ids.is_id(ids.FACE_JOB, job_id) else None
    if not isinstance(record, FaceJobRecord):
        raise NotFound(f"face-avatar job {job_id} not found")
    return record


def cancel_face_job(
    repo: AvatarRepository,
    storage: Storage,
    workflows: WorkflowStopper,
    owner: str,
    job_id: str,
    settings: Settings | None = None,
) -> FaceJobRecord:
    """Cancel the job; its reference goes at once unless another open job needs it (its
    workflow, stopped, would have released it after ``ReferenceRetentionSeconds``; nothing
    was made from it to keep it for)."""
    record = cancel_job(repo, workflows, get_face_job(repo, owner, job_id), settings)
    release_reference(repo, storage, owner, record.image_id, keep_record=True)
    return record


def delete_face_job(
    repo: AvatarRepository,
    storage: Storage,
    workflows: WorkflowStopper,
    owner: str,
    job_id: str,
    settings: Settings | None = None,
) -> None:
    """The job, its avatars, then its reference image (unless another open job of the owner
    still needs it): the job goes first, so a failure half-way leaves the reference listed."""
    record = get_face_job(repo, owner, job_id)
    delete_job(repo, storage, workflows, record, face_job_prefix(owner, job_id), settings)
    release_reference(repo, storage, owner, record.image_id, keep_record=False)


def face_job_out(record: FaceJobRecord, storage: Storage, settings: Settings) -> FaceJobOut:
    shown = {k: v for k, v in record.parameters.items() if k != "app_id"}
    return FaceJobOut(
        job_id=record.job_id,
        image_id=record.image_id,
        status=record.status,
        parameters=shown,
        avatars=avatars_out(record, storage, settings),
        error=record.error,
        queue=QueueOut.of(record.queue_standing()),
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
