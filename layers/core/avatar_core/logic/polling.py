"""One step of a bounded poll loop, shared by every workflow that waits on a provider."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from avatar_core.models.workflow import CopyItem, PollState
from avatar_core.providers.base import JobState, JobStatus, PollAdvice

Advise = Callable[[int, JobStatus, int], PollAdvice]


def next_poll(
    poll: PollState,
    status: JobStatus,
    advise: Advise,
    max_polls: int,
    items: Sequence[CopyItem] = (),
) -> PollState:
    """The loop's state after one status check: how long to wait next (the provider's
    advice, given the polls and seconds so far), and whether the bound is reached."""
    polls = poll.polls + 1
    waited = poll.waited_seconds + poll.wait_seconds
    unfinished = status.state in (JobState.QUEUED, JobState.RUNNING)
    return PollState(
        provider_job_id=poll.provider_job_id,
        state=status.state,
        polls=polls,
        wait_seconds=advise(polls, status, waited).wait_seconds,
        waited_seconds=waited,
        exhausted=unfinished and polls >= max_polls,
        # An answer we could not place rides along, so a job given up on can say what it was.
        error=status.error or status.note,
        items=list(items),
    )
