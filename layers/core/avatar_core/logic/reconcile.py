"""Reconciliation: every record ends, whatever ended its workflow.

A workflow can end without its last task running: an operator stops it in the console, it
reaches its ``TimeoutSeconds``, a task fails in a way no Catch records, or it never starts.
Step Functions says so on EventBridge ("Step Functions Execution Status Change"); the
scheduled sweep finds the rest. Both come here, with what the execution looked like.

The rule is short. A record that is already terminal, or that another execution (a newer
training attempt, a resume) has taken over, is left alone: events arrive at least once and
out of order, and reconciling twice changes nothing. Otherwise, if the provider's job id is
stored the provider may still be working or may have finished, so the workflow is
**resumed**: a new execution, named ``<name>-r<n>``, whose submit finds the id stored and
submits nothing, then polls and copies as usual. Paid work is never submitted again. With no
id stored (nothing was bought), or once ``max_resumes`` resumes are spent, the record is
failed with a reason a person can act on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from avatar_core.errors import WorkflowUnavailable
from avatar_core.ids import now_iso
from avatar_core.logic import quotas, training
from avatar_core.logic.avatar_jobs import JOB_KINDS, JOB_PROVIDERS
from avatar_core.logic.face_avatars import face_execution_name
from avatar_core.logic.generations import generation_execution_name
from avatar_core.logic.instant_avatars import instant_execution_name
from avatar_core.logic.quotas import PaidWork
from avatar_core.logic.run_slots import job_holder, release_slot, renew_slot, training_holder
from avatar_core.models.records import JobStatusName, ModelRecord, ModelStatus
from avatar_core.models.workflow import JobRef, ModelRef, StepFailure
from avatar_core.observability import logger
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository, JobRecord
from avatar_core.store.storage import Storage
from avatar_core.store.workflows import WorkflowStarter, execution_arn

_RECORD_OF_KIND: dict[str, type[JobRecord]] = {kind: record for record, kind in JOB_KINDS.items()}
# each job kind's state machine (the Settings field) and execution name, as the API starts it
_WORKFLOW_OF_KIND: dict[str, tuple[str, Callable[[str], str]]] = {
    "generation": ("generate_state_machine_arn", generation_execution_name),
    "face": ("face_state_machine_arn", face_execution_name),
    "instant": ("instant_state_machine_arn", instant_execution_name),
}
_RESUME_SUFFIX = re.compile(r"-r\d+$")


class EndStatus(StrEnum):
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"
    # the sweep: the record names an execution Step Functions does not know
    MISSING = "MISSING"


class ExecutionEnd(BaseModel):
    """An execution that ended abnormally, from its status-change event or DescribeExecution."""

    model_config = ConfigDict(extra="ignore")

    execution_arn: str = Field(min_length=1)
    state_machine_arn: str = Field(min_length=1)
    name: str = Field(min_length=1)
    status: EndStatus
    input: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    cause: str | None = None
    start_ms: int | None = None
    stop_ms: int | None = None

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ExecutionEnd:
        """From EventBridge's "Step Functions Execution Status Change" event."""
        detail = event.get("detail") or {}
        return cls(
            execution_arn=detail.get("executionArn", ""),
            state_machine_arn=detail.get("stateMachineArn", ""),
            name=detail.get("name", ""),
            status=detail.get("status", ""),
            input=_json_object(detail.get("input")),
            error=detail.get("error"),
            cause=detail.get("cause"),
            start_ms=detail.get("startDate"),
            stop_ms=detail.get("stopDate"),
        )

    def ran_for(self) -> str:
        if self.start_ms is None or self.stop_ms is None:
            return ""
        minutes = max(0, self.stop_ms - self.start_ms) // 60000
        if minutes >= 120:
            return f" after {minutes // 60} hours"
        return f" after {minutes} minutes"

    def reason(self, paid: bool) -> str:
        """What happened, in words a person can act on."""
        if self.status is EndStatus.ABORTED:
            said = "stopped by an operator"
        elif self.status is EndStatus.TIMED_OUT:
            said = "timed out" + self.ran_for()
        elif self.status is EndStatus.MISSING:
            said = "lost: its workflow is unknown to Step Functions"
        else:
            said = (
                "failed: "
                + StepFailure(Error=self.error or "States.Unknown", Cause=self.cause).reason()
            )
        if paid:
            return f"the workflow was {said}, and resuming it did not bring the provider's result"
        return f"the workflow was {said} before the provider accepted the work; nothing was charged"


