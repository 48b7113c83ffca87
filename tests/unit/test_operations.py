"""An operator can use what the template promises: every alarm notifies the alarm topic and
names a runbook entry that exists, and every custom metric an alarm or the dashboard watches
is one the code really emits."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
ALARMS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
NAMESPACE = "AvatarPipeline"
RUNBOOK = ROOT / "docs" / "deploy.md"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-") for h in headings}


def _custom_metrics(alarm: dict[str, Any]) -> set[str]:
    props = alarm["Properties"]
    if props.get("Namespace") == NAMESPACE:
        return {props["MetricName"]}
    return {
        m["MetricStat"]["Metric"]["MetricName"]
        for m in props.get("Metrics", [])
        if "MetricStat" in m and m["MetricStat"]["Metric"]["Namespace"] == NAMESPACE
    }


def _emitted(name: str) -> bool:
    """Whether the code adds this metric: by its literal name, a constant holding it, or one
    of the f-string shapes that build names (``f"{provider.title()}Calls"``,
    ``f"Uploads_{outcome}"``)."""
    sources = [*ROOT.glob("functions/*/app.py"), *ROOT.glob("layers/core/avatar_core/**/*.py")]
    text = "\n".join(path.read_text() for path in sources)
    if f'name="{name}"' in text:
        return True
    # or through a module constant: ``METRIC = "ProviderAccountExhausted"`` ... ``name=METRIC``
    for constant in re.findall(rf'^([A-Z_]+) = "{re.escape(name)}"$', text, re.MULTILINE):
        if f"name={constant}," in text or f"count_per_provider({constant}," in text:
            return True
    shapes = {
        r"(Picsart|Qolaba)(Calls|Errors|Latency)": r'name=f"\{name\}(Calls|Errors|Latency)"',
        r"Uploads_(accepted|rejected|duplicate)": r'name=f"Uploads_\{result\.outcome\.value\}"',
        r"(Generation|Face|Instant)JobsSubmitted": r'name=f"\{ref\.kind\.title\(\)\}JobsSubmitted"',
        r"Jobs_(succeeded|failed)": r"name=f\"Jobs_\{result\['status'\]\}\"",
    }
    return any(
        re.fullmatch(shape, name) and re.search(code, text) for shape, code in shapes.items()
    )


def test_the_template_has_the_alarms_an_operator_needs() -> None:
    assert len(ALARMS) >= 9
    watched = json.dumps(ALARMS)
    for metric in ("ExecutionsFailed", "PicsartErrors", "QolabaErrors", "Errors", "5xx"):
        assert f'"{metric}"' in watched, metric
    assert "ApproximateNumberOfMessagesVisible" in watched


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_every_alarm_notifies_the_topic_and_names_a_runbook_entry_that_exists(name: str) -> None:
    props = ALARMS[name]["Properties"]
    assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert props["TreatMissingData"] == "notBreaching"  # a quiet stack is not an incident
    link = re.search(r"docs/deploy\.md#([a-z0-9-]+)", props["AlarmDescription"])
    assert link, "the description names no runbook entry"
    assert link.group(1) in _anchors(RUNBOOK.read_text())


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_every_custom_metric_an_alarm_watches_is_emitted_by_the_code(name: str) -> None:
    for metric in _custom_metrics(ALARMS[name]):
        assert _emitted(metric), f"{name} watches {metric}, which nothing emits"


def test_every_custom_metric_on_the_dashboard_is_emitted_by_the_code() -> None:
    body = RESOURCES["JourneyDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
    names = set(re.findall(rf'\["{NAMESPACE}", "(\w+)"', body))
    names |= set(re.findall(r'\[\s*"\.", "(\w+)"', body)) - {
        "ExecutionsTimedOut",
        "ExecutionsAborted",
    }
    assert len(names) >= 15
    missing = sorted(n for n in names if not _emitted(n))
    assert missing == []


def test_the_alarm_email_is_optional_and_subscribed_only_when_given() -> None:
    subscription = RESOURCES["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert TEMPLATE["Parameters"]["AlarmEmail"]["Default"] == ""
