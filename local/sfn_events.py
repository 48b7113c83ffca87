"""Deliver Step Functions' "Execution Status Change" events to EventBridge rules, locally.

On AWS every execution that ends emits an event on the default bus, and a rule whose
pattern matches invokes its Lambda target asynchronously (retried by Lambda if it fails).
moto's Step Functions emits nothing, and moto's EventBridge cannot invoke a Lambda target
at all. This bridge does both, the way the S3 notifications are bridged: when moto's
interpreter ends an execution it builds the event AWS documents (detail-type, source
``aws.states``, ``detail`` with executionArn, stateMachineArn, name, status, startDate and
stopDate in epoch milliseconds, input as a JSON string, error and cause), matches it
against the rules of moto's default bus with moto's own ``EventPattern``, and invokes each
matching rule's Lambda targets through moto's Lambda API on a thread of its own: after the
execution has ended, never inside it, and never in order with anything else.

Like Lambda's asynchronous invocation, a target that fails is invoked again (twice), then
the event is dropped with a warning (AWS would put it in the function's dead-letter queue).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("local.sfn_events")

DETAIL_TYPE = "Step Functions Execution Status Change"
ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: the first try and two retries

_delivering: list[threading.Thread] = []
_enabled = threading.Event()


def _millis(moment: Any) -> int | None:
    if not isinstance(moment, datetime):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def status_change_event(execution: Any) -> dict[str, Any]:
    """The event AWS puts on the default bus when ``execution`` (moto's) has ended."""
    status = execution.exec_status.value if execution.exec_status is not None else "RUNNING"
    detail: dict[str, Any] = {
        "executionArn": execution.exec_arn,
        "stateMachineArn": execution.state_machine_arn,
        "name": execution.name,
        "status": status,
        "startDate": _millis(execution.start_date),
        "stopDate": _millis(execution.stop_date),
        "input": execution.execution_input,
        "output": json.dumps(execution.output) if execution.output is not None else None,
        "inputDetails": {"included": True},
        "outputDetails": {"included": True} if execution.output is not None else None,
        "error": execution.error,
        "cause": execution.cause,
    }
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": "aws.states",
        "account": execution.account_id,
        "time": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": execution.region_name,
        "resources": [execution.exec_arn],
        "detail": detail,
    }


def lambda_targets(event: dict[str, Any]) -> list[str]:
    """The Lambda ARNs of every enabled rule on the default bus that matches ``event``."""
    from moto.events.models import events_backends

    backend = events_backends[event["account"]][event["region"]]
    bus = backend.event_buses.get("default")
    targets: list[str] = []
    for rule in list(bus.rules.values()) if bus is not None else []:
        if rule.state != "ENABLED":
            continue
        if not rule.event_pattern.matches_event(event):
            continue
        targets += [t["Arn"] for t in rule.targets if ":lambda:" in t["Arn"]]
    return targets


def _deliver(
    invoke: Callable[[str, dict[str, Any]], bool], arn: str, event: dict[str, Any]
) -> None:
    for attempt in range(1, ASYNC_ATTEMPTS + 1):
        try:
            if invoke(arn, event):
                return
        except Exception:  # a target that cannot be reached counts as a failed attempt
            log.exception("delivering %s to %s failed", event["detail"]["status"], arn)
        if attempt < ASYNC_ATTEMPTS:
            time.sleep(0.05 * attempt)
    log.warning(
        "dropped the %s event of %s after %d attempts (AWS would dead-letter it)",
        event["detail"]["status"],
        event["detail"]["executionArn"],
        ASYNC_ATTEMPTS,
    )


def publish(event: dict[str, Any], invoke: Callable[[str, dict[str, Any]], bool]) -> None:
    """Invoke every matching Lambda target of ``event`` on a thread of its own."""
    for arn in lambda_targets(event):
        thread = threading.Thread(
            target=_deliver, args=(invoke, arn, event), name="sfn-event", daemon=True
        )
        _delivering.append(thread)
        thread.start()


def wait_for_deliveries(timeout: float = 30) -> None:
    """Let the events already published reach their targets (for a clean stop)."""
    deadline = time.monotonic() + timeout
    while _delivering:
        thread = _delivering.pop()
        thread.join(max(0.0, deadline - time.monotonic()))


def install(invoke: Callable[[str, dict[str, Any]], bool]) -> None:
    """Emit an event whenever moto ends an execution; ``invoke(lambda_arn, event)`` answers
    True when the invocation succeeded. Installed once per process; ``enable(False)``
    silences it between stacks."""
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    _enabled.set()
    if getattr(BaseExecutionWorkerCommunication, "_local_events_installed", False):
        BaseExecutionWorkerCommunication._local_invoke = staticmethod(invoke)  # type: ignore[attr-defined]
        return
    original = BaseExecutionWorkerCommunication.terminated

    def terminated(self: Any) -> None:
        original(self)
        if not _enabled.is_set():
            return
        try:
            event = status_change_event(self.execution)
            publish(event, BaseExecutionWorkerCommunication._local_invoke)  # type: ignore[attr-defined]
        except Exception:  # the bridge must never break the execution it reports on
            log.exception("could not publish the status change of an execution")

    BaseExecutionWorkerCommunication.terminated = terminated  # type: ignore[method-assign]
    BaseExecutionWorkerCommunication._local_invoke = staticmethod(invoke)  # type: ignore[attr-defined]
    BaseExecutionWorkerCommunication._local_events_installed = True  # type: ignore[attr-defined]


def enable(on: bool) -> None:
    if on:
        _enabled.set()
    else:
        _enabled.clear()
