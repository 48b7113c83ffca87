"""Inputs and outputs of the state machines' Lambda tasks.

Every task parses its input into one of these and returns one of these: the shapes the ASL
files read with JSONPath are defined here and nowhere else.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from avatar_core.providers.base import JobState


class _Io(BaseModel):
    # validators built on first use, not at import (see models/api.py)
    model_config = ConfigDict(extra="ignore", defer_build=True)


class QueueState(_Io):
    """A provider's submission queue (logic/provider_queue.py): the last ticket ``issued``,
    how many were ``admitted`` and when the last one was (epoch seconds)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    issued: int = 0
    admitted: int = 0
    admitted_at: float | None = None


class Slot(_Io):
    """One of a provider's run slots (logic/run_slots.py): who holds it, until when (epoch
    seconds, the limiter's clock; for a freed slot, when it was freed) and its queue ticket."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    index: int
    holder: str | None = None
    lease_until: float = 0.0
    ticket: int | None = None

    def free(self, moment: float) -> bool:
        return self.holder is None or self.lease_until <= moment


class ModelRef(_Io):
    owner: str = Field(min_length=1)
    model_id: str = Field(min_length=1)
    # the model's training_attempt this workflow works for (1 for executions that predate it)
    attempt: int = Field(default=1, ge=1)


class JobRef(_Io):
    """A generation, a face-avatar or an instant-avatar job, as the shared avatar-job
    workflow knows it."""

    kind: Literal["generation", "face", "instant"]
    owner: str = Field(min_length=1)
    job_id: str = Field(min_length=1)
    # a generation's model, so its execution's input in the console names it
    model_id: str | None = None


class CopyItem(_Io):
    """One provider result to copy into our bucket."""

    index: int = Field(ge=0)
    url: str = Field(min_length=1)
    avatar_id: str = Field(min_length=1)
    style: str | None = None


class PollState(_Io):
    """Where a poll loop stands; the Wait state reads ``wait_seconds``, Choice the rest."""

    provider_job_id: str
    state: JobState = JobState.QUEUED
    polls: int = 0
    wait_seconds: int = Field(ge=1)
    waited_seconds: int = 0
    exhausted: bool = False
    error: str | None = None
    items: list[CopyItem] = Field(default_factory=list)
    # False while the provider has refused the submit for now (429, 5xx): the loop waits
    # and submits again, and ``provider_job_id`` is empty
    submitted: bool = True
    # busy answers (429, 5xx, no answer) in a row: they cost no poll and no Retry
    busy: int = Field(default=0, ge=0)
    # the submission's ticket in the provider's queue (logic/provider_queue.py), kept from
    # turn to turn while it waits, and where it stood the last time it looked
    ticket: int | None = None
    queue_position: int | None = None

    def last_answer(self) -> str:
        """`` (<what the provider last said>)`` when its answer was one we could not place."""
        return f" ({self.error})" if self.error else ""


class StepFailure(_Io):
    """What a Catch puts at ResultPath: ``{"Error": ..., "Cause": ...}``."""

    Error: str = "States.Unknown"
    Cause: str | None = None

    def reason(self) -> str:
        """A sentence a person can act on, from the Lambda error's JSON cause."""
        message: Any = self.Cause
        if self.Cause:
            try:
                parsed = json.loads(self.Cause)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                message = parsed.get("errorMessage") or self.Cause
        if self.Error == "States.Timeout":
            return "the workflow timed out before the provider finished"
        return str(message or self.Error)


class TrainingFailed(ModelRef):
    error: StepFailure | None = None
    poll: PollState | None = None

    def in_submit(self) -> bool:
        """The failure came from the submit step (the provider never took the work from
        this execution, or the answer with its id was lost)."""
        return self.poll is None or not self.poll.submitted

    def reason(self) -> str:
        if self.poll is not None and self.poll.state is JobState.FAILED:
            return self.poll.error or "the provider reported that training failed"
        if self.poll is not None and self.poll.exhausted:
            return (
                f"the provider had not finished training after {self.poll.polls} status checks; "
                "the model was given up on" + self.poll.last_answer()
            )
        if self.error is not None:
            return self.error.reason()
        return "training failed"


class TrainingReady(_Io):
    retention_seconds: int = Field(ge=0)


class CopyTask(JobRef):
    item: CopyItem


class JobOutcome(JobRef):
    """What the record task is told: the copies made, or the error that ended the job."""

    outcome: Literal["copied", "failed"]
    copies: list[dict[str, Any]] = Field(default_factory=list)
    error: StepFailure | None = None
    poll: PollState | None = None

    def in_submit(self) -> bool:
        """The failure came from the submit step (see ``TrainingFailed.in_submit``)."""
        return self.poll is None or not self.poll.submitted

    def failure_reason(self) -> str:
        if self.poll is not None and self.poll.state is JobState.FAILED:
            return self.poll.error or "the provider reported that the job failed"
        if self.poll is not None and self.poll.exhausted:
            return (
                f"the provider had not finished after {self.poll.polls} status checks; "
                "the job was given up on" + self.poll.last_answer()
            )
        if self.error is not None:
            return self.error.reason()
        return "the job failed"
