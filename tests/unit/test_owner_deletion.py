"""DELETE /v1/me's logic against the real repository and S3 (moto in-process): everything of
one owner goes, in pages, nothing of another owner is touched, a step that failed half-way
finishes when it runs again, and the receipt refuses the owner's new work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from avatar_core import ids
from avatar_core.errors import Conflict
from avatar_core.idempotency import IdempotentRequests
from avatar_core.logic import deletion, training
from avatar_core.logic.models import create_model
from avatar_core.models.api import CreateModelRequest
from avatar_core.models.deletion import DeletionOutcome, DeletionStatus, DeletionStep
from avatar_core.models.events import Event
from avatar_core.models.records import GenerationRecord
from avatar_core.settings import Settings
from avatar_core.store.events import EventLog
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage, owner_prefixes
from tests.unit.test_training_logic import FakeWorkflows, model_with_accepted

SETTINGS = Settings(
    table_name="avatars",
    uploads_bucket="uploads",
    results_bucket="results",
    delete_state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:delete-owner",
    deletion_page_size=7,
    deletion_reserve_ms=0,
)
ALL_THE_TIME = 60_000


@dataclass
class FakeExecutions:
    stopped: list[str] = field(default_factory=list)

    def stop(self, execution_arn: str, cause: str) -> bool:
        self.stopped.append(execution_arn)
        return True


class FlakyStorage(Storage):
    """S3 that fails the ``fail_at``-th page deletion, once: a crash half-way."""

    def __init__(self, fail_at: int) -> None:
        super().__init__("uploads", "results")
        self.calls = 0
        self.fail_at = fail_at

    def delete_first_page(self, bucket: str, prefix: str) -> int:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("S3 went away")
        return super().delete_first_page(bucket, prefix)


@pytest.fixture()
def buckets(aws: None) -> Storage:
    for name in ("uploads", "results"):
        boto3.client("s3").create_bucket(Bucket=name)
    return Storage("uploads", "results")


def an_owner_with_everything(repo: AvatarRepository, owner: str, objects: int = 3) -> str:
    """Models with selfies, a running generation, events, and objects under every prefix."""
    model_id = model_with_accepted(repo, 5, owner=owner)
    for _ in range(3):
        create_model(repo, Settings(), owner, CreateModelRequest(subject="man"))
    stamp = ids.now_iso()
    generation = GenerationRecord(
        owner=owner,
        generation_id=ids.new_id(ids.GENERATION),
        model_id=model_id,
        created_at=stamp,
        updated_at=stamp,
    )
    repo.create_job(generation)
    repo.set_job_execution(GenerationRecord, owner, generation.job_id, f"arn:exec:{owner}")
    repo.put_events(
        [
            Event(
                event_id=f"evt_{ids.new_id('x')[2:]}",
                type="model.created",
                occurred_at=stamp,
                owner=owner,
                model_id=model_id,
                status="collecting",
            )
            for _ in range(4)
        ]
    )
    s3 = boto3.client("s3")
    for kind, prefix in owner_prefixes(owner):
        bucket = "uploads" if kind == "uploads" else "results"
        for n in range(objects):
            s3.put_object(Bucket=bucket, Key=f"{prefix}{model_id}/{n}", Body=b"x")
    return model_id


def items_of(owner: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table("avatars")
    return [item for item in table.scan()["Items"] if str(item["PK"]).split("#")[1] == owner]


def objects_of(owner: str) -> list[str]:
    s3 = boto3.client("s3")
    return [
        item["Key"]
        for bucket in ("uploads", "results")
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        if f"/{owner}/" in item["Key"]
    ]


def run_to_the_end(
    repo: AvatarRepository, storage: Storage, executions: FakeExecutions, step: DeletionStep
) -> DeletionStep:
    for _ in range(100):
        step = deletion.delete_step(repo, storage, executions, SETTINGS, step, lambda: ALL_THE_TIME)
        if step.done:
            return step
    raise AssertionError("the deletion did not finish in 100 steps")


def started(repo: AvatarRepository, owner: str) -> DeletionStep:
    receipt = deletion.request_deletion(repo, FakeWorkflows(), SETTINGS, owner)
    return DeletionStep(owner=owner, deletion_id=receipt.deletion_id)


def test_given_two_owners_when_one_is_deleted_then_nothing_of_hers_is_left_and_his_is_intact(
    repo: AvatarRepository, buckets: Storage
) -> None:
    an_owner_with_everything(repo, "alice")
    an_owner_with_everything(repo, "alicea")  # her key is a prefix of his
    his_items, his_objects = items_of("alicea"), objects_of("alicea")
    executions = FakeExecutions()

    step = run_to_the_end(repo, buckets, executions, started(repo, "alice"))

    assert [item["PK"] for item in items_of("alice") if item["PK"] != "DELETION#alice"] == []
    assert objects_of("alice") == []
    assert executions.stopped == ["arn:exec:alice"]
    assert items_of("alicea") == his_items
    assert objects_of("alicea") == his_objects
    receipt = repo.get_deletion("alice")
    assert receipt is not None
    # 4 models, 5 selfies, a generation, 4 events; 3 objects under each of 7 prefixes
    assert (receipt.records_deleted, receipt.objects_deleted) == (14, 21)
    assert receipt.executions_stopped == 1
    assert step.pages >= 2  # one invocation per phase at least


def test_given_more_than_a_page_of_objects_then_every_page_goes(
    repo: AvatarRepository, buckets: Storage
) -> None:
    s3 = boto3.client("s3")
    for n in range(1003):
        s3.put_object(Bucket="results", Key=f"avatars/alice/m/{n:04d}", Body=b"")

    run_to_the_end(repo, buckets, FakeExecutions(), started(repo, "alice"))

    assert objects_of("alice") == []


def test_given_a_step_that_failed_half_way_when_it_runs_again_then_it_finishes(
    repo: AvatarRepository, buckets: Storage
) -> None:
    an_owner_with_everything(repo, "alice")
    flaky = FlakyStorage(fail_at=3)
    step = started(repo, "alice")
    step = deletion.delete_step(repo, flaky, FakeExecutions(), SETTINGS, step, lambda: 60_000)
    while step.phase == "records":
        step = deletion.delete_step(repo, flaky, FakeExecutions(), SETTINGS, step, lambda: 60_000)

    with pytest.raises(ConnectionError):
        deletion.delete_step(repo, flaky, FakeExecutions(), SETTINGS, step, lambda: 60_000)
    assert objects_of("alice"), "the failure left objects behind"

    run_to_the_end(repo, flaky, FakeExecutions(), step)  # the state machine's retry: same input
    assert objects_of("alice") == []
    assert [item for item in items_of("alice") if item["PK"] != "DELETION#alice"] == []


def test_given_a_running_deletion_when_deleted_again_then_the_running_one_answers(
    repo: AvatarRepository,
) -> None:
    workflows = FakeWorkflows()
    first = deletion.request_deletion(repo, workflows, SETTINGS, "alice")
    second = deletion.request_deletion(repo, workflows, SETTINGS, "alice")

    assert second.deletion_id == first.deletion_id
    assert [name for _, name, _ in workflows.started] == [f"delete-{first.deletion_id}"]
    assert second.execution_arn is not None and second.execution_arn.endswith(first.deletion_id)


def test_given_a_failed_deletion_when_deleted_again_then_a_new_one_starts(
    repo: AvatarRepository,
) -> None:
    workflows = FakeWorkflows()
    first = deletion.request_deletion(repo, workflows, SETTINGS, "alice")
    deletion.record_outcome(
        repo, DeletionOutcome(owner="alice", deletion_id=first.deletion_id, outcome="failed")
    )
    failed = repo.get_deletion("alice")
    assert failed is not None and failed.status is DeletionStatus.FAILED
    assert failed.error is not None and "send DELETE /v1/me again" in failed.error

    again = deletion.request_deletion(repo, workflows, SETTINGS, "alice")

    assert again.deletion_id != first.deletion_id
    assert len(workflows.started) == 2


def test_given_a_running_deletion_older_than_its_workflow_can_live_then_a_new_one_starts(
    repo: AvatarRepository,
) -> None:
    workflows = FakeWorkflows()
    first = deletion.request_deletion(repo, workflows, SETTINGS, "alice")
    stale = SETTINGS.model_copy(update={"deletion_stale_seconds": 60})
    boto3.resource("dynamodb").Table("avatars").update_item(
        Key={"PK": "DELETION#alice", "SK": "RECEIPT"},
        UpdateExpression="SET started_at = :long_ago",
        ExpressionAttributeValues={":long_ago": "2000-01-01T00:00:00.000Z"},
    )

    again = deletion.request_deletion(repo, workflows, stale, "alice")

    assert again.deletion_id != first.deletion_id


def test_given_a_deletion_receipt_then_new_work_and_uploads_are_refused(
    repo: AvatarRepository,
) -> None:
    model_id = model_with_accepted(repo, 5)
    deletion.request_deletion(repo, FakeWorkflows(), SETTINGS, "alice")
    model = repo.get_model("alice", model_id)
    assert model is not None

    with pytest.raises(Conflict, match="this account's data is being deleted"):
        create_model(repo, Settings(), "alice", CreateModelRequest(subject="woman"))
    with pytest.raises(Conflict, match="being deleted"):
        training.start_training(repo, FakeWorkflows(), SETTINGS, "alice", model_id)
    with pytest.raises(Conflict, match="being deleted"):
        repo.reserve_selfies(model, [], 30)
    # another owner is not concerned
    create_model(repo, Settings(), "bob", CreateModelRequest(subject="woman"))


def test_given_an_owner_with_a_receipt_then_the_event_log_gets_none_of_her_events(
    repo: AvatarRepository,
) -> None:
    deletion.request_deletion(repo, FakeWorkflows(), SETTINGS, "alice")
    stamp = ids.now_iso()
    events = [
        Event(
            event_id=f"evt_{ids.new_id('x')[2:]}",
            type="model.deleted",
            occurred_at=stamp,
            owner=owner,
            model_id="mdl_1",
        )
        for owner in ("alice", "bob")
    ]

    EventLog(repo).put(events)

    logged = [item["PK"] for item in boto3.resource("dynamodb").Table("avatars").scan()["Items"]]
    assert "OWNER#bob" in logged
    assert "OWNER#alice" not in logged


def test_idempotency_records_are_kept_in_the_owners_partition(repo: AvatarRepository) -> None:
    requests = IdempotentRequests("avatars")

    answer = requests.run(
        owner="alice", scope="test", key="k-1", body={"a": 1}, work=lambda: {"done": True}
    )
    again = requests.run(
        owner="alice", scope="test", key="k-1", body={"a": 1}, work=lambda: {"done": False}
    )

    assert answer == again == {"done": True}
    keys = [
        (item["PK"], item["SK"])
        for item in boto3.resource("dynamodb").Table("avatars").scan()["Items"]
    ]
    assert len(keys) == 1
    assert keys[0][0] == "OWNER#alice" and keys[0][1].startswith("IDEM#")


def test_a_deletion_tells_the_app_when_it_starts_and_how_it_ends() -> None:
    from avatar_core.logic.events import Change, derive

    receipt = {"owner": "alice", "deletion_id": "del_1", "status": "running"}
    receipt |= {"started_at": "2026-12-03T10:00:00.000Z"}
    finished = {**receipt, "status": "failed", "error": "S3 went away; send DELETE again"}
    finished |= {"finished_at": "2026-12-03T10:05:00.000Z"}

    def events(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Event]:
        return derive(Change("r1", "RECEIPT", old, new, "2026-12-03T10:00:00.000Z"))

    started = events(None, receipt)
    counted = events(receipt, {**receipt, "records_deleted": 40})
    failed = events(receipt, finished)
    again = events(finished, {**receipt, "deletion_id": "del_2"})

    assert [(e.type, e.deletion_id) for e in started] == [("account.deletion_running", "del_1")]
    assert counted == [] and events(finished, None) == []
    assert [(e.type, e.reason, e.occurred_at) for e in failed] == [
        ("account.deletion_failed", finished["error"], finished["finished_at"])
    ]
    assert [(e.type, e.deletion_id) for e in again] == [("account.deletion_running", "del_2")]


def test_given_a_deletion_receipt_then_a_refused_paid_request_leaves_no_quota_ledger(
    repo: AvatarRepository,
) -> None:
    from avatar_core.logic.quotas import PaidWork, Quotas

    deletion.request_deletion(repo, FakeWorkflows(), SETTINGS, "alice")

    with (
        pytest.raises(Conflict, match="being deleted"),
        Quotas(repo, SETTINGS).reserved("alice", PaidWork.avatars("gen_1", 4)),
    ):
        pass

    assert [item for item in items_of("alice") if item["PK"] != "DELETION#alice"] == []
