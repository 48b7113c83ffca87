"""Bodies of the public HTTP API (``docs/api.md``): what clients send and what they get."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from avatar_core.models.events import Event
from avatar_core.models.records import (
    FaceImageRecord,
    JobStatusName,
    ModelRecord,
    ModelStatus,
    QueueStanding,
    SelfieRecord,
    SelfieStatus,
    Subject,
)

ImageContentType = Literal["image/jpeg", "image/png", "image/heic", "image/heif", "image/webp"]


class _Body(BaseModel):
    # Each model's validator and schema are built on first use, not at import: a cold start
    # builds those of the route it serves (and of the records it reads), not all of them.
    model_config = ConfigDict(defer_build=True)


class _Request(_Body):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CreateModelRequest(_Request):
    subject: Subject
    name: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must contain printable characters only")
        return value


class UploadFile(_Request):
    content_type: ImageContentType


class RequestUploadsRequest(_Request):
    files: list[UploadFile] = Field(min_length=1, max_length=30)


class SelfieCounts(_Body):
    pending: int
    accepted: int
    rejected: int


class QueueOut(_Body):
    """Present while paid work waits for the provider's capacity: the provider is at its
    rate limit and submissions go in arrival order."""

    position: int = Field(description="Submissions ahead of this one in the provider's queue")
    estimated_start_at: str = Field(
        description="When it is expected to reach the provider (an estimate, refreshed as "
        "it moves up)"
    )
    as_of: str = Field(description="When the position was last looked at")

    @classmethod
    def of(cls, standing: QueueStanding | None) -> QueueOut | None:
        if standing is None:
            return None
        return cls(
            position=standing.position,
            estimated_start_at=standing.estimated_start_at,
            as_of=standing.as_of,
        )


_QUEUE_DESCRIPTION = (
    "While the provider is at its rate limit and this work waits its turn: its place in the "
    "queue; absent otherwise"
)


class ModelOut(_Body):
    model_id: str
    subject: Subject
    name: str | None
    status: ModelStatus
    selfies: SelfieCounts
    created_at: str
    updated_at: str
    error: str | None = None
    training_progress: float | None = None
    selfies_deleted_at: str | None = None
    retry_until: str | None = Field(
        default=None,
        description="A failed or cancelled model can be trained again (POST .../training) "
        "until then, while its selfies are kept",
    )
    provider_accepted: bool = Field(
        default=False,
        description="Whether the provider accepted this training (so it may bill for it, "
        "even if it failed later); false means nothing was sent or charged",
    )
    queue: QueueOut | None = Field(default=None, description=_QUEUE_DESCRIPTION)

    @classmethod
    def of(cls, record: ModelRecord) -> ModelOut:
        return cls(
            model_id=record.model_id,
            subject=record.subject,
            name=record.name,
            status=record.status,
            selfies=SelfieCounts(
                pending=record.pending, accepted=record.accepted, rejected=record.rejected
            ),
            created_at=record.created_at,
            updated_at=record.updated_at,
            error=record.error,
            training_progress=record.training_progress,
            selfies_deleted_at=record.selfies_deleted_at,
            retry_until=record.retry_until
            if record.status in (ModelStatus.FAILED, ModelStatus.CANCELLED)
            and record.selfies_deleted_at is None
            else None,
            provider_accepted=record.provider_model_id is not None,
            queue=QueueOut.of(record.queue_standing()),
        )


class ModelPage(_Body):
    items: list[ModelOut]
    next_cursor: str | None


class UploadSlot(_Body):
    selfie_id: str
    url: str
    fields: dict[str, str]
    expires_at: str


class UploadsOut(_Body):
    uploads: list[UploadSlot]


class SelfieOut(_Body):
    selfie_id: str
    status: SelfieStatus
    reason: str | None = None
    frames_in_file: int = Field(
        default=1,
        description="Images or frames in the uploaded file (a HEIC collection, an animated "
        "PNG or WebP, an MPO); only the primary one is used. 1 for ordinary files",
    )
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, record: SelfieRecord) -> SelfieOut:
        return cls(
            selfie_id=record.selfie_id,
            status=record.status,
            reason=record.reason,
            frames_in_file=record.frames_in_file,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class SelfieList(_Body):
    items: list[SelfieOut]


class ErrorOut(_Body):
    message: str
    field: str | None = None


class HealthOut(_Body):
    status: Literal["ok"] = "ok"


# --- generations -------------------------------------------------------------------------

PromptText = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class StyleRequestIn(_Request):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    style: str = Field(min_length=1, max_length=64)
    count: int = Field(ge=1, le=40)
    prompt: PromptText | None = None


class CreateGenerationRequest(_Request):
    requests: list[StyleRequestIn] = Field(min_length=1, max_length=10)


class AvatarOut(_Body):
    avatar_id: str
    url: str
    expires_at: str
    style: str | None = None
    width: int
    height: int
    content_type: str


class GenerationOut(_Body):
    generation_id: str
    model_id: str
    status: JobStatusName
    requests: list[dict[str, object]]
    avatars: list[AvatarOut]
    error: str | None = None
    queue: QueueOut | None = Field(default=None, description=_QUEUE_DESCRIPTION)
    created_at: str
    updated_at: str


class GenerationPage(_Body):
    items: list[GenerationOut]
    next_cursor: str | None


class StylesOut(_Body):
    """What a client can ask for: styles for generations, the subjects a model can be
    trained for, and the (fewer) subjects Instant Avatars take."""

    styles: list[str]
    max_avatars_per_generation: int
    subjects: list[str]
    instant_subjects: list[str]
    max_instant_avatars: int


class SelfieCheck(_Body):
    """One reason ingest refuses a photo that decodes: what it looks at, and what it says."""

    name: Literal["transparency", "single_colour", "blur", "near_duplicate"]
    rule: str
    refusal: str


class SelfieRulesOut(_Body):
    """What a selfie must be, for a client to say it before the upload (``GET
    /v1/selfie-rules``). Refusals arrive on the selfie as its ``reason``."""

    content_types: list[ImageContentType]
    max_bytes: int
    min_side: int  # pixels on the short side, after orientation
    max_pixels: int
    normalised_side: int  # every accepted selfie becomes a square JPEG of this side
    min_selfies_for_training: int
    max_selfies_per_model: int
    checks: list[SelfieCheck]


# --- face avatars ------------------------------------------------------------------------

Gender = Literal["male", "female", "non_binary"]
HexColour = Annotated[str, StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$")]


class FaceUploadRequest(_Request):
    content_type: ImageContentType


class FaceUploadOut(_Body):
    image_id: str
    url: str
    fields: dict[str, str]
    expires_at: str


class FaceImageOut(_Body):
    image_id: str
    status: SelfieStatus
    reason: str | None = None
    width: int | None = None
    height: int | None = None
    deleted_at: str | None = Field(
        default=None,
        description="When the image was deleted, once the jobs made from it had finished "
        "(after ReferenceRetentionSeconds); a new job needs a new upload",
    )

    @classmethod
    def of(cls, record: FaceImageRecord) -> FaceImageOut:
        return cls(
            image_id=record.image_id,
            status=record.status,
            reason=record.reason,
            width=record.width,
            height=record.height,
            deleted_at=record.deleted_at,
        )


class FaceAvatarParameters(_Request):
    """The Face Avatar parameters, with the seed's ranges. Types are strict: ``"4"`` is not 4.

    Defaults (used when a field is absent): 4 images of 512×512 (the size the provider's
    models are tuned for and the cheapest to run), 30 inference steps (where quality levels
    off; 50 costs two thirds more time), guidance 7.5 (the common diffusion default: follows
    the prompt without over-saturating), no background removal, a black background (what the
    default prompt asks for), and a short negative prompt that keeps results safe and clean.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    prompt: PromptText | None = None
    negative_prompt: Annotated[str, StringConstraints(max_length=1000)] = (
        "nsfw, nudity, blurry, deformed, disfigured, watermark, text"
    )
    gender: Gender | None = None
    batch: int = Field(default=4, ge=1, le=8)
    width: int = Field(default=512, ge=256, le=1536)
    height: int = Field(default=512, ge=256, le=1536)
    num_inference_steps: int = Field(default=30, ge=1, le=50)
    guidance_scale: float = Field(default=7.5, ge=1, le=30)
    remove_background: bool = False
    bg_color: HexColour = "#000000"


