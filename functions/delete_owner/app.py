"""The delete-owner state machine's tasks: delete pages of an owner's records and objects,
and record the outcome on the receipt. Wiring only; see ``avatar_core.logic.deletion``.

One code folder, two functions: each gets only the permissions its handler needs.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_core.logic import deletion
from avatar_core.models.deletion import DeletionOutcome, DeletionStep
from avatar_core.observability import MetricUnit, logger, metrics, observed
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage
from avatar_core.store.workflows import Workflows

settings = Settings.from_env()
repo = AvatarRepository(settings.table_name)
storage = Storage(settings.uploads_bucket, settings.results_bucket)
workflows = Workflows()


@observed
def delete_page(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = DeletionStep.model_validate(event)
    logger.append_keys(deletion_id=step.deletion_id, sweep=step.sweep, phase=step.phase)
    after = deletion.delete_step(
        repo, storage, workflows, settings, step, context.get_remaining_time_in_millis
    )
    return after.model_dump(mode="json")


@observed
def record(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    outcome = DeletionOutcome.model_validate(event)
    result = deletion.record_outcome(repo, outcome)
    metrics.add_metric(name=f"OwnerDeletions_{result['status']}", unit=MetricUnit.Count, value=1)
    return result
