"""Admission control: whatever the callers do, no sliding minute sees more provider requests
than the provider allows; a refused caller is told when to come back; one conditional write
per attempt, spread over shards."""

from __future__ import annotations

import bisect
import heapq
import json
import random
import time
from collections import Counter
from typing import Any

import pytest
import responses

from avatar_core import ids
from avatar_core.errors import PROVIDER_BUSY, AdmissionDenied, ProviderRateLimited
from avatar_core.logic import avatar_jobs, polling, training
from avatar_core.logic.limiter import (
    Admission,
    Limiter,
    MemoryWindowStore,
    shard_caps,
    window_cap,
)
from avatar_core.models.records import FaceJobRecord
from avatar_core.models.workflow import JobRef, ModelRef, PollState
from avatar_core.providers.base import JobState
from avatar_core.providers.picsart import PicsartClient
from avatar_core.providers.qolaba import QolabaClient
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage
from tests.unit.test_training_logic import (
    SETTINGS,
    FakeWorkflows,
    model_with_accepted,
    storage,  # noqa: F401 (a fixture)
)


class SimulatedClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def limiter(
    rate: int,
    window: float = 10,
    shards: int = 8,
    seed: int = 1,
    store: Any = None,
    clock: SimulatedClock | None = None,
) -> tuple[Limiter, MemoryWindowStore, SimulatedClock]:
    store = store if store is not None else MemoryWindowStore()
    clock = clock or SimulatedClock()
    return (
        Limiter(store, clock, rate, window, shards, random.Random(seed), provider="picsart"),
        store,
        clock,
    )


