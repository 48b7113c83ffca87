"""Deleting everything we hold of an owner (``DELETE /v1/me``), by a workflow that survives
failures.

The request writes a receipt (``running``) and starts the ``delete-owner`` workflow; while
the receipt exists the owner starts and uploads nothing new (the repository refuses it). The
workflow calls :func:`delete_step` until it is done, twice: first everything, then, after a
wait longer than anything still in flight can take to write (a result copy, an upload whose
link was handed out before, an event published from the table's stream), a final sweep.
Every step is idempotent — it deletes what it finds, from the start each time — so a step
retried after a failure, or a whole deletion sent again after one failed, finishes the job.

Order, and why:

1. The table's records, page by page: each model's selfies before the model (so a page
   cut short leaves none orphaned), then the page's records, then the executions of the
   jobs and trainings that were still running are stopped. Records go first so nothing can
   resume them: reconciliation resumes open records only, and a task still in flight finds
   its record gone (``JobGone``, ``ModelGone``; a result copied for a job that is gone is
   deleted again by the copy itself).
2. Every object under each of the owner's prefixes, in both buckets.
3. The wait, then 1 and 2 again.

The event publisher writes no event-log entries for an owner with a receipt, so the
deletion's own removals, arriving later on the stream, do not put any back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from avatar_core import ids
from avatar_core.errors import NotFound, WorkflowUnavailable
from avatar_core.models.deletion import (
    DeletionOutcome,
    DeletionRecord,
    DeletionRef,
    DeletionStatus,
    DeletionStep,
)
from avatar_core.observability import logger
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage, owner_prefixes
from avatar_core.store.workflows import WorkflowStarter, WorkflowStopper

DELETION = "del"
_STOPPED_BECAUSE = "the owner's data is being deleted (DELETE /v1/me)"
_NOT_STARTED = "the deletion workflow could not be started; send DELETE /v1/me again"


def deletion_execution_name(deletion_id: str) -> str:
    return f"delete-{deletion_id}"


def request_deletion(
    repo: AvatarRepository, workflows: WorkflowStarter, settings: Settings, owner: str
) -> DeletionRecord:
    """Start deleting everything of ``owner``, or answer the deletion already running."""
    stamp = ids.now()
    record = DeletionRecord(
        owner=owner,
        deletion_id=ids.new_id(DELETION),
        started_at=ids.iso(stamp),
        updated_at=ids.iso(stamp),
    )
    stale = ids.iso(stamp - timedelta(seconds=settings.deletion_stale_seconds))
    receipt, started = repo.start_deletion(record, stale_before=stale)
    if not started:
        return receipt
    try:
        arn = workflows.start(
            settings.delete_state_machine_arn,
            deletion_execution_name(record.deletion_id),
            DeletionRef(owner=owner, deletion_id=record.deletion_id).model_dump(),
        )
    except WorkflowUnavailable:
        # nothing runs: the receipt says so, and the client's retry (503) starts a new one
        repo.finish_deletion(owner, record.deletion_id, DeletionStatus.FAILED, _NOT_STARTED)
        raise
    repo.set_deletion_execution(owner, record.deletion_id, arn)
    return record.model_copy(update={"execution_arn": arn})


def get_deletion(repo: AvatarRepository, owner: str) -> DeletionRecord:
    receipt = repo.get_deletion(owner)
    if receipt is None:
        raise NotFound("no deletion of this account's data was requested")
    return receipt


def delete_step(
    repo: AvatarRepository,
    storage: Storage,
    executions: WorkflowStopper,
    settings: Settings,
    step: DeletionStep,
    remaining_ms: Callable[[], int],
) -> DeletionStep:
    """Delete pages of the owner's records, then of its objects, while the invocation has
    time; answer where the deletion stands. A step ends at the end of its phase, so each
    invocation does one kind of work (and a failure is easy to place)."""
    records = objects = stopped = 0
    phase, index, done = step.phase, step.prefix_index, False
    prefixes = owner_prefixes(step.owner)
    while remaining_ms() > settings.deletion_reserve_ms:
        if phase == "records":
            page = repo.delete_owner_records(step.owner, settings.deletion_page_size)
            records += page.deleted
            for arn in page.running_executions:
                stopped += executions.stop(arn, _STOPPED_BECAUSE)
            if page.deleted == 0:
                phase, index = "objects", 0
                break
            continue
        if index >= len(prefixes):
            done = True
            break
        kind, prefix = prefixes[index]
        deleted = storage.delete_first_page(storage.bucket(kind), prefix)
        objects += deleted
        if deleted == 0:
            index += 1
    if records or objects or stopped:
        repo.count_deletion(step.owner, step.deletion_id, records, objects, stopped)
    logger.info(
        "deletion step",
        extra={
            "deletion_id": step.deletion_id,
            "sweep": step.sweep,
            "phase": step.phase,
            "records": records,
            "objects": objects,
            "stopped": stopped,
        },
    )
    return step.model_copy(
        update={
            "phase": phase,
            "prefix_index": index,
            "done": done,
            "pages": step.pages + 1,
            "wait_seconds": settings.deletion_settle_seconds,
        }
    )


def record_outcome(repo: AvatarRepository, outcome: DeletionOutcome) -> dict[str, str]:
    if outcome.outcome == "succeeded":
        repo.finish_deletion(outcome.owner, outcome.deletion_id, DeletionStatus.SUCCEEDED)
        return {"status": DeletionStatus.SUCCEEDED.value, "reason": ""}
    reason = outcome.reason()
    repo.finish_deletion(outcome.owner, outcome.deletion_id, DeletionStatus.FAILED, reason)
    logger.warning("deletion failed", extra={"deletion_id": outcome.deletion_id, "reason": reason})
    return {"status": DeletionStatus.FAILED.value, "reason": reason}
