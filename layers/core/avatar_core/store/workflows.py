"""Starting Step Functions executions: named so a person can find them in the console,
started at most once per name, and never left half-started.

StartExecution is retried with backoff (botocore's standard retry mode: throttling and
5xx answers, up to five attempts). If it still fails, :class:`WorkflowUnavailable` tells
the caller that nothing was started, so it can put its record back and answer 503.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any, Protocol

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from avatar_core.errors import WorkflowUnavailable
from avatar_core.observability import logger
from avatar_core.store import clients

_RETRIES = Config(retries={"mode": "standard", "max_attempts": 5})
# Error codes of a StartExecution that may pass if tried again later.
_TRANSIENT = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalServerError",
        "InternalFailure",
    }
)


class WorkflowStarter(Protocol):
    """What logic needs to start a workflow (a fake in tests, :class:`Workflows` in Lambda)."""

    def start(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> str: ...


class WorkflowStopper(Protocol):
    """What logic needs to stop one execution (a cancelled job's)."""

    def stop(self, execution_arn: str, cause: str) -> bool: ...


class Workflows:
    def __init__(self, client: Any = None) -> None:
        self._given = client

    @cached_property
    def _sfn(self) -> Any:
        """Made on first use, not at import (``avatar_core.store.clients``)."""
        return self._given or clients.client("stepfunctions", config=_RETRIES)

    def start(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> str:
        """Start ``name`` once. A second start of the same name returns the first execution.

        Raises :class:`WorkflowUnavailable` when Step Functions keeps refusing: then no
        execution of that name was started by this call.
        """
        try:
            response = self._sfn.start_execution(
                stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload)
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if code == "ExecutionAlreadyExists":
                return execution_arn(state_machine_arn, name)
            if code in _TRANSIENT or status >= 500:
                raise WorkflowUnavailable(
                    f"the workflow service is busy ({code or status}); nothing was started, "
                    "retry shortly"
                ) from error
            raise
        except BotoCoreError as error:  # connection failures after botocore's own retries
            raise WorkflowUnavailable(
                "the workflow service could not be reached; nothing was started, retry shortly"
            ) from error
        arn: str = response["executionArn"]
        return arn

    def stop(self, execution_arn: str, cause: str) -> bool:
        """StopExecution on this one execution; False when it was not stopped (unknown,
        already ended, or Step Functions failing: then it ends by itself, see below)."""
        try:
            self._sfn.stop_execution(executionArn=execution_arn, error="Cancelled", cause=cause)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code not in ("ExecutionDoesNotExist", "ExecutionNotRunning"):
                # the record is cancelled already: the submit task finds it so and the
                # execution ends by itself, sending nothing; stopping it only saves time
                logger.warning(
                    "cancelled job's execution could not be stopped",
                    extra={"execution_arn": execution_arn, "code": code},
                )
            return False
        except BotoCoreError:
            logger.warning(
                "cancelled job's execution could not be stopped",
                extra={"execution_arn": execution_arn},
            )
            return False
        return True

    def describe(self, execution_arn: str) -> dict[str, Any] | None:
        """DescribeExecution's answer, or None when Step Functions knows no such execution."""
        try:
            described: dict[str, Any] = self._sfn.describe_execution(executionArn=execution_arn)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                return None
            raise
        return described


def execution_arn(state_machine_arn: str, name: str) -> str:
    prefix, _, machine = state_machine_arn.rpartition(":stateMachine:")
    return f"{prefix}:execution:{machine}:{name}"
