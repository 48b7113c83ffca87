"""What the workflows need from an upstream provider, in our own vocabulary.

Each provider module maps its paths, field names and status words onto these types and
raises the typed errors of ``avatar_core.errors``. Nothing outside ``providers/`` knows a
provider's wire format.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, Field


class JobState(StrEnum):
    """Where an upstream job stands, whatever the provider calls it."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PollAdvice(BaseModel):
    """When to look again. The state machine's Wait state reads ``wait_seconds``."""

    wait_seconds: int = Field(ge=1)


class JobStatus(BaseModel):
    """One poll's answer."""

    state: JobState
    provider_status: str = Field(description="the provider's own status word, for operators")
    progress: float | None = Field(default=None, ge=0, le=100)
    error: str | None = Field(default=None, description="the provider's message when failed")
    result_urls: list[str] = Field(default_factory=list)
    note: str | None = Field(
        default=None,
        description="what the provider said when we could not place its answer (clipped), "
        "kept so a job given up on says why",
    )
    known_status: bool = Field(
        default=True, description="False when the provider's status word is not one we know"
    )


class SubmittedJob(BaseModel):
    job_id: str = Field(min_length=1)
    provider_status: str


class TrainingProvider(Protocol):
    def submit_training(self, *, image_urls: list[str], subject: str) -> SubmittedJob: ...

    def training_status(self, provider_model_id: str) -> JobStatus: ...

    def training_poll_advice(
        self, polls_so_far: int, last: JobStatus | None = None, waited_seconds: int | None = None
    ) -> PollAdvice: ...
