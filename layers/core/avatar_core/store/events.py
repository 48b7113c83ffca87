"""Where events go: the stack's EventBridge bus and, when a webhook is set, a FIFO queue of
deliveries. The event log that ``GET /v1/events`` reads is in the repository."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from avatar_core.logic.events import Change
from avatar_core.models.events import Event
from avatar_core.store import clients
from avatar_core.store.repository import AvatarRepository, from_item

_DESERIALIZER = TypeDeserializer()
# PutEvents and SendMessageBatch take at most ten entries a call.
_BATCH = 10


class PublishFailed(Exception):
    """Some entries were refused; the whole change is published again (ids are stable)."""


def change_from_stream(record: dict[str, Any]) -> Change:
    """A DynamoDB stream record (as Lambda delivers it) as a :class:`Change`."""
    body = record["dynamodb"]
    stamp = body.get("ApproximateCreationDateTime")
    moment = (
        datetime.fromtimestamp(float(stamp), UTC)
        if isinstance(stamp, int | float | str)
        else datetime.now(UTC)
    )
    return Change(
        record_id=record["eventID"],
        sort_key=body["Keys"]["SK"]["S"],
        old=_image(body.get("OldImage")),
        new=_image(body.get("NewImage")),
        stamp=moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )


def _image(image: dict[str, Any] | None) -> dict[str, Any] | None:
    if not image:
        return None
    return from_item({k: _DESERIALIZER.deserialize(v) for k, v in image.items()})


class _AwsSink:
    """A sink behind one AWS client, made on first use (cold starts make none they skip)."""

    service = ""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = clients.client(self.service)
        return self._client


def _batches(events: list[Event]) -> Iterator[list[Event]]:
    for start in range(0, len(events), _BATCH):
        yield events[start : start + _BATCH]


class EventBus(_AwsSink):
    service = "events"

    def __init__(self, bus_name: str, source: str, client: Any = None) -> None:
        super().__init__(client)
        self.bus_name = bus_name
        self.source = source

    def put(self, events: list[Event]) -> None:
        for batch in _batches(events):
            answer = self.client.put_events(
                Entries=[
                    {
                        "EventBusName": self.bus_name,
                        "Source": self.source,
                        "DetailType": event.type,
                        "Detail": json.dumps(event.document(), separators=(",", ":")),
                        "Time": datetime.fromisoformat(event.occurred_at.replace("Z", "+00:00")),
                    }
                    for event in batch
                ]
            )
            if answer.get("FailedEntryCount"):
                codes = {e.get("ErrorCode") for e in answer["Entries"] if e.get("ErrorCode")}
                raise PublishFailed(f"EventBridge refused {answer['FailedEntryCount']}: {codes}")


def webhook_payload(event: Event) -> str:
    """A Standard Webhooks payload: ``type``, ``timestamp`` and the event as ``data``."""
    body = {"type": event.type, "timestamp": event.occurred_at, "data": event.document()}
    return json.dumps(body, separators=(",", ":"))


class WebhookQueue(_AwsSink):
    """The FIFO queue the webhook delivery function drains: one message group per subject
    (a model with its selfies, a job, an image), so its events reach the app in order."""

    service = "sqs"

    def __init__(self, queue_url: str, client: Any = None) -> None:
        super().__init__(client)
        self.queue_url = queue_url

    def put(self, events: list[Event]) -> None:
        for batch in _batches(events):
            answer = self.client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {
                        "Id": str(index),
                        "MessageBody": webhook_payload(event),
                        "MessageGroupId": event.group(),
                        # the queue drops a second copy of an event sent again within 5 minutes
                        "MessageDeduplicationId": event.event_id,
                    }
                    for index, event in enumerate(batch)
                ],
            )
            if answer.get("Failed"):
                codes = {e.get("Code") for e in answer["Failed"]}
                raise PublishFailed(f"SQS refused {len(answer['Failed'])}: {codes}")


class EventLog:
    """The owners' event logs in the table (``GET /v1/events``), as a sink.

    An owner with a deletion receipt gets no entries: the removals of ``DELETE /v1/me``
    reach the stream after the records are gone and would otherwise write the owner's log
    anew (the bus and the webhooks still get them, for the app's backend to act on)."""

    def __init__(self, repo: AvatarRepository) -> None:
        self._repo = repo

    def put(self, events: list[Event]) -> None:
        deleted = self._repo.owners_with_deletion({event.owner for event in events})
        kept = [event for event in events if event.owner not in deleted]
        if kept:
            self._repo.put_events(kept)
