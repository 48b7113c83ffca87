"""Signed webhooks reach the app's backend: verified, retried on what may pass, dead-lettered
on what will not, in order per subject, never held up by a slow receiver.

The delivery function runs as on Lambda against moto's SQS and SSM (``mock_aws``, via the
``aws`` fixture), posting over loopback to the real local receiver, which verifies every
request with the ``standardwebhooks`` library.
A retry is driven the way SQS drives it: the test lets the backoff pass (visibility back to
0) and hands the function the message received again.
"""

from __future__ import annotations

import importlib.util
import json
import random
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters import base as parameters_base
from standardwebhooks import Webhook

from avatar_core.errors import WebhookRefused
from avatar_core.logic.webhooks import (
    BASE_DELAY_SECONDS,
    MAX_DELAY_SECONDS,
    backoff_seconds,
    deliver_batch,
    retry_after_seconds,
    retry_delay,
)
from avatar_core.models.webhooks import DeliveryAttempt, DeliveryOutcome, QueuedWebhook
from avatar_core.store import webhooks as webhook_store
from avatar_core.store.webhooks import check_webhook_url
from local.webhook_receiver import WebhookReceiver, local_secret

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "functions" / "webhook_delivery" / "app.py"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class FakeContext:
    """What powertools and the handler read of a Lambda context."""

    remaining_ms: int = 300_000
    function_name: str = "webhook-delivery"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:webhook-delivery"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Delivery:
    """The delivery function on Lambda, its queues, and the app's receiver."""

    app: ModuleType
    sqs: Any
    queue_url: str
    queue_arn: str
    dlq_url: str
    receiver: WebhookReceiver
    visibility_changes: list[int]
    metrics: list[tuple[str, float]]

    def publish(self, event_type: str, group: str, **data: Any) -> dict[str, Any]:
        """Queue one event as the publisher does; returns its payload."""
        event_id = f"evt_{uuid.uuid4().hex}"
        payload = {
            "type": event_type,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "data": {"event_id": event_id, "version": 1, **data},
        }
        self.sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=json.dumps(payload, separators=(",", ":")),
            MessageGroupId=group,
            MessageDeduplicationId=event_id,
        )
        return payload

    def receive(self, count: int = 1) -> list[dict[str, Any]]:
        """The queue's next records, shaped as the SQS event source mapping hands them over."""
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        return [self._record(message) for message in answer.get("Messages", [])]

    def let_backoff_pass(self, record: dict[str, Any]) -> None:
        self.sqs.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
        )

    def invoke(self, records: list[dict[str, Any]], **context: Any) -> list[str]:
        """Runs the function on one batch; returns the ids it reported failed."""
        self.visibility_changes.clear()
        answer = self.app.lambda_handler({"Records": records}, FakeContext(**context))
        return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]

    def dead_letters(self) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=self.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        return answer.get("Messages", [])

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message["Attributes"],
            "messageAttributes": {},
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": "us-east-1",
        }


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


