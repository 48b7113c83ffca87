"""Training a model: starting it once, submitting it once, polling it, recording the end.

The provider's model id is the most valuable thing we store: it is written to DynamoDB in
the same task that receives it, before the task returns, so no state of the workflow ever
holds it alone. A submit task that runs again (a retry after a lost response from us) finds
the id already stored and does not submit a second training.
"""

from __future__ import annotations

from datetime import timedelta

from avatar_core.errors import (
    ACCOUNT_EXHAUSTED,
    PROVIDER_BUSY,
    Conflict,
    NotFound,
    PaidWorkKept,
    PaidWorkPending,
    ProviderRateLimited,
    SubmissionQueued,
    WorkflowUnavailable,
)
from avatar_core.ids import iso, now, now_iso
from avatar_core.logic.breaker import ProviderBreaker
from avatar_core.logic.models import expire_abandoned_uploads, get_model
from avatar_core.logic.owner_share import leave_share
from avatar_core.logic.polling import busy_poll, busy_submit, first_poll, next_poll
from avatar_core.logic.provider_queue import SubmitQueue, had_its_turn, in_turn, standing
from avatar_core.logic.quotas import PaidWork, Quotas, never_paid, release
from avatar_core.logic.run_slots import RunSlots, end_frees_slot, release_slot, training_holder
from avatar_core.models.records import ModelRecord, ModelStatus, SelfieStatus
from avatar_core.models.workflow import ModelRef, PollState, TrainingFailed, TrainingReady
from avatar_core.observability import logger
from avatar_core.providers.base import TrainingProvider
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage, model_prefixes
from avatar_core.store.workflows import WorkflowStarter, WorkflowStopper

# Trainings run on Picsart (its breaker gates them); named here, not imported, so the API
# function does not load the provider client.
TRAINING_PROVIDER = "picsart"


class ModelGone(NotFound):
    """The model was deleted while its workflow ran: nothing is left to record."""


class StaleTraining(Conflict):
    """A workflow of an earlier training attempt: the model has been trained again since."""


class TrainingCancelled(Conflict):
    """The training was cancelled before the selfies were sent to the provider: its
    workflow ends (the state machine catches this by name) and nothing is submitted."""


def training_execution_name(model_id: str, attempt: int = 1, resume: int = 0) -> str:
    """``train-<model_id>``, ``-t<attempt>`` from the second attempt on, ``-r<resume>``
    for an execution that reconciliation started again."""
    name = f"train-{model_id}"
    if attempt > 1:
        name += f"-t{attempt}"
    if resume:
        name += f"-r{resume}"
    return name


def start_training(
    repo: AvatarRepository,
    workflows: WorkflowStarter,
    settings: Settings,
    owner: str,
    model_id: str,
) -> ModelRecord:
    model = get_model(repo, owner, model_id)
    if expire_abandoned_uploads(repo, model):
        model = get_model(repo, owner, model_id)
    _check_trainable(model, settings.min_selfies_for_training)
    ProviderBreaker(repo, settings).admit(TRAINING_PROVIDER)
    # Counted before it starts; a refusal (429) or a start that fails (503) leaves nothing.
    with Quotas(repo, settings).reserved(
        owner, PaidWork.training(model_id, model.training_attempt + 1)
    ):
        before = repo.begin_training(
            owner,
            model_id,
            settings.min_selfies_for_training,
            settings.deadline(settings.training_deadline_seconds),
        )
        attempt = before.training_attempt + 1
        try:
            arn = workflows.start(
                settings.train_state_machine_arn,
                training_execution_name(model_id, attempt),
                ModelRef(owner=owner, model_id=model_id, attempt=attempt).model_dump(),
            )
        except WorkflowUnavailable:
            # Nothing runs for this attempt: the model goes back to where it was, so the
            # client's retry (after Retry-After) starts it. The attempt number is spent, so
            # a start that did get through unseen is stale and submits nothing.
            repo.undo_training_start(before, attempt)
            raise
    return repo.update_model(owner, model_id, training_execution_arn=arn)


