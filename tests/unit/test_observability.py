"""Metrics an operator disables stay silent: no EMF line on stdout, however many invocations
add to them; enabled, they are printed (so the test can tell the two apart)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from avatar_core import observability
from avatar_core.observability import MetricUnit, count_per_provider, metrics, observed


@dataclass
class FakeContext:
    function_name: str = "observed"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:observed"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@observed
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics.add_metric(name="ThingsDone", unit=MetricUnit.Count, value=1)
    count_per_provider("ProviderThing", "picsart")
    return {"ok": True}


def emf_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict) and "_aws" in parsed:
            lines.append(parsed)
    return lines


@pytest.fixture(autouse=True)
def metrics_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    # as the template sets it for every function (read when the metrics were made)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", observability.NAMESPACE)
    monkeypatch.setattr(metrics, "namespace", observability.NAMESPACE)
    metrics.clear_metrics()


def test_disabled_metrics_print_nothing_over_many_invocations(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for _ in range(150):  # past powertools' 100 values, where it publishes on its own
        assert handler({}, FakeContext()) == {"ok": True}

    assert emf_lines(capsys.readouterr().out) == []


def test_enabled_metrics_are_printed_each_invocation(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_DEV", "false")
    for _ in range(2):
        handler({}, FakeContext())

    names = [
        metric["Name"]
        for line in emf_lines(capsys.readouterr().out)
        for metric in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    ]
    assert sorted(names) == ["ProviderThing", "ProviderThing", "ThingsDone", "ThingsDone"]
