"""Deleting everything of an owner (``DELETE /v1/me``): the receipt we keep, what the API
answers, and the shapes the deletion workflow's tasks pass each other."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from avatar_core.models.workflow import StepFailure


class DeletionStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DeletionRecord(BaseModel):
    """The receipt of an owner's deletion: no personal data beyond the owner key. It is
    what ``GET /v1/me/deletion`` reads, and while it exists the owner starts nothing new."""

    model_config = ConfigDict(extra="ignore")

    owner: str
    deletion_id: str
    status: DeletionStatus = DeletionStatus.RUNNING
    started_at: str
    updated_at: str
    finished_at: str | None = None
    records_deleted: int = 0
    objects_deleted: int = 0
    executions_stopped: int = 0
    error: str | None = None
    execution_arn: str | None = None


class DeletionOut(BaseModel):
    deletion_id: str
    status: DeletionStatus
    records_deleted: int = Field(description="Table records deleted so far")
    objects_deleted: int = Field(description="Objects deleted so far, from both buckets")
    executions_stopped: int = Field(description="Running workflows of the owner that were stopped")
    started_at: str
    finished_at: str | None = None
    error: str | None = Field(default=None, description="Why it failed; send DELETE again")

    @classmethod
    def of(cls, record: DeletionRecord) -> DeletionOut:
        return cls.model_validate(record.model_dump())


class DeletionRef(BaseModel):
    """The deletion workflow's input."""

    model_config = ConfigDict(extra="ignore")

    owner: str = Field(min_length=1)
    deletion_id: str = Field(min_length=1)


class DeletionStep(DeletionRef):
    """Where a deletion stands, between two invocations of its page task.

    ``sweep`` 1 deletes everything; 2 is the final sweep after the wait, for what was
    still being written when the first one ran. Each sweep deletes the table's records
    (``records``), then every object under each of the owner's prefixes in turn
    (``objects``, the prefix at ``prefix_index``); no cursor is kept, since a page that is
    deleted is no longer there for the next query to skip.
    """

    sweep: Literal[1, 2] = 1
    phase: Literal["records", "objects"] = "records"
    prefix_index: int = Field(default=0, ge=0)
    done: bool = False
    pages: int = Field(default=0, ge=0, description="invocations so far: the loop's bound")
    wait_seconds: int = Field(default=0, ge=0)


class DeletionOutcome(DeletionRef):
    """The workflow's last task: the receipt says succeeded, or failed with the reason."""

    outcome: Literal["succeeded", "failed"]
    error: StepFailure | None = None

    def reason(self) -> str:
        why = self.error.reason() if self.error is not None else "the deletion failed"
        return f"{why}; send DELETE /v1/me again to finish it"
