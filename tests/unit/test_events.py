"""Every status change is an event: derived from the table's own stream, so no write of any
function can change a record without one; the same ids however often a change is delivered;
one JSON Schema per type, checked in; each owner's log readable by that owner only."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from jsonschema import Draft202012Validator

from avatar_core import ids
from avatar_core.logic import events as event_logic
from avatar_core.models.events import EVENT_TYPES, Event
from avatar_core.models.records import (
    AvatarRecord,
    GenerationRecord,
    JobStatusName,
    ModelStatus,
)
from avatar_core.store.events import change_from_stream
from avatar_core.store.repository import AvatarRepository, log_position
from local import event_schemas
from tests.support.events import validators
from tests.unit.conftest import table_definition
from tests.unit.test_training_logic import model_with_accepted


class Stream:
    """The table's stream, read as Lambda's mapping would deliver it."""

    def __init__(self) -> None:
        client = boto3.client("dynamodb")
        arn = client.describe_table(TableName="avatars")["Table"]["LatestStreamArn"]
        self._streams = boto3.client(
            "dynamodbstreams", config=Config(account_id_endpoint_mode="disabled")
        )
        shard = self._streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        self._iterator = self._streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]

    def records(self) -> list[dict[str, Any]]:
        page = self._streams.get_records(ShardIterator=self._iterator)
        self._iterator = page["NextShardIterator"]
        delivered = []
        for record in page["Records"]:
            body = dict(record["dynamodb"])
            body["ApproximateCreationDateTime"] = int(
                body["ApproximateCreationDateTime"].timestamp()
            )
            delivered.append({**record, "dynamodb": body})
        return delivered

    def events(self) -> list[Event]:
        found: list[Event] = []
        for record in self.records():
            found += event_logic.derive(change_from_stream(record))
        return found


@pytest.fixture()
def repo(aws: None) -> AvatarRepository:
    boto3.client("dynamodb").create_table(
        TableName="avatars",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        **table_definition(),
    )
    return AvatarRepository("avatars")


@pytest.fixture()
def stream(repo: AvatarRepository) -> Stream:
    return Stream()


def assert_valid(events: list[Event]) -> None:
    for event in events:
        validators()[event.type].validate(event.document())


def test_the_template_streams_every_change_with_both_images() -> None:
    from local.template import load_template

    props = load_template(event_schemas.ROOT / "template.yaml")["Resources"]["AvatarTable"][
        "Properties"
    ]
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_a_model_tells_its_creation_its_selfies_and_its_training(
    repo: AvatarRepository, stream: Stream
) -> None:
    model_id = model_with_accepted(repo, 5)
    repo.begin_training("alice", model_id, 5)
    repo.finish_training("alice", model_id, ModelStatus.READY, ready_at=ids.now_iso())

    events = stream.events()

    assert [e.type for e in events] == [
        "model.created",
        *["selfie.accepted"] * 5,
        "model.training",
        "model.ready",
    ]
    assert {e.model_id for e in events} == {model_id}
    assert len({e.selfie_id for e in events if e.selfie_id}) == 5
    assert_valid(events)


def test_a_failed_training_says_why_and_counters_alone_tell_nothing(
    repo: AvatarRepository, stream: Stream
) -> None:
    model_id = model_with_accepted(repo, 5)
    stream.events()
    repo.begin_training("alice", model_id, 5)
    repo.finish_training("alice", model_id, ModelStatus.FAILED, error="the provider refused it")

    events = stream.events()

    assert [(e.type, e.reason) for e in events] == [
        ("model.training", None),
        ("model.failed", "the provider refused it"),
    ]
    assert_valid(events)


def generation(repo: AvatarRepository) -> GenerationRecord:
    stamp = ids.now_iso()
    record = GenerationRecord(
        owner="alice",
        generation_id=ids.new_id(ids.GENERATION),
        model_id=ids.new_id(ids.MODEL),
        created_at=stamp,
        updated_at=stamp,
    )
    repo.create_job(record)
    return record


def avatar(index: int) -> AvatarRecord:
    return AvatarRecord(
        avatar_id=ids.new_id(ids.AVATAR),
        index=index,
        key=f"generations/alice/m/g/{index}.jpg",
        content_type="image/jpeg",
        width=512,
        height=512,
        size=1000 + index,
        style="anime",
    )


def test_a_generation_tells_each_stored_avatar_then_its_success_with_all_of_them(
    repo: AvatarRepository, stream: Stream
) -> None:
    record = generation(repo)
    repo.claim_provider_job(GenerationRecord, "alice", record.job_id, "provider-1")
    stored = [avatar(1), avatar(0)]
    for each in stored:
        repo.put_avatar(GenerationRecord, "alice", record.job_id, each)
    repo.put_avatar(GenerationRecord, "alice", record.job_id, stored[0])  # a retried copy
    repo.finish_job(GenerationRecord, "alice", record.job_id, JobStatusName.SUCCEEDED)

    events = stream.events()

    assert [e.type for e in events] == [
        "generation.queued",
        "generation.running",
        "avatar.stored",
        "avatar.stored",
        "generation.succeeded",
    ]
    finished = events[-1]
    assert finished.avatars is not None
    assert [a.index for a in finished.avatars] == [0, 1]
    assert {a.style for a in finished.avatars} == {"anime"}
    # ids and sizes only: never a key or a URL that would outlive its welcome in a log
    assert "key" not in json.dumps(finished.document())
    assert "http" not in json.dumps([e.document() for e in events])
    assert_valid(events)


def test_a_job_removed_before_it_started_is_told_as_failed_at_no_cost(
    repo: AvatarRepository, stream: Stream
) -> None:
    record = generation(repo)
    assert repo.delete_unstarted_job(GenerationRecord, "alice", record.job_id)

    events = stream.events()

    assert [(e.type, e.reason) for e in events] == [
        ("generation.queued", None),
        ("generation.failed", event_logic.NOT_STARTED),
    ]
    assert "nothing was charged" in event_logic.NOT_STARTED
    assert_valid(events)


def test_a_deleted_model_is_told_once(repo: AvatarRepository, stream: Stream) -> None:
    model_id = model_with_accepted(repo, 1)
    stream.events()
    repo.delete_model("alice", model_id)

    events = stream.events()

    assert [e.type for e in events] == ["model.deleted"]
    assert_valid(events)


def test_a_change_delivered_twice_has_the_same_event_ids(
    repo: AvatarRepository, stream: Stream
) -> None:
    model_with_accepted(repo, 2)
    records = stream.records()

    first = [e.event_id for r in records for e in event_logic.derive(change_from_stream(r))]
    again = [e.event_id for r in records for e in event_logic.derive(change_from_stream(r))]

    assert first == again
    assert len(set(first)) == len(first) == 3


class Sink:
    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.got: list[Event] = []

    def put(self, events: list[Event]) -> None:
        if any(e.type == self.fail_on for e in events):
            raise RuntimeError("refused")
        self.got += events


def test_a_change_that_cannot_be_sent_stops_the_batch_there_and_the_log_goes_last(
    repo: AvatarRepository, stream: Stream
) -> None:
    model_id = model_with_accepted(repo, 1)
    repo.begin_training("alice", model_id, 1)
    changes = [(r["dynamodb"]["SequenceNumber"], change_from_stream(r)) for r in stream.records()]
    bus, log = Sink(fail_on="model.training"), Sink()

    outcome = event_logic.publish(changes, [bus, log])

    training_change = next(
        seq for seq, change in changes if change.new and change.new.get("status") == "training"
    )
    assert outcome.failed_at == training_change
    assert [e.type for e in log.got] == ["model.created", "selfie.accepted"]
    assert [e.type for e in bus.got] == ["model.created", "selfie.accepted"]


def test_an_owner_reads_only_their_own_log_in_order_and_page_by_page(
    repo: AvatarRepository,
) -> None:
    stamp = ids.now() - timedelta(minutes=1)

    def event(owner: str, n: int) -> Event:
        return Event(
            event_id=event_logic.event_id(f"record-{owner}-{n}", 0, ids.iso(stamp)),
            type="model.created",
            occurred_at=ids.iso(stamp),
            owner=owner,
            status="collecting",
            model_id=f"mdl_{n}",
        )

    for n in range(5):
        repo.put_events([event("alice", n), event("bob", n)], at=stamp + timedelta(seconds=n))

    first, cursor, more = repo.list_events("alice", None, 3, settle_seconds=5)
    rest, end, done_more = repo.list_events("alice", cursor, 3, settle_seconds=5)
    after, same, _ = repo.list_events("alice", end, 3, settle_seconds=5)

    assert [e.model_id for e in first + rest] == [f"mdl_{n}" for n in range(5)]
    assert {e.owner for e in first + rest} == {"alice"}
    assert more and not done_more
    assert after == [] and same == end


def test_the_newest_entries_wait_until_no_write_in_flight_can_land_before_them(
    repo: AvatarRepository,
) -> None:
    moment = ids.now()
    fresh = Event(
        event_id=event_logic.event_id("r", 0, ids.iso(moment)),
        type="model.created",
        occurred_at=ids.iso(moment),
        owner="alice",
        status="collecting",
        model_id="mdl_x",
    )
    repo.put_events([fresh], at=moment)

    held, _, _ = repo.list_events("alice", None, 10, settle_seconds=5)
    shown, _, _ = repo.list_events("alice", None, 10, settle_seconds=0)

    assert held == [] and [e.model_id for e in shown] == ["mdl_x"]


def test_log_positions_sort_by_write_time() -> None:
    early = ids.now()
    later = early + timedelta(milliseconds=1)
    assert log_position(early, "evt_" + "Z" * 26) < log_position(later, "evt_" + "0" * 26)


def test_the_checked_in_schemas_are_the_generated_ones() -> None:
    for event_type, schema in event_schemas.generated().items():
        path = event_schemas.FOLDER / f"{event_type}.json"
        assert path.exists(), f"{path.name} is missing: run `make schemas`"
        assert path.read_text() == event_schemas.render(schema), (
            f"{path.name} differs from the models: run `make schemas`"
        )
    assert {p.stem for p in event_schemas.FOLDER.glob("*.json")} == set(EVENT_TYPES)


def test_every_schema_is_valid_json_schema_and_refuses_what_its_type_forbids() -> None:
    for schema in event_schemas.generated().values():
        Draft202012Validator.check_schema(schema)
    ready = validators()["model.ready"]
    base = {
        "version": "1",
        "event_id": "evt_" + "0" * 26,
        "type": "model.ready",
        "occurred_at": "2026-12-03T00:00:00.000Z",
        "owner": "alice",
        "model_id": "mdl_1",
        "status": "ready",
    }
    assert ready.is_valid(base)
    assert not ready.is_valid({**base, "status": "failed"})
    assert not ready.is_valid({**base, "url": "https://example.com/a.jpg"})
    assert not ready.is_valid({**base, "generation_id": None})


def test_a_change_no_event_can_be_read_from_is_skipped_not_retried_forever(
    repo: AvatarRepository, stream: Stream
) -> None:
    model_with_accepted(repo, 1)
    changes = [(r["dynamodb"]["SequenceNumber"], change_from_stream(r)) for r in stream.records()]
    sequence, first = changes[0]
    broken = event_logic.Change(
        first.record_id, first.sort_key, first.old, {"status": "collecting"}, first.stamp
    )
    log = Sink()

    outcome = event_logic.publish([(sequence, broken), *changes[1:]], [log])

    assert outcome.failed_at is None
    assert [s for s, _ in outcome.unreadable] == [sequence]
    assert "KeyError" in outcome.unreadable[0][1]
    assert [e.type for e in log.got] == ["selfie.accepted"]