class Action(StrEnum):
    RESUMED = "resumed"
    FAILED = "failed"
    UNCHANGED = "unchanged"


class Reconciled(BaseModel):
    action: Action
    detail: str
    execution_arn: str | None = None


def _json_object(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        parsed = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def resume_name(name: str, resume: int) -> str:
    """``train-m1`` → ``train-m1-r1``; ``train-m1-r1`` → ``train-m1-r2`` (80 characters at
    most, as Step Functions requires; our names are far shorter)."""
    return f"{_RESUME_SUFFIX.sub('', name)}-r{resume}"[:80]


def reconcile(
    repo: AvatarRepository, workflows: WorkflowStarter, settings: Settings, end: ExecutionEnd
) -> Reconciled:
    if "kind" in end.input:
        try:
            job = JobRef.model_validate(end.input)
        except ValidationError:
            return Reconciled(action=Action.UNCHANGED, detail="not one of our executions")
        return _reconcile_job(repo, workflows, settings, end, job)
    try:
        model = ModelRef.model_validate(end.input)
    except ValidationError:
        return Reconciled(action=Action.UNCHANGED, detail="not one of our executions")
    return _reconcile_training(repo, workflows, settings, end, model)


def _taken_over(current: str | None, end: ExecutionEnd) -> bool:
    return current is not None and current != end.execution_arn


def _reconcile_training(
    repo: AvatarRepository,
    workflows: WorkflowStarter,
    settings: Settings,
    end: ExecutionEnd,
    ref: ModelRef,
) -> Reconciled:
    model = repo.get_model(ref.owner, ref.model_id)
    if model is None:
        return Reconciled(action=Action.UNCHANGED, detail="the model was deleted")
    if model.status is not ModelStatus.TRAINING:
        return Reconciled(action=Action.UNCHANGED, detail=f"the model is {model.status.value}")
    if max(model.training_attempt, 1) != ref.attempt or _taken_over(
        model.training_execution_arn, end
    ):
        return Reconciled(action=Action.UNCHANGED, detail="another execution has the training")
    if model.provider_model_id:
        resumed = _resume(repo, workflows, settings, end, model, ref.model_dump())
        if resumed is not None:
            # it still runs at the provider: its run slot is kept for the new execution
            holder = training_holder(ref.model_id, ref.attempt)
            renew_slot(repo, settings, training.TRAINING_PROVIDER, "training", holder)
            return resumed
    reason = end.reason(paid=model.provider_model_id is not None)
    if training.fail_training(
        repo, settings, ref.owner, ref.model_id, reason, only_execution=end.execution_arn
    ):
        logger.warning("training reconciled as failed", extra={"reason": reason, **_ids(end)})
        release_slot(
            repo, settings, training.TRAINING_PROVIDER, training_holder(ref.model_id, ref.attempt)
        )
        if not model.provider_model_id:  # "nothing was charged": its quota comes back
            quotas.release(repo, ref.owner, PaidWork.training(ref.model_id, ref.attempt))
        return Reconciled(action=Action.FAILED, detail=reason)
    return Reconciled(action=Action.UNCHANGED, detail="the model moved on meanwhile")


def _reconcile_job(
    repo: AvatarRepository,
    workflows: WorkflowStarter,
    settings: Settings,
    end: ExecutionEnd,
    ref: JobRef,
) -> Reconciled:
    kind = _RECORD_OF_KIND[ref.kind]
    record = repo.get_job(kind, ref.owner, ref.job_id)
    if record is None:
        return Reconciled(action=Action.UNCHANGED, detail=f"the {ref.kind} was deleted")
    if record.status not in (JobStatusName.QUEUED, JobStatusName.RUNNING):
        return Reconciled(action=Action.UNCHANGED, detail=f"the {ref.kind} is {record.status}")
    if _taken_over(record.execution_arn, end):
        return Reconciled(action=Action.UNCHANGED, detail=f"another execution has the {ref.kind}")
    if record.provider_job_id:
        resumed = _resume(repo, workflows, settings, end, record, ref.model_dump(exclude_none=True))
        if resumed is not None:
            # it still runs at the provider: its run slot is kept for the new execution
            holder = job_holder(ref.job_id)
            renew_slot(repo, settings, JOB_PROVIDERS[ref.kind], ref.kind, holder)
            return resumed
    reason = end.reason(paid=record.provider_job_id is not None)
    if repo.finish_job(
        kind, ref.owner, ref.job_id, JobStatusName.FAILED, reason, only_execution=end.execution_arn
    ):
        logger.warning(f"{ref.kind} reconciled as failed", extra={"reason": reason, **_ids(end)})
        release_slot(repo, settings, JOB_PROVIDERS[ref.kind], job_holder(ref.job_id))
        if not record.provider_job_id:
            quotas.release(repo, ref.owner, quotas.job_work(ref.kind, ref.job_id))
        return Reconciled(action=Action.FAILED, detail=reason)
    return Reconciled(action=Action.UNCHANGED, detail=f"the {ref.kind} moved on meanwhile")


def _resume(
    repo: AvatarRepository,
    workflows: WorkflowStarter,
    settings: Settings,
    end: ExecutionEnd,
    record: ModelRecord | JobRecord,
    payload: dict[str, Any],
) -> Reconciled | None:
    """Start the workflow again for a provider job whose id is stored; None when the resumes
    are spent (the caller fails the record)."""
    name = resume_name(end.name, record.resumes + 1)
    new_arn = execution_arn(end.state_machine_arn, name)
    if isinstance(record, ModelRecord):
        claimed = repo.claim_training_resume(
            record, end.execution_arn, new_arn, settings.max_resumes
        )
    else:
        claimed = repo.claim_job_resume(record, end.execution_arn, new_arn, settings.max_resumes)
    if not claimed:
        if record.resumes >= settings.max_resumes:
            return None
        return Reconciled(action=Action.UNCHANGED, detail="already reconciled")
    try:
        started = workflows.start(end.state_machine_arn, name, payload)
    except WorkflowUnavailable:
        repo.release_resume(record, end.execution_arn, new_arn)
        raise
    logger.info(
        "workflow resumed for a provider job whose id is stored",
        extra={"resumed_as": started, "resume": record.resumes + 1, **_ids(end)},
    )
    return Reconciled(action=Action.RESUMED, detail=name, execution_arn=started)


# -- the sweep: the backstop for ends no event brought --------------------------------------


class ExecutionLookup(Protocol):
    def describe(self, execution_arn: str) -> dict[str, Any] | None: ...


class SweepReport(BaseModel):
    examined: int = 0
    running: int = 0
    reconciled: dict[str, int] = Field(default_factory=dict)
    selfies_deleted: int = 0


def sweep(
    repo: AvatarRepository,
    workflows: WorkflowStarter,
    executions: ExecutionLookup,
    storage: Storage,
    settings: Settings,
) -> SweepReport:
    """Reconcile every record past its deadline whose execution is not running, and delete
    the selfies of failed models whose retry window has passed. Reads the sparse Active
    index, never the table."""
    report = SweepReport()
    for pk, sk in repo.list_overdue(now_iso(), settings.sweep_batch):
        report.examined += 1
        record = repo.get_by_key(pk, sk)
        if record is None:
            continue
        if isinstance(record, ModelRecord) and record.status in (
            ModelStatus.FAILED,
            ModelStatus.CANCELLED,
        ):
            report.selfies_deleted += _expire_failed_model(repo, storage, record, pk, sk)
            continue
        end = _overdue_end(record, executions, settings)
        if end is None:
            if _finished(record):
                repo.leave_sweep(pk, sk)
            else:
                report.running += 1
            continue
        outcome = reconcile(repo, workflows, settings, end)
        report.reconciled[outcome.action.value] = report.reconciled.get(outcome.action.value, 0) + 1
        if outcome.action is Action.UNCHANGED and _finished(repo.get_by_key(pk, sk)):
            repo.leave_sweep(pk, sk)
    return report


def _finished(record: ModelRecord | JobRecord | None) -> bool:
    if record is None:
        return True
    if isinstance(record, ModelRecord):
        return record.status is ModelStatus.READY
    return record.status not in (JobStatusName.QUEUED, JobStatusName.RUNNING)


def _expire_failed_model(
    repo: AvatarRepository, storage: Storage, model: ModelRecord, pk: str, sk: str
) -> int:
    """A failed (or cancelled) model's retry window has passed: its selfies are biometric
    data, so they go."""
    deleted = 0
    if model.selfies_deleted_at is None:
        deleted = training.delete_training_selfies(
            repo, storage, ModelRef(owner=model.owner, model_id=model.model_id)
        )
        logger.info(
            "selfies of a failed model deleted after its retry window",
            extra={"model_id": model.model_id, "objects": deleted},
        )
    repo.leave_sweep(pk, sk)
    return deleted


def _overdue_end(
    record: ModelRecord | JobRecord, executions: ExecutionLookup, settings: Settings
) -> ExecutionEnd | None:
    """How the record's execution ended, as Step Functions tells it; None while it runs or
    when the record is finished."""
    if _finished(record):
        return None
    if isinstance(record, ModelRecord):
        machine = settings.train_state_machine_arn
        attempt = max(record.training_attempt, 1)
        payload: dict[str, Any] = {
            "owner": record.owner,
            "model_id": record.model_id,
            "attempt": attempt,
        }
        arn = record.training_execution_arn or execution_arn(
            machine, training.training_execution_name(record.model_id, attempt)
        )
    else:
        kind = JOB_KINDS[type(record)]
        machine_field, execution_name = _WORKFLOW_OF_KIND[kind]
        machine = getattr(settings, machine_field)
        payload = {"kind": kind, "owner": record.owner, "job_id": record.job_id}
        # an API call that died between storing the job and storing its execution's ARN
        # leaves the ARN unknown; the execution's name is the job's, so ask by name
        arn = record.execution_arn or execution_arn(machine, execution_name(record.job_id))
    described = executions.describe(arn)
    name = arn.rsplit(":", 1)[-1]
    if described is None:
        return ExecutionEnd(
            execution_arn=arn,
            state_machine_arn=machine,
            name=name,
            status=EndStatus.MISSING,
            input=payload,
        )
    status = described.get("status")
    if status == "RUNNING":
        return None
    if status not in {s.value for s in EndStatus}:
        # it SUCCEEDED and yet the record is open: the recording step was lost
        status, described = (
            EndStatus.FAILED,
            {
                **described,
                "error": "States.Unknown",
                "cause": "the execution ended without recording an outcome",
            },
        )
    return ExecutionEnd(
        execution_arn=arn,
        state_machine_arn=machine,
        name=name,
        status=status,
        input=_json_object(described.get("input")) or payload,
        error=described.get("error"),
        cause=described.get("cause"),
        start_ms=epoch_ms(described.get("startDate")),
        stop_ms=epoch_ms(described.get("stopDate")),
    )


def _ids(end: ExecutionEnd) -> dict[str, Any]:
    return {"execution_arn": end.execution_arn, "status": end.status.value, **end.input}


def epoch_ms(moment: datetime | None) -> int | None:
    """DescribeExecution's dates as the status-change event's milliseconds."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
