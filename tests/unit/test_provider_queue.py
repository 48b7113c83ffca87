"""Paid submissions wait their turn in arrival order when the provider is at its limit: a
ticket each, only the front asks for tokens, the far back sleeps long, holes cannot hold the
queue, and a waiting submission keeps its ticket from turn to turn."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from avatar_core.errors import PROVIDER_BUSY, SubmissionQueued
from avatar_core.logic import polling, training
from avatar_core.logic.limiter import Limiter, MemoryWindowStore
from avatar_core.logic.models import get_model
from avatar_core.logic.provider_queue import (
    MAX_QUEUE_WAIT_SECONDS,
    STALL_WINDOWS,
    MemoryQueueStore,
    SubmitQueue,
)
from avatar_core.models.api import ModelOut
from avatar_core.models.records import ModelStatus
from avatar_core.models.workflow import ModelRef
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage
from tests.unit.test_cancel import FakeWorkflows as StoppableWorkflows
from tests.unit.test_provider_limits import ScriptedProvider
from tests.unit.test_training_logic import (
    SETTINGS,
    FakeWorkflows,
    model_with_accepted,
    storage,  # noqa: F401 (a fixture)
)


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def queue(rate: int = 60, window: float = 10, seed: int = 3) -> tuple[SubmitQueue, Clock]:
    clock = Clock()
    limiter = Limiter(
        MemoryWindowStore(), clock, rate, window, 1, random.Random(seed), provider="picsart"
    )
    return SubmitQueue(MemoryQueueStore(), limiter, clock, random.Random(seed)), clock


def send(q: SubmitQueue, ticket: int | None = None) -> str:
    """A submission through the queue whose call takes the limiter's token first, as the
    provider clients' transport does."""

    def call() -> str:
        q.limiter.admit()
        return "accepted"

    return q.submit(ticket, call)


def test_the_first_submissions_go_at_once_each_with_its_own_ticket() -> None:
    q, _ = queue(rate=60)  # 60 a minute in 10 s windows: 8 a window

    answers = [send(q) for _ in range(q.lookahead)]

    assert answers == ["accepted"] * q.lookahead
    state = q.store.read("picsart")
    assert (state.issued, state.admitted) == (q.lookahead, q.lookahead)


def test_past_the_front_a_submission_waits_without_asking_for_a_token() -> None:
    q, _ = queue(rate=60)
    for _ in range(q.lookahead):
        send(q)
    far_back = [q.store.take_ticket("picsart")[0] for _ in range(500)][-1]
    tokens_before = dict(q.limiter.store.writes)  # type: ignore[attr-defined]

    with pytest.raises(SubmissionQueued) as queued:
        send(q, far_back)

    assert queued.value.ticket == far_back
    assert queued.value.position == far_back - q.lookahead
    assert q.limiter.store.writes == tokens_before, "the far back does not ask the limiter"  # type: ignore[attr-defined]
    # 500 ahead at 1 a second: it comes back in about 8 minutes, not every window
    assert queued.value.estimated_start_seconds == pytest.approx(492, abs=1)
    assert 0.9 * 492 <= queued.value.retry_after <= min(MAX_QUEUE_WAIT_SECONDS, 1.1 * 492)


def test_at_the_front_a_denied_submission_keeps_its_ticket_and_the_oldest_ask_first() -> None:
    q, clock = queue(rate=60)
    for _ in range(q.lookahead):
        send(q)  # this window's tokens are gone
    waits = {}
    for _ in range(q.lookahead):
        ticket, _ = q.store.take_ticket("picsart")
        with pytest.raises(SubmissionQueued) as queued:
            send(q, ticket)
        waits[ticket] = queued.value.retry_after
        assert queued.value.ticket == ticket

    to_next = q.limiter.window_seconds - clock.now % q.limiter.window_seconds
    assert all(to_next <= w <= to_next + q.limiter.window_seconds for w in waits.values())
    oldest, newest = min(waits), max(waits)
    assert waits[oldest] < waits[newest]


def test_a_burst_is_admitted_in_arrival_order() -> None:
    """Hundreds of submissions, each asking again when it is told: they get through in the
    order of their tickets, give or take one front's worth."""
    q, clock = queue(rate=120)
    pending: dict[int, float] = {}
    for _ in range(400):
        ticket, _ = q.store.take_ticket("picsart")
        pending[ticket] = clock.now
    admitted: list[int] = []
    while pending:
        clock.now = min(pending.values())
        for ticket in sorted(t for t, at in pending.items() if at <= clock.now):
            try:
                send(q, ticket)
            except SubmissionQueued as queued:
                pending[ticket] = clock.now + queued.retry_after
            else:
                admitted.append(ticket)
                del pending[ticket]

    displacement = max(abs(i + 1 - ticket) for i, ticket in enumerate(admitted))
    assert sorted(admitted) == list(range(1, 401))
    assert displacement <= q.lookahead


def test_holes_left_by_jobs_that_went_away_cannot_hold_the_queue() -> None:
    q, clock = queue(rate=60)
    send(q)
    for _ in range(3 * q.lookahead):
        q.store.take_ticket("picsart")  # taken by jobs since cancelled: never admitted
    last, _ = q.store.take_ticket("picsart")
    with pytest.raises(SubmissionQueued):
        send(q, last)

    clock.now += 3 * STALL_WINDOWS * q.limiter.window_seconds + 1

    assert send(q, last) == "accepted"