class CreateFaceAvatarRequest(FaceAvatarParameters):
    image_id: str = Field(min_length=1, max_length=64)


class FaceJobOut(_Body):
    job_id: str
    image_id: str
    status: JobStatusName
    parameters: dict[str, object]
    avatars: list[AvatarOut]
    error: str | None = None
    queue: QueueOut | None = Field(default=None, description=_QUEUE_DESCRIPTION)
    created_at: str
    updated_at: str


class FaceJobPage(_Body):
    items: list[FaceJobOut]
    next_cursor: str | None


# --- instant avatars ---------------------------------------------------------------------


class CreateInstantAvatarRequest(_Request):
    """``count`` Instant Avatars of ``subject`` from one accepted reference image.

    The reference is uploaded through ``POST /v1/face-avatars/uploads``; ``subject`` must be
    one of ``GET /v1/styles``'s ``instant_subjects``, ``count`` at most its
    ``max_instant_avatars``.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    image_id: str = Field(min_length=1, max_length=64)
    subject: str = Field(min_length=1, max_length=32)
    count: int = Field(ge=1, le=100)
    prompt: PromptText | None = None


class InstantJobOut(_Body):
    job_id: str
    image_id: str
    subject: str
    count: int
    prompt: str | None = None
    status: JobStatusName
    avatars: list[AvatarOut]
    error: str | None = None
    queue: QueueOut | None = Field(default=None, description=_QUEUE_DESCRIPTION)
    created_at: str
    updated_at: str


class InstantJobPage(_Body):
    items: list[InstantJobOut]
    next_cursor: str | None


class EventPage(_Body):
    """The owner's recent events, oldest first: the same documents the bus and webhooks get."""

    items: list[Event]
    next_cursor: str = Field(
        description="Pass as `since` to continue; given even when `items` is empty"
    )
    has_more: bool = Field(description="More events are waiting: ask again at once")


class LimitOut(BaseModel):
    name: str
    description: str
    # None: unlimited (the stack's parameter is 0)
    limit: int | None
    used: int
    remaining: int | None
    # the rolling window in hours; None for concurrent trainings, which free as one ends
    window_hours: int | None
    # when the next unit frees (the oldest counted work leaves the window); None when
    # nothing is counted or the limit is not a window
    frees_at: str | None = None


class HoldingsOut(BaseModel):
    """What we keep of the owner now; selfies counts those whose images we still hold."""

    models: int
    selfies: int
    generations: int
    avatars: int
    face_images: int
    face_jobs: int
    instant_jobs: int


class MeOut(BaseModel):
    limits: list[LimitOut]
    holdings: HoldingsOut
