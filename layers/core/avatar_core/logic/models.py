"""Creating, reading, listing and deleting an owner's models and their selfie slots."""

from __future__ import annotations

from datetime import timedelta

from avatar_core import ids
from avatar_core.errors import InvalidRequest, NotFound
from avatar_core.models.api import CreateModelRequest, RequestUploadsRequest, UploadSlot
from avatar_core.models.records import ModelRecord, SelfieRecord, SelfieStatus
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage, model_prefixes, selfie_upload_key

# A pending selfie whose upload link expired this long ago can no longer arrive.
_UPLOAD_GRACE = timedelta(minutes=5)
_NEVER_ARRIVED = "no upload arrived before the upload link expired; request a new one"


def require_subject(subject: str, available: list[str], field: str = "subject") -> None:
    """A subject the stack does not offer is the client's mistake: 422 naming what is."""
    if subject not in available:
        raise InvalidRequest(
            f"{field}: {subject!r} is not offered; available: {', '.join(available)}",
            field=field,
        )


def create_model(
    repo: AvatarRepository, settings: Settings, owner: str, request: CreateModelRequest
) -> ModelRecord:
    require_subject(request.subject, settings.model_subjects)
    stamp = ids.now_iso()
    record = ModelRecord(
        owner=owner,
        model_id=ids.new_id(ids.MODEL),
        subject=request.subject,
        name=request.name,
        created_at=stamp,
        updated_at=stamp,
    )
    repo.create_model(record)
    return record


def get_model(repo: AvatarRepository, owner: str, model_id: str) -> ModelRecord:
    """The owner's model; another owner's model is exactly as missing as a deleted one."""
    record = repo.get_model(owner, model_id) if ids.is_id(ids.MODEL, model_id) else None
    if record is None:
        raise NotFound(f"model {model_id} not found")
    return record


def delete_model(repo: AvatarRepository, storage: Storage, owner: str, model_id: str) -> None:
    """Objects first, records last: a failure half-way leaves a model that can be deleted again."""
    get_model(repo, owner, model_id)
    uploads, normalised, avatars = model_prefixes(owner, model_id)
    storage.delete_prefix(storage.uploads_bucket, uploads)
    storage.delete_prefix(storage.uploads_bucket, normalised)
    storage.delete_prefix(storage.results_bucket, avatars)
    repo.delete_model(owner, model_id)


def request_selfie_uploads(
    repo: AvatarRepository,
    storage: Storage,
    settings: Settings,
    owner: str,
    model_id: str,
    request: RequestUploadsRequest,
) -> list[UploadSlot]:
    model = get_model(repo, owner, model_id)
    expire_abandoned_uploads(repo, model)
    stamp = ids.now()
    expires_at = ids.iso(stamp + timedelta(seconds=settings.upload_url_ttl_seconds))
    selfies = []
    for file in request.files:
        selfie_id = ids.new_id(ids.SELFIE)
        selfies.append(
            SelfieRecord(
                owner=owner,
                model_id=model_id,
                selfie_id=selfie_id,
                content_type=file.content_type,
                upload_key=selfie_upload_key(owner, model_id, selfie_id),
                upload_expires_at=expires_at,
                created_at=ids.iso(stamp),
                updated_at=ids.iso(stamp),
            )
        )
    repo.reserve_selfies(model, selfies, settings.max_selfies_per_model)
    slots = []
    for selfie in selfies:
        post = storage.presign_upload(
            selfie.upload_key,
            selfie.content_type,
            settings.upload_max_bytes,
            settings.upload_url_ttl_seconds,
        )
        slots.append(
            UploadSlot(
                selfie_id=selfie.selfie_id, url=post.url, fields=post.fields, expires_at=expires_at
            )
        )
    return slots


def list_selfies(repo: AvatarRepository, owner: str, model_id: str) -> list[SelfieRecord]:
    model = get_model(repo, owner, model_id)
    expire_abandoned_uploads(repo, model)
    return repo.list_selfies(owner, model_id)


def expire_abandoned_uploads(repo: AvatarRepository, model: ModelRecord) -> int:
    """Free the slots of uploads that can no longer arrive, telling the user why."""
    if model.pending == 0:
        return 0
    cutoff = ids.iso(ids.now() - _UPLOAD_GRACE)
    expired = 0
    for selfie in repo.list_selfies(model.owner, model.model_id):
        if selfie.status is SelfieStatus.PENDING and selfie.upload_expires_at < cutoff:
            expired += repo.settle_selfie(selfie, SelfieStatus.REJECTED, reason=_NEVER_ARRIVED)
    return expired
