"""Asking for avatars from a ready model, and showing them from our own bucket."""

from __future__ import annotations

from avatar_core import ids
from avatar_core.errors import Conflict, InvalidRequest, NotFound
from avatar_core.logic.avatar_jobs import JOB_PROVIDERS, cancel_job, delete_job, launch_job
from avatar_core.logic.breaker import ProviderBreaker
from avatar_core.logic.models import get_model
from avatar_core.logic.quotas import PaidWork, Quotas
from avatar_core.models.api import AvatarOut, CreateGenerationRequest, GenerationOut, QueueOut
from avatar_core.models.records import GenerationRecord, JobRecordBase, ModelStatus
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage, generation_prefix
from avatar_core.store.workflows import WorkflowStarter, WorkflowStopper


def generation_execution_name(generation_id: str) -> str:
    return f"generate-{generation_id}"


def validate_generation(request: CreateGenerationRequest, settings: Settings) -> None:
    for position, style_request in enumerate(request.requests):
        if style_request.style not in settings.avatar_styles:
            known = ", ".join(settings.avatar_styles)
            raise InvalidRequest(
                f"requests.{position}.style: unknown style {style_request.style!r}; "
                f"available: {known}",
                field=f"requests.{position}.style",
            )
    total = sum(r.count for r in request.requests)
    if total > settings.max_avatars_per_generation:
        raise InvalidRequest(
            f"requests: {total} avatars asked for; at most "
            f"{settings.max_avatars_per_generation} per generation",
            field="requests",
        )


def create_generation(
    repo: AvatarRepository,
    workflows: WorkflowStarter,
    settings: Settings,
    owner: str,
    model_id: str,
    request: CreateGenerationRequest,
) -> GenerationRecord:
    validate_generation(request, settings)
    model = get_model(repo, owner, model_id)
    if model.status is not ModelStatus.READY:
        raise Conflict(
            f"the model is {model.status.value}: avatars can be generated once it is ready"
        )
    stamp = ids.now_iso()
    record = GenerationRecord(
        owner=owner,
        generation_id=ids.new_id(ids.GENERATION),
        model_id=model_id,
        requests=[r.model_dump(exclude_none=True) for r in request.requests],
        created_at=stamp,
        updated_at=stamp,
    )
    total = sum(r.count for r in request.requests)
    ProviderBreaker(repo, settings).admit(JOB_PROVIDERS["generation"])
    with Quotas(repo, settings).reserved(owner, PaidWork.avatars(record.generation_id, total)):
        launch_job(
            repo,
            workflows,
            settings.generate_state_machine_arn,
            generation_execution_name(record.generation_id),
            record,
            settings.deadline(settings.job_deadline_seconds),
        )
    return record


def get_generation(repo: AvatarRepository, owner: str, generation_id: str) -> GenerationRecord:
    record = (
        repo.get_job(GenerationRecord, owner, generation_id)
        if ids.is_id(ids.GENERATION, generation_id)
        else None
    )
    if not isinstance(record, GenerationRecord):
        raise NotFound(f"generation {generation_id} not found")
    return record


def cancel_generation(
    repo: AvatarRepository,
    workflows: WorkflowStopper,
    owner: str,
    generation_id: str,
    settings: Settings | None = None,
) -> GenerationRecord:
    return cancel_job(repo, workflows, get_generation(repo, owner, generation_id), settings)


def delete_generation(
    repo: AvatarRepository,
    storage: Storage,
    workflows: WorkflowStopper,
    owner: str,
    generation_id: str,
    settings: Settings | None = None,
) -> None:
    record = get_generation(repo, owner, generation_id)
    prefix = generation_prefix(owner, record.model_id, generation_id)
    delete_job(repo, storage, workflows, record, prefix, settings)


def avatars_out(record: JobRecordBase, storage: Storage, settings: Settings) -> list[AvatarOut]:
    """Short-lived links to our own copies; never the provider's URLs."""
    avatars = []
    for avatar in record.ordered_avatars():
        url, expires_at = storage.presign_get(
            storage.results_bucket, avatar.key, settings.download_url_ttl_seconds
        )
        avatars.append(
            AvatarOut(
                avatar_id=avatar.avatar_id,
                url=url,
                expires_at=expires_at,
                style=avatar.style,
                width=avatar.width,
                height=avatar.height,
                content_type=avatar.content_type,
            )
        )
    return avatars


def generation_out(record: GenerationRecord, storage: Storage, settings: Settings) -> GenerationOut:
    return GenerationOut(
        generation_id=record.generation_id,
        model_id=record.model_id,
        status=record.status,
        requests=record.requests,
        avatars=avatars_out(record, storage, settings),
        error=record.error,
        queue=QueueOut.of(record.queue_standing()),
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
