"""The template and the state machines agree with each other and with the code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
STATE_MACHINES = {
    name: resource
    for name, resource in TEMPLATE["Resources"].items()
    if resource["Type"] == "AWS::Serverless::StateMachine"
}


def all_states(states: dict[str, Any]) -> dict[str, Any]:
    found = dict(states)
    for state in states.values():
        for branch in state.get("Branches", []):
            found.update(all_states(branch["States"]))
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found.update(all_states(processor["States"]))
    return found


@pytest.mark.parametrize("name", sorted(STATE_MACHINES))
def test_every_placeholder_in_a_definition_has_a_substitution(name: str) -> None:
    props = STATE_MACHINES[name]["Properties"]
    text = (ROOT / props["DefinitionUri"]).read_text()
    placeholders = set(re.findall(r"\$\{([^}]+)\}", text))
    assert placeholders, "a definition with no placeholders would hard-code its ARNs"
    assert placeholders == set(props["DefinitionSubstitutions"])


@pytest.mark.parametrize("name", sorted(STATE_MACHINES))
def test_every_task_retries_and_catches_and_the_execution_is_bounded(name: str) -> None:
    definition = json.loads(
        (ROOT / STATE_MACHINES[name]["Properties"]["DefinitionUri"]).read_text()
    )
    assert 0 < definition["TimeoutSeconds"] <= 24 * 3600
    for state_name, state in all_states(definition["States"]).items():
        if state["Type"] == "Task":
            assert state.get("Retry"), f"{state_name} has no Retry"
            assert state.get("Catch"), f"{state_name} has no Catch"
            for retrier in state["Retry"]:
                if retrier.get("MaxAttempts", 3) == 0:  # "never retry this one"
                    continue
                assert retrier.get("JitterStrategy") == "FULL", f"{state_name} retries in lockstep"


def _function_timeout(logical_id: str) -> int:
    props = TEMPLATE["Resources"][logical_id]["Properties"]
    return int(props.get("Timeout", TEMPLATE["Globals"]["Function"]["Timeout"]))


def _retried(state: dict[str, Any]) -> set[str]:
    return {error for retrier in state["Retry"] for error in retrier["ErrorEquals"]}


@pytest.mark.parametrize("name", sorted(STATE_MACHINES))
def test_every_task_has_a_timeout_that_fits_its_function_and_only_submits_leave_timeouts(
    name: str,
) -> None:
    props = STATE_MACHINES[name]["Properties"]
    definition = json.loads((ROOT / props["DefinitionUri"]).read_text())
    functions = {
        key: value["Fn::GetAtt"][0]
        for key, value in props["DefinitionSubstitutions"].items()
        if isinstance(value, dict) and "Fn::GetAtt" in value
    }
    for state_name, state in all_states(definition["States"]).items():
        if state["Type"] != "Task":
            continue
        placeholder = state["Parameters"]["FunctionName"].strip("${}")
        lambda_timeout = _function_timeout(functions[placeholder])
        timeout = state.get("TimeoutSeconds")
        assert timeout, f"{state_name} waits for ever on a hung task"
        # longer than the function's own Timeout, so Lambda's Sandbox.Timedout comes first
        assert lambda_timeout < timeout <= lambda_timeout + 60, state_name
        timeouts = {"Sandbox.Timedout", "States.Timeout"}
        if state_name.startswith("Submit"):
            # a submit that timed out may have started paid work: never retried blindly
            assert not timeouts & _retried(state), f"{state_name} retries an ambiguous timeout"
        else:
            assert timeouts <= _retried(state) or "States.ALL" in _retried(state), state_name


@pytest.mark.parametrize("name", sorted(STATE_MACHINES))
def test_a_failed_execution_carries_the_recorded_reason_not_a_fixed_sentence(name: str) -> None:
    definition = json.loads(
        (ROOT / STATE_MACHINES[name]["Properties"]["DefinitionUri"]).read_text()
    )
    for state_name, state in all_states(definition["States"]).items():
        if state["Type"] == "Fail":
            assert "CausePath" in state and "Cause" not in state, (
                f"{state_name} tells the console a fixed sentence"
            )


@pytest.mark.parametrize("name", sorted(STATE_MACHINES))
def test_no_arn_or_url_is_written_into_a_definition(name: str) -> None:
    text = (ROOT / STATE_MACHINES[name]["Properties"]["DefinitionUri"]).read_text()
    assert "arn:aws:lambda" not in text
    assert "https://" not in text


def test_every_function_has_its_own_least_privilege_policies() -> None:
    for name, resource in TEMPLATE["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        policies = json.dumps(resource["Properties"].get("Policies", []))
        assert '"s3:*"' not in policies, f"{name} may do anything to S3"
        assert '"dynamodb:*"' not in policies, f"{name} may do anything to DynamoDB"
        assert "AmazonS3FullAccess" not in policies
        assert "AdministratorAccess" not in policies
        # SAM's table templates grant Scan, batch and index access no function needs; each
        # lists its own actions (proven by tests/integration/test_least_privilege.py)
        for broad in ("DynamoDBCrudPolicy", "DynamoDBReadPolicy", "DynamoDBWritePolicy"):
            assert broad not in policies, f"{name} uses {broad}"


def test_the_table_is_protected_from_deletion_and_recoverable() -> None:
    table = TEMPLATE["Resources"]["AvatarTable"]
    assert table["DeletionPolicy"] == "Retain"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["DeletionProtectionEnabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
