"""One observability setup for every function: structured logs, traces, metrics.

Service name, namespace and log level come from the POWERTOOLS_* variables the template sets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics()

Handler = TypeVar("Handler", bound=Callable[..., Any])


def observed(handler: Handler) -> Handler:
    """Every handler's entry: structured logs carrying the Lambda context (cleared between
    invocations), a trace segment, and the invocation's metrics flushed at the end."""
    traced = tracer.capture_lambda_handler(metrics.log_metrics(handler))
    return cast(Handler, logger.inject_lambda_context(traced, clear_state=True))


__all__ = ["MetricUnit", "logger", "metrics", "observed", "tracer"]