def retrainable(model: ModelRecord) -> bool:
    """A failed or cancelled model can be trained again while we still keep its selfies."""
    return (
        model.status in (ModelStatus.FAILED, ModelStatus.CANCELLED)
        and model.selfies_deleted_at is None
        and model.retry_until is not None
        and model.retry_until > now_iso()
    )


def _check_trainable(model: ModelRecord, minimum: int) -> None:
    if model.status is ModelStatus.TRAINING:
        raise Conflict("the model is already training")
    if model.status is ModelStatus.READY:
        raise Conflict("the model is already trained and ready for generations")
    if model.status is ModelStatus.FAILED and not retrainable(model):
        raise Conflict(
            f"the model's training failed ({model.error}) and its selfies are no longer "
            "kept; create a new model to retry"
        )
    if model.status is ModelStatus.CANCELLED and not retrainable(model):
        raise Conflict(
            "the model's training was cancelled and its selfies are no longer kept; "
            "create a new model to train"
        )
    if model.pending:
        raise Conflict(
            f"{model.pending} uploaded selfie(s) are still being checked; "
            "start training once none is pending"
        )
    if model.accepted < minimum:
        raise Conflict(
            f"training needs at least {minimum} accepted selfies; this model has "
            f"{model.accepted}, so upload {minimum - model.accepted} more"
        )


def _model_in_workflow(repo: AvatarRepository, ref: ModelRef) -> ModelRecord:
    model = repo.get_model(ref.owner, ref.model_id)
    if model is None:
        raise ModelGone(f"model {ref.model_id} was deleted during training")
    if max(model.training_attempt, 1) != ref.attempt:
        raise StaleTraining(
            f"this workflow is for training attempt {ref.attempt} of model {ref.model_id}; "
            f"the model is on attempt {model.training_attempt}"
        )
    return model


def submit_training(
    repo: AvatarRepository,
    storage: Storage,
    provider: TrainingProvider,
    settings: Settings,
    ref: ModelRef,
    poll: PollState | None = None,
    queue: SubmitQueue | None = None,
) -> PollState:
    """``poll`` is the loop's state when the provider refused an earlier submit for now, or
    the training waits its turn in the provider's ``queue``."""
    model = _model_in_workflow(repo, ref)
    if model.provider_model_id:
        logger.info(
            "training already submitted", extra={"provider_model_id": model.provider_model_id}
        )
        return _first_poll(provider, model.provider_model_id)
    if model.status is ModelStatus.TRAINING and not repo.begin_training_submission(
        ref.owner, ref.model_id, ref.attempt
    ):
        model = _model_in_workflow(repo, ref)
    if model.status is ModelStatus.CANCELLED:
        raise TrainingCancelled(f"model {ref.model_id}'s training was cancelled before it began")
    if model.status is not ModelStatus.TRAINING:
        raise Conflict(f"model {ref.model_id} is {model.status.value}, not training")
    keys = [
        s.normalised_key
        for s in repo.list_selfies(ref.owner, ref.model_id)
        if s.status is SelfieStatus.ACCEPTED and s.normalised_key
    ]
    urls = [
        storage.presign_get(storage.uploads_bucket, key, settings.provider_fetch_url_ttl_seconds)[0]
        for key in keys
    ]
    try:
        job = in_turn(
            queue,
            poll,
            lambda: provider.submit_training(image_urls=urls, subject=model.subject),
            training_holder(ref.model_id, ref.attempt),
            ref.owner,
        )
    except SubmissionQueued as queued:
        # Picsart is at its limit and others came first: wait our turn, in view.
        place = standing(queued, settings.limiter_time_factor)
        repo.note_training_queued(ref.owner, ref.model_id, ref.attempt, place)
        return busy_submit(poll, queued, settings.training_poll_seconds)
    except PROVIDER_BUSY as busy:
        # Refused for now (429, 5xx): nothing was bought; wait as advised and submit again.
        if isinstance(busy, ProviderRateLimited):  # a 429 took nothing: cancel is free
            repo.note_training_queued(ref.owner, ref.model_id, ref.attempt, None)
        return had_its_turn(busy_submit(poll, busy, settings.training_poll_seconds), queue)
    except ACCOUNT_EXHAUSTED as exhausted:
        ProviderBreaker(repo, settings).trip(exhausted.provider, exhausted)
        raise
    ProviderBreaker(repo, settings).accepted(TRAINING_PROVIDER)
    # Logged before it is stored: if the write below failed, the id is still recoverable.
    logger.info(
        "provider accepted training", extra={"provider_model_id": job.job_id, **ref.model_dump()}
    )
    if not repo.store_provider_model_id(ref.owner, ref.model_id, ref.attempt, job.job_id):
        logger.error(
            "provider model id could not be stored: the model moved on during the submit",
            extra={"provider_model_id": job.job_id, **ref.model_dump()},
        )
        raise StaleTraining(f"model {ref.model_id} left training attempt {ref.attempt}")
    return _first_poll(provider, job.job_id)


