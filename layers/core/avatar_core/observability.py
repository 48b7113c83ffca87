"""One observability setup for every function: structured logs, traces, metrics.

Service name, namespace and log level come from the POWERTOOLS_* variables the template sets.

Traces: X-Ray through powertools' Tracer, patching only what we call. botocore (every AWS
call) is patched at once; requests (provider and webhook calls) when a function first
imports it, so the API functions, which never do, do not import it for the tracer's sake.
Tracer's default would patch every library the X-Ray SDK knows and import each to do so.

Metrics: ``POWERTOOLS_METRICS_DISABLED`` (the local stack sets it) silences them all.
powertools 3.37 honours it only in ``flush_metrics``: ``single_metric`` prints regardless, and
the invocation's metric set, never cleared while disabled, is printed anyway once a metric
holds 100 values. Both are handled here, with powertools' own rule for "disabled".
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from wrapt import when_imported

logger = Logger()
tracer = Tracer(patch_modules=["botocore"])
metrics = Metrics()

Handler = TypeVar("Handler", bound=Callable[..., Any])


@when_imported("requests")
def _trace_requests(_: ModuleType) -> None:
    tracer.patch(["requests"])


NAMESPACE = "AvatarPipeline"  # the template's POWERTOOLS_METRICS_NAMESPACE


def count_per_provider(name: str, provider: str) -> None:
    """One count of ``name`` with a ``provider`` dimension, flushed at once, so the
    invocation's other metrics keep only their own dimensions."""
    if is_metrics_disabled():
        return
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=1,
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE),
    ) as metric:
        metric.add_dimension(name="provider", value=provider)


def observed(handler: Handler) -> Handler:
    """Every handler's entry: structured logs carrying the Lambda context (cleared between
    invocations), a trace segment, and the invocation's metrics flushed at the end (or, with
    metrics disabled, dropped)."""
    flushed = metrics.log_metrics(handler)

    @functools.wraps(handler)
    def invoke(event: Any, context: Any) -> Any:
        try:
            return flushed(event, context)
        finally:
            if is_metrics_disabled():
                metrics.clear_metrics()

    traced = tracer.capture_lambda_handler(invoke)
    return cast(Handler, logger.inject_lambda_context(traced, clear_state=True))


__all__ = ["MetricUnit", "count_per_provider", "logger", "metrics", "observed", "tracer"]
