"""Provider limits: a busy provider costs no poll and no job; an exhausted account fails the
submission at once, alerts, and pauses new work behind a breaker until a probe succeeds."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from avatar_core.errors import (
    ProviderOutOfCredits,
    ProviderPaused,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderUnavailable,
)
from avatar_core.logic import polling, training
from avatar_core.logic.breaker import ProviderBreaker
from avatar_core.models.workflow import ModelRef, PollState, StepFailure, TrainingFailed
from avatar_core.providers.base import JobState, JobStatus, PollAdvice, SubmittedJob
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage
from tests.unit.test_training_logic import (
    SETTINGS,
    FakeWorkflows,
    model_with_accepted,
    storage,  # noqa: F401 (a fixture)
)

RUNNING = JobStatus(state=JobState.RUNNING, provider_status="IN_PROGRESS")


def limited(seconds: float | None = None) -> ProviderRateLimited:
    return ProviderRateLimited(
        "picsart answered with HTTP 429", provider="picsart", retry_after=seconds
    )


def out_of_credits() -> ProviderOutOfCredits:
    return ProviderOutOfCredits(
        "the Picsart account is out of credits: nothing more can be generated until the "
        "operator tops it up (picsart answered POST /avatars/models with HTTP 402)",
        provider="picsart",
        status_code=402,
    )


@dataclass
class ScriptedProvider:
    """Answers (or raises) from a script, one entry per call."""

    answers: list[Any] = field(default_factory=list)
    submits: int = 0

    def _next(self) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def submit_training(self, *, image_urls: list[str], subject: str) -> SubmittedJob:
        self.submits += 1
        answer = self._next()
        return (
            answer
            if isinstance(answer, SubmittedJob)
            else SubmittedJob(job_id="prov-model-1", provider_status="ACCEPTED")
        )

    def training_status(self, provider_model_id: str) -> JobStatus:
        answer: JobStatus = self._next()
        return answer

    def training_poll_advice(
        self, polls_so_far: int, last: JobStatus | None = None, waited_seconds: int | None = None
    ) -> PollAdvice:
        return PollAdvice(wait_seconds=300 if polls_so_far == 0 else 120)


# --- waits -----------------------------------------------------------------------------------


def test_scheduled_waits_are_spread_below_the_schedule_never_past_it() -> None:
    rng = random.Random(7)
    waits = [polling.jittered(120, rng) for _ in range(2000)]

    # never later than asked: the schedule's wait is the detection lag it allows
    assert min(waits) >= 90 and max(waits) <= 120
    # at most a seventh more requests than the schedule's own rate
    assert 102 <= sum(waits) / len(waits) <= 108
    assert len(set(waits)) > 25, "a burst started together must not come back together"
    assert polling.jittered(1, rng) == 1


def test_a_busy_wait_never_comes_sooner_than_the_provider_asked() -> None:
    rng = random.Random(3)
    waits = [polling.busy_wait(42.0, 1, 120, rng) for _ in range(500)]

    assert min(waits) >= 42 and max(waits) <= 84


def test_without_advice_a_busy_wait_is_full_jitter_over_a_growing_capped_backoff() -> None:
    rng = random.Random(5)
    first = [polling.busy_wait(None, 1, 10, rng) for _ in range(500)]
    tenth = [polling.busy_wait(None, 10, 10, rng) for _ in range(500)]

    assert min(first) >= polling.MIN_BUSY_WAIT_SECONDS and max(first) <= 10
    assert max(tenth) <= 10 * polling.BUSY_BACKOFF_CAP_FACTOR
    assert max(tenth) > 40


# --- checks: no job dies of throttling -------------------------------------------------------


@pytest.mark.parametrize(
    "busy", [limited(30.0), limited(None), ProviderUnavailable("502", provider="picsart")]
)
def test_a_busy_provider_costs_no_poll_and_never_fails_the_training(
    repo: AvatarRepository, busy: Exception
) -> None:
    model_id = model_with_accepted(repo, 5)
    ref = ModelRef(owner="alice", model_id=model_id)
    # Far more busy answers than the old Retry budget (6) and than max polls (3).
    provider = ScriptedProvider(
        [busy] * 40 + [RUNNING, JobStatus(state=JobState.SUCCEEDED, provider_status="DONE")]
    )
    poll = PollState(provider_job_id="prov-model-1", wait_seconds=300)

    for _ in range(40):
        poll = training.check_training(repo, provider, SETTINGS, ref, poll)
        assert not poll.exhausted and poll.state is JobState.QUEUED and poll.polls == 0
    assert poll.busy == 40 and "waiting for the provider" in (poll.error or "")
    poll = training.check_training(repo, provider, SETTINGS, ref, poll)
    assert poll.busy == 0 and poll.polls == 1 and poll.error is None
    poll = training.check_training(repo, provider, SETTINGS, ref, poll)

    assert poll.state is JobState.SUCCEEDED


def test_the_providers_advice_sets_the_wait(repo: AvatarRepository) -> None:
    model_id = model_with_accepted(repo, 5)
    ref = ModelRef(owner="alice", model_id=model_id)
    provider = ScriptedProvider([limited(200.0)])

    poll = training.check_training(
        repo, provider, SETTINGS, ref, PollState(provider_job_id="p", wait_seconds=300)
    )

    assert 200 <= poll.wait_seconds <= 400
    assert poll.waited_seconds == 300


# --- submits: a refusal for now is waited out; exhaustion fails fast and trips the breaker ---


def test_a_throttled_submit_waits_and_submits_again_without_buying_twice(
    repo: AvatarRepository,
    storage: Storage,  # noqa: F811
) -> None:
    model_id = model_with_accepted(repo, 5)
    training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
    ref = ModelRef(owner="alice", model_id=model_id)
    provider = ScriptedProvider([limited(15.0), limited(None), "ok"])

    first = training.submit_training(repo, storage, provider, SETTINGS, ref)
    second = training.submit_training(repo, storage, provider, SETTINGS, ref, first)
    third = training.submit_training(repo, storage, provider, SETTINGS, ref, second)

    assert (first.submitted, second.submitted, third.submitted) == (False, False, True)
    assert first.wait_seconds >= 15 and second.busy == 2
    assert second.waited_seconds == first.wait_seconds
    assert third.provider_job_id == "prov-model-1" and provider.submits == 3


def test_a_failure_after_a_throttled_submit_counts_as_a_submit_failure() -> None:
    busy = polling.busy_submit(None, limited(5.0), 120)
    failure = TrainingFailed(
        owner="alice", model_id="m", poll=busy, error=StepFailure(Error="ProviderRejected")
    )

    assert failure.in_submit()


def test_an_exhausted_account_fails_the_submission_at_once_and_opens_the_breaker(
    repo: AvatarRepository,
    storage: Storage,  # noqa: F811
) -> None:
    model_id = model_with_accepted(repo, 5)
    training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
    ref = ModelRef(owner="alice", model_id=model_id)

    with pytest.raises(ProviderOutOfCredits, match="until the operator tops it up"):
        training.submit_training(repo, storage, ScriptedProvider([out_of_credits()]), SETTINGS, ref)

    breaker = repo.get_breaker("picsart")
    assert breaker is not None
    assert breaker["reason"] == (
        "the Picsart account is out of credits: nothing more can be generated until the "
        "operator tops it up"
    )
    other = model_with_accepted(repo, 5, owner="bob")
    with pytest.raises(ProviderPaused, match="new Picsart work is paused: the Picsart account"):
        training.start_training(repo, FakeWorkflows(), SETTINGS, "bob", other)


def test_an_exhausted_account_while_polling_paid_work_waits_instead_of_failing(
    repo: AvatarRepository,
) -> None:
    model_id = model_with_accepted(repo, 5)
    ref = ModelRef(owner="alice", model_id=model_id)
    quota = ProviderQuotaExhausted(
        "the Picsart account has used up its request quota", provider="picsart"
    )

    poll = training.check_training(
        repo,
        ScriptedProvider([quota]),
        SETTINGS,
        ref,
        PollState(provider_job_id="p", wait_seconds=1),
    )

    assert not poll.exhausted and poll.busy == 1
    assert poll.wait_seconds >= SETTINGS.breaker_cool_off_seconds // 4
    assert repo.get_breaker("picsart") is not None


# --- the breaker -----------------------------------------------------------------------------

COOLED = Settings(table_name="avatars", breaker_cool_off_seconds=1, breaker_probe_seconds=600)


def test_after_the_cool_off_exactly_one_of_many_concurrent_requests_is_the_probe(
    repo: AvatarRepository,
) -> None:
    breaker = ProviderBreaker(repo, COOLED)
    breaker.trip("picsart", out_of_credits())
    repo.open_breaker(
        "picsart",
        "the Picsart account is out of credits",
        "2000-01-01T00:00:00.000Z",
        "2000-01-01T00:00:00.000Z",
    )
    admitted: list[bool] = []
    lock = threading.Lock()

    def request() -> None:
        try:
            ProviderBreaker(repo, COOLED).admit("picsart")
            outcome = True
        except ProviderPaused:
            outcome = False
        with lock:
            admitted.append(outcome)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(admitted) == [False] * 7 + [True]


def test_a_probe_the_provider_accepts_closes_the_breaker(repo: AvatarRepository) -> None:
    breaker = ProviderBreaker(repo, COOLED)
    breaker.trip("qolaba", out_of_credits())

    breaker.accepted("qolaba")

    assert repo.get_breaker("qolaba") is None
    breaker.admit("qolaba")  # no longer paused


def test_the_breaker_of_one_provider_leaves_the_other_alone(repo: AvatarRepository) -> None:
    ProviderBreaker(repo, SETTINGS).trip("picsart", out_of_credits())

    ProviderBreaker(repo, SETTINGS).admit("qolaba")
    with pytest.raises(ProviderPaused) as paused:
        ProviderBreaker(repo, SETTINGS).admit("picsart")
    assert paused.value.retry_after_seconds >= 1
