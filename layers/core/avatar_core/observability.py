"""One observability setup for every function: structured logs, traces, metrics.

Service name, namespace and log level come from the POWERTOOLS_* variables the template sets.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