def busiest_minute(times: list[float]) -> int:
    """The most admissions in any half-open 60 s span (the busiest one starts at one)."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + 60) - i for i, t in enumerate(times)), default=0)


# -- the arithmetic -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "window", "cap"),
    [
        (500, 10, 71),  # 7 windows meet a minute: 7 * 71 = 497 <= 500
        (60, 10, 8),  # Qolaba: 7 * 8 = 56
        (500, 5, 38),  # 13 windows: 494
        (500, 60, 250),  # 2 windows
        (500, 7, 50),  # 7 does not divide 60: a minute meets up to ceil(60/7) + 1 = 10
        (7, 60, 3),
    ],
)
def test_the_cap_per_window_keeps_every_minute_within_the_rate(
    rate: int, window: float, cap: int
) -> None:
    assert window_cap(rate, window) == cap


def test_the_cap_is_shared_over_the_shards_with_the_remainder_spread() -> None:
    assert shard_caps(71, 8) == [9, 9, 9, 9, 9, 9, 9, 8]
    assert sum(shard_caps(71, 8)) == 71
    # no shard with a share so small that its neighbours' tokens strand callers
    assert shard_caps(8, 8) == [4, 4]
    assert shard_caps(3, 8) == [3]
    assert shard_caps(50, 1) == [50]


def test_a_rate_below_one_request_a_window_is_refused_at_configuration() -> None:
    with pytest.raises(ValueError, match="longer windows"):
        limiter(rate=5, window=10)


# -- sliding minutes under many callers ---------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "window", "shards"),
    [(500, 10, 8), (60, 10, 4), (500, 7, 8), (120, 5, 3), (30, 60, 1)],
)
def test_no_sliding_minute_ever_sees_more_than_the_rate(
    rate: int, window: float, shards: int
) -> None:
    """2,000 callers that each ask every few seconds for 10 minutes, far more than the rate,
    and come back when told: the admissions of any 60 s never exceed the rate."""
    rng = random.Random(7)
    gate, _, clock = limiter(rate, window, shards, seed=3)
    start = clock.now
    pending = [(start + rng.uniform(0, 30), caller) for caller in range(2000)]
    heapq.heapify(pending)
    admitted: list[float] = []
    while pending:
        at, caller = heapq.heappop(pending)
        if at > start + 600:
            continue
        clock.now = at
        wait = gate.try_admit()
        if wait is None:
            admitted.append(at)
            wait = rng.uniform(2, 8)
        else:
            assert wait > 0
        heapq.heappush(pending, (at + wait, caller))
    assert busiest_minute(admitted) <= rate
    # ... and the limit is used, not starved: every full window admitted its whole cap
    per_window = Counter(int((t - start) // window) for t in admitted)
    full_windows = [per_window[w] for w in range(int(30 // window) + 1, int(590 // window))]
    assert full_windows and set(full_windows) == {window_cap(rate, window)}


def test_a_burst_in_one_instant_admits_exactly_the_cap_and_refuses_the_rest() -> None:
    gate, store, _ = limiter(500)
    answers = [gate.try_admit() for _ in range(1000)]
    assert sum(answer is None for answer in answers) == 71
    # every attempt wrote at most two keys, and the shards shared the load
    assert sum(store.writes.values()) <= 2 * 1000
    assert len(store.writes) == 8
    assert max(store.writes.values()) < 2 * min(store.writes.values())


def test_a_refused_caller_comes_back_after_the_window_plus_a_spread() -> None:
    gate, _, clock = limiter(60, window=10)
    clock.now = 1_800_000_003.0  # 7 s before the window ends
    for _ in range(8):
        gate.admit()
    waits = []
    for _ in range(200):
        with pytest.raises(AdmissionDenied) as denied:
            gate.admit()
        waits.append(denied.value.retry_after)
    assert all(w is not None and 7 <= w <= 17 for w in waits)
    assert max(waits) - min(waits) > 5  # spread, not one instant for everybody
    clock.now += 7
    gate.admit()  # the next window has tokens again


def test_no_limit_configured_admits_everything_without_writing() -> None:
    gate, store, _ = limiter(0)
    for _ in range(10_000):
        gate.admit()
    assert store.writes == {}


# -- a denial is a busy provider ----------------------------------------------------------


def test_a_denial_is_a_busy_answer_so_the_loop_waits_instead_of_failing() -> None:
    gate, _, _ = limiter(60)
    for _ in range(8):
        gate.admit()
    with pytest.raises(PROVIDER_BUSY) as denied:
        gate.admit()
    assert isinstance(denied.value, ProviderRateLimited)
    assert denied.value.provider == "picsart"
    assert denied.value.retry_after is not None
    poll = polling.busy_poll(
        PollState(provider_job_id="job-1", polls=3, wait_seconds=10), denied.value, 10
    )
    assert poll.polls == 3  # not a poll
    assert not poll.exhausted
    assert poll.wait_seconds >= denied.value.retry_after


# -- the DynamoDB store -------------------------------------------------------------------


def test_the_repository_counts_one_window_shard_with_one_conditional_write(
    repo: AvatarRepository,
) -> None:
    assert [
        repo.add_if_below("LIMIT#picsart#3#W#180000000", 2, 1_800_000_310) for _ in range(3)
    ] == [
        True,
        True,
        False,
    ]
    item = repo._table.get_item(Key={"PK": "LIMIT#picsart#3", "SK": "W#180000000"})["Item"]
    assert item["n"] == 2
    assert item["expires_at_epoch"] == 1_800_000_310


def test_the_dynamodb_limiter_admits_the_cap_per_window(repo: AvatarRepository) -> None:
    gate, _, clock = limiter(60, window=10, shards=3, store=repo)
    first = [gate.try_admit() for _ in range(20)]
    clock.now += 10
    second = [gate.try_admit() for _ in range(20)]
    assert sum(a is None for a in first) == 8
    assert sum(a is None for a in second) == 8


# -- wiring: every provider request takes a token first -----------------------------------


PICSART = "https://picsart.example/v1"


def admission(rate: int, clock: SimulatedClock | None = None, **settings: Any) -> Admission:
    return Admission(
        MemoryWindowStore(),
        Settings(picsart_requests_per_minute=rate, qolaba_requests_per_minute=rate, **settings),
        clock=clock or SimulatedClock(),
        rng=random.Random(2),
    )


def test_a_denied_request_is_never_sent_and_counts_the_denial_metric(
    capsys: pytest.CaptureFixture[str],
) -> None:
    gate = admission(7)  # one request per 10 s window
    client = PicsartClient(PICSART, "key", admit=gate.gate("picsart"))
    with responses.RequestsMock() as sent:
        sent.get(f"{PICSART}/avatars/models/m1", json={"status": "IN_PROGRESS"})
        assert client.training_status("m1").state is JobState.RUNNING
        capsys.readouterr()
        with pytest.raises(AdmissionDenied):
            client.training_status("m1")
        assert len(sent.calls) == 1
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    metrics = [line for line in printed if "_aws" in line]
    assert [(m["provider"], m["ProviderAdmissionDenied"]) for m in metrics] == [("picsart", [1.0])]


def test_each_provider_has_its_own_limiter() -> None:
    gate = admission(7)
    gate.admit("picsart")
    gate.admit("qolaba")  # Picsart's full window does not hold Qolaba back
    with pytest.raises(AdmissionDenied):
        gate.admit("picsart")


def test_locally_the_limiter_counts_emulated_seconds() -> None:
    """With the stack's time factor 60, a 10 s window lasts a sixth of a wall second."""
    settings = Settings(picsart_requests_per_minute=7, limiter_time_factor=60.0)
    gate = Admission(MemoryWindowStore(), settings).limiter("picsart")
    before = time.time()
    gate.admit()
    with pytest.raises(AdmissionDenied) as denied:
        gate.admit()
    assert abs(gate.clock() - before * 60) < 60
    # the wait is in emulated seconds: the Wait state it becomes is scaled by the same factor
    assert denied.value.retry_after is not None and denied.value.retry_after <= 20


