"""What we keep in DynamoDB, as typed records. The repository maps them to items."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# The subjects on offer are configuration (``Settings.model_subjects``), checked by logic.
Subject = Annotated[str, StringConstraints(min_length=1, max_length=32)]


class ModelStatus(StrEnum):
    COLLECTING = "collecting"
    TRAINING = "training"
    READY = "ready"
    FAILED = "failed"
    # stopped by its owner before the provider was sent anything: trainable again, like a
    # failed model, while its selfies are kept (until ``retry_until``)
    CANCELLED = "cancelled"


class SelfieStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class JobStatusName(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # stopped by its owner before the provider was sent anything: nothing was charged
    CANCELLED = "cancelled"


class _Record(BaseModel):
    # validators built on first use, not at import (see models/api.py)
    model_config = ConfigDict(extra="ignore", use_enum_values=False, defer_build=True)


class QueueStanding(_Record):
    """Where a paid submission stood in its provider's queue when it last looked (while the
    provider is at its rate limit; logic/provider_queue.py)."""

    position: int
    estimated_start_at: str
    as_of: str


class ModelRecord(_Record):
    owner: str
    model_id: str
    subject: Subject
    name: str | None = None
    status: ModelStatus = ModelStatus.COLLECTING
    pending: int = 0
    accepted: int = 0
    rejected: int = 0
    created_at: str
    updated_at: str
    error: str | None = None
    provider_model_id: str | None = None
    training_execution_arn: str | None = None
    training_progress: float | None = None
    training_started_at: str | None = None
    ready_at: str | None = None
    selfies_deleted_at: str | None = None
    # every start of a training counts one; its executions carry it (see begin_training)
    training_attempt: int = 0
    # executions started again by reconciliation for the current attempt
    resumes: int = 0
    # a failed model can be trained again until then, while its selfies are kept
    retry_until: str | None = None
    # when the submit task of the current attempt began handing the selfies to the provider:
    # from then on a cancel cannot promise that nothing was paid
    submitting_at: str | None = None
    # while the training waits for provider capacity (shown until the provider has it)
    queue: QueueStanding | None = None

    def queue_standing(self) -> QueueStanding | None:
        """Where the training stands in the provider's queue, while it waits there."""
        waiting = self.status is ModelStatus.TRAINING and self.provider_model_id is None
        return self.queue if waiting else None


class SelfieRecord(_Record):
    owner: str
    model_id: str
    selfie_id: str
    status: SelfieStatus = SelfieStatus.PENDING
    reason: str | None = None
    content_type: str
    upload_key: str
    normalised_key: str | None = None
    width: int | None = None
    height: int | None = None
    # images or frames in the upload (HEIC collections, MPO, animated PNG/WebP): the primary
    # one became the selfie; 1 for ordinary files and for selfies not yet uploaded
    frames_in_file: int = 1
    # dHash of the normalised image, 16 hex digits, once accepted: for near-duplicates
    perceptual_hash: str | None = None
    upload_expires_at: str
    created_at: str
    updated_at: str


class AvatarRecord(_Record):
    avatar_id: str
    index: int
    key: str
    content_type: str
    width: int
    height: int
    size: int
    style: str | None = None


class JobRecordBase(_Record):
    owner: str
    status: JobStatusName = JobStatusName.QUEUED
    provider_job_id: str | None = None
    execution_arn: str | None = None
    avatars: dict[str, AvatarRecord] = Field(default_factory=dict)
    error: str | None = None
    unknown_provider_status: str | None = None
    # executions started again by reconciliation
    resumes: int = 0
    # when the submit task began sending the job to the provider: from then on a cancel
    # cannot promise that nothing was paid
    submitting_at: str | None = None
    # while the job waits for provider capacity (shown until the provider has it)
    queue: QueueStanding | None = None
    created_at: str
    updated_at: str

    def queue_standing(self) -> QueueStanding | None:
        """Where the job stands in the provider's queue, while it waits there."""
        waiting = self.status is JobStatusName.QUEUED and self.provider_job_id is None
        return self.queue if waiting else None

    def ordered_avatars(self) -> list[AvatarRecord]:
        return sorted(self.avatars.values(), key=lambda avatar: avatar.index)


class GenerationRecord(JobRecordBase):
    generation_id: str
    model_id: str
    requests: list[dict[str, object]] = Field(default_factory=list)

    @property
    def job_id(self) -> str:
        return self.generation_id


class FaceImageRecord(_Record):
    owner: str
    image_id: str
    status: SelfieStatus = SelfieStatus.PENDING
    reason: str | None = None
    content_type: str
    upload_key: str
    fitted_key: str | None = None
    width: int | None = None
    height: int | None = None
    upload_expires_at: str
    created_at: str
    updated_at: str
    # when its image objects were deleted once the jobs that needed it had finished
    deleted_at: str | None = None


class FaceJobRecord(JobRecordBase):
    job_id: str
    image_id: str
    parameters: dict[str, object] = Field(default_factory=dict)


class InstantJobRecord(JobRecordBase):
    """Picsart Instant Avatars from one reference image (uploaded like a face reference)."""

    job_id: str
    image_id: str
    subject: str
    count: int
    prompt: str | None = None


class QuotaEntry(_Record):
    """One piece of paid work counted against an owner's limits."""

    at: str
    units: int = 1
    # trainings only: seen no longer running, so it counts for the day, not as concurrent
    ended: bool = False


class QuotaLedger(_Record):
    """An owner's paid work of one family (trainings, avatars, face) in the last 24 hours,
    keyed by the work's id; ``version`` makes every change a compare-and-set."""

    family: str
    entries: dict[str, QuotaEntry] = Field(default_factory=dict)
    version: int = 0
