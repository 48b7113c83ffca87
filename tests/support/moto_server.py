"""A real moto server on loopback and raw boto3 clients for it, for the tests that prove the
local stack's patches of moto hold under concurrent HTTP requests, as the Lambdas make them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config

from local.stack import free_port


@contextmanager
def moto_server(install: Callable[[], None]) -> Iterator[str]:
    """Start a moto server with ``install`` applied first; yield its endpoint URL."""
    from moto.server import ThreadedMotoServer

    install()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def raw_client(service: str, endpoint: str, pool: int = 10) -> Any:
    """A client that never retries, so an error the server answers shows in the test."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",  # moto accepts any credentials
        config=Config(
            max_pool_connections=pool, retries={"mode": "standard", "total_max_attempts": 1}
        ),
    )