def test_a_denied_poll_waits_and_costs_neither_a_poll_nor_the_training(
    repo: AvatarRepository,
) -> None:
    clock = SimulatedClock()
    gate = admission(7, clock)
    client = PicsartClient(PICSART, "key", admit=gate.gate("picsart"))
    model_id = model_with_accepted(repo, 5)
    ref = ModelRef(owner="alice", model_id=model_id)
    poll = PollState(provider_job_id="m1", wait_seconds=300)
    with responses.RequestsMock() as sent:
        sent.get(f"{PICSART}/avatars/models/m1", json={"status": "IN_PROGRESS"})
        polled = training.check_training(repo, client, SETTINGS, ref, poll)
        denied = training.check_training(repo, client, SETTINGS, ref, polled)
        assert len(sent.calls) == 1
    assert polled.polls == 1 and polled.busy == 0
    assert denied.polls == 1 and denied.busy == 1 and not denied.exhausted
    assert denied.wait_seconds >= polling.busy_floor(SETTINGS.training_poll_seconds)
    assert "at its limit" in (denied.error or "")


def test_a_denied_submit_buys_nothing_and_is_submitted_again_later(
    repo: AvatarRepository,
    storage: Storage,  # noqa: F811
) -> None:
    clock = SimulatedClock()
    gate = admission(7, clock)
    gate.admit("picsart")  # the window's only token is gone
    client = PicsartClient(PICSART, "key", admit=gate.gate("picsart"))
    model_id = model_with_accepted(repo, 5)
    training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
    ref = ModelRef(owner="alice", model_id=model_id)
    with responses.RequestsMock() as sent:
        sent.post(f"{PICSART}/avatars/models", json={"model_id": "m1", "status": "ACCEPTED"})
        waiting = training.submit_training(repo, storage, client, SETTINGS, ref)
        assert len(sent.calls) == 0
        assert not waiting.submitted and waiting.busy == 1
        clock.now += waiting.wait_seconds
        submitted = training.submit_training(repo, storage, client, SETTINGS, ref, waiting)
    assert submitted.submitted and submitted.provider_job_id == "m1"


def test_a_denied_face_job_poll_waits_without_asking_qolaba(repo: AvatarRepository) -> None:
    gate = admission(7)
    gate.admit("qolaba")  # the window's only Qolaba token is gone
    qolaba = QolabaClient(
        "https://qolaba.example/api/v1", "token", "face-avatar", admit=gate.gate("qolaba")
    )
    stamp = ids.now_iso()
    job = FaceJobRecord(
        owner="alice",
        job_id=ids.new_id(ids.FACE_JOB),
        image_id="img_x",
        created_at=stamp,
        updated_at=stamp,
    )
    repo.create_job(job)
    spec = avatar_jobs.FaceSpec(repo, Storage("uploads", "results"), qolaba, Settings())
    ref = JobRef(kind="face", owner="alice", job_id=job.job_id)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as sent:
        poll = avatar_jobs.check_job(
            repo, spec, ref, PollState(provider_job_id="task-1", polls=2, wait_seconds=5)
        )
        assert len(sent.calls) == 0
    assert poll.polls == 2 and poll.busy == 1 and not poll.exhausted
    assert poll.wait_seconds >= polling.MIN_BUSY_WAIT_SECONDS
    assert "qolaba is at its limit of 7 requests a minute" in (poll.error or "")
