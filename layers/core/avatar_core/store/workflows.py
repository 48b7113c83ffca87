"""Starting Step Functions executions: named so a person can find them in the console, and
started at most once per name."""

from __future__ import annotations

import json
from typing import Any, Protocol

import boto3
from botocore.exceptions import ClientError


class WorkflowStarter(Protocol):
    """What logic needs to start a workflow (a fake in tests, :class:`Workflows` in Lambda)."""

    def start(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> str: ...


class Workflows:
    def __init__(self, client: Any = None) -> None:
        self._sfn = client or boto3.client("stepfunctions")

    def start(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> str:
        """Start ``name`` once. A second start of the same name returns the first execution."""
        try:
            response = self._sfn.start_execution(
                stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload)
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                raise
            return execution_arn(state_machine_arn, name)
        arn: str = response["executionArn"]
        return arn


def execution_arn(state_machine_arn: str, name: str) -> str:
    prefix, _, machine = state_machine_arn.rpartition(":stateMachine:")
    return f"{prefix}:execution:{machine}:{name}"
