"""Lambda's event source mappings, locally: the table's stream and SQS queues polled on
threads of their own, the way Lambda's pollers do it, never inside the write.

moto can create an ``AWS::Lambda::EventSourceMapping`` but then invokes the function
synchronously inside every DynamoDB write, and in total order. The deployer leaves the
mappings out (``local.deploy``) and hands their definitions here instead:

- **DynamoDB stream.** moto keeps one shard in total order; AWS keeps order only per item
  (a shard holds some partition keys, and shards are read in parallel). So the records are
  dealt to ``STREAM_SHARDS`` virtual shards by partition key, each read by its own thread:
  events of different records really do race, as they do on AWS. The mapping's
  ``FilterCriteria`` are applied with moto's EventBridge pattern matcher (the same pattern
  language), ``BatchSize`` is honoured, and with ``ReportBatchItemFailures`` a batch is sent
  again from the reported sequence number after a pause (the records before it count as
  done), up to ``MAX_RETRIES`` times; then the batch is dropped with an error in the log, as
  an on-failure destination would get it.
- **SQS.** ``ReceiveMessage`` with the mapping's batch size; messages the function did not
  report as failed are deleted; the others stay in flight until their visibility timeout
  (which the function may have changed) expires, as with Lambda. FIFO message groups are
  honoured by moto's SQS (no message of a group in flight is handed out).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

log = logging.getLogger("local.event_sources")

STREAM_SHARDS = 4
MAX_RETRIES = 50
RETRY_PAUSE_SECONDS = 0.2
POLL_SECONDS = 0.05

Invoke = Callable[[str, dict[str, Any]], dict[str, Any] | None]


@dataclass(frozen=True)
class MappingSpec:
    """What the template says about one event source mapping."""

    logical_id: str
    source_arn: str
    function_name: str
    batch_size: int
    filters: tuple[str, ...] = ()
    report_batch_item_failures: bool = False


@dataclass
class _Shard:
    records: deque[dict[str, Any]] = field(default_factory=deque)
    busy: bool = False


class _Poller:
    def __init__(self, spec: MappingSpec, invoke: Invoke, region: str) -> None:
        self.spec = spec
        self._invoke = invoke
        self.region = region
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.dropped: list[dict[str, Any]] = []

    def start(self) -> None:
        for target in self._loops():
            thread = threading.Thread(target=self._guarded(target), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def idle(self) -> bool:
        raise NotImplementedError

    def _loops(self) -> list[Callable[[], None]]:
        raise NotImplementedError

    def _guarded(self, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    loop()
                except Exception:  # a poller must outlive any one failure, like Lambda's
                    if self._stop.is_set():
                        return
                    log.exception("%s: poller error", self.spec.logical_id)
                    time.sleep(RETRY_PAUSE_SECONDS)

        return run


class StreamPoller(_Poller):
    def __init__(self, spec: MappingSpec, invoke: Invoke, region: str) -> None:
        super().__init__(spec, invoke, region)
        # DynamoDB Streams has an account-id endpoint now; moto answers the regional one
        self._streams = boto3.client(
            "dynamodbstreams",
            region_name=region,
            config=Config(account_id_endpoint_mode="disabled"),
        )
        from moto.events.models import EventPattern

        self._patterns = [EventPattern.load(p) for p in spec.filters]
        self._shards = [_Shard() for _ in range(STREAM_SHARDS)]
        self._reading = True
        self._ready = threading.Condition(self.lock)
        self._iterator: str | None = None

    def idle(self) -> bool:
        with self.lock:
            return not self._reading and all(
                not shard.records and not shard.busy for shard in self._shards
            )

    def _loops(self) -> list[Callable[[], None]]:
        return [self._read, *[self._worker(index) for index in range(STREAM_SHARDS)]]

    def _read(self) -> None:
        if self._iterator is None:
            shard_id = self._streams.describe_stream(StreamArn=self.spec.source_arn)[
                "StreamDescription"
            ]["Shards"][0]["ShardId"]
            self._iterator = self._streams.get_shard_iterator(
                StreamArn=self.spec.source_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        while not self._stop.is_set():
            with self.lock:
                self._reading = True
            page = self._streams.get_records(ShardIterator=self._iterator, Limit=1000)
            self._iterator = page["NextShardIterator"]
            records = [self._as_delivered(r) for r in page.get("Records", [])]
            with self._ready:
                for record in records:
                    if self._patterns and not any(p.matches_event(record) for p in self._patterns):
                        continue
                    key = json.dumps(record["dynamodb"]["Keys"].get("PK"), sort_keys=True)
                    self._shards[zlib.crc32(key.encode()) % STREAM_SHARDS].records.append(record)
                self._reading = bool(records)
                self._ready.notify_all()
            if not records:
                self._stop.wait(POLL_SECONDS)

    def _as_delivered(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as Lambda hands it over: times in epoch seconds, the source's ARN."""
        body = dict(record["dynamodb"])
        stamp = body.get("ApproximateCreationDateTime")
        if hasattr(stamp, "timestamp"):
            body["ApproximateCreationDateTime"] = int(stamp.timestamp())
        return {**record, "dynamodb": body, "eventSourceARN": self.spec.source_arn}

    def _worker(self, index: int) -> Callable[[], None]:
        shard = self._shards[index]

        def work() -> None:
            with self._ready:
                while not shard.records and not self._stop.is_set():
                    self._ready.wait(0.5)
                if self._stop.is_set():
                    return
                batch = [
                    shard.records[i] for i in range(min(len(shard.records), self.spec.batch_size))
                ]
                shard.busy = True
            try:
                self._deliver(batch)
            finally:
                with self.lock:
                    for _ in batch:
                        shard.records.popleft()
                    shard.busy = False

        return work

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        for attempt in range(MAX_RETRIES + 1):
            if self._stop.is_set():
                return
            answer = self._invoke(self.spec.function_name, {"Records": batch})
            failed = _failed_items(answer, self.spec.report_batch_item_failures)
            if failed is None:
                return
            numbers = [r["dynamodb"]["SequenceNumber"] for r in batch]
            start = numbers.index(failed) if failed in numbers else 0
            batch = batch[start:]
            log.info("%s: resending from %s (attempt %d)", self.spec.logical_id, failed, attempt)
            self._stop.wait(RETRY_PAUSE_SECONDS * min(2**attempt, 20))
        log.error(
            "%s: %d records dropped after %d retries", self.spec.logical_id, len(batch), MAX_RETRIES
        )
        self.dropped += batch