def cancel_training(
    repo: AvatarRepository,
    workflows: WorkflowStopper,
    settings: Settings,
    owner: str,
    model_id: str,
) -> ModelRecord:
    """Cancel a training whose selfies have not been sent to the provider, at no cost, and
    stop its workflow. The model keeps its selfies and can be trained again until
    ``retry_until``, like a failed one. The conditional write closes the race with the
    submit task: either this cancel wins and nothing is submitted, or the submit began
    first and the training is paid for (409). Cancelling a cancelled training answers it."""
    get_model(repo, owner, model_id)
    retry_until = iso(now() + timedelta(hours=settings.failed_selfie_retention_hours))
    if not repo.cancel_training(owner, model_id, retry_until):
        current = get_model(repo, owner, model_id)
        if current.status is ModelStatus.CANCELLED:
            return current
        if current.status is ModelStatus.TRAINING:
            raise PaidWorkKept(
                "the training was already handed to the provider, so it is paid for: it runs "
                "to its end and the trained model will be kept"
            )
        raise Conflict(f"the model is {current.status.value}: only a training can be cancelled")
    model = get_model(repo, owner, model_id)
    if model.training_execution_arn:
        workflows.stop(model.training_execution_arn, f"training of {model_id} cancelled")
    training_cancelled(repo, settings, model)
    return model


def training_cancelled(repo: AvatarRepository, settings: Settings, model: ModelRecord) -> None:
    """Runs once after each successful cancel of a training: nothing was sent to the
    provider, so the training's quota is given back."""
    logger.info(
        "training cancelled before it was submitted",
        extra={"model_id": model.model_id, "owner": model.owner},
    )
    attempt = max(model.training_attempt, 1)
    release(repo, model.owner, PaidWork.training(model.model_id, attempt))
    # a submit the provider refused for now (429) may hold a run slot: it is free again;
    # one still queued holds a place in its owner's share of the queue
    holder = training_holder(model.model_id, attempt)
    release_slot(repo, settings, TRAINING_PROVIDER, holder)
    leave_share(repo, settings, TRAINING_PROVIDER, model.owner, holder)


def _first_poll(provider: TrainingProvider, provider_model_id: str) -> PollState:
    return first_poll(provider_model_id, provider.training_poll_advice(0).wait_seconds)


