"""Signed webhooks to the app's backend, through the whole pipeline: the table's stream, the
publisher, the FIFO delivery queue, the delivery function and a receiver that verifies
every request with the ``standardwebhooks`` library."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import boto3
import pytest

from local.client import ApiClient, EventFeed, wait_until
from local.stack import LocalStack
from local.webhook_receiver import Delivery, WebhookReceiver

pytestmark = pytest.mark.integration


@pytest.fixture()
def receiver(stack: LocalStack, webhooks: WebhookReceiver) -> Iterator[WebhookReceiver]:
    """The session's receiver, with nothing of earlier tests still on its way."""
    stack.wait_for_events()
    webhooks.answer_with([])
    yield webhooks
    webhooks.answer_with([])


def deliveries_of(receiver: WebhookReceiver, model_id: str) -> list[Delivery]:
    return [d for d in receiver.deliveries if d.data.get("model_id") == model_id]


def dead_letters(stack: LocalStack) -> list[dict]:
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=f"{stack.stack.stack_name}-webhook-dead-letters.fifo")
    messages = sqs.receive_message(
        QueueUrl=url["QueueUrl"], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", [])
    return messages


def test_every_event_reaches_the_backend_signed_in_order_as_the_log_lists_it(
    stack: LocalStack, client: ApiClient, receiver: WebhookReceiver
) -> None:
    model_id = client.create_model("woman")["model_id"]
    client.delete_model(model_id)
    feed = EventFeed(client)
    feed.wait_for("model.deleted", model_id=model_id)

    got = wait_until(lambda: deliveries_of(receiver, model_id), lambda d: len(d) >= 2, timeout=30)

    # verified by the receiver with the library; the same documents as the log, in order
    assert [d.type for d in got] == ["model.created", "model.deleted"]
    assert [d.data for d in got] == [e for e in feed.seen if e.get("model_id") == model_id]
    assert [d.webhook_id for d in got] == [d.data["event_id"] for d in got]
    for delivery in got:
        body = json.loads(delivery.body)
        assert set(body) == {"type", "timestamp", "data"}
        assert delivery.headers["webhook-signature"].startswith("v1,")
        assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 300


def test_a_backend_failing_twice_gets_the_same_event_three_times_then_keeps_it(
    stack: LocalStack, client: ApiClient, receiver: WebhookReceiver
) -> None:
    receiver.answer_with([500, 503, 200])
    model_id = client.create_model("man")["model_id"]

    got = wait_until(lambda: deliveries_of(receiver, model_id), lambda d: len(d) >= 3, timeout=30)
    stack.wait_for_events()

    assert [d.status for d in deliveries_of(receiver, model_id)] == [500, 503, 200]
    assert len({d.webhook_id for d in got}) == 1  # one id: the backend deduplicates on it
    assert got[0].type == "model.created"


def test_a_backend_refusing_with_410_is_not_retried_and_the_event_is_dead_lettered(
    stack: LocalStack, client: ApiClient, receiver: WebhookReceiver
) -> None:
    receiver.answer_with([410])
    model_id = client.create_model("man")["model_id"]

    wait_until(lambda: deliveries_of(receiver, model_id), lambda d: len(d) >= 1, timeout=30)
    stack.wait_for_events()

    assert [d.status for d in deliveries_of(receiver, model_id)] == [410]
    letters = [m for m in dead_letters(stack) if model_id in m["Body"]]
    assert len(letters) == 1
    assert "410" in letters[0]["MessageAttributes"]["reason"]["StringValue"]
