"""Bodies of the public HTTP API (``docs/api.md``): what clients send and what they get."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from avatar_core.models.records import (
    ModelRecord,
    ModelStatus,
    SelfieRecord,
    SelfieStatus,
    Subject,
)

ImageContentType = Literal["image/jpeg", "image/png"]


class _Request(BaseModel):
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


class SelfieCounts(BaseModel):
    pending: int
    accepted: int
    rejected: int


class ModelOut(BaseModel):
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
        )


class ModelPage(BaseModel):
    items: list[ModelOut]
    next_cursor: str | None


class UploadSlot(BaseModel):
    selfie_id: str
    url: str
    fields: dict[str, str]
    expires_at: str


class UploadsOut(BaseModel):
    uploads: list[UploadSlot]


class SelfieOut(BaseModel):
    selfie_id: str
    status: SelfieStatus
    reason: str | None = None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, record: SelfieRecord) -> SelfieOut:
        return cls(
            selfie_id=record.selfie_id,
            status=record.status,
            reason=record.reason,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class SelfieList(BaseModel):
    items: list[SelfieOut]


class ErrorOut(BaseModel):
    message: str
    field: str | None = None


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"