def test_a_queued_turn_is_a_busy_answer_that_keeps_the_ticket_for_the_next_turn() -> None:
    q, _ = queue(rate=60)
    for _ in range(q.lookahead):
        send(q)
    ticket, _ = q.store.take_ticket("picsart")
    with pytest.raises(SubmissionQueued) as queued:
        send(q, ticket)
    assert isinstance(queued.value, PROVIDER_BUSY)

    state = polling.busy_submit(None, queued.value, 10)

    assert state.submitted is False
    assert state.ticket == ticket
    assert state.queue_position == queued.value.position
    assert state.wait_seconds >= queued.value.retry_after


def test_no_limit_configured_means_no_queue() -> None:
    q, _ = queue(rate=0)

    assert [send(q) for _ in range(1000)] == ["accepted"] * 1000
    assert q.store.read("picsart").issued == 0


def test_long_busy_loops_slow_down_so_the_history_stays_bounded() -> None:
    """However long a loop waits for a busy provider, it takes a bounded number of turns
    (Step Functions keeps 25,000 events an execution)."""
    error = SubmissionQueued(
        "x", provider="picsart", ticket=1, position=1, retry_after=1, estimated_start_seconds=0
    )
    state = None
    turns = 0
    while state is None or state.waited_seconds < 12 * 3600:
        state = polling.busy_submit(state, error, 10)
        turns += 1

    assert turns <= 953
    assert state.wait_seconds >= 12 * 3600 // polling.HISTORY_FRACTION


# -- in DynamoDB, under real concurrency ---------------------------------------------------


def test_concurrent_submissions_in_the_table_get_distinct_tickets_and_exactly_the_cap(
    server_repo: AvatarRepository,
) -> None:
    clock = Clock(start=2_000_000_000.0)  # the start of a window: all 40 fall in one
    limiter = Limiter(server_repo, clock, 60, 10, 2, random.Random(5), provider="qolaba")
    q = SubmitQueue(server_repo, limiter, clock, random.Random(5))
    gate = threading.Barrier(40)

    def submit() -> str | SubmissionQueued:
        gate.wait(timeout=30)
        try:
            return send(q)
        except SubmissionQueued as queued:
            return queued

    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda _: submit(), range(40)))

    admitted = [a for a in answers if a == "accepted"]
    queued = [a for a in answers if isinstance(a, SubmissionQueued)]
    assert len(admitted) == limiter.cap, "one window's tokens, no more"
    assert len(queued) == 40 - limiter.cap
    assert len({a.ticket for a in queued}) == len(queued), "every submission its own ticket"
    state = server_repo.read("qolaba")
    assert (state.issued, state.admitted) == (40, limiter.cap)


# -- a training waits its turn, in view -------------------------------------------------------


def test_a_training_behind_the_queue_waits_in_view_and_is_submitted_once_its_turn_comes(
    repo: AvatarRepository,
    storage: Storage,  # noqa: F811
) -> None:
    q, clock = queue(rate=60)
    for _ in range(q.lookahead + 30):
        q.store.take_ticket("picsart")  # others came first and are still waiting
    model_id = model_with_accepted(repo, 5)
    training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
    ref = ModelRef(owner="alice", model_id=model_id)
    provider = ScriptedProvider(["ok"])

    waiting = training.submit_training(repo, storage, provider, SETTINGS, ref, None, q)

    assert waiting.submitted is False and provider.submits == 0
    assert waiting.ticket == q.lookahead + 31 and waiting.queue_position == q.lookahead + 31
    shown = ModelOut.of(get_model(repo, "alice", model_id)).queue
    assert shown is not None and shown.position == q.lookahead + 31
    assert shown.estimated_start_at > shown.as_of

    for _ in range(q.lookahead + 30):
        q.store.advance("picsart", clock.now)  # those ahead got through
    clock.now += 10
    submitted = training.submit_training(repo, storage, provider, SETTINGS, ref, waiting, q)

    assert submitted.submitted is True and provider.submits == 1
    assert ModelOut.of(get_model(repo, "alice", model_id)).queue is None, "the provider has it"


def test_a_training_waiting_in_the_queue_can_still_be_cancelled_at_no_cost(
    repo: AvatarRepository,
    storage: Storage,  # noqa: F811
) -> None:
    q, _ = queue(rate=60)
    for _ in range(q.lookahead + 30):
        q.store.take_ticket("picsart")
    model_id = model_with_accepted(repo, 5)
    training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
    ref = ModelRef(owner="alice", model_id=model_id)
    provider = ScriptedProvider(["ok"])
    waiting = training.submit_training(repo, storage, provider, SETTINGS, ref, None, q)
    assert waiting.submitted is False

    workflows = StoppableWorkflows()
    cancelled = training.cancel_training(repo, workflows, SETTINGS, "alice", model_id)

    assert cancelled.status is ModelStatus.CANCELLED, "nothing was sent, so nothing is kept"
    with pytest.raises(training.TrainingCancelled):
        training.submit_training(repo, storage, provider, SETTINGS, ref, waiting, q)
    assert provider.submits == 0
    assert len(workflows.stopped) == 1
