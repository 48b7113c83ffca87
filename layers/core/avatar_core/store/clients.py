"""Making AWS clients, for the stores that make theirs on first use and keep it.

A cold start pays for a client (about 40 ms for the first: boto3's default session, the
endpoint rules and the service's model) only when a request needs it, not at import; warm
invocations reuse it. Made under one lock: boto3's default session is not safe to build
clients from concurrently, and the local stack runs invocations on threads.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

_lock = threading.Lock()


def client(service: str, config: Config | None = None) -> Any:
    with _lock:
        return boto3.client(service, config=config)


def resource(service: str) -> Any:
    with _lock:
        return boto3.resource(service)
