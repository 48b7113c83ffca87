"""What an app builder attaches to the stack's bus, done in the tests: a rule sending every
event of the stack to an SQS queue they read (the README's example, through boto3)."""

from __future__ import annotations

import json
import uuid
from functools import cache
from typing import Any

import boto3
from jsonschema import Draft202012Validator

from local import event_schemas
from local.stack import LocalStack


@cache
def validators() -> dict[str, Draft202012Validator]:
    return {t: Draft202012Validator(s) for t, s in event_schemas.generated().items()}


def schema_violations(document: dict[str, Any]) -> list[str]:
    validator = validators().get(document.get("type", ""))
    if validator is None:
        return [f"no schema for event type {document.get('type')!r}"]
    return [error.message for error in validator.iter_errors(document)]


class BusTap:
    def __init__(self, stack: LocalStack) -> None:
        region = stack.stack.region if stack.stack else "us-east-1"
        self._sqs = boto3.client("sqs", region_name=region)
        self._events = boto3.client("events", region_name=region)
        self.bus = stack.output("EventBusName")
        self.source = f"avatar-pipeline.{stack.stack.stack_name if stack.stack else ''}"
        name = f"bus-tap-{uuid.uuid4().hex[:8]}"
        self.queue_url = self._sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        self._events.put_rule(
            Name=name,
            EventBusName=self.bus,
            EventPattern=json.dumps({"source": [self.source]}),
        )
        self._events.put_targets(
            Rule=name,
            EventBusName=self.bus,
            Targets=[{"Id": "tap", "Arn": arn["Attributes"]["QueueArn"]}],
        )
        self.received: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        """Every envelope that arrived since the last drain (EventBridge's, with ``detail``)."""
        new: list[dict[str, Any]] = []
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                new.append(json.loads(message["Body"]))
                self._sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        self.received += new
        return new
