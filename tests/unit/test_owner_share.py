"""One owner's burst does not starve everyone else: an owner holds at most its share of a
provider's queue, so a newcomer waits behind at most that many of another owner's queued
submissions; one owner alone still keeps the provider busy; a retried submit takes one
place; every end frees it; a missed end frees itself after the longest deadline; and racing
submits never hold more than the share."""

from __future__ import annotations

import heapq
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from avatar_core.errors import SubmissionQueued
from avatar_core.logic import avatar_jobs
from avatar_core.logic.limiter import Limiter, MemoryWindowStore
from avatar_core.logic.owner_share import MemoryOwnerShareStore, OwnerShares, owner_shares
from avatar_core.logic.provider_queue import MemoryQueueStore, SubmitQueue
from avatar_core.logic.run_slots import MemoryRunSlotStore, RunSlots, job_holder
from avatar_core.models.workflow import JobOutcome, StepFailure
from avatar_core.store.repository import AvatarRepository
from tests.unit.test_cancel import CountingSpec, queued_face_job
from tests.unit.test_run_slots import Clock
from tests.unit.test_training_logic import SETTINGS

STALE = 3600.0


def shares(share: int = 3) -> tuple[OwnerShares, Clock]:
    clock = Clock()
    return OwnerShares(MemoryOwnerShareStore(), "picsart", share, STALE, clock), clock


# -- a whole queue over simulated time ------------------------------------------------------


@dataclass
class Run:
    """Jobs of several owners through one provider's queue with a cap of ``cap`` running and
    ``share`` places per owner, each running ``duration`` s, every wait as the queue says."""

    cap: int
    share: int
    duration: float = 60.0
    clock: Clock = field(default_factory=Clock)
    started: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = random.Random(9)
        limiter = Limiter(MemoryWindowStore(), self.clock, 0, 10, 1, rng, provider="picsart")
        self.slots = RunSlots(
            MemoryRunSlotStore(), "picsart", self.cap, 3600, self.clock, random.Random(9)
        )
        self.queue = SubmitQueue(
            MemoryQueueStore(),
            limiter,
            self.clock,
            random.Random(9),
            slots=self.slots,
            on_full=lambda _: None,
            shares=OwnerShares(MemoryOwnerShareStore(), "picsart", self.share, 1e9, self.clock),
        )
        self.events: list[tuple[float, int, str, str, int | None]] = []
        self.order = 0

    def arrive(self, at: float, owner: str, job: str) -> None:
        self._at(at, "submit", job, None, owner)

    def _at(self, at: float, what: str, job: str, ticket: int | None, owner: str = "") -> None:
        self.order += 1
        heapq.heappush(self.events, (at, self.order, what, f"{owner}/{job}", ticket))

    def go(self) -> None:
        while self.events:
            at, _, what, name, ticket = heapq.heappop(self.events)
            self.clock.now = 1_800_000_000.0 + at
            owner, job = name.split("/")
            if what == "end":
                self.slots.release(job)
                continue
            try:
                self.queue.submit(ticket, lambda: "accepted", job, owner)
            except SubmissionQueued as queued:
                self._at(at + queued.retry_after, "submit", job, queued.ticket, owner)
                continue
            self.started.append(job)
            self._at(at + self.duration, "end", job, None, owner)


def test_a_newcomer_waits_behind_at_most_the_share_of_a_flooding_owner() -> None:
    def before_bob(share: int) -> int:
        run = Run(cap=2, share=share)
        for n in range(40):
            run.arrive(0.0, "alice", f"a{n:02d}")
        run.arrive(1.0, "bob", "b")
        run.go()
        assert len(run.started) == 41
        return run.started.index("b")

    # two of alice's were already running when bob came; then at most her share of three
    assert before_bob(share=3) <= 2 + 3
    # without a share, bob waits for all forty
    assert before_bob(share=0) == 40


def test_one_owner_alone_still_keeps_every_run_slot_busy() -> None:
    def finished(share: int) -> float:
        run = Run(cap=2, share=share)
        for n in range(20):
            run.arrive(0.0, "alice", f"a{n:02d}")
        run.go()
        assert len(run.started) == 20
        return run.clock.now - 1_800_000_000.0

    # ten rounds of two 60 s jobs: the share costs at most a recheck (15 s) per round
    assert finished(share=3) <= finished(share=0) + 10 * 16


# -- the share's own rules ---------------------------------------------------------------------