def check_training(
    repo: AvatarRepository,
    provider: TrainingProvider,
    settings: Settings,
    ref: ModelRef,
    poll: PollState,
    slots: RunSlots | None = None,
) -> PollState:
    """``slots``: the cap's run slots, whose lease this poll renews (the training runs)."""
    _model_in_workflow(repo, ref)
    if slots is not None:
        slots.renew(training_holder(ref.model_id, ref.attempt))
    try:
        status = provider.training_status(poll.provider_job_id)
    except PROVIDER_BUSY as busy:
        # Throttled or down: not a failure of a training the provider is running for us.
        return busy_poll(poll, busy, settings.training_poll_seconds)
    except ACCOUNT_EXHAUSTED as exhausted:
        # The training is paid for and running: wait for the account, never fail it for that.
        ProviderBreaker(repo, settings).trip(exhausted.provider, exhausted)
        return busy_poll(poll, exhausted, settings.breaker_cool_off_seconds)
    if status.progress is not None:
        repo.update_model(ref.owner, ref.model_id, training_progress=status.progress)
    return next_poll(poll, status, provider.training_poll_advice, settings.training_max_polls)


def record_ready(repo: AvatarRepository, settings: Settings, ref: ModelRef) -> TrainingReady:
    release_slot(repo, settings, TRAINING_PROVIDER, training_holder(ref.model_id, ref.attempt))
    _model_in_workflow(repo, ref)
    stamp = now_iso()
    repo.finish_training(
        ref.owner, ref.model_id, ModelStatus.READY, ready_at=stamp, training_progress=100.0
    )
    return TrainingReady(retention_seconds=settings.selfie_retention_seconds)


def record_failed(repo: AvatarRepository, settings: Settings, failure: TrainingFailed) -> str:
    """Mark the model failed with a reason a person can act on; its selfies are kept
    ``failed_selfie_retention_hours`` so it can be trained again until ``retry_until``."""
    reason = failure.reason()
    model = repo.get_model(failure.owner, failure.model_id)
    if model is None or max(model.training_attempt, 1) != failure.attempt:
        release_slot(repo, settings, TRAINING_PROVIDER, _holder(failure))
        return reason
    if failure.in_submit() and model.provider_model_id and model.status is ModelStatus.TRAINING:
        # the training runs at the provider: it keeps its slot for the resumed workflow
        raise PaidWorkPending(
            f"the provider accepted training {model.provider_model_id} but the submit step "
            f"failed ({reason}); the workflow ends so it is resumed, not failed"
        )
    fail_training(repo, settings, failure.owner, failure.model_id, reason)
    error_type = failure.error.Error if failure.error else None
    if end_frees_slot(failure.in_submit(), error_type):
        # (a submit whose answer was lost may run at the provider: its slot keeps its lease)
        release_slot(repo, settings, TRAINING_PROVIDER, _holder(failure))
    if failure.in_submit() and never_paid(error_type, model.provider_model_id):
        release(repo, failure.owner, PaidWork.training(failure.model_id, failure.attempt))
    if failure.in_submit():  # (it may have failed still queued, holding a place in its share)
        leave_share(repo, settings, TRAINING_PROVIDER, failure.owner, _holder(failure))
    return reason


def _holder(failure: TrainingFailed) -> str:
    return training_holder(failure.model_id, failure.attempt)


def fail_training(
    repo: AvatarRepository,
    settings: Settings,
    owner: str,
    model_id: str,
    reason: str,
    only_execution: str | None = None,
) -> bool:
    """training → failed, once; False if the model was not training (or, with
    ``only_execution``, is in the hands of another execution)."""
    retry_until = iso(now() + timedelta(hours=settings.failed_selfie_retention_hours))
    return repo.finish_training(
        owner,
        model_id,
        ModelStatus.FAILED,
        only_execution=only_execution,
        error=reason,
        retry_until=retry_until,
    )


def delete_training_selfies(repo: AvatarRepository, storage: Storage, ref: ModelRef) -> int:
    """Selfies are biometric data: once the model is trained, the images go."""
    uploads, normalised, _ = model_prefixes(ref.owner, ref.model_id)
    deleted = storage.delete_prefix(storage.uploads_bucket, uploads)
    deleted += storage.delete_prefix(storage.uploads_bucket, normalised)
    if repo.get_model(ref.owner, ref.model_id) is not None:
        stamp = now_iso()
        repo.update_model(ref.owner, ref.model_id, selfies_deleted_at=stamp, updated_at=stamp)
    return deleted