@pytest.fixture()
def deliver_to(
    aws: None, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """``deliver_to(url, **settings)``: the function configured as the local stack does."""
    parameters_base.DEFAULT_PROVIDERS.clear()
    parameter = f"/avatar/test/webhook-secret-{uuid.uuid4().hex}"
    boto3.client("ssm").put_parameter(Name=parameter, Value=SECRET, Type="SecureString")
    sqs = boto3.client("sqs")
    name = f"deliveries-{uuid.uuid4().hex[:8]}"
    queue_url = sqs.create_queue(QueueName=f"{name}.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]

    def configured(url: str | None = None, **settings: str) -> Delivery:
        env = {
            "WEBHOOK_URL": receiver.url if url is None else url,
            "WEBHOOK_SECRET_PARAMETER": parameter,
            "WEBHOOK_DEAD_LETTER_QUEUE_URL": dlq_url,
            "WEBHOOK_ALLOW_HTTP": "true",
            "WEBHOOK_ALLOW_LOOPBACK": "true",
            **{key.upper(): value for key, value in settings.items()},
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        spec = importlib.util.spec_from_file_location(f"webhook_app_{uuid.uuid4().hex}", APP)
        assert spec is not None and spec.loader is not None
        app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)
        monkeypatch.setattr(app.metrics, "namespace", "AvatarPipelineTest")
        delivery = Delivery(app, sqs, queue_url, queue_arn, dlq_url, receiver, [], [])
        _spy(delivery)
        return delivery

    yield configured
    parameters_base.DEFAULT_PROVIDERS.clear()


def _spy(delivery: Delivery) -> None:
    """Record the visibility delays the function sets and the metrics it emits."""
    client = delivery.app.queue._sqs
    change = client.change_message_visibility

    def recorded_change(**kwargs: Any) -> Any:
        delivery.visibility_changes.append(kwargs["VisibilityTimeout"])
        return change(**kwargs)

    client.change_message_visibility = recorded_change
    add_metric = delivery.app.metrics.add_metric

    def recorded_metric(*, name: str, unit: Any, value: float) -> None:
        delivery.metrics.append((name, value))
        add_metric(name=name, unit=unit, value=value)

    delivery.app.metrics.add_metric = recorded_metric


def _attribute(message: dict[str, Any], name: str) -> str:
    return message["MessageAttributes"][name]["StringValue"]


# --- signing -----------------------------------------------------------------------------


def test_a_delivery_is_signed_so_the_receiver_verifies_it_and_gets_the_exact_payload(
    deliver_to: Any,
) -> None:
    delivery = deliver_to()
    payload = delivery.publish("model.ready", "mdl_1", model_id="mdl_1", status="ready")
    records = delivery.receive()

    assert delivery.invoke(records) == []

    (got,) = delivery.receiver.wait_for(1)
    assert delivery.receiver.refused == 0
    assert got.body == records[0]["body"].encode()
    assert Webhook(SECRET).verify(got.body, got.headers) == payload
    assert (got.webhook_id, got.type, got.data) == (
        payload["data"]["event_id"],
        "model.ready",
        payload["data"],
    )
    assert got.headers["content-type"] == "application/json"
    assert "avatar-pipeline" in got.headers["user-agent"]
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    assert [name for name, _ in delivery.metrics] == ["WebhookDelivered", "WebhookLatency"]


def test_a_receiver_holding_another_secret_refuses_the_signature(deliver_to: Any) -> None:
    other = "whsec_" + "A" * 43
    with WebhookReceiver(other) as stranger:
        delivery = deliver_to(stranger.url)
        delivery.publish("model.created", "mdl_2", model_id="mdl_2")

        assert delivery.invoke(delivery.receive()) == []

        assert stranger.refused == 1 and stranger.deliveries == []
        (dead,) = delivery.dead_letters()
        assert _attribute(dead, "status") == "400"


# --- retries -----------------------------------------------------------------------------


def test_a_receiver_answering_500_twice_then_200_gets_the_event_three_times_with_one_id(
    deliver_to: Any,
) -> None:
    delivery = deliver_to()
    delivery.receiver.answer_with([500, 500, 200])
    payload = delivery.publish("generation.succeeded", "gen_1", generation_id="gen_1")

    for receive_count in (1, 2):
        (record,) = delivery.receive()
        assert record["attributes"]["ApproximateReceiveCount"] == str(receive_count)
        assert delivery.invoke([record]) == [record["messageId"]]
        (delay,) = delivery.visibility_changes
        assert delay > 0
        delivery.let_backoff_pass(record)
    (record,) = delivery.receive()
    assert delivery.invoke([record]) == []
    assert delivery.visibility_changes == []

    got = delivery.receiver.wait_for(3)
    assert [d.status for d in got] == [500, 500, 200]
    assert {d.webhook_id for d in got} == {payload["data"]["event_id"]}
    assert delivery.dead_letters() == []


def test_a_receiver_answering_410_is_not_retried_and_the_event_is_dead_lettered(
    deliver_to: Any,
) -> None:
    delivery = deliver_to()
    delivery.receiver.answer_with([410])
    payload = delivery.publish("model.failed", "mdl_3", model_id="mdl_3", reason="no face")
    (record,) = delivery.receive()

    assert delivery.invoke([record]) == []

    assert len(delivery.receiver.wait_for(1)) == 1
    assert delivery.visibility_changes == []
    (dead,) = delivery.dead_letters()
    assert json.loads(dead["Body"]) == payload
    assert _attribute(dead, "status") == "410"
    assert _attribute(dead, "reason") == 'answered 410: {"status": 410}'
    assert _attribute(dead, "attempts") == "1"
    assert ("WebhookDeadLettered", 1) in delivery.metrics


def test_a_receiver_answering_429_with_retry_after_is_left_alone_that_long(
    deliver_to: Any,
) -> None:
    delivery = deliver_to()
    delivery.receiver.answer_with([429])
    delivery.publish("selfie.accepted", "mdl_4", model_id="mdl_4")
    (record,) = delivery.receive()

    assert delivery.invoke([record]) == [record["messageId"]]

    (delay,) = delivery.visibility_changes
    assert 120 <= delay <= MAX_DELAY_SECONDS


def test_a_receiver_slower_than_the_limit_counts_as_a_failure_and_never_holds_the_batch(
    deliver_to: Any,
) -> None:
    delivery = deliver_to(webhook_timeout_seconds="0.5")
    delivery.receiver.delay = 2.0
    delivery.publish("generation.running", "gen_5", generation_id="gen_5")
    (record,) = delivery.receive()

    started = time.monotonic()
    failed = delivery.invoke([record])
    elapsed = time.monotonic() - started

    assert failed == [record["messageId"]]
    assert elapsed < 1.5
    (delay,) = delivery.visibility_changes
    assert delay > 0
    assert ("WebhookRetried", 1) in delivery.metrics


def test_a_receiver_trickling_its_answer_is_cut_off_at_the_limit(deliver_to: Any) -> None:
    delivery = deliver_to(webhook_timeout_seconds="0.5")
    delivery.receiver.trickle = 3.0  # a byte every ~30 ms: no single read ever times out
    delivery.publish("generation.running", "gen_5b", generation_id="gen_5b")
    (record,) = delivery.receive()

    started = time.monotonic()
    failed = delivery.invoke([record])
    elapsed = time.monotonic() - started

    assert failed == [record["messageId"]]
    assert elapsed < 1.5
    assert len(delivery.visibility_changes) == 1


def test_a_secret_that_cannot_be_read_backs_off_instead_of_dead_lettering(
    deliver_to: Any,
) -> None:
    delivery = deliver_to(webhook_secret_parameter="/avatar/test/no-such-secret")
    delivery.publish("model.ready", "mdl_12", model_id="mdl_12")
    (record,) = delivery.receive()

    assert delivery.invoke([record]) == [record["messageId"]]

    assert delivery.receiver.deliveries == [] and delivery.dead_letters() == []
    (delay,) = delivery.visibility_changes
    assert delay > 0


def test_after_24_hours_of_failures_the_event_is_dead_lettered_not_retried(
    deliver_to: Any,
) -> None:
    delivery = deliver_to()
    delivery.receiver.answer_with([503])
    delivery.publish("model.training", "mdl_6", model_id="mdl_6")
    (record,) = delivery.receive()
    day_ago = datetime.now(UTC) - timedelta(hours=24, minutes=1)
    record["attributes"]["SentTimestamp"] = str(int(day_ago.timestamp() * 1000))
    record["attributes"]["ApproximateReceiveCount"] = "40"

    assert delivery.invoke([record]) == []

    assert delivery.visibility_changes == []
    (dead,) = delivery.dead_letters()
    assert "24 h" in _attribute(dead, "reason")
    assert _attribute(dead, "attempts") == "40"


def test_a_retry_is_never_scheduled_past_the_24_hours(deliver_to: Any) -> None:
    delivery = deliver_to()
    delivery.receiver.answer_with([500])
    delivery.publish("model.training", "mdl_7", model_id="mdl_7")
    (record,) = delivery.receive()
    almost_a_day = datetime.now(UTC) - timedelta(hours=23, minutes=59)
    record["attributes"]["SentTimestamp"] = str(int(almost_a_day.timestamp() * 1000))
    record["attributes"]["ApproximateReceiveCount"] = "30"

    assert delivery.invoke([record]) == [record["messageId"]]

    (delay,) = delivery.visibility_changes
    assert 1 <= delay <= 60


# --- order per subject -------------------------------------------------------------------


def test_a_waiting_event_holds_back_its_subjects_later_events_but_not_other_subjects(
    deliver_to: Any,
) -> None:
    delivery = deliver_to()
    delivery.receiver.answer_with([500])
    first_a = delivery.publish("generation.queued", "gen_A", generation_id="gen_A")
    only_b = delivery.publish("generation.queued", "gen_B", generation_id="gen_B")
    second_a = delivery.publish("generation.running", "gen_A", generation_id="gen_A")
    records = delivery.receive(10)
    by_event = {json.loads(r["body"])["data"]["event_id"]: r["messageId"] for r in records}
    assert len(records) == 3

    failed = delivery.invoke(records)

    a1, b1, a2 = (by_event[p["data"]["event_id"]] for p in (first_a, only_b, second_a))
    assert set(failed) == {a1, a2} and b1 not in failed
    got = delivery.receiver.wait_for(2)
    assert [d.webhook_id for d in got] == [
        first_a["data"]["event_id"],
        only_b["data"]["event_id"],
    ]
    assert [d.status for d in got] == [500, 200]
    assert len(delivery.visibility_changes) == 1


def test_records_left_when_the_invocation_runs_short_wait_unattempted(deliver_to: Any) -> None:
    delivery = deliver_to()
    delivery.publish("model.created", "mdl_8", model_id="mdl_8")
    (record,) = delivery.receive()

    assert delivery.invoke([record], remaining_ms=5_000) == [record["messageId"]]

    assert delivery.receiver.deliveries == []
    assert delivery.visibility_changes == []


class _FlakyQueue:
    """SQS refusing the visibility change of one message."""

    def __init__(self, broken_message_id: str) -> None:
        self.broken = broken_message_id
        self.retried: list[tuple[str, int]] = []
        self.dead: list[str] = []

    def retry_later(self, message: QueuedWebhook, delay_seconds: int) -> None:
        if message.message_id == self.broken:
            raise ConnectionError("SQS is unreachable")
        self.retried.append((message.message_id, delay_seconds))

    def dead_letter(self, message: QueuedWebhook, outcome: DeliveryOutcome) -> None:
        self.dead.append(message.message_id)


class _SenderAnswering:
    def __init__(self, status: int) -> None:
        self.status = status
        self.sent: list[str] = []

    def send(self, webhook_id: str, body: str) -> DeliveryAttempt:
        self.sent.append(webhook_id)
        return DeliveryAttempt(status=self.status, elapsed_ms=1)


def _queued(group: str, receive_count: int = 1) -> QueuedWebhook:
    event_id = f"evt_{uuid.uuid4().hex}"
    body = {
        "type": "model.ready",
        "timestamp": "2026-12-03T07:01:02Z",
        "data": {"event_id": event_id},
    }
    return QueuedWebhook(
        message_id=str(uuid.uuid4()),
        receipt_handle="handle",
        body=json.dumps(body),
        group_id=group,
        deduplication_id=event_id,
        queue_arn="arn:aws:sqs:us-east-1:123456789012:deliveries.fifo",
        receive_count=receive_count,
        first_sent_at=datetime.now(UTC),
    )


def test_when_sqs_fails_a_retry_the_message_is_kept_and_its_subject_waits() -> None:
    broken, same_subject, other_subject = _queued("A"), _queued("A"), _queued("B")
    queue = _FlakyQueue(broken.message_id)
    sender = _SenderAnswering(503)

    report = deliver_batch(
        [broken, same_subject, other_subject], sender, queue, retry_window=timedelta(days=1)
    )

    assert report.failed_message_ids == [
        broken.message_id,
        same_subject.message_id,
        other_subject.message_id,
    ]
    assert sender.sent == [broken.deduplication_id, other_subject.deduplication_id]
    assert [message_id for message_id, _ in queue.retried] == [other_subject.message_id]


def test_a_body_that_is_not_a_webhook_payload_is_dead_lettered_unsent() -> None:
    message = _queued("A").model_copy(update={"body": '{"type": "model.ready"}'})
    queue = _FlakyQueue("none")
    sender = _SenderAnswering(200)

    report = deliver_batch([message], sender, queue, retry_window=timedelta(days=1))

    assert report.failed_message_ids == []
    assert sender.sent == [] and queue.dead == [message.message_id]
    assert report.outcomes[0].reason is not None
    assert report.outcomes[0].reason.startswith("not a webhook payload")


# --- where we post -----------------------------------------------------------------------


def test_a_url_that_is_not_https_is_refused_and_nothing_is_posted(deliver_to: Any) -> None:
    delivery = deliver_to(webhook_allow_http="false")
    delivery.publish("model.ready", "mdl_9", model_id="mdl_9")

    assert delivery.invoke(delivery.receive()) == []

    assert delivery.receiver.deliveries == []
    (dead,) = delivery.dead_letters()
    assert _attribute(dead, "reason") == "webhook URL must be https"
    assert ("WebhookDeadLettered", 1) in delivery.metrics


def test_a_url_on_a_private_address_is_refused(deliver_to: Any) -> None:
    delivery = deliver_to("https://10.0.0.5/hook")
    delivery.publish("model.ready", "mdl_10", model_id="mdl_10")

    assert delivery.invoke(delivery.receive()) == []

    (dead,) = delivery.dead_letters()
    assert _attribute(dead, "reason") == "webhook URL resolves to a private address 10.0.0.5"


def test_a_host_name_resolving_to_a_private_address_is_refused(
    deliver_to: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["192.168.1.1"]

    monkeypatch.setattr(webhook_store, "resolve_host", resolve)
    delivery = deliver_to("https://hooks.app.example/webhooks")
    delivery.publish("model.ready", "mdl_11", model_id="mdl_11")

    assert delivery.invoke(delivery.receive()) == []

    assert resolved == ["hooks.app.example"]
    (dead,) = delivery.dead_letters()
    assert _attribute(dead, "reason") == "webhook URL resolves to a private address 192.168.1.1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.app.example/webhooks", "webhook URL must be https"),
        ("ftp://hooks.app.example/webhooks", "webhook URL must be https"),
        ("https://127.0.0.1/hook", "webhook URL resolves to a loopback address 127.0.0.1"),
        ("https://169.254.169.254/", "webhook URL resolves to the cloud metadata address"),
        ("https://[::ffff:10.1.2.3]/hook", "webhook URL resolves to a private address"),
        ("https://user:pw@hooks.app.example/", "webhook URL must not carry credentials"),
    ],
)
def test_config_time_check_names_what_is_wrong_with_the_url(url: str, message: str) -> None:
    with pytest.raises(WebhookRefused) as refused:
        check_webhook_url(url, resolve=lambda host, port: ["93.184.215.14"])
    assert refused.value.message.startswith(message)


