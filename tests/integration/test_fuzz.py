"""A short fuzzing run on the local stack: whatever a client sends, the API answers below
500, with the documented schema (``bench/fuzz.py`` is the long run)."""

from __future__ import annotations

import pytest

from local.stack import LocalStack
from tests.support.fuzzing import fuzz

pytestmark = pytest.mark.integration


def test_no_request_gets_a_5xx_or_an_answer_that_breaks_the_documented_schema(
    stack: LocalStack,
) -> None:
    report = fuzz(stack, examples_per_operation=4, every_probe_everywhere=False, seed=7)
    print("\n".join(report.summary_lines()))

    assert report.requests >= 100, "\n".join(report.summary_lines())
    assert report.server_errors == 0, report.describe_findings()
    assert report.schema_violations == 0, report.describe_findings()
    assert report.findings == [], report.describe_findings()
