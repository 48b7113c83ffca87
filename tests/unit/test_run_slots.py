"""The cap on running provider jobs: never more than ``cap`` run at once, they start in
ticket order as capacity frees, a retried submit takes no second slot, only its holder
frees a slot, and a slot whose end was missed frees itself when its lease runs out."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from avatar_core.errors import (
    ProviderOutcomeUnknown,
    ProviderRateLimited,
    ProviderRejected,
    SubmissionQueued,
)
from avatar_core.logic import avatar_jobs, training
from avatar_core.logic import run_slots as run_slots_module
from avatar_core.logic.limiter import Limiter, MemoryWindowStore
from avatar_core.logic.models import get_model
from avatar_core.logic.provider_queue import STALL_WINDOWS, MemoryQueueStore, SubmitQueue
from avatar_core.logic.run_slots import (
    MemoryRunSlotStore,
    RunSlots,
    kind_lease_seconds,
    run_slots,
)
from avatar_core.models.api import ModelOut
from avatar_core.models.workflow import JobOutcome, ModelRef, StepFailure, TrainingFailed
from avatar_core.providers.base import JobState, JobStatus
from avatar_core.providers.transport import PollSchedule
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage
from tests.unit.test_cancel import CountingSpec, queued_face_job
from tests.unit.test_provider_limits import ScriptedProvider
from tests.unit.test_training_logic import (
    SETTINGS,
    FakeWorkflows,
    model_with_accepted,
    storage,  # noqa: F401 (a fixture)
)

LEASE = 600.0


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def slots(cap: int = 2, seed: int = 1) -> tuple[RunSlots, Clock]:
    clock = Clock()
    return RunSlots(MemoryRunSlotStore(), "picsart", cap, LEASE, clock, random.Random(seed)), clock


def holders(run: RunSlots) -> list[str]:
    view = run.view()
    return sorted(s.holder for s in view.slots if s.holder and not s.free(view.moment))


def test_a_retried_acquire_keeps_the_one_slot_it_holds() -> None:
    run, _ = slots(cap=2)
    assert run.acquire("job#a") and run.acquire("job#a") and run.acquire("job#a")
    assert holders(run) == ["job#a"]
    assert run.acquire("job#b")
    assert not run.acquire("job#c")  # the cap is full
    assert run.acquire("job#a")  # a redelivered submit of a holder still passes
    assert holders(run) == ["job#a", "job#b"]


def test_only_the_holder_frees_its_slot() -> None:
    run, _ = slots(cap=1)
    assert run.acquire("job#a")
    assert not run.release("job#b")
    assert not run.acquire("job#b")
    assert run.release("job#a")
    assert not run.release("job#a")  # twice is nothing
    assert run.acquire("job#b")


def test_a_missed_end_frees_itself_when_its_lease_runs_out() -> None:
    run, clock = slots(cap=1)
    assert run.acquire("job#leaked")
    clock.now += LEASE - 1
    assert not run.acquire("job#next")
    clock.now += 1
    assert run.acquire("job#next")
    assert holders(run) == ["job#next"]
    # the leaked job's renewal says it lost its slot, and takes nothing from the new holder
    assert not run.renew("job#leaked")
    assert not run.release("job#leaked")
    assert holders(run) == ["job#next"]


def test_every_poll_renews_the_lease() -> None:
    run, clock = slots(cap=1)
    assert run.acquire("job#long")
    for _ in range(10):  # polled every half lease for five leases
        clock.now += LEASE / 2
        assert run.renew("job#long")
    assert not run.acquire("job#other")


def test_no_cap_reads_and_writes_nothing() -> None:
    store = MemoryRunSlotStore()
    run = RunSlots(store, "picsart", 0, LEASE, Clock())
    assert run.acquire("job#a") and run.renew("job#a") and not run.release("job#a")
    assert store.slots == {}


def test_the_lease_is_three_times_the_longest_wait_between_two_polls() -> None:
    settings = Settings()
    # the schedule's longest regular wait, 10 intervals, beats a busy backoff's 8 and a
    # training's first poll (596 s)
    assert PollSchedule(first_seconds=1, every_seconds=1).max_factor == run_slots_module.MAX_FACTOR
    assert kind_lease_seconds(settings, "training") == 3 * 10 * 120 == 60 * 60
    assert kind_lease_seconds(settings, "generation") == 3 * 10 * 10
    assert kind_lease_seconds(settings, "instant") == 3 * 10 * 10
    assert kind_lease_seconds(settings, "face") == 3 * 10 * 5
    capped = Settings(picsart_concurrent_jobs=7, qolaba_concurrent_jobs=3)
    assert run_slots(MemoryRunSlotStore(), capped, "picsart", "training").cap == 7
    assert run_slots(MemoryRunSlotStore(), capped, "qolaba", "face").cap == 3


# -- the queue with a cap ------------------------------------------------------------------


def capped_queue(cap: int, rate: int = 600, seed: int = 4) -> tuple[SubmitQueue, Clock]:
    """A queue whose limiter never binds (or is off with ``rate == 0``): only the cap does."""
    clock = Clock()
    limiter = Limiter(
        MemoryWindowStore(), clock, rate, 10, 1, random.Random(seed), provider="picsart"
    )
    run = RunSlots(MemoryRunSlotStore(), "picsart", cap, LEASE, clock, random.Random(seed))
    full: list[str] = []
    q = SubmitQueue(
        MemoryQueueStore(), limiter, clock, random.Random(seed), slots=run, on_full=full.append
    )
    return q, clock


@pytest.mark.parametrize("rate", [600, 0], ids=["with the limiter", "cap only"])
def test_over_the_cap_jobs_wait_and_start_in_ticket_order(rate: int) -> None:
    """20 jobs, a cap of 3, random durations, the waiting ones asking in random order:
    never more than 3 run, and they start in the order they arrived."""
    q, clock = capped_queue(cap=3, rate=rate)
    rng = random.Random(9)
    assert q.slots is not None
    tickets: dict[str, int | None] = {f"job#{i:02d}": None for i in range(20)}
    running: dict[str, float] = {}  # holder -> when it ends
    started: list[str] = []
    peak = 0
    for holder in tickets:  # all arrive together; each takes its ticket on its first turn
        try:
            q.submit(None, lambda: "accepted", holder)
            started.append(holder)
            running[holder] = clock.now + rng.uniform(60, 400)
        except SubmissionQueued as queued:
            tickets[holder] = queued.ticket
    for _ in range(2000):
        clock.now += 5
        for holder, end in list(running.items()):
            if end <= clock.now:
                del running[holder]
                q.slots.release(holder)
            else:
                q.slots.renew(holder)
        waiting = [h for h in tickets if h not in started]
        rng.shuffle(waiting)
        for holder in waiting:
            try:
                q.submit(tickets[holder], lambda: "accepted", holder)
            except SubmissionQueued as queued:
                assert queued.position >= 0
                continue
            started.append(holder)
            running[holder] = clock.now + rng.uniform(60, 400)
        peak = max(peak, q.slots.view().running())
        if len(started) == len(tickets):
            break
    assert len(started) == 20
    assert peak == 3
    assert started == sorted(tickets)  # ticket order = arrival order here


def test_a_slot_freed_while_an_earlier_ticket_waits_is_not_taken_by_a_later_one() -> None:
    q, clock = capped_queue(cap=1)
    assert q.slots is not None
    assert q.submit(None, lambda: "accepted", "job#first") == "accepted"
    waits: dict[str, int] = {}
    for holder in ("job#second", "job#third"):
        with pytest.raises(SubmissionQueued) as queued:
            q.submit(None, lambda: "accepted", holder)
        waits[holder] = queued.value.ticket
    q.slots.release("job#first")
    clock.now += 1
    # the later ticket asks first: the free slot is for the one ahead of it
    with pytest.raises(SubmissionQueued) as queued:
        q.submit(waits["job#third"], lambda: "accepted", "job#third")
    assert queued.value.position == 2
    assert q.submit(waits["job#second"], lambda: "accepted", "job#second") == "accepted"
    assert holders(q.slots) == ["job#second"]


def test_a_full_cap_for_hours_is_not_a_stalled_queue() -> None:
    """Nothing is admitted while the cap is full for far longer than the stall windows: the
    front does not move on, so the first waiter still gets the first free slot."""
    q, clock = capped_queue(cap=1)
    assert q.slots is not None
    q.submit(None, lambda: "accepted", "job#long")
    with pytest.raises(SubmissionQueued) as second:
        q.submit(None, lambda: "accepted", "job#second")
    with pytest.raises(SubmissionQueued) as third:
        q.submit(None, lambda: "accepted", "job#third")
    for _ in range(12):  # two hours, renewed at every poll
        clock.now += 600
        q.slots.renew("job#long")
        with pytest.raises(SubmissionQueued):
            q.submit(third.value.ticket, lambda: "accepted", "job#third")
    q.slots.release("job#long")
    with pytest.raises(SubmissionQueued):
        q.submit(third.value.ticket, lambda: "accepted", "job#third")
    assert q.submit(second.value.ticket, lambda: "accepted", "job#second") == "accepted"


def test_tickets_of_jobs_that_left_hold_a_free_slot_only_for_the_stall_windows() -> None:
    q, clock = capped_queue(cap=1)
    assert q.slots is not None
    q.submit(None, lambda: "accepted", "job#running")
    gone = []
    for holder in ("job#cancelled-1", "job#cancelled-2"):
        with pytest.raises(SubmissionQueued) as queued:
            q.submit(None, lambda: "accepted", holder)
        gone.append(queued.value.ticket)  # these never come back
    with pytest.raises(SubmissionQueued) as waiting:
        q.submit(None, lambda: "accepted", "job#waiting")
    q.slots.release("job#running")
    clock.now += 1
    with pytest.raises(SubmissionQueued):  # two tickets ahead, one free slot
        q.submit(waiting.value.ticket, lambda: "accepted", "job#waiting")
    clock.now += STALL_WINDOWS * q.limiter.window_seconds
    assert q.submit(waiting.value.ticket, lambda: "accepted", "job#waiting") == "accepted"


def test_a_submit_refused_outright_frees_its_slot_and_one_refused_for_now_keeps_it() -> None:
    q, _ = capped_queue(cap=1)
    assert q.slots is not None

    def refused() -> str:
        raise ProviderRejected("bad request", provider="picsart", status_code=400)

    def busy() -> str:
        raise ProviderRateLimited("slow down", provider="picsart", status_code=429)

    with pytest.raises(ProviderRejected):
        q.submit(None, refused, "job#rejected")
    assert holders(q.slots) == []
    with pytest.raises(ProviderRateLimited):
        q.submit(None, busy, "job#throttled")
    assert holders(q.slots) == ["job#throttled"]
    # it asks again from the front (ticket 0) with the slot it kept; others wait
    with pytest.raises(SubmissionQueued):
        q.submit(None, lambda: "accepted", "job#later")
    assert q.submit(0, lambda: "accepted", "job#throttled") == "accepted"
    assert holders(q.slots) == ["job#throttled"]


def test_a_submit_whose_answer_was_lost_keeps_its_slot_until_its_lease_runs_out() -> None:
    """The provider may be running that job: giving its slot to the next would run one more
    than the cap until it ends there."""
    q, clock = capped_queue(cap=1)
    assert q.slots is not None

    def lost() -> str:
        raise ProviderOutcomeUnknown("read timed out after sending", provider="picsart")

    with pytest.raises(ProviderOutcomeUnknown):
        q.submit(None, lost, "job#lost")
    assert holders(q.slots) == ["job#lost"]
    with pytest.raises(SubmissionQueued) as waiting:
        q.submit(None, lambda: "accepted", "job#next")
    clock.now += LEASE  # about as long as the job could still run there
    assert q.submit(waiting.value.ticket, lambda: "accepted", "job#next") == "accepted"
    assert holders(q.slots) == ["job#next"]


@pytest.mark.parametrize(
    ("error", "keeps"),
    [("ProviderOutcomeUnknown", True), ("ProviderUnavailable", True), ("ProviderRejected", False)],
)
def test_a_job_failed_in_a_submit_that_may_have_started_it_keeps_its_slot(
    repo: AvatarRepository, error: str, keeps: bool
) -> None:
    capped = SETTINGS.model_copy(update={"qolaba_concurrent_jobs": 1})
    run = run_slots(repo, capped, "qolaba", "face")
    job = queued_face_job(repo)
    holder = run_slots_module.job_holder(job.job_id)
    assert run.acquire(holder)
    outcome = JobOutcome(
        kind="face", owner="alice", job_id=job.job_id, outcome="failed",
        error=StepFailure(Error=error, Cause="{}"),
    )  # fmt: skip

    avatar_jobs.record_outcome(repo, CountingSpec(repo, settings=capped), outcome, 30)

    assert holders(run) == ([holder] if keeps else [])


def test_a_training_failed_in_a_submit_whose_answer_was_lost_keeps_its_slot(
    repo: AvatarRepository,
) -> None:
    capped = SETTINGS.model_copy(update={"picsart_concurrent_jobs": 2})
    run = run_slots(repo, capped, "picsart", "training")
    lost, refused = model_with_accepted(repo, 5), model_with_accepted(repo, 5)
    for model_id in (lost, refused):
        training.start_training(repo, FakeWorkflows(), capped, "alice", model_id)

    for model_id, error in ((lost, "ProviderOutcomeUnknown"), (refused, "ProviderRejected")):
        assert run.acquire(run_slots_module.training_holder(model_id, 1))
        training.record_failed(
            repo, capped, TrainingFailed(owner="alice", model_id=model_id, error=StepFailure(
                Error=error, Cause="{}"))
        )  # fmt: skip

    assert holders(run) == [f"training#{lost}#1"]
    assert get_model(repo, "alice", lost).status.value == "failed"


def test_waiting_for_a_slot_is_counted() -> None:
    q, _ = capped_queue(cap=1)
    q.submit(None, lambda: "accepted", "job#a")
    with pytest.raises(SubmissionQueued) as queued:
        q.submit(None, lambda: "accepted", "job#b")
    assert "run slot" in queued.value.message
    assert q.on_full.__self__ == ["picsart"]  # type: ignore[attr-defined]


# -- against a real DynamoDB (moto server): the conditional writes race ---------------------


def test_sixteen_concurrent_submits_for_a_cap_of_five_leave_exactly_five_holders(
    server_repo: AvatarRepository,
) -> None:
    clock = Clock()
    run = RunSlots(server_repo, "race-provider", 5, LEASE, clock)
    gate = threading.Barrier(16)

    def take(index: int) -> bool:
        gate.wait()
        return run.acquire(f"job#{index:02d}")

    with ThreadPoolExecutor(16) as pool:
        won = list(pool.map(take, range(16)))
    assert sum(won) == 5
    held = holders(run)
    assert len(held) == len(set(held)) == 5
    assert held == sorted(f"job#{i:02d}" for i, ok in enumerate(won) if ok)
    # the table's items: slots 0..4, no sixth
    assert sorted(s.index for s in server_repo.list_slots("race-provider")) == [0, 1, 2, 3, 4]
    # a holder frees its slot and one of the losers then gets it
    assert run.release(held[0])
    loser = next(f"job#{i:02d}" for i, ok in enumerate(won) if not ok)
    assert run.acquire(loser) and run.acquire(loser)
    assert len(holders(run)) == 5


def test_the_repository_keeps_the_slot_semantics(server_repo: AvatarRepository) -> None:
    clock = Clock()
    run = RunSlots(server_repo, "semantics", 1, LEASE, clock)
    assert run.acquire("job#a") and run.acquire("job#a")
    assert not run.acquire("job#b")
    assert not run.release("job#b")
    clock.now += LEASE
    assert run.acquire("job#b")  # the lease ran out
    assert not run.renew("job#a")
    assert run.release("job#b")
    [slot] = server_repo.list_slots("semantics")
    assert slot.holder is None and slot.lease_until == pytest.approx(clock.now)


# -- wired: trainings through the logic the Lambdas run, on the table ------------------------


def test_a_second_training_over_a_cap_of_one_waits_in_view_until_the_first_is_recorded(
    repo: AvatarRepository,
    storage: Storage,  # noqa: F811
) -> None:
    capped = SETTINGS.model_copy(update={"picsart_concurrent_jobs": 1})
    clock = Clock()
    limiter = Limiter(repo, clock, 600, 10, 1, random.Random(2), provider="picsart")
    run = run_slots(repo, capped, "picsart", "training", clock)
    q = SubmitQueue(repo, limiter, clock, random.Random(2), slots=run, on_full=lambda _: None)
    first, second = model_with_accepted(repo, 5), model_with_accepted(repo, 5)
    refs = []
    for model_id in (first, second):
        training.start_training(repo, FakeWorkflows(), capped, "alice", model_id)
        refs.append(ModelRef(owner="alice", model_id=model_id))
    provider = ScriptedProvider(["ok"])

    running = training.submit_training(repo, storage, provider, capped, refs[0], None, q)
    waiting = training.submit_training(repo, storage, provider, capped, refs[1], None, q)

    assert running.submitted and not waiting.submitted and provider.submits == 1
    shown = ModelOut.of(get_model(repo, "alice", second)).queue
    assert shown is not None and shown.position == 1
    # polls renew the running one's slot; the waiting one still waits
    provider.answers.append(JobStatus(state=JobState.RUNNING, provider_status="RUNNING"))
    clock.now += 100
    training.check_training(repo, provider, capped, refs[0], running, run)
    waiting = training.submit_training(repo, storage, provider, capped, refs[1], waiting, q)
    assert not waiting.submitted and provider.submits == 1

    training.record_ready(repo, capped, refs[0])  # its end frees the slot
    clock.now += 10
    provider.answers.append("ok")
    started = training.submit_training(repo, storage, provider, capped, refs[1], waiting, q)

    assert started.submitted and provider.submits == 2
    assert holders(run) == [f"training#{second}#1"]
    training.record_failed(
        repo, capped, TrainingFailed(owner="alice", model_id=second, poll=started)
    )
    assert holders(run) == []
