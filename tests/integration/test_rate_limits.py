"""A burst of generations against a rate-limited provider, on the local stack (issue 11).

Forty generations start at once while the emulator holds Picsart to a few requests per
emulated minute, answering 429 with its reset-time header beyond that. Every one of them
succeeds: a busy provider costs no job. Once the stack has its own limiter (a Settings field
``picsart_requests_per_minute``), the emulator is held to the limiter's rate and the most
requests it saw within any 60 emulated seconds must not exceed it.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from avatar_core.settings import Settings
from local.client import ApiClient, wait_until
from local.stack import LocalStack
from tests.support.journeys import Emulator, function_settings, submits_held, trained_model

pytestmark = pytest.mark.integration

GENERATIONS = 40
# POSTs in flight at once: each new one beyond the API's warm sandboxes is a cold start, and
# on a small machine ten of them in one process outlast the API's 15 s timeout. The jobs run
# together regardless: each is held before its submit until all forty have started.
STARTING_AT_ONCE = 4
# Picsart requests per emulated minute while no limiter of ours holds the stack back. At the
# session's time factor (600) a minute is 0.1 s: a handful of requests fills it, so the
# burst meets 429s and still finishes within seconds.
EMULATOR_PICSART_LIMIT = 2
STACK_LIMITER_FIELD = "picsart_requests_per_minute"
NO_LIMITER = (
    f"the stack has no limiter of its own yet (Settings has no {STACK_LIMITER_FIELD}): "
    "nothing keeps its requests under the provider's limit, the busy path absorbs the 429s"
)


def stack_picsart_limit(stack: LocalStack) -> int | None:
    """The Picsart rate the stack's own limiter holds to, or None without a limiter."""
    if STACK_LIMITER_FIELD not in Settings.model_fields:
        return None
    limit = getattr(function_settings(stack, "GenerationSubmitFunction"), STACK_LIMITER_FIELD)
    return int(limit) or None


@dataclass
class Burst:
    limit: int
    limiter: int | None
    generations: list[dict[str, Any]]
    stats: dict[str, Any]
    seconds: float  # wall time from the first POST until the last generation ended


@pytest.fixture(scope="module")
def burst(stack: LocalStack) -> Burst:
    """Forty generations of one ready model, started together under the Picsart limit."""
    user = f"burst-{uuid.uuid4().hex[:10]}"
    client = ApiClient(stack.api_url, stack.token(user))
    model_id = trained_model(client, stack, seed=70)
    emulator = Emulator(stack)
    emulator.reset()
    limiter = stack_picsart_limit(stack)
    limit = limiter or EMULATOR_PICSART_LIMIT
    emulator.limit(picsart=limit)
    try:

        def start(index: int) -> str:
            response = client.create_generation(
                model_id, [{"style": "realistic", "count": 1}], idempotency_key=f"burst-{index}"
            )
            assert response.status_code == 202, response.text
            generation_id: str = response.json()["generation_id"]
            return generation_id

        started = time.monotonic()
        # held before their submit until all forty run, then they meet the provider together
        with (
            submits_held(stack, "GenerationSubmitFunction"),
            ThreadPoolExecutor(max_workers=STARTING_AT_ONCE) as pool,
        ):
            generation_ids = list(pool.map(start, range(GENERATIONS)))

        def ended() -> list[dict[str, Any]]:
            return [client.get_generation(generation_id) for generation_id in generation_ids]

        generations = wait_until(
            ended,
            lambda answers: all(g["status"] in ("succeeded", "failed") for g in answers),
            timeout=120,
            interval=0.5,
        )
        seconds = time.monotonic() - started
        return Burst(limit, limiter, generations, emulator.stats(), seconds)
    finally:
        emulator.reset()


def test_forty_concurrent_generations_under_the_provider_limit_all_succeed(burst: Burst):
    failed = {
        g["generation_id"]: g.get("error") for g in burst.generations if g["status"] != "succeeded"
    }

    assert not failed, f"died under the rate limit ({burst.seconds:.0f} s, {burst.stats}): {failed}"
    assert all(len(g["avatars"]) == 1 for g in burst.generations)
    assert burst.stats["inferences_submitted"] == GENERATIONS, "each submitted once"


def test_without_our_limiter_the_provider_throttled_the_burst_and_no_job_died_of_it(
    burst: Burst,
):
    if burst.limiter is not None:
        pytest.skip("the stack's limiter keeps the burst under the provider's limit")

    sent = burst.stats["rate_limited"]["picsart"]

    assert sent > 0, f"the burst never met the limit of {burst.limit}/min: {burst.stats}"
    assert all(g["status"] == "succeeded" for g in burst.generations)


def test_with_our_limiter_the_provider_never_saw_more_than_its_limit_in_a_minute(burst: Burst):
    if burst.limiter is None:
        pytest.skip(NO_LIMITER)

    peak = burst.stats["peak_requests_per_minute"]["picsart"]

    assert peak <= burst.limit, f"peak {peak} requests in 60 emulated s, limit {burst.limit}"
    assert burst.stats["rate_limited"]["picsart"] == 0
