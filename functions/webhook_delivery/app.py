"""SQS FIFO delivery queue -> signed webhooks to the app's backend. Wiring only; the rules
are in ``avatar_core.logic.webhooks``.

Answers with ``batchItemFailures`` (the event source mapping reports batch item failures):
a retry is a failed record whose visibility was already set to its backoff, so SQS, not
this function, waits. Delivered and dead-lettered records succeed and leave the queue.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import SqsModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_core.logic import webhooks
from avatar_core.models.webhooks import QueuedWebhook, Verdict
from avatar_core.observability import MetricUnit, logger, metrics, observed
from avatar_core.settings import Settings
from avatar_core.store.webhooks import DeliveryQueue, WebhookSender

settings = Settings.from_env()
sender = WebhookSender.from_settings(settings)
queue = DeliveryQueue(settings.webhook_dead_letter_queue_url)
# an attempt may take the whole timeout; stop a little before Lambda would cut us off
RESERVE_MS = (settings.webhook_timeout_seconds + 2) * 1000


@observed
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    messages = [QueuedWebhook.from_record(record) for record in parse(event, SqsModel).Records]
    report = webhooks.deliver_batch(
        messages,
        sender,
        queue,
        retry_window=timedelta(seconds=settings.webhook_retry_seconds),
        has_time=lambda: context.get_remaining_time_in_millis() > RESERVE_MS,
    )
    for outcome in report.outcomes:
        details = outcome.model_dump(mode="json", exclude_none=True)
        if outcome.verdict is Verdict.DELIVERED:
            logger.info("webhook delivered", extra=details)
            metrics.add_metric(name="WebhookDelivered", unit=MetricUnit.Count, value=1)
            metrics.add_metric(
                name="WebhookLatency",
                unit=MetricUnit.Milliseconds,
                value=outcome.elapsed_ms or 0,
            )
        elif outcome.verdict is Verdict.GIVE_UP:
            logger.error("webhook dead-lettered", extra=details)
            metrics.add_metric(name="WebhookDeadLettered", unit=MetricUnit.Count, value=1)
        elif outcome.verdict is Verdict.RETRY:
            logger.warning("webhook will be retried", extra=details)
            metrics.add_metric(name="WebhookRetried", unit=MetricUnit.Count, value=1)
    return {
        "batchItemFailures": [
            {"itemIdentifier": message_id} for message_id in report.failed_message_ids
        ]
    }
