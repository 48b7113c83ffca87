"""The app builder's wallet: each owner's limits refuse at exactly the limit, say which limit
and when it frees, count a piece of work once, give back what the provider never charged for;
and the stack-wide guard stops all paid work past its hourly cap."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from avatar_core.errors import QuotaExceeded, SpendingPaused, WorkflowUnavailable
from avatar_core.logic import quotas
from avatar_core.logic.quotas import PaidWork, Quotas, limits, refusal
from avatar_core.models.records import ModelStatus, QuotaEntry, QuotaLedger
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from tests.unit.test_training_logic import model_with_accepted

SETTINGS = Settings(table_name="avatars")
NOON = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _limit(name: str) -> quotas.Limit:
    return next(limit for limit in limits(SETTINGS) if limit.name == name)


def _ledger(family: str, *ats: datetime, units: int = 1) -> QuotaLedger:
    entries = {
        f"job{i}": QuotaEntry(at=at.isoformat().replace("+00:00", "Z"), units=units, ended=True)
        for i, at in enumerate(ats)
    }
    return QuotaLedger(family=family, entries=entries, version=1)


def test_the_sixth_training_in_24_hours_is_refused_naming_the_limit_and_when_it_frees() -> None:
    starts = [NOON - timedelta(hours=h) for h in (22, 10, 5, 2, 1)]
    refused = refusal(
        _limit("trainings_per_day"),
        _ledger("trainings", *starts),
        PaidWork.training("mdl_x", 1),
        NOON,
    )
    assert refused is not None
    assert refused.message == (
        "daily training limit reached: 5 of 5 trainings in the last 24 hours; next at 14:00 UTC"
    )
    assert refused.retry_after_seconds == 2 * 3600 + 1
    fewer = _ledger("trainings", *starts[1:])
    assert refusal(_limit("trainings_per_day"), fewer, PaidWork.training("mdl_x", 1), NOON) is None


def test_avatars_count_by_image_and_a_window_frees_as_much_as_the_request_needs() -> None:
    # 10 generations of 20 avatars, one an hour from 23 hours ago: 200 of 200
    ledger = _ledger("avatars", *[NOON - timedelta(hours=23 - i) for i in range(10)], units=20)
    refused = refusal(_limit("avatars_per_day"), ledger, PaidWork.avatars("gen_1", 30), NOON)
    assert refused is not None
    # 30 more need two of the oldest generations gone: the second leaves at 14:00
    assert refused.message.endswith(
        "200 of 200 avatars in the last 24 hours (30 asked for); next at 14:00 UTC"
    )
    older = _ledger("avatars", *[NOON - timedelta(hours=25)] * 10, units=20)
    assert refusal(_limit("avatars_per_day"), older, PaidWork.avatars("gen_1", 30), NOON) is None


def test_unlimited_is_zero() -> None:
    unlimited = Settings(owner_avatars_per_day=0)
    limit = next(limit for limit in limits(unlimited) if limit.name == "avatars_per_day")
    ledger = _ledger("avatars", *[NOON] * 50, units=40)
    assert refusal(limit, ledger, PaidWork.avatars("gen_1", 40), NOON) is None


def test_reserving_counts_once_refuses_at_the_limit_and_release_gives_it_back(
    repo: AvatarRepository,
) -> None:
    settings = Settings(table_name="avatars", owner_face_batches_per_day=3)
    ledger = Quotas(repo, settings)
    for job in ("face_1", "face_2", "face_3"):
        assert ledger.reserve("alice", PaidWork.face_batch(job, 4))
    assert not ledger.reserve("alice", PaidWork.face_batch("face_3", 4)), "counted once"
    with pytest.raises(QuotaExceeded) as refused:
        ledger.reserve("alice", PaidWork.face_batch("face_4", 4))
    assert refused.value.limit == "face_batches_per_day"
    ledger.reserve("bob", PaidWork.face_batch("face_9", 4))  # another owner is not affected
    ledger.release("alice", PaidWork.face_batch("face_2", 4))
    assert ledger.reserve("alice", PaidWork.face_batch("face_4", 4))
    used = {u.limit.name: u.used for u in ledger.usage("alice")}
    assert used["face_batches_per_day"] == 3 and used["face_images_per_day"] == 12


def test_a_start_that_fails_inside_the_reservation_leaves_nothing_counted(
    repo: AvatarRepository,
) -> None:
    ledger = Quotas(repo, SETTINGS)
    with pytest.raises(WorkflowUnavailable), ledger.reserved("alice", PaidWork.avatars("g1", 40)):
        raise WorkflowUnavailable("throttled")
    assert repo.get_quota_ledger("alice", "avatars").entries == {}


def test_a_concurrent_duplicate_that_fails_does_not_release_the_first_ones_count(
    repo: AvatarRepository,
) -> None:
    ledger = Quotas(repo, SETTINGS)
    ledger.reserve("alice", PaidWork.training("mdl_a", 1))
    with pytest.raises(RuntimeError), ledger.reserved("alice", PaidWork.training("mdl_a", 1)):
        raise RuntimeError("lost the race to begin the training")
    assert "mdl_a#1" in repo.get_quota_ledger("alice", "trainings").entries


def test_concurrent_trainings_free_when_a_training_ends_by_any_path(
    repo: AvatarRepository,
) -> None:
    ledger = Quotas(repo, SETTINGS)
    first, second, third = (model_with_accepted(repo, 5) for _ in range(3))
    for model_id in (first, second):
        repo.update_model("alice", model_id, status=ModelStatus.TRAINING.value, training_attempt=1)
        ledger.reserve("alice", PaidWork.training(model_id, 1))
    with pytest.raises(QuotaExceeded) as refused:
        ledger.reserve("alice", PaidWork.training(third, 1))
    assert refused.value.message.startswith("concurrent training limit reached: 2 of 2")
    # the first ends without anyone releasing anything (e.g. an operator stopped it)
    repo.update_model("alice", first, status=ModelStatus.FAILED.value)
    assert ledger.reserve("alice", PaidWork.training(third, 1))
    running = {u.limit.name: u.used for u in ledger.usage("alice")}["concurrent_trainings"]
    assert running == 2  # the second is training; the third, reserved, is starting


def test_the_spending_guard_stops_all_paid_work_past_its_hourly_cap(
    repo: AvatarRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quotas, "now", lambda: NOON + timedelta(minutes=50))
    guard = Quotas(repo, Settings(table_name="avatars", paid_submissions_per_hour=3))
    for _ in range(3):
        guard.guard_spending()
    with pytest.raises(SpendingPaused) as paused:
        guard.guard_spending()
    assert paused.value.message.endswith("per hour is reached; it resumes at 13:00 UTC")
    assert paused.value.retry_after_seconds == 601
    with pytest.raises(SpendingPaused), guard.reserved("carol", PaidWork.avatars("g", 1)):
        pass
    assert repo.get_quota_ledger("carol", "avatars").entries == {}, "refused work is not counted"
    monkeypatch.setattr(quotas, "now", lambda: NOON + timedelta(minutes=61))
    guard.guard_spending()  # a new hour


# -- every limit, under real concurrency (threads against a DynamoDB server) -------------------


@pytest.mark.parametrize(
    ("limit", "settings", "work", "reserved", "used"),
    [
        (
            "trainings_per_day",
            {"owner_trainings_per_day": 5, "owner_concurrent_trainings": 0},
            lambda i: PaidWork.training(f"mdl_{i}", 1),
            5,
            5,
        ),
        (
            "avatars_per_day",
            {"owner_avatars_per_day": 200},
            lambda i: PaidWork.avatars(f"gen_{i}", 20),
            10,
            200,
        ),
        (
            "face_batches_per_day",
            {"owner_face_batches_per_day": 5, "owner_face_images_per_day": 0},
            lambda i: PaidWork.face_batch(f"face_{i}", 1),
            5,
            5,
        ),
        (
            "face_images_per_day",
            {"owner_face_images_per_day": 100, "owner_face_batches_per_day": 0},
            lambda i: PaidWork.face_batch(f"face_{i}", 10),
            10,
            100,
        ),
    ],
)
def test_each_daily_limit_refuses_at_exactly_its_limit_under_concurrent_requests(
    server_repo: AvatarRepository,
    limit: str,
    settings: dict[str, int],
    work: Callable[[int], PaidWork],
    reserved: int,
    used: int,
) -> None:
    owner = f"racer-{limit}"
    ledger = Quotas(server_repo, Settings(table_name=server_repo.table_name, **settings))
    requests = 16
    gate = threading.Barrier(requests)

    def reserve(i: int) -> str:
        gate.wait(timeout=30)
        try:
            ledger.reserve(owner, work(i))
        except QuotaExceeded as refused:
            return refused.limit
        return "reserved"

    with ThreadPoolExecutor(requests) as pool:
        answers = Counter(pool.map(reserve, range(requests)))

    assert answers == {"reserved": reserved, limit: requests - reserved}
    assert {u.limit.name: u.used for u in ledger.usage(owner)}[limit] == used
