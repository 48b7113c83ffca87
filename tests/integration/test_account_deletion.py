"""DELETE /v1/me on the local stack: nothing of the owner is left in the table or in either
bucket (beyond the receipt), nothing of another owner is touched, a running job is stopped,
the owner's new work is refused, and a deletion that failed half-way finishes when sent
again.

What is left is read the way an auditor would: by scanning the whole table and listing
both buckets through the stack's own AWS endpoint, not through the API.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest

from local import demo
from local.client import ApiClient, EventFeed, wait_until
from local.event_sources import StreamPoller
from local.stack import LocalStack
from tests.support.events import BusTap
from tests.support.journeys import (
    Emulator,
    delete_account,
    deletion_finished,
    generation_that_never_finishes,
    model_with_selfies,
    trained_model,
)

pytestmark = pytest.mark.integration


def _table_items(stack: LocalStack) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(stack.output("TableName"))
    items: list[dict[str, Any]] = []
    scan: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = table.scan(**scan)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _objects(stack: LocalStack) -> list[tuple[str, str]]:
    s3 = boto3.client("s3")
    found = []
    for bucket in (stack.output("UploadsBucketName"), stack.output("ResultsBucketName")):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found += [(bucket, item["Key"]) for item in page.get("Contents", [])]
    return found


def holdings(stack: LocalStack, owner: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Every table item that names the owner anywhere (keys, attributes, event documents,
    idempotency answers), as JSON, and every object under one of its prefixes."""
    items = sorted(
        text
        for text in (json.dumps(item, default=str, sort_keys=True) for item in _table_items(stack))
        if owner in text
    )
    objects = sorted(
        (bucket, key) for bucket, key in _objects(stack) if key.split("/")[1:2] == [owner]
    )
    return items, objects


def execution_status(stack: LocalStack, machine: str, name: str) -> str | None:
    assert stack.stack is not None
    prefix, _, machine_name = stack.stack.state_machine_arns[machine].rpartition(":stateMachine:")
    sfn = boto3.client("stepfunctions")
    try:
        described = sfn.describe_execution(executionArn=f"{prefix}:execution:{machine_name}:{name}")
    except sfn.exceptions.ExecutionDoesNotExist:
        return None
    status: str = described["status"]
    return status


def deletion_workflows_of(stack: LocalStack, owner: str) -> list[str]:
    """The names of the delete-owner executions started for this owner."""
    assert stack.stack is not None
    sfn = boto3.client("stepfunctions")
    arn = stack.stack.state_machine_arns["DeleteOwnerStateMachine"]
    names = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
        for execution in page["executions"]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            if json.loads(described["input"])["owner"] == owner:
                names.append(execution["name"])
    return names


def only_the_receipt(items: list[str], owner: str) -> list[str]:
    return [text for text in items if f'"PK": "DELETION#{owner}"' not in text]


@contextmanager
def stream_lagging(stack: LocalStack) -> Iterator[None]:
    """The table's stream reaches the event publisher only once the block ends: as on AWS
    when the stream lags behind a deletion, its removals arrive after the final sweep."""
    assert stack.event_sources is not None
    gate = threading.Event()
    pollers = [p for p in stack.event_sources.pollers if isinstance(p, StreamPoller)]
    originals = [poller._invoke for poller in pollers]
    for poller, original in zip(pollers, originals, strict=True):

        def held(name: str, event: dict[str, Any], deliver: Any = original) -> Any:
            gate.wait(timeout=300)
            return deliver(name, event)

        poller._invoke = held  # type: ignore[method-assign]
    try:
        yield
    finally:
        gate.set()
        for poller, original in zip(pollers, originals, strict=True):
            poller._invoke = original  # type: ignore[method-assign]


def an_account_with_everything(stack: LocalStack, user: str, seed: int, out_dir: Path) -> str:
    """A trained model (its selfies' records; their objects go after training), a model still
    collecting (its selfies' objects), a generation with avatars made with an
    Idempotency-Key, a face-avatar job with its reference, instant avatars, and the events
    of all that in the owner's log. Answers the trained model's id."""
    client = ApiClient(stack.api_url, stack.token(user))
    model_id = trained_model(client, stack, seed=seed)
    model_with_selfies(client, 2, seed=seed + 10)
    response = client.create_generation(
        model_id, [{"style": "realistic", "count": 2}], idempotency_key=f"gen-{user}"
    )
    assert response.status_code == 202, response.text
    generation_id = response.json()["generation_id"]
    finished = wait_until(
        lambda: client.get_generation(generation_id),
        lambda g: g["status"] in ("succeeded", "failed"),
        timeout=60,
    )
    assert finished["status"] == "succeeded", finished
    demo.face_avatars(stack, user, out_dir)
    demo.instant_avatars(stack, user, out_dir)
    EventFeed(client).wait_for("generation.succeeded", generation_id=generation_id)
    return model_id


