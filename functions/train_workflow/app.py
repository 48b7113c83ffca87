"""The training state machine's tasks. One handler per state; wiring only.

Errors propagate on purpose: their class names are what the ASL's Retry and Catch match.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_core.logic import training
from avatar_core.logic.limiter import Admission
from avatar_core.logic.owner_share import owner_shares
from avatar_core.logic.provider_queue import SubmitQueue
from avatar_core.logic.run_slots import run_slots
from avatar_core.models.workflow import ModelRef, PollState, TrainingFailed
from avatar_core.observability import MetricUnit, logger, metrics, observed
from avatar_core.providers.picsart import PicsartClient
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage

settings = Settings.from_env()
repo = AvatarRepository(settings.table_name)
storage = Storage(settings.uploads_bucket, settings.results_bucket)
# Every request to Picsart takes a token from its limiter, shared by all executions;
# trainings wait their turn for it in Picsart's queue, and for a run slot under its cap,
# each owner holding at most its share of the queue.
admission = Admission(repo, settings)
provider = PicsartClient.from_settings(settings, admit=admission.gate(training.TRAINING_PROVIDER))
slots = run_slots(repo, settings, training.TRAINING_PROVIDER, "training")
queue = SubmitQueue(
    repo,
    admission.limiter(training.TRAINING_PROVIDER),
    slots=slots,
    shares=owner_shares(repo, settings, training.TRAINING_PROVIDER),
)


@observed
def submit(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ref = ModelRef.model_validate(event)
    logger.append_keys(model_id=ref.model_id)
    earlier = PollState.model_validate(event["poll"]) if event.get("poll") else None
    poll = training.submit_training(repo, storage, provider, settings, ref, earlier, queue)
    if poll.submitted:
        metrics.add_metric(name="TrainingsSubmitted", unit=MetricUnit.Count, value=1)
    return poll.model_dump(mode="json")


@observed
def check(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ref = ModelRef.model_validate(event)
    logger.append_keys(model_id=ref.model_id)
    poll = training.check_training(
        repo, provider, settings, ref, PollState.model_validate(event["poll"]), slots
    )
    logger.info("training polled", extra={"state": poll.state, "polls": poll.polls})
    return poll.model_dump(mode="json")


@observed
def record(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("outcome") == "ready":
        ref = ModelRef.model_validate(event)
        ready = training.record_ready(repo, settings, ref)
        metrics.add_metric(name="ModelsReady", unit=MetricUnit.Count, value=1)
        return ready.model_dump()
    failure = TrainingFailed.model_validate(event)
    reason = training.record_failed(repo, settings, failure)
    logger.warning("training failed", extra={"model_id": failure.model_id, "reason": reason})
    metrics.add_metric(name="TrainingsFailed", unit=MetricUnit.Count, value=1)
    return {"reason": reason}


@observed
def delete_selfies(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    ref = ModelRef.model_validate(event)
    deleted = training.delete_training_selfies(repo, storage, ref)
    logger.info(
        "selfies deleted after training", extra={"model_id": ref.model_id, "objects": deleted}
    )
    return {"deleted": deleted}
