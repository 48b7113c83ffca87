"""The avatar-job state machine's tasks (generations, face and instant avatars). Wiring only.

One code folder, several functions: each deployed function uses one handler and gets only
the permissions that handler needs. The job kind travels in the event.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_core.logic import avatar_jobs, face_avatars
from avatar_core.logic.limiter import Admission
from avatar_core.logic.owner_share import owner_shares
from avatar_core.logic.provider_queue import SubmitQueue
from avatar_core.logic.run_slots import run_slots
from avatar_core.models.workflow import CopyTask, JobOutcome, JobRef, PollState
from avatar_core.observability import MetricUnit, logger, metrics, observed
from avatar_core.providers.picsart import PicsartClient
from avatar_core.providers.qolaba import QolabaClient
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.result_copy import CopyPolicy, ResultCopier
from avatar_core.store.storage import Storage

settings = Settings.from_env()
repo = AvatarRepository(settings.table_name)
storage = Storage(settings.uploads_bucket, settings.results_bucket)
# Every request to a provider takes a token from its limiter, shared by all executions;
# paid submissions wait their turn for it in the provider's queue, and for a run slot under
# the provider's cap (each kind with its own lease, from its poll schedule), each owner
# holding at most its share of the queue.
admission = Admission(repo, settings)
slots = {
    kind: run_slots(repo, settings, provider, kind)
    for kind, provider in avatar_jobs.JOB_PROVIDERS.items()
}
queues = {
    kind: SubmitQueue(
        repo,
        admission.limiter(provider),
        slots=slots[kind],
        shares=owner_shares(repo, settings, provider),
    )
    for kind, provider in avatar_jobs.JOB_PROVIDERS.items()
}


@cache
def spec(kind: str) -> avatar_jobs.JobSpec:
    """Provider clients are built on first use, so a function only reads its own secret."""
    if kind == "generation":
        picsart = PicsartClient.from_settings(settings, admit=admission.gate("picsart"))
        return avatar_jobs.GenerationSpec(repo, picsart, settings)
    if kind == "instant":
        picsart = PicsartClient.from_settings(settings, admit=admission.gate("picsart"))
        return avatar_jobs.InstantSpec(repo, storage, picsart, settings)
    qolaba = QolabaClient.from_settings(settings, admit=admission.gate("qolaba"))
    return avatar_jobs.FaceSpec(repo, storage, qolaba, settings)


@cache
def copier() -> ResultCopier:
    return ResultCopier(
        boto3.client("s3"), settings.results_bucket, CopyPolicy.from_settings(settings)
    )


@observed
def submit(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ref = JobRef.model_validate(event)
    logger.append_keys(job_id=ref.job_id, kind=ref.kind)
    earlier = PollState.model_validate(event["poll"]) if event.get("poll") else None
    queue = queues[ref.kind]
    poll = avatar_jobs.submit_job(repo, spec(ref.kind), ref, earlier, queue)
    if poll.submitted:
        metrics.add_metric(name=f"{ref.kind.title()}JobsSubmitted", unit=MetricUnit.Count, value=1)
    return poll.model_dump(mode="json")


@observed
def check(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ref = JobRef.model_validate(event)
    logger.append_keys(job_id=ref.job_id, kind=ref.kind)
    poll = avatar_jobs.check_job(
        repo, spec(ref.kind), ref, PollState.model_validate(event["poll"]), slots[ref.kind]
    )
    logger.info("job polled", extra={"state": poll.state, "polls": poll.polls})
    return poll.model_dump(mode="json")


@observed
def copy(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = CopyTask.model_validate(event)
    logger.append_keys(job_id=task.job_id, kind=task.kind, avatar_id=task.item.avatar_id)
    copied = avatar_jobs.copy_result(repo, storage, copier(), spec(task.kind), task)
    metrics.add_metric(name="AvatarsCopied", unit=MetricUnit.Count, value=1)
    return copied


@observed
def record(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    outcome = JobOutcome.model_validate(event)
    result = avatar_jobs.record_outcome(
        repo, spec(outcome.kind), outcome, settings.reference_retention_seconds
    )
    if result["status"] == "failed":
        logger.warning("job failed", extra={"job_id": outcome.job_id, "reason": result["reason"]})
    metrics.add_metric(name=f"Jobs_{result['status']}", unit=MetricUnit.Count, value=1)
    return result


@observed
def release_reference(event: dict[str, Any], context: LambdaContext) -> dict[str, bool]:
    ref = JobRef.model_validate(event)
    logger.append_keys(job_id=ref.job_id, kind=ref.kind)
    deleted = face_avatars.release_finished_job_reference(
        repo, storage, ref.kind, ref.owner, ref.job_id
    )
    logger.info("reference image released after the job", extra={"deleted": deleted})
    return {"deleted": deleted}