class QueuePoller(_Poller):
    def __init__(self, spec: MappingSpec, invoke: Invoke, region: str) -> None:
        super().__init__(spec, invoke, region)
        self._sqs = boto3.client("sqs", region_name=region)
        name = spec.source_arn.rsplit(":", 1)[-1]
        self.queue_url = self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
        self._busy = False

    def idle(self) -> bool:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        waiting = int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )
        with self.lock:
            return not self._busy and waiting == 0

    def _loops(self) -> list[Callable[[], None]]:
        return [self._poll]

    def _poll(self) -> None:
        with self.lock:
            self._busy = True
        try:
            messages = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(self.spec.batch_size, 10),
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if messages:
                self._deliver(messages)
        finally:
            with self.lock:
                self._busy = False
        if not messages:
            self._stop.wait(POLL_SECONDS * 4)

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody"),
                "eventSource": "aws:sqs",
                "eventSourceARN": self.spec.source_arn,
                "awsRegion": self.region,
            }
            for m in messages
        ]
        answer = self._invoke(self.spec.function_name, {"Records": records})
        if answer is None:  # the function failed: every message comes back after its timeout
            return
        failed = {
            item["itemIdentifier"]
            for item in (answer.get("batchItemFailures") or [])
            if self.spec.report_batch_item_failures
        }
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + 10])
                ],
            )


def _failed_items(answer: dict[str, Any] | None, partial: bool) -> str | None:
    """None when the batch is done; else the sequence number to resend from ("" = all)."""
    if answer is None:
        return ""
    failures = answer.get("batchItemFailures") or [] if partial else []
    if not failures:
        return None
    return str(failures[0]["itemIdentifier"])


class EventSources:
    """Every mapping of the deployed template, polled until :meth:`stop`."""

    def __init__(self, specs: list[MappingSpec], invoke: Invoke, region: str) -> None:
        self.pollers: list[_Poller] = []
        for spec in specs:
            kind = StreamPoller if ":dynamodb:" in spec.source_arn else QueuePoller
            self.pollers.append(kind(spec, invoke, region))

    def start(self) -> EventSources:
        for poller in self.pollers:
            poller.start()
        return self

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stop()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every change so far has been delivered (tests and the demo use it)."""
        deadline = time.monotonic() + timeout
        settled = 0
        while time.monotonic() < deadline:
            settled = settled + 1 if all(p.idle() for p in self.pollers) else 0
            if settled >= 3:  # idle three looks in a row: no hand-over in between
                return True
            time.sleep(POLL_SECONDS * 2)
        return False
