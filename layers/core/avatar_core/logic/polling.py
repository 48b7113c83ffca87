"""One step of a bounded poll loop, shared by every workflow that waits on a provider.

Every wait is jittered, so a burst of jobs started together does not come back together:

- a scheduled wait of ``s`` seconds is drawn uniformly from ``[s/2, 3s/2]``: its mean is the
  schedule's, so the request rate stays what the schedule promises, spread out;
- after a busy answer (429, 5xx, no answer) the provider's own advice (Picsart's reset time,
  ``Retry-After``) is a floor, never waited less, and the wait is drawn from one more such
  interval above it; with no advice it is full jitter over an exponential backoff from the
  schedule's interval (``uniform(floor, min(cap, s * 2**n))`` after ``n`` busy answers).

A busy answer costs neither a poll nor a Retry of the state machine: the loop waits and
asks again, until the workflow's own deadline (its ``TimeoutSeconds``) ends it and
reconciliation resumes it from the stored provider id. No busy wait is shorter than
``busy_floor`` (a quarter of the schedule's interval, at least ``MIN_BUSY_WAIT_SECONDS``),
which keeps a loop of busy answers well inside Step Functions' 25,000-event history: a
4-hour training waits at least 30 s a turn (at most 480 turns), an hour-long job 5 s (720).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from avatar_core.errors import ProviderError
from avatar_core.models.workflow import CopyItem, PollState
from avatar_core.providers.base import JobState, JobStatus, PollAdvice

Advise = Callable[[int, JobStatus, int], PollAdvice]

MIN_BUSY_WAIT_SECONDS = 5
BUSY_BACKOFF_CAP_FACTOR = 8
# Replaceable (seeded) in tests; the system's entropy otherwise, so Lambdas started together
# do not draw the same waits.
RNG: random.Random = random.SystemRandom()


def jittered(seconds: int, rng: random.Random | None = None) -> int:
    """A scheduled wait, spread over ``[s/2, 3s/2]`` (same mean), at least 1 s."""
    rng = rng or RNG
    return max(1, round(rng.uniform(seconds / 2, seconds * 3 / 2)))


def busy_floor(schedule_seconds: int) -> int:
    return max(MIN_BUSY_WAIT_SECONDS, schedule_seconds // 4)


def busy_wait(
    advised: float | None,
    busy_answers: int,
    schedule_seconds: int,
    rng: random.Random | None = None,
) -> int:
    """How long to wait after the ``busy_answers``-th busy answer in a row (1 for the first)."""
    rng = rng or RNG
    floor = busy_floor(schedule_seconds)
    if advised is not None:
        low = max(floor, math.ceil(advised))
        return math.ceil(rng.uniform(low, 2 * low))
    backoff = schedule_seconds * 2 ** min(max(busy_answers - 1, 0), 16)
    high = max(floor, min(schedule_seconds * BUSY_BACKOFF_CAP_FACTOR, backoff))
    return math.ceil(rng.uniform(floor, high))


def next_poll(
    poll: PollState,
    status: JobStatus,
    advise: Advise,
    max_polls: int,
    items: Sequence[CopyItem] = (),
) -> PollState:
    """The loop's state after one status check: how long to wait next (the provider's
    advice, given the polls and seconds so far, jittered), and whether the bound is reached."""
    polls = poll.polls + 1
    waited = poll.waited_seconds + poll.wait_seconds
    unfinished = status.state in (JobState.QUEUED, JobState.RUNNING)
    return PollState(
        provider_job_id=poll.provider_job_id,
        state=status.state,
        polls=polls,
        wait_seconds=jittered(advise(polls, status, waited).wait_seconds),
        waited_seconds=waited,
        exhausted=unfinished and polls >= max_polls,
        # An answer we could not place rides along, so a job given up on can say what it was.
        error=status.error or status.note,
        items=list(items),
    )


def busy_poll(poll: PollState, error: ProviderError, schedule_seconds: int) -> PollState:
    """The loop's state after a check the provider could not answer (429, 5xx, no answer):
    not a poll, not an error; wait as the provider advises, then ask again."""
    busy = poll.busy + 1
    return poll.model_copy(
        update={
            "busy": busy,
            "waited_seconds": poll.waited_seconds + poll.wait_seconds,
            "wait_seconds": busy_wait(error.retry_after, busy, schedule_seconds),
            "error": f"waiting for the provider: {error.message}",
            "exhausted": False,
        }
    )


def first_poll(provider_job_id: str, advised_seconds: int) -> PollState:
    """The loop's state once the provider has the job: the first wait, jittered."""
    return PollState(provider_job_id=provider_job_id, wait_seconds=jittered(advised_seconds))


def busy_submit(
    previous: PollState | None, error: ProviderError, schedule_seconds: int
) -> PollState:
    """A submit the provider refused for now (429, 5xx before it took the work): nothing was
    bought, so wait as it advises and submit again; ``submitted`` stays False."""
    busy = (previous.busy if previous is not None else 0) + 1
    waited = (previous.waited_seconds + previous.wait_seconds) if previous is not None else 0
    return PollState(
        provider_job_id="",
        submitted=False,
        busy=busy,
        waited_seconds=waited,
        wait_seconds=busy_wait(error.retry_after, busy, schedule_seconds),
        error=f"waiting for the provider to take the work: {error.message}",
    )