def test_deleting_an_account_leaves_nothing_of_it_and_touches_nobody_else(
    stack: LocalStack, emulator: Emulator, bus: BusTap, tmp_path: Path
) -> None:
    mine, theirs = f"del-{uuid.uuid4().hex[:10]}", f"keep-{uuid.uuid4().hex[:10]}"
    my_model = an_account_with_everything(stack, mine, seed=500, out_dir=tmp_path)
    an_account_with_everything(stack, theirs, seed=520, out_dir=tmp_path)
    me = ApiClient(stack.api_url, stack.token(mine))
    running = generation_that_never_finishes(stack, me, my_model)
    stack.wait_for_events()
    my_items, my_objects = holdings(stack, mine)
    assert len(my_items) > 20 and len(my_objects) > 8, (my_items, my_objects)
    assert any(f"OWNER#{mine}" in t and '"SK": "IDEM#' in t for t in my_items)
    assert any(f"OWNER#{mine}" in t and '"SK": "EVENT#' in t for t in my_items)
    before = holdings(stack, theirs)

    with stream_lagging(stack):
        with ThreadPoolExecutor(4) as pool:  # an impatient app: four DELETEs at once
            answers = list(pool.map(lambda _: delete_account(me), range(4)))
        assert {a["status"] for a in answers} == {"running"}
        assert len({a["deletion_id"] for a in answers}) == 1, "one deletion, answered four times"
        receipt = deletion_finished(me)
    stack.wait_for_events()  # the deletion's own removals are published now, and write nothing

    assert receipt["status"] == "succeeded", receipt
    assert receipt["deletion_id"] == answers[0]["deletion_id"]
    assert receipt["records_deleted"] >= len(my_items) - 1
    assert receipt["objects_deleted"] >= len(my_objects)
    assert receipt["finished_at"]
    items, objects = holdings(stack, mine)
    assert only_the_receipt(items, mine) == []
    assert objects == []
    assert holdings(stack, theirs) == before
    # the app's backend heard of it all on the bus (and so the webhooks)
    bus.drain()
    heard = [e["detail"] for e in bus.received if e["detail"]["owner"] == mine]
    deletion_events = [(e["type"], e.get("deletion_id")) for e in heard if "deletion_id" in e]
    assert deletion_events == [
        ("account.deletion_running", receipt["deletion_id"]),
        ("account.deletion_succeeded", receipt["deletion_id"]),
    ]
    assert {"model.deleted", "generation.deleted"} <= {e["type"] for e in heard}

    # the running job ended: stopped, or (here, where a poll comes every 17 ms) on finding its
    # record gone a moment before; and reconciliation resumed nothing
    ended = execution_status(stack, "GenerateAvatarsStateMachine", f"generate-{running}")
    assert ended in ("ABORTED", "FAILED"), ended
    # the receipt counts the stop when the deletion made it (not when the job ended first)
    assert ended == "FAILED" or receipt["executions_stopped"] >= 1, receipt
    assert execution_status(stack, "GenerateAvatarsStateMachine", f"generate-{running}-r1") is None
    assert me.call("GET", f"/generations/{running}").status_code == 404
    assert deletion_workflows_of(stack, mine) == [f"delete-{answers[0]['deletion_id']}"]

    # the account is closed: nothing new is started or uploaded
    refused = me.call("POST", "/models", json={"subject": "woman"})
    assert refused.status_code == 409, refused.text
    assert "this account's data was deleted" in refused.json()["message"]
    upload = me.call("POST", "/face-avatars/uploads", json={"content_type": "image/jpeg"})
    assert upload.status_code == 409, upload.text
    assert holdings(stack, mine)[1] == []
    assert me.call("GET", "/me/deletion").json()["status"] == "succeeded"


def test_a_deletion_that_failed_half_way_finishes_when_sent_again(stack: LocalStack) -> None:
    user = f"del-{uuid.uuid4().hex[:10]}"
    client = ApiClient(stack.api_url, stack.token(user))
    model_with_selfies(client, 3, seed=540)
    stack.wait_for_events()
    assert holdings(stack, user)[1], "objects to delete"
    invocations = {"pages": 0}

    def crash_after_the_records(logical_id: str) -> str | None:
        """The page task deletes the records, then crashes on every attempt after that."""
        if logical_id != "DeletePageFunction":
            return None
        invocations["pages"] += 1
        return "crash" if invocations["pages"] > 1 else None

    assert stack.runtime is not None
    stack.runtime.fault = crash_after_the_records
    try:
        first = delete_account(client)
        failed = deletion_finished(client)
    finally:
        stack.runtime.fault = None

    assert failed["status"] == "failed", failed
    assert "send DELETE /v1/me again" in failed["error"]
    items, objects = holdings(stack, user)
    assert objects, "the crash left the objects behind"
    assert only_the_receipt(items, user) == [], "the records went before the crash"

    again = delete_account(client)
    finished = deletion_finished(client)
    stack.wait_for_events()

    assert again["deletion_id"] != first["deletion_id"]
    assert finished["status"] == "succeeded", finished
    assert finished["objects_deleted"] == len(objects)
    items, objects = holdings(stack, user)
    assert only_the_receipt(items, user) == [] and objects == []