def test_a_retried_submit_takes_one_place_and_its_end_frees_it() -> None:
    owners, _ = shares(share=2)
    assert owners.enter("alice", "job#1") and owners.enter("alice", "job#1")
    assert owners.enter("alice", "job#2")
    assert not owners.enter("alice", "job#3")
    assert owners.enter("bob", "job#4")  # another owner's share is its own
    owners.leave("alice", "job#1")
    owners.leave("alice", "job#1")  # twice is nothing
    assert owners.enter("alice", "job#3")
    assert not owners.enter("alice", "job#5")


def test_a_place_whose_end_was_missed_frees_itself_after_the_longest_deadline() -> None:
    owners, clock = shares(share=1)
    assert owners.enter("alice", "job#stopped-by-hand")
    clock.now += STALE - 1
    assert not owners.enter("alice", "job#next")
    clock.now += 2
    assert owners.enter("alice", "job#next")


def test_the_stale_horizon_is_the_longest_deadline_a_submission_can_have() -> None:
    stack = owner_shares(MemoryOwnerShareStore(), SETTINGS, "picsart")
    assert stack.share == SETTINGS.owner_queue_share == 50
    assert stack.stale_seconds == max(
        SETTINGS.job_deadline_seconds, SETTINGS.training_deadline_seconds
    )


def test_a_submission_over_its_owners_share_waits_in_view_without_a_ticket() -> None:
    run = Run(cap=1, share=1)
    assert run.queue.submit(None, lambda: "accepted", "job#a", "alice") == "accepted"
    with pytest.raises(SubmissionQueued) as first:
        run.queue.submit(None, lambda: "accepted", "job#b", "alice")  # a ticket, no slot
    with pytest.raises(SubmissionQueued) as second:
        run.queue.submit(None, lambda: "accepted", "job#c", "alice")  # no place in the share
    assert first.value.ticket is not None
    assert second.value.ticket is None and second.value.position == 2
    assert "already has 1 submissions in it" in str(second.value)
    assert second.value.retry_after is not None and second.value.retry_after >= 9


def test_sixteen_racing_submits_of_one_owner_hold_at_most_the_share(
    server_repo: AvatarRepository,
) -> None:
    owners = OwnerShares(server_repo, "race", 5, STALE, Clock())
    start = threading.Barrier(16)

    def enter(n: int) -> bool:
        start.wait()
        return owners.enter("alice", f"job#{n:02d}")

    with ThreadPoolExecutor(16) as pool:
        won = list(pool.map(enter, range(16)))

    held, _ = server_repo.read_share("race", "alice")
    assert sum(won) == len(held) <= 5
    assert sum(won) >= 1
    # the ones that lost a race come back later and get the places that are left
    for n, ok in enumerate(won):
        if not ok and len(held) < 5:
            assert owners.enter("alice", f"job#{n:02d}")
            held, _ = server_repo.read_share("race", "alice")
    assert len(held) == 5
    server_repo.leave_share("race", "alice", next(iter(held)))
    assert len(server_repo.read_share("race", "alice")[0]) == 4


# -- wired: a job's end frees its owner's place -----------------------------------------------


@pytest.mark.parametrize("error", ["States.Timeout", "ProviderRejected"])
def test_a_job_that_ends_while_queued_frees_its_owners_place(
    repo: AvatarRepository, error: str
) -> None:
    settings = SETTINGS.model_copy(update={"owner_queue_share": 1})
    owners = owner_shares(repo, settings, "qolaba")
    job = queued_face_job(repo)
    assert owners.enter("alice", job_holder(job.job_id))
    assert not owners.enter("alice", "job#other")
    outcome = JobOutcome(
        kind="face", owner="alice", job_id=job.job_id, outcome="failed",
        error=StepFailure(Error=error, Cause="{}"),
    )  # fmt: skip

    avatar_jobs.record_outcome(repo, CountingSpec(repo, settings=settings), outcome, 30)

    assert owners.enter("alice", "job#other")


def test_a_cancelled_queued_job_frees_its_owners_place(repo: AvatarRepository) -> None:
    settings = SETTINGS.model_copy(update={"owner_queue_share": 1})
    owners = owner_shares(repo, settings, "qolaba")
    job = queued_face_job(repo)
    assert owners.enter("alice", job_holder(job.job_id))

    avatar_jobs.job_cancelled(repo, job, settings)

    assert owners.enter("alice", "job#other")
