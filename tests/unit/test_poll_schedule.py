"""A job is seen done soon after the provider finishes it, for few polls: the first poll
waits for the shortest typical job of its kind, reported progress aims the next poll just
past the earliest finish it allows, and the jitter never pushes a wait past the schedule.
The loop stays bounded: no wait is longer than ``max_factor`` intervals, and a job stalled
near the end is polled ever more slowly rather than burning its poll bound."""

from __future__ import annotations

import math
import random

import pytest

from avatar_core.logic import polling
from avatar_core.models.workflow import PollState
from avatar_core.providers.base import JobState, JobStatus, PollAdvice
from avatar_core.providers.transport import PollSchedule

TRAINING = PollSchedule(300, 120, typical_seconds=1200, spread=0.35)
GENERATION = PollSchedule(20, 10, typical_seconds=60, spread=0.25, first_z=0.8)


def running(progress: float | None) -> JobStatus:
    return JobStatus(state=JobState.RUNNING, provider_status="IN_PROGRESS", progress=progress)


def test_the_first_poll_waits_for_the_shortest_typical_job_of_its_kind() -> None:
    assert TRAINING.advice(0).wait_seconds == math.floor(1200 * math.exp(-2.0 * 0.35)) == 595
    assert GENERATION.advice(0).wait_seconds == math.floor(60 * math.exp(-0.8 * 0.25)) == 49
    # never sooner than the configured first wait, and without a typical duration, that wait
    assert PollSchedule(900, 120, typical_seconds=1200).advice(0).wait_seconds == 900
    assert PollSchedule(300, 120).advice(0).wait_seconds == 300


def test_progress_aims_the_next_poll_one_near_interval_past_the_earliest_finish() -> None:
    near = TRAINING.near_seconds(600)
    assert near == 54
    # 50 % after 600 s may truly be 55 %: done at 1091 s at the earliest
    earliest_left = math.ceil(600 * 0.45 / 0.55)
    assert TRAINING.advice(2, running(50), 600).wait_seconds == earliest_left + near
    # at 91 % or more it may be done already: every near interval
    assert TRAINING.advice(5, running(97), 1200).wait_seconds == 54


def test_no_wait_is_longer_than_max_factor_intervals() -> None:
    assert TRAINING.advice(1, running(1), 300).wait_seconds == 120 * TRAINING.max_factor
    assert TRAINING.advice(1, running(0.01), 300).wait_seconds == 600


def test_without_progress_the_regular_interval() -> None:
    assert GENERATION.advice(1, running(None)).wait_seconds == 10
    assert GENERATION.advice(9, running(None), 200).wait_seconds == 10
    assert TRAINING.advice(3, running(0), 900).wait_seconds == 120
    done = JobStatus(state=JobState.SUCCEEDED, provider_status="DONE", progress=100)
    assert TRAINING.advice(3, done, 900).wait_seconds == 120


def test_a_job_stalled_near_the_end_is_polled_ever_more_slowly() -> None:
    waited, waits = 1200, []
    for polls in range(1, 21):
        wait = TRAINING.advice(polls, running(99), waited).wait_seconds
        waits.append(wait)
        waited += wait
    assert waits == sorted(waits) and waits[-1] > waits[0]
    # twenty polls at 99 % still cover more than twenty at a fixed minute would
    assert waited - 1200 > 20 * 60


def test_a_steady_training_is_seen_within_a_minute_in_few_polls() -> None:
    polling.RNG = random.Random(11)
    # the 5th percentile of 20 minutes (sigma 0.35), the median, and the 90th: one more poll
    for duration, most_polls in ((700, 6), (1200, 6), (1800, 7)):
        poll = polling.first_poll("p", TRAINING.advice(0).wait_seconds)
        at = poll.wait_seconds
        while at < duration:
            status = running(math.floor(100 * at / duration))
            poll = polling.next_poll(poll, status, TRAINING.advice, max_polls=20)
            at = poll.waited_seconds + poll.wait_seconds
        assert at - duration <= 60, duration
        assert poll.polls + 1 <= most_polls, duration


def test_a_scheduled_wait_is_jittered_only_below_the_advice() -> None:
    rng = random.Random(5)
    polling.RNG = rng
    firsts = {polling.first_poll("p", 46).wait_seconds for _ in range(300)}
    assert min(firsts) >= 34 and max(firsts) <= 46 and len(firsts) > 5

    def advise(polls: int, last: JobStatus, waited: int) -> PollAdvice:
        return PollAdvice(wait_seconds=10)

    start = PollState(provider_job_id="p", wait_seconds=46)
    waits = {polling.next_poll(start, running(None), advise, 60).wait_seconds for _ in range(300)}
    assert waits <= set(range(8, 11)) and len(waits) > 1


def test_a_schedule_refuses_what_it_cannot_mean() -> None:
    with pytest.raises(ValueError):
        PollSchedule(0, 10)
    with pytest.raises(ValueError):
        PollSchedule(10, 10, typical_seconds=0)
    with pytest.raises(ValueError):
        PollSchedule(10, 10, spread=-0.1)
    with pytest.raises(ValueError):
        TRAINING.advice(-1)
