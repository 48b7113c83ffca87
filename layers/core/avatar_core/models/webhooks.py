"""Webhook deliveries: the queued message, its Standard Webhooks payload, one attempt.

The event publisher puts one message per event on an SQS FIFO queue: the body is the JSON
of the payload below (posted byte for byte as it was queued), the MessageGroupId is the
event's subject (one job or model, so its events arrive in order) and the
MessageDeduplicationId is the event id, which is also the ``webhook-id`` header.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class WebhookEventData(BaseModel):
    """The event document; only its id matters to delivery, the rest is passed on as is."""

    model_config = ConfigDict(extra="allow", frozen=True)

    event_id: str = Field(pattern=r"^evt_[A-Za-z0-9_-]+$")


class WebhookPayload(BaseModel):
    """A Standard Webhooks payload: ``{"type", "timestamp", "data"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(pattern=r"^[a-z_]+\.[a-z_]+$", examples=["model.ready"])
    timestamp: AwareDatetime
    data: WebhookEventData


class QueuedWebhook(BaseModel):
    """One SQS FIFO record of the delivery queue, as delivery needs it."""

    model_config = ConfigDict(frozen=True)

    message_id: str
    receipt_handle: str
    body: str
    group_id: str
    deduplication_id: str
    queue_arn: str
    receive_count: int = Field(ge=1)
    first_sent_at: datetime

    @classmethod
    def from_record(cls, record: SqsRecordModel) -> QueuedWebhook:
        attributes = record.attributes
        return cls(
            message_id=record.messageId,
            receipt_handle=record.receiptHandle,
            body=str(record.body),
            group_id=attributes.MessageGroupId or "",
            deduplication_id=attributes.MessageDeduplicationId or record.messageId,
            queue_arn=record.eventSourceARN,
            receive_count=int(attributes.ApproximateReceiveCount),
            first_sent_at=attributes.SentTimestamp,
        )


class DeliveryAttempt(BaseModel):
    """What one POST to the receiver came to: a status, or the error that prevented one."""

    model_config = ConfigDict(frozen=True)

    status: int | None = None
    error: str | None = None
    retry_after: str | None = None
    elapsed_ms: float = Field(ge=0)


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"
    SKIPPED = "skipped"
    """Not attempted: an earlier event of the same subject is waiting for its retry."""


class DeliveryOutcome(BaseModel):
    """What became of one queued webhook in one invocation."""

    model_config = ConfigDict(frozen=True)

    message_id: str
    group_id: str
    webhook_id: str | None = None
    verdict: Verdict
    attempts: int = Field(ge=1)
    status: int | None = None
    reason: str | None = None
    delay_seconds: int | None = None
    elapsed_ms: float | None = None
