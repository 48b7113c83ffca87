"""Shared fixtures. The local stack is started once per test session, on free ports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.client import ApiClient
from local.stack import LocalConfig, LocalStack
from local.webhook_receiver import WebhookReceiver, local_secret

RESULT_CAP_BYTES = 2 * 1024 * 1024


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local-state")


@pytest.fixture(scope="session")
def webhooks(state_dir: Path) -> Iterator[WebhookReceiver]:
    """The app's backend: every event of the session's stack is posted here, signed."""
    with WebhookReceiver(local_secret(state_dir)) as receiver:
        yield receiver


@pytest.fixture(scope="session")
def stack(state_dir: Path, webhooks: WebhookReceiver) -> Iterator[LocalStack]:
    config = LocalConfig(
        api_port=0,
        time_factor=600.0,
        state_dir=state_dir,
        log_level="WARNING",
        # small enough that the oversized-result test needs only a few megabytes
        # A cap on running provider jobs far above what any test runs at once: every
        # workflow takes, renews and frees its run slot (logic/run_slots.py) against the
        # stack's table, so the least-privilege journey proves those calls too.
        function_env={
            "RESULT_MAX_BYTES": str(RESULT_CAP_BYTES),
            "PICSART_CONCURRENT_JOBS": "200",
            "QOLABA_CONCURRENT_JOBS": "200",
        },
        webhook_url=webhooks.url,
    )
    with LocalStack(config) as running:
        yield running


@pytest.fixture()
def user(stack: LocalStack) -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


@pytest.fixture()
def client(stack: LocalStack, user: str) -> ApiClient:
    return ApiClient(stack.api_url, stack.token(user))


@pytest.fixture()
def other_client(stack: LocalStack) -> ApiClient:
    return ApiClient(stack.api_url, stack.token(f"other-{uuid.uuid4().hex[:12]}"))


@pytest.fixture(autouse=True, scope="session")
def _quiet_local_servers() -> None:
    import logging

    for name in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    """Each test starts with no metrics: a Lambda invocation flushes its own at the end, and
    in a test nothing does, so provider-call counts would pile up to powertools' 100-metric
    auto-flush."""
    from avatar_core.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()
