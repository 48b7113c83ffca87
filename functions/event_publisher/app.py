"""Every status change, from the table's stream to the bus, the webhook queue and the event
log. Wiring only; what a change means is ``avatar_core.logic.events``.

The event source mapping reads the stream in order per item; a change that cannot be sent
is reported as the batch's failure, and the mapping sends it (and what follows) again.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_core.logic import events
from avatar_core.observability import MetricUnit, logger, metrics, observed
from avatar_core.settings import Settings
from avatar_core.store.events import EventBus, EventLog, WebhookQueue, change_from_stream
from avatar_core.store.repository import AvatarRepository

settings = Settings.from_env()
sinks: list[events.Sink] = [EventBus(settings.event_bus_name, settings.event_source)]
if settings.webhook_queue_url:
    sinks.append(WebhookQueue(settings.webhook_queue_url))
sinks.append(EventLog(AvatarRepository(settings.table_name)))


@observed
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    changes = [
        (record["dynamodb"]["SequenceNumber"], change_from_stream(record))
        for record in event.get("Records", [])
    ]
    outcome = events.publish(changes, sinks)
    for sent in outcome.events:
        logger.debug("event published", extra={"event_id": sent.event_id, "type": sent.type})
    metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=len(outcome.events))
    for sequence, why in outcome.unreadable:
        logger.error(
            "change skipped: no event can be read from it",
            extra={"sequence_number": sequence, "error": why},
        )
        metrics.add_metric(name="EventPublishFailures", unit=MetricUnit.Count, value=1)
    if outcome.failed_at is None:
        return {"batchItemFailures": []}
    logger.error(
        "publishing stopped; the change is delivered again",
        extra={"sequence_number": outcome.failed_at, "error": outcome.error},
    )
    metrics.add_metric(name="EventPublishFailures", unit=MetricUnit.Count, value=1)
    return {"batchItemFailures": [{"itemIdentifier": outcome.failed_at}]}
