"""One step of a bounded poll loop, shared by every workflow that waits on a provider.

Every wait is jittered, so a burst of jobs started together does not come back together:

- a scheduled wait of ``s`` seconds is drawn uniformly from ``[(1 - JITTER_SHARE) * s, s]``:
  only downwards, because the schedule aims each wait at the job's expected finish and the
  interval near it is the detection lag it allows; a later draw would add to the lag, an
  earlier one costs at most one more poll. The request rate is at most ``1/(1 -
  JITTER_SHARE/2)`` of the schedule's (mean wait ``0.875 s``), spread over a quarter of
  each wait;
- after a busy answer (429, 5xx, no answer) the provider's own advice (Picsart's reset time,
  ``Retry-After``) is a floor, never waited less, and the wait is drawn from one more such
  interval above it; with no advice it is full jitter over an exponential backoff from the
  schedule's interval (``uniform(floor, min(cap, s * 2**n))`` after ``n`` busy answers).

A busy answer costs neither a poll nor a Retry of the state machine: the loop waits and
asks again, until the workflow's own deadline (its ``TimeoutSeconds``) ends it and
reconciliation resumes it from the stored provider id.

No busy wait is shorter than ``busy_floor``: a quarter of the schedule's interval, at least
``MIN_BUSY_WAIT_SECONDS``, and at least ``1/HISTORY_FRACTION`` of the time this loop has
waited so far. The last keeps any loop of busy answers inside Step Functions' 25,000-event
history however long its deadline: with ``k = HISTORY_FRACTION`` and a first floor ``f``,
the first ``k * f`` seconds take at most ``k`` turns and each later turn multiplies the time
waited by at least ``1 + 1/k``, so ``T`` seconds take at most ``k * (1 + ln(T / (k * f)))``
turns. A 12-hour avatar job (f = 5 s) takes at most 953 turns of about 9 events each, and a
4-hour training (f = 30 s) 376; a submit's wait in the queue and the polls after it are two
such loops. A job that has waited an hour for a busy provider asks every 18 s, not every 5.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from avatar_core.errors import ProviderError, SubmissionQueued
from avatar_core.models.workflow import CopyItem, PollState
from avatar_core.providers.base import JobState, JobStatus, PollAdvice

Advise = Callable[[int, JobStatus, int], PollAdvice]

MIN_BUSY_WAIT_SECONDS = 5
BUSY_BACKOFF_CAP_FACTOR = 8
HISTORY_FRACTION = 200
JITTER_SHARE = 0.25
# Replaceable (seeded) in tests; the system's entropy otherwise, so Lambdas started together
# do not draw the same waits.
RNG: random.Random = random.SystemRandom()


def jittered(seconds: int, rng: random.Random | None = None) -> int:
    """A scheduled wait, spread over ``[(1 - JITTER_SHARE) * s, s]``: never later than the
    schedule asked, at least 1 s."""
    rng = rng or RNG
    return max(1, min(seconds, round(rng.uniform(seconds * (1 - JITTER_SHARE), seconds))))


def busy_floor(schedule_seconds: int, waited_seconds: int = 0) -> int:
    return max(
        MIN_BUSY_WAIT_SECONDS,
        schedule_seconds // 4,
        math.ceil(waited_seconds / HISTORY_FRACTION),
    )


def busy_wait(
    advised: float | None,
    busy_answers: int,
    schedule_seconds: int,
    rng: random.Random | None = None,
    waited_seconds: int = 0,
) -> int:
    """How long to wait after the ``busy_answers``-th busy answer in a row (1 for the first),
    ``waited_seconds`` into the loop."""
    rng = rng or RNG
    floor = busy_floor(schedule_seconds, waited_seconds)
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
    waited = poll.waited_seconds + poll.wait_seconds
    return poll.model_copy(
        update={
            "busy": busy,
            "waited_seconds": waited,
            "wait_seconds": busy_wait(
                error.retry_after, busy, schedule_seconds, waited_seconds=waited
            ),
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
    """A submit the provider refused for now (429, 5xx before it took the work), or that
    waits its turn in the provider's queue: nothing was bought, so wait and submit again;
    ``submitted`` stays False. A queued submission keeps its ticket and waits what the queue
    said (already spread), never less than the busy floor."""
    busy = (previous.busy if previous is not None else 0) + 1
    waited = (previous.waited_seconds + previous.wait_seconds) if previous is not None else 0
    ticket = previous.ticket if previous is not None else None
    position = None
    if isinstance(error, SubmissionQueued):
        ticket, position = error.ticket, error.position
        # Not the schedule's floor: a turn in the queue costs the provider nothing.
        wait = max(busy_floor(0, waited), math.ceil(error.retry_after or 0))
    else:
        wait = busy_wait(error.retry_after, busy, schedule_seconds, waited_seconds=waited)
    return PollState(
        provider_job_id="",
        submitted=False,
        busy=busy,
        waited_seconds=waited,
        wait_seconds=wait,
        error=f"waiting for the provider to take the work: {error.message}",
        ticket=ticket,
        queue_position=position,
    )
