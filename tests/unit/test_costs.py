"""bench/costs.py: docs/costs.md is what the script prints from its recorded measurement, and
the arithmetic from measured figures to dollars is the price table's."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def costs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_costs", ROOT / "bench" / "costs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def journey(**overrides: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "lambda": [{"function": "F", "memory_mb": 512, "invocations": 4, "billed_ms": 2000}],
        "executions": 1,
        "transitions": 1000,
        "api_requests": 1_000_000,
        "s3": {"tier1": 1000, "tier2": 1000, "bytes_out": 2**30, "stored_bytes": 2**30},
        "dynamodb": {"read_units": 1e6, "write_units": 1e6, "stored_bytes": 2**30},
        "events": 1_000_000,
        "sqs_requests": 1_000_000,
    }
    figures.update(overrides)
    return figures


def test_docs_costs_md_is_what_the_script_prints_from_its_measurement(costs: ModuleType) -> None:
    measurement = json.loads((ROOT / "bench" / "costs-measured.json").read_text())
    assert (ROOT / "docs" / "costs.md").read_text() == costs.render(measurement)


def test_every_journey_was_measured_not_typed(costs: ModuleType) -> None:
    measurement = json.loads((ROOT / "bench" / "costs-measured.json").read_text())
    assert set(measurement["journeys"]) == set(costs.JOURNEYS)
    for figures in measurement["journeys"].values():
        assert figures["executions"] == 1
        assert figures["transitions"] > 0 and figures["api_requests"] > 0
        assert all(f["invocations"] > 0 and f["billed_ms"] > 0 for f in figures["lambda"])


def test_a_journey_costs_its_measured_figures_at_list_prices(costs: ModuleType) -> None:
    lines = {what: usd for what, _, usd in costs.journey_lines(journey())}
    expected = {
        "Lambda requests": 4 * 0.20 / 1e6,
        "Lambda duration": 0.5 * 2.0 * 0.0000166667,  # 512 MB for 2 s
        "Step Functions": 0.025,
        "HTTP API": 1.00,
        "S3 PUT/POST/COPY/LIST": 0.005,
        "S3 GET/HEAD": 0.0004,
        "S3 storage, one month": 0.023,
        "Transfer out (presigned GETs)": 0.09,
        "DynamoDB writes": 0.625,
        "DynamoDB reads": 0.125,
        "DynamoDB storage, one month": 0.25,
        "EventBridge events": 1.00,
        "SQS requests": 0.40,
    }
    assert lines == pytest.approx(expected)
    assert costs.journey_total(journey()) == pytest.approx(sum(expected.values()))


def test_a_month_is_users_times_their_journeys_plus_the_fixed_costs(costs: ModuleType) -> None:
    measurement = {
        "alarms": 9,
        "dashboards": 1,
        "journeys": {name: journey() for name in costs.JOURNEYS},
    }
    per_journey = costs.journey_total(journey())
    journeys_per_user = sum(costs.PER_USER_PER_MONTH.values())
    assert costs.monthly(measurement, 1000) == pytest.approx(
        1000 * journeys_per_user * per_journey + 9 * 0.10 + 3.00
    )


def test_item_size_counts_names_and_values_as_dynamodb_does(costs: ModuleType) -> None:
    item = {
        "PK": {"S": "OWNER#a"},  # 2 + 7
        "n": {"N": "12345"},  # 1 + ceil(5 / 2) + 1
        "ok": {"BOOL": True},  # 2 + 1
        "tags": {"L": [{"S": "ab"}]},  # 4 + 3 + (1 + 2)
    }
    assert costs.item_size(item) == 9 + 5 + 3 + 10


def _item(size: int, gsi: bool = False) -> dict[str, Any]:
    item = {"PK": {"S": "OWNER#a"}, "SK": {"S": "MODEL#m"}}
    if gsi:
        item["GSI1PK"] = {"S": "x"}
    padding = size - sum(len(k) + len(v["S"]) for k, v in item.items()) - len("pad")
    item["pad"] = {"S": "p" * padding}
    return item


def test_request_units_follow_dynamodbs_rounding(costs: ModuleType) -> None:
    units = costs.DynamoUnits()
    # a 1.5 KB write is 2 units, and its GSI1 entry as much again
    big = _item(1536, gsi=True)
    assert costs.item_size(big) == 1536
    units.record("PutItem", {"Item": big}, {})
    assert units.write_units == 4
    # an update of that item is charged for its size as last seen
    units.record("UpdateItem", {"Key": {"PK": big["PK"], "SK": big["SK"]}}, {})
    assert units.write_units == 8
    # an eventually consistent read of 5 KB: 2 units of 4 KB, at half price
    units.record("GetItem", {}, {"Item": _item(5000)})
    assert units.read_units == 1.0
    # a consistent query reads the sum of its items, rounded up once
    units.record("Query", {"ConsistentRead": True}, {"Items": [_item(1000)] * 3})
    assert units.read_units == 2.0
    # a transaction doubles: a 500-byte put is 2 write units
    units.record("TransactWriteItems", {"TransactItems": [{"Put": {"Item": _item(500)}}]}, {})
    assert units.write_units == 10
    assert math.isclose(units.read_units, 2.0)