def test_http_is_allowed_locally_for_loopback_only() -> None:
    loopback = check_webhook_url(
        "http://localhost:8080/hook",
        allow_http=True,
        allow_loopback=True,
        resolve=lambda host, port: ["127.0.0.1"],
    )
    assert loopback == ("http", "localhost", 8080, ("127.0.0.1",))
    with pytest.raises(WebhookRefused, match="http is allowed for loopback only"):
        check_webhook_url(
            "http://hooks.app.example/",
            allow_http=True,
            allow_loopback=True,
            resolve=lambda host, port: ["93.184.215.14"],
        )


# --- backoff -----------------------------------------------------------------------------


def test_backoff_with_full_jitter_stays_within_its_cap_and_grows_with_attempts() -> None:
    rng = random.Random(12)
    means = []
    for attempt in range(1, 16):
        cap = min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** (attempt - 1))
        draws = [backoff_seconds(attempt, rng) for _ in range(2000)]
        assert all(0 <= draw <= cap for draw in draws)
        assert max(draws) > 0.9 * cap
        means.append(statistics.fmean(draws))
        delays = [retry_delay(attempt, None, rng) for _ in range(200)]
        assert all(1 <= delay <= MAX_DELAY_SECONDS for delay in delays)
    growing = means[: means.index(max(means)) + 1]
    assert growing == sorted(growing) and len(growing) >= 7
    assert all(abs(mean - MAX_DELAY_SECONDS / 2) < 100 for mean in means[8:])


