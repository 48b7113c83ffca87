"""Reconciliation: Step Functions' own "execution ended abnormally" events, from EventBridge,
and the scheduled sweep behind them. Wiring only; the rules are in
``avatar_core.logic.reconcile``.

Errors propagate on purpose: EventBridge invokes this function asynchronously, so Lambda
retries a failed invocation, and the scheduled sweep is the backstop after that.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_core.logic import reconcile
from avatar_core.observability import MetricUnit, logger, metrics, observed
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage
from avatar_core.store.workflows import Workflows

settings = Settings.from_env()
repo = AvatarRepository(settings.table_name)
workflows = Workflows()
storage = Storage(settings.uploads_bucket, settings.results_bucket)


@observed
def execution_ended(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    end = reconcile.ExecutionEnd.from_event(event)
    logger.append_keys(execution_arn=end.execution_arn, status=end.status.value)
    outcome = reconcile.reconcile(repo, workflows, settings, end)
    logger.info("execution reconciled", extra=outcome.model_dump())
    if outcome.action is not reconcile.Action.UNCHANGED:
        name = (
            "WorkflowsResumed"
            if outcome.action is reconcile.Action.RESUMED
            else "RecordsReconciledFailed"
        )
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    return outcome.model_dump(mode="json")


@observed
def sweep(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = reconcile.sweep(repo, workflows, workflows, storage, settings)
    logger.info("sweep done", extra=report.model_dump())
    metrics.add_metric(name="SweepOverdueRecords", unit=MetricUnit.Count, value=report.examined)
    return report.model_dump(mode="json")
