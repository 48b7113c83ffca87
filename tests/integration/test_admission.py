"""The shared limiter under real concurrency: many callers at once against the local stack's
DynamoDB (the moto server, over HTTP, one request per thread) admit exactly the window's cap,
never one more, and every window starts afresh."""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3

from avatar_core.logic.limiter import Limiter, window_cap
from avatar_core.store.repository import AvatarRepository
from local.stack import LocalStack

CALLERS = 32
ATTEMPTS = 240


def test_concurrent_callers_are_admitted_exactly_the_cap_per_window(stack: LocalStack) -> None:
    repo = AvatarRepository(stack.output("TableName"))
    provider = f"bench-{uuid.uuid4().hex[:8]}"  # its own keys: no other test's windows
    moment = [1_800_000_000.0]  # one frozen window, then the next

    def limiter(seed: int) -> Limiter:
        # One limiter per caller, as every Lambda has its own: only the table is shared.
        return Limiter(repo, lambda: moment[0], 500, 10, 8, random.Random(seed), provider=provider)

    def attempt(seed: int) -> bool:
        return limiter(seed).try_admit() is None

    cap = window_cap(500, 10)
    with ThreadPoolExecutor(CALLERS) as pool:
        first = list(pool.map(attempt, range(ATTEMPTS)))
        moment[0] += 10
        second = list(pool.map(attempt, range(ATTEMPTS, 2 * ATTEMPTS)))

    assert sum(first) == cap == 71
    assert sum(second) == cap

    items = (
        boto3.resource("dynamodb")
        .Table(stack.output("TableName"))
        .scan(
            FilterExpression="begins_with(PK, :pk)",
            ExpressionAttributeValues={":pk": f"LIMIT#{provider}#"},
        )["Items"]
    )
    assert len(items) == 16  # 8 shards, 2 windows
    assert sum(int(item["n"]) for item in items) == 2 * cap
    assert all(int(item["expires_at_epoch"]) > 1_800_000_010 for item in items)