def test_retry_after_is_honoured_as_seconds_or_an_http_date_and_capped() -> None:
    moment = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)
    assert retry_after_seconds("120", moment) == 120
    assert retry_after_seconds("Thu, 03 Dec 2026 07:05:00 GMT", moment) == 300
    assert retry_after_seconds("Thu, 03 Dec 2026 06:00:00 GMT", moment) == 0
    assert retry_after_seconds("999999", moment) == MAX_DELAY_SECONDS
    assert retry_after_seconds("soon", moment) is None
    assert retry_delay(1, 120, random.Random(1)) >= 120


# --- the local stack's secret ------------------------------------------------------------


def test_the_local_secret_is_created_once_and_kept(tmp_path: Path) -> None:
    secret = local_secret(tmp_path)
    assert secret.startswith("whsec_") and local_secret(tmp_path) == secret
    Webhook(secret)
    assert (tmp_path / "webhook-secret").stat().st_mode & 0o077 == 0


def test_the_sample_event_is_one_webhook_in_the_contract() -> None:
    from aws_lambda_powertools.utilities.parser import parse
    from aws_lambda_powertools.utilities.parser.models import SqsModel

    from avatar_core.models.webhooks import QueuedWebhook, WebhookPayload

    event = json.loads((ROOT / "events" / "webhook_delivery.json").read_text())
    (record,) = parse(event, SqsModel).Records
    message = QueuedWebhook.from_record(record)
    payload = WebhookPayload.model_validate_json(message.body)
    assert message.deduplication_id == payload.data.event_id
    extra = payload.data.model_extra or {}
    assert message.group_id == f"{extra['owner']}/{extra['model_id']}"  # Event.group()
