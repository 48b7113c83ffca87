"""The one DynamoDB repository. Single table, every key scoped by the owner.

Item layout (PK / SK):
- model        ``OWNER#<owner>`` / ``MODEL#<model_id>``
- selfie       ``MODEL#<owner>#<model_id>`` / ``SELFIE#<selfie_id>``
- generation   ``OWNER#<owner>`` / ``GEN#<generation_id>``
               (GSI1: ``MODEL#<owner>#<model_id>`` / ``GEN#<generation_id>``)
- face image   ``OWNER#<owner>`` / ``FACEIMG#<image_id>``
- face job     ``OWNER#<owner>`` / ``FACE#<job_id>``
- instant job  ``OWNER#<owner>`` / ``INSTANT#<job_id>``
- idempotency  ``OWNER#<owner>`` / ``IDEM#<function>#<digest of owner, scope and key>``
               (kept a day, by TTL; see avatar_core.idempotency)
- event        ``OWNER#<owner>`` / ``EVENT#<log position>`` (kept 7 days, by TTL)
- quota ledger ``OWNER#<owner>`` / ``QUOTA#<family>`` (the last 24 h of paid work)
- spending     ``STACK`` / ``PAID#<hour>`` (paid submissions of the whole stack that hour)
- breaker      ``BREAKER#<provider>`` / ``BREAKER`` (only while the provider's account is
               exhausted: logic/breaker.py)
- limiter      ``LIMIT#<provider>#<shard>`` / ``W#<window>``: requests admitted to a provider
               in one shard of one fixed window, attribute ``n`` (kept minutes, by TTL;
               logic/limiter.py)
- queue        ``QUEUE#<provider>`` / ``QUEUE``: tickets ``issued`` to paid submissions of
               the provider and how many were ``admitted`` (logic/provider_queue.py)
- run slot     ``RUNS#<provider>`` / ``SLOT#<n>`` (``n`` < the provider's cap of running
               jobs): ``holder`` (``training#<model_id>``, ``job#<job_id>``), its queue
               ``ticket`` and ``lease_until`` (epoch seconds; a freed slot keeps only that,
               the moment it was freed); logic/run_slots.py
- deletion     ``DELETION#<owner>`` / ``RECEIPT``: the receipt of ``DELETE /v1/me`` (kept
               30 days, by TTL), outside the owner's partition so deleting it all spares it

Everything of an owner is under ``OWNER#<owner>`` or a ``MODEL#<owner>#<model_id>`` of one
of its models: deleting an owner (see its section below) needs no Scan.

Conditional writes turn races into domain errors: two requests that reserve the last
selfie slots, or a duplicate S3 event, cannot both win.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any, TypeVar

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from avatar_core.errors import Conflict, InvalidRequest
from avatar_core.ids import ULID_ALPHABET, now, now_iso
from avatar_core.models.deletion import DeletionRecord, DeletionStatus
from avatar_core.models.events import Event
from avatar_core.models.records import (
    AvatarRecord,
    FaceImageRecord,
    FaceJobRecord,
    GenerationRecord,
    InstantJobRecord,
    JobStatusName,
    ModelRecord,
    ModelStatus,
    QueueStanding,
    QuotaEntry,
    QuotaLedger,
    SelfieRecord,
    SelfieStatus,
)
from avatar_core.models.workflow import QueueState, Slot
from avatar_core.store import clients

JobRecord = GenerationRecord | FaceJobRecord | InstantJobRecord
_JOB_PREFIX: dict[type[Any], str] = {
    GenerationRecord: "GEN#",
    FaceJobRecord: "FACE#",
    InstantJobRecord: "INSTANT#",
}
Owned = TypeVar("Owned", FaceJobRecord, InstantJobRecord)
_OPEN_JOB = (JobStatusName.QUEUED.value, JobStatusName.RUNNING.value)

_CONDITION_FAILED = ("ConditionalCheckFailedException", "TransactionCanceledException")

# GET /v1/events answers a week back; the table's TTL removes older entries (within days).
EVENT_LOG_RETENTION = timedelta(days=7)
# The receipt of an owner's deletion is kept this long after it finished (then TTL removes it).
DELETION_RECEIPT_RETENTION = timedelta(days=30)
_RECEIPT_SK = "RECEIPT"


def log_position(moment: datetime, event_id: str) -> str:
    """Where an event sits in its owner's log: when it was written (ULID time, 10
    characters), then the event id's own random part, so positions sort by write time and
    two events written in one millisecond keep distinct keys."""
    millis = int(moment.timestamp() * 1000)
    stamp = "".join(ULID_ALPHABET[(millis >> (5 * i)) & 31] for i in reversed(range(10)))
    return stamp + event_id[-16:]


# The sparse "Active" index: a record that may need the sweep carries ``active_pk`` (one of
# a few shards, so no partition runs hot) and ``active_until`` (when it is overdue).
ACTIVE_SHARDS = 8


def _active_pk(sk: str) -> str:
    return f"ACTIVE#{zlib.crc32(sk.encode()) % ACTIVE_SHARDS}"


def _owner_pk(owner: str) -> str:
    return f"OWNER#{owner}"


def _model_pk(owner: str, model_id: str) -> str:
    return f"MODEL#{owner}#{model_id}"


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB wants Decimal, not float, and no empty values for absent fields."""

    def convert(value: Any) -> Any:
        if isinstance(value, float):
            return Decimal(str(value))
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    return {k: convert(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    return {k: convert(v) for k, v in item.items()}


@dataclass(frozen=True)
class OwnerRecordsPage:
    """What one page of an owner's deletion removed."""

    deleted: int
    running_executions: list[str]


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in _CONDITION_FAILED


class Cursor:
    """Opaque pagination cursors that only ever continue the caller's own listing."""

    @staticmethod
    def encode(last_key: dict[str, Any] | None) -> str | None:
        if not last_key:
            return None
        raw = json.dumps(from_item(last_key), separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def decode(
        cursor: str | None, exact: dict[str, str], prefixes: dict[str, str]
    ) -> dict[str, Any] | None:
        """The start key a cursor holds, if it is a key of the caller's own listing: exactly
        the listing's key attributes, ``exact`` values where given, sort keys under their
        listing's ``prefixes``. Any other key would continue someone else's listing, or make
        DynamoDB refuse the query (a 500 for what is the client's mistake)."""
        if not cursor:
            return None
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            key = json.loads(base64.urlsafe_b64decode(padded.encode()))
        except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequest("cursor is not valid", field="cursor") from exc
        if not (
            isinstance(key, dict)
            and set(key) == exact.keys() | prefixes.keys()
            and all(isinstance(v, str) for v in key.values())
            and all(key[name] == value for name, value in exact.items())
            and all(key[name].startswith(prefix) for name, prefix in prefixes.items())
        ):
            raise InvalidRequest("cursor is not valid", field="cursor")
        return key


class AvatarRepository:
    def __init__(self, table_name: str, resource: Any = None) -> None:
        self.table_name = table_name
        self._given = resource

    @cached_property
    def _resource(self) -> Any:
        """Made on the first read or write, not at import (``avatar_core.store.clients``)."""
        return self._given or clients.resource("dynamodb")

    @cached_property
    def _table(self) -> Any:
        return self._resource.Table(self.table_name)

    @cached_property
    def _client(self) -> Any:
        return self._table.meta.client

    def _update_if(self, **update: Any) -> bool:
        """One conditional UpdateItem: True if it was applied, False if its condition failed."""
        try:
            self._table.update_item(**update)
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def _put_if(self, **put: Any) -> bool:
        """One conditional PutItem: True if it was applied, False if its condition failed."""
        try:
            self._table.put_item(**put)
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    # -- models ---------------------------------------------------------------------------

    def create_model(self, record: ModelRecord) -> None:
        self.refuse_if_deleted(record.owner)
        item = {
            "PK": _owner_pk(record.owner),
            "SK": f"MODEL#{record.model_id}",
            "kind": "model",
            "slots_used": 0,
            **record.model_dump(mode="json"),
        }
        self._table.put_item(Item=to_item(item), ConditionExpression="attribute_not_exists(PK)")

    def get_model(self, owner: str, model_id: str) -> ModelRecord | None:
        item = self._table.get_item(
            Key={"PK": _owner_pk(owner), "SK": f"MODEL#{model_id}"}, ConsistentRead=True
        ).get("Item")
        return ModelRecord.model_validate(from_item(item)) if item else None

    def list_models(
        self, owner: str, limit: int, cursor: str | None
    ) -> tuple[list[ModelRecord], str | None]:
        pk = _owner_pk(owner)
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(pk) & Key("SK").begins_with("MODEL#"),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        start = Cursor.decode(cursor, {"PK": pk}, {"SK": "MODEL#"})
        if start:
            query["ExclusiveStartKey"] = start
        page = self._table.query(**query)
        records = [ModelRecord.model_validate(from_item(i)) for i in page.get("Items", [])]
        return records, Cursor.encode(page.get("LastEvaluatedKey"))

    def update_model(self, owner: str, model_id: str, **changes: Any) -> ModelRecord:
        """Set fields on an existing model (never creates one)."""
        changes.setdefault("updated_at", now_iso())
        names = {f"#{k}": k for k in changes}
        values = {f":{k}": v for k, v in to_item(changes).items()}
        removed = [f"#{k}" for k, v in changes.items() if v is None]
        expression = "SET " + ", ".join(f"#{k} = :{k}" for k in changes if changes[k] is not None)
        if removed:
            expression += " REMOVE " + ", ".join(removed)
        try:
            item = self._table.update_item(
                Key={"PK": _owner_pk(owner), "SK": f"MODEL#{model_id}"},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as error:
            if _is_condition_failure(error):
                raise Conflict("the model no longer exists") from error
            raise
        return ModelRecord.model_validate(from_item(item))

    def begin_training(
        self, owner: str, model_id: str, minimum: int, deadline: str = "9999"
    ) -> ModelRecord:
        """collecting (or failed, while its selfies are kept) → training, only with enough
        accepted selfies and none pending. Answers the model as it was before.

        Of two concurrent starts exactly one passes this condition. Every start counts a new
        ``training_attempt``, never reused: its execution has a name of its own, and a
        workflow of an older attempt finds out it is stale before it submits anything.
        (A closed account's training is refused before this, by its quota reservation: see
        put_quota_ledger. A read here would widen the moment in which a concurrent
        reservation sees this training's entry with its model not yet training.)
        """
        stamp = now_iso()
        try:
            old = self._table.update_item(
                Key={"PK": _owner_pk(owner), "SK": f"MODEL#{model_id}"},
                UpdateExpression=(
                    "SET #status = :training, updated_at = :now, training_progress = :zero,"
                    " training_attempt = if_not_exists(training_attempt, :zero) + :one,"
                    " active_pk = :active, active_until = :deadline"
                    " REMOVE provider_model_id, #error, retry_until, training_execution_arn,"
                    " training_started_at, submitting_at"
                ),
                ConditionExpression=(
                    "(#status = :collecting OR (#status IN (:failed, :cancelled)"
                    " AND attribute_not_exists(selfies_deleted_at) AND retry_until > :now))"
                    " AND pending = :zero AND accepted >= :minimum"
                ),
                ExpressionAttributeNames={"#status": "status", "#error": "error"},
                ExpressionAttributeValues={
                    ":training": ModelStatus.TRAINING.value,
                    ":collecting": ModelStatus.COLLECTING.value,
                    ":failed": ModelStatus.FAILED.value,
                    ":cancelled": ModelStatus.CANCELLED.value,
                    ":zero": 0,
                    ":one": 1,
                    ":minimum": minimum,
                    ":now": stamp,
                    ":active": _active_pk(f"MODEL#{model_id}"),
                    ":deadline": deadline,
                },
                ReturnValues="ALL_OLD",
            )["Attributes"]
        except ClientError as error:
            if _is_condition_failure(error):
                raise Conflict("the model cannot start training now") from error
            raise
        return ModelRecord.model_validate(from_item(old))

    def undo_training_start(self, before: ModelRecord, attempt: int) -> bool:
        """Put a model whose workflow could not be started back as it was before
        :meth:`begin_training`, unless that attempt has moved on. The attempt count stays.
        Never once a submit task began (a start that got through unseen): its training
        is being paid for, and it keeps the model."""
        restore: dict[str, Any] = {
            "status": before.status.value,
            "updated_at": now_iso(),
            "error": before.error,
            "retry_until": before.retry_until,
            "training_progress": before.training_progress,
            # a failed model stays in the sweep's index until its selfies go
            "active_until": before.retry_until,
            "active_pk": _active_pk(f"MODEL#{before.model_id}") if before.retry_until else None,
        }
        kept = {k: v for k, v in restore.items() if v is not None}
        gone = [k for k, v in restore.items() if v is None]
        names = {f"#{k}": k for k in restore}
        values = {f":{k}": v for k, v in to_item(kept).items()}
        values.update({":training": ModelStatus.TRAINING.value, ":attempt": attempt})
        expression = "SET " + ", ".join(f"#{k} = :{k}" for k in kept)
        if gone:
            expression += " REMOVE " + ", ".join(f"#{k}" for k in gone)
        return self._update_if(
            Key={"PK": _owner_pk(before.owner), "SK": f"MODEL#{before.model_id}"},
            UpdateExpression=expression,
            ConditionExpression=(
                "#status = :training AND training_attempt = :attempt"
                " AND attribute_not_exists(provider_model_id)"
                " AND attribute_not_exists(submitting_at)"
            ),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def store_provider_model_id(
        self, owner: str, model_id: str, attempt: int, provider_model_id: str
    ) -> bool:
        """Keep the provider's model id of this training attempt; False if the model has
        moved on (deleted, or another attempt) so the id belongs to nobody."""
        stamp = now_iso()
        same_attempt = "training_attempt = :attempt"
        if attempt == 1:  # a training started before attempts were counted
            same_attempt = f"({same_attempt} OR attribute_not_exists(training_attempt))"
        return self._update_if(
            Key={"PK": _owner_pk(owner), "SK": f"MODEL#{model_id}"},
            UpdateExpression=(
                "SET provider_model_id = :id, training_started_at = :now, updated_at = :now"
            ),
            ConditionExpression=(
                f"#status = :training AND {same_attempt}"
                " AND attribute_not_exists(provider_model_id)"
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":id": provider_model_id,
                ":now": stamp,
                ":training": ModelStatus.TRAINING.value,
                ":attempt": attempt,
            },
        )

    def begin_training_submission(self, owner: str, model_id: str, attempt: int) -> bool:
        """Mark that this attempt's submit task is about to hand the selfies to the provider:
        only while the model is training this attempt (so not cancelled). Once it is set,
        :meth:`cancel_training` no longer passes. A retried submit sets it again."""
        same_attempt = "training_attempt = :attempt"
        if attempt == 1:  # a training started before attempts were counted
            same_attempt = f"({same_attempt} OR attribute_not_exists(training_attempt))"
        stamp = now_iso()
        return self._update_if(
            Key={"PK": _owner_pk(owner), "SK": f"MODEL#{model_id}"},
            UpdateExpression="SET submitting_at = if_not_exists(submitting_at, :now)",
            ConditionExpression=f"#status = :training AND {same_attempt}",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":now": stamp,
                ":training": ModelStatus.TRAINING.value,
                ":attempt": attempt,
            },
        )

    def cancel_training(self, owner: str, model_id: str, retry_until: str) -> bool:
        """training → cancelled, only while no submission has begun (the other side of
        :meth:`begin_training_submission`); the selfies are kept until ``retry_until``, when
        the sweep deletes them, as for a failed model. False if the condition failed."""
        return self._update_if(
            Key={"PK": _owner_pk(owner), "SK": f"MODEL#{model_id}"},
            UpdateExpression=(
                "SET #status = :cancelled, updated_at = :now, retry_until = :retry_until,"
                " active_until = :retry_until"
            ),
            ConditionExpression=(
                "#status = :training AND attribute_not_exists(submitting_at)"
                " AND attribute_not_exists(provider_model_id)"
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":cancelled": ModelStatus.CANCELLED.value,
                ":training": ModelStatus.TRAINING.value,
                ":now": now_iso(),
                ":retry_until": retry_until,
            },
        )

    def claim_training_resume(
        self, model: ModelRecord, from_arn: str, to_arn: str, limit: int, deadline: str = "9999"
    ) -> bool:
        """Hand a training whose execution ``from_arn`` ended abnormally over to the new
        execution ``to_arn``, counting one resume. Of two deliveries of the same end only
        one wins; False when this end was already handled or ``limit`` resumes are spent."""
        return self._claim_resume(
            {"PK": _owner_pk(model.owner), "SK": f"MODEL#{model.model_id}"},
            "training_execution_arn",
            (ModelStatus.TRAINING.value,),
            model.resumes,
            from_arn,
            to_arn,
            limit,
            deadline,
        )

    def claim_job_resume(
        self, record: JobRecord, from_arn: str, to_arn: str, limit: int, deadline: str = "9999"
    ) -> bool:
        """The same as :meth:`claim_training_resume`, for an avatar job."""
        return self._claim_resume(
            {"PK": _owner_pk(record.owner), "SK": _JOB_PREFIX[type(record)] + record.job_id},
            "execution_arn",
            _OPEN_JOB,
            record.resumes,
            from_arn,
            to_arn,
            limit,
            deadline,
        )

    def release_resume(self, record: ModelRecord | JobRecord, from_arn: str, to_arn: str) -> None:
        """Undo a claimed resume whose execution could not be started, so the next delivery
        of the same end (EventBridge retries) or the sweep tries again."""
        if isinstance(record, ModelRecord):
            key = {"PK": _owner_pk(record.owner), "SK": f"MODEL#{record.model_id}"}
            field = "training_execution_arn"
        else:
            key = {"PK": _owner_pk(record.owner), "SK": _JOB_PREFIX[type(record)] + record.job_id}
            field = "execution_arn"
        try:
            self._table.update_item(
                Key=key,
                UpdateExpression="SET #arn = :from, resumes = resumes - :one",
                ConditionExpression="#arn = :to",
                ExpressionAttributeNames={"#arn": field},
                ExpressionAttributeValues={":from": from_arn, ":to": to_arn, ":one": 1},
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise

    def _claim_resume(
        self,
        key: dict[str, str],
        arn_field: str,
        open_states: tuple[str, ...],
        resumes_seen: int,
        from_arn: str,
        to_arn: str,
        limit: int,
        deadline: str,
    ) -> bool:
        if resumes_seen >= limit:
            return False
        states = {f":s{i}": state for i, state in enumerate(open_states)}
        seen = "resumes = :seen"
        if resumes_seen == 0:
            seen = f"(attribute_not_exists(resumes) OR {seen})"
        return self._update_if(
            Key=key,
            UpdateExpression=(
                "SET resumes = :next, #arn = :to, updated_at = :now, active_until = :deadline"
            ),
            ConditionExpression=(
                "(#arn = :from OR attribute_not_exists(#arn))"
                f" AND #status IN ({', '.join(states)}) AND {seen}"
            ),
            ExpressionAttributeNames={"#arn": arn_field, "#status": "status"},
            ExpressionAttributeValues={
                ":from": from_arn,
                ":to": to_arn,
                ":seen": resumes_seen,
                ":next": resumes_seen + 1,
                ":deadline": deadline,
                ":now": now_iso(),
                **states,
            },
        )

    def finish_training(
        self,
        owner: str,
        model_id: str,
        status: ModelStatus,
        *,
        only_execution: str | None = None,
        **fields: Any,
    ) -> bool:
        """training → ready or failed, once. Returns False if it was not training (or, with
        ``only_execution``, if another execution has taken the training over)."""
        changes = {"status": status.value, "updated_at": now_iso(), **fields}
        names = {f"#{k}": k for k in changes}
        values = {f":{k}": v for k, v in to_item(changes).items()}
        values[":training"] = ModelStatus.TRAINING.value
        condition = "#status = :training"
        if only_execution is not None:
            names["#arn"] = "training_execution_arn"
            values[":arn"] = only_execution
            condition += " AND (#arn = :arn OR attribute_not_exists(#arn))"
        expression = "SET " + ", ".join(f"#{k} = :{k}" for k in changes)
        if fields.get("retry_until"):
            # the sweep deletes its selfies once the retry window has passed
            expression += ", active_until = :retry_until"
        else:
            expression += " REMOVE active_pk, active_until"
        return self._update_if(
            Key={"PK": _owner_pk(owner), "SK": f"MODEL#{model_id}"},
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def delete_model(self, owner: str, model_id: str) -> None:
        """Delete the model's records: selfies first, the model item last."""
        keys = [
            {"PK": item["PK"], "SK": item["SK"]}
            for item in self._query_all(
                KeyConditionExpression=Key("PK").eq(_model_pk(owner, model_id)),
                ProjectionExpression="PK, SK",
            )
        ]
        keys += [
            {"PK": item["PK"], "SK": item["SK"]}
            for item in self._query_all(
                IndexName="GSI1",
                KeyConditionExpression=Key("GSI1PK").eq(_model_pk(owner, model_id)),
                ProjectionExpression="PK, SK",
            )
        ]
        with self._table.batch_writer() as batch:
            for key in keys:
                batch.delete_item(Key=key)
        self._table.delete_item(Key={"PK": _owner_pk(owner), "SK": f"MODEL#{model_id}"})

    # -- selfies --------------------------------------------------------------------------

    def reserve_selfies(self, model: ModelRecord, selfies: list[SelfieRecord], limit: int) -> None:
        """Add upload slots atomically, never past ``limit`` pending + accepted selfies."""
        self.refuse_if_deleted(model.owner)
        count = len(selfies)
        model_update = {
            "Update": {
                "TableName": self.table_name,
                "Key": {"PK": _owner_pk(model.owner), "SK": f"MODEL#{model.model_id}"},
                "UpdateExpression": (
                    "SET pending = pending + :n, slots_used = slots_used + :n, updated_at = :now"
                ),
                "ConditionExpression": "#status = :collecting AND slots_used <= :room",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":n": count,
                    ":room": limit - count,
                    ":collecting": ModelStatus.COLLECTING.value,
                    ":now": now_iso(),
                },
            }
        }
        puts = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": to_item(self._selfie_item(selfie)),
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            }
            for selfie in selfies
        ]
        try:
            self._client.transact_write_items(TransactItems=[model_update, *puts])
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            current = self.get_model(model.owner, model.model_id)
            if current is None or current.status is not ModelStatus.COLLECTING:
                status = current.status.value if current else "deleted"
                raise Conflict(
                    f"the model is {status}: selfies can only be added while it is collecting"
                ) from error
            room = max(0, limit - current.pending - current.accepted)
            raise Conflict(
                f"a model holds at most {limit} selfies (pending and accepted); "
                f"{room} more can be added, {count} were requested"
            ) from error

    def get_selfie(self, owner: str, model_id: str, selfie_id: str) -> SelfieRecord | None:
        item = self._table.get_item(
            Key={"PK": _model_pk(owner, model_id), "SK": f"SELFIE#{selfie_id}"},
            ConsistentRead=True,
        ).get("Item")
        return SelfieRecord.model_validate(from_item(item)) if item else None

    def list_selfies(self, owner: str, model_id: str) -> list[SelfieRecord]:
        items = self._query_all(
            KeyConditionExpression=Key("PK").eq(_model_pk(owner, model_id))
            & Key("SK").begins_with("SELFIE#"),
            ConsistentRead=True,
        )
        return [SelfieRecord.model_validate(from_item(i)) for i in items]

    def list_accepted_selfie_hashes(self, owner: str, model_id: str) -> list[tuple[int, str]]:
        """(position, perceptual hash) of the model's accepted selfies, in one Query.

        The position is 1-based in the model's selfies as ``list_selfies`` (and so the API)
        lists them, pending and rejected ones included: by selfie id, which sorts by creation
        time. Only the key, the status and the hash are read.
        """
        items = self._query_all(
            KeyConditionExpression=Key("PK").eq(_model_pk(owner, model_id))
            & Key("SK").begins_with("SELFIE#"),
            ProjectionExpression="SK, #status, perceptual_hash",
            ExpressionAttributeNames={"#status": "status"},
            ConsistentRead=True,
        )
        return [
            (position, str(item["perceptual_hash"]))
            for position, item in enumerate(items, start=1)
            if item.get("status") == SelfieStatus.ACCEPTED.value and item.get("perceptual_hash")
        ]

    def settle_selfie(
        self,
        selfie: SelfieRecord,
        status: SelfieStatus,
        *,
        reason: str | None = None,
        normalised_key: str | None = None,
        width: int | None = None,
        height: int | None = None,
        frames_in_file: int | None = None,
        perceptual_hash: str | None = None,
    ) -> bool:
        """Move a pending selfie to accepted or rejected, with the model's counters.

        Returns False (and changes nothing) when the selfie is no longer pending or the model
        is gone: duplicate and out-of-order events land here.
        """
        now = now_iso()
        counter = "accepted" if status is SelfieStatus.ACCEPTED else "rejected"
        frees_slot = status is SelfieStatus.REJECTED
        selfie_values = to_item(
            {
                ":status": status.value,
                ":pending": SelfieStatus.PENDING.value,
                ":now": now,
                ":reason": reason,
                ":key": normalised_key,
                ":width": width,
                ":height": height,
                ":frames": frames_in_file,
                ":hash": perceptual_hash,
            }
        )
        sets = ["#status = :status", "updated_at = :now"]
        sets += [
            f"{name} = :{alias}"
            for name, alias in (
                ("reason", "reason"),
                ("normalised_key", "key"),
                ("width", "width"),
                ("height", "height"),
                ("frames_in_file", "frames"),
                ("perceptual_hash", "hash"),
            )
            if f":{alias}" in selfie_values
        ]
        model_set = f"pending = pending - :one, {counter} = {counter} + :one, updated_at = :now"
        if frees_slot:
            model_set += ", slots_used = slots_used - :one"
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": {
                                "PK": _model_pk(selfie.owner, selfie.model_id),
                                "SK": f"SELFIE#{selfie.selfie_id}",
                            },
                            "UpdateExpression": "SET " + ", ".join(sets),
                            "ConditionExpression": "#status = :pending",
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": selfie_values,
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": {
                                "PK": _owner_pk(selfie.owner),
                                "SK": f"MODEL#{selfie.model_id}",
                            },
                            "UpdateExpression": "SET " + model_set,
                            "ConditionExpression": "attribute_exists(PK)",
                            "ExpressionAttributeValues": {":one": 1, ":now": now},
                        }
                    },
                ]
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def _selfie_item(self, selfie: SelfieRecord) -> dict[str, Any]:
        return {
            "PK": _model_pk(selfie.owner, selfie.model_id),
            "SK": f"SELFIE#{selfie.selfie_id}",
            "kind": "selfie",
            **selfie.model_dump(mode="json"),
        }

    # -- generations and face-avatar jobs ---------------------------------------------------

    def create_job(self, record: JobRecord, deadline: str = "9999") -> None:
        self.refuse_if_deleted(record.owner)
        sk = _JOB_PREFIX[type(record)] + record.job_id
        item: dict[str, Any] = {
            "PK": _owner_pk(record.owner),
            "SK": sk,
            "kind": type(record).__name__,
            "active_pk": _active_pk(sk),
            "active_until": deadline,
            **record.model_dump(mode="json"),
        }
        if isinstance(record, GenerationRecord):
            item["GSI1PK"] = _model_pk(record.owner, record.model_id)
            item["GSI1SK"] = f"GEN#{record.generation_id}"
        item = to_item(item)
        item.setdefault("avatars", {})
        self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(PK)")

    def get_job(self, kind: type[JobRecord], owner: str, job_id: str) -> JobRecord | None:
        item = self._table.get_item(
            Key={"PK": _owner_pk(owner), "SK": _JOB_PREFIX[kind] + job_id}, ConsistentRead=True
        ).get("Item")
        return kind.model_validate(from_item(item)) if item else None

    def list_generations(
        self, owner: str, model_id: str, limit: int, cursor: str | None
    ) -> tuple[list[GenerationRecord], str | None]:
        query: dict[str, Any] = {
            "IndexName": "GSI1",
            "KeyConditionExpression": Key("GSI1PK").eq(_model_pk(owner, model_id))
            & Key("GSI1SK").begins_with("GEN#"),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        start = Cursor.decode(
            cursor,
            {"PK": _owner_pk(owner), "GSI1PK": _model_pk(owner, model_id)},
            {"SK": "GEN#", "GSI1SK": "GEN#"},
        )
        if start:
            query["ExclusiveStartKey"] = start
        page = self._table.query(**query)
        records = [GenerationRecord.model_validate(from_item(i)) for i in page.get("Items", [])]
        return records, Cursor.encode(page.get("LastEvaluatedKey"))

    def list_face_jobs(
        self, owner: str, limit: int, cursor: str | None
    ) -> tuple[list[FaceJobRecord], str | None]:
        return self._list_owner_jobs(FaceJobRecord, owner, limit, cursor)

    def list_instant_jobs(
        self, owner: str, limit: int, cursor: str | None
    ) -> tuple[list[InstantJobRecord], str | None]:
        return self._list_owner_jobs(InstantJobRecord, owner, limit, cursor)

    def _list_owner_jobs(
        self, kind: type[Owned], owner: str, limit: int, cursor: str | None
    ) -> tuple[list[Owned], str | None]:
        """The owner's jobs of one kind, newest first (ids sort by creation time)."""
        pk = _owner_pk(owner)
        prefix = _JOB_PREFIX[kind]
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(pk) & Key("SK").begins_with(prefix),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        start = Cursor.decode(cursor, {"PK": pk}, {"SK": prefix})
        if start:
            query["ExclusiveStartKey"] = start
        page = self._table.query(**query)
        records = [kind.model_validate(from_item(i)) for i in page.get("Items", [])]
        return records, Cursor.encode(page.get("LastEvaluatedKey"))

    def claim_provider_job(
        self, kind: type[JobRecord], owner: str, job_id: str, provider_job_id: str
    ) -> str:
        """Store the provider's job id once; answer the id that is stored."""
        try:
            self._table.update_item(
                Key={"PK": _owner_pk(owner), "SK": _JOB_PREFIX[kind] + job_id},
                UpdateExpression="SET provider_job_id = :id, #status = :running, updated_at = :now",
                ConditionExpression=(
                    "attribute_exists(PK) AND attribute_not_exists(provider_job_id)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":id": provider_job_id,
                    ":running": JobStatusName.RUNNING.value,
                    ":now": now_iso(),
                },
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            current = self.get_job(kind, owner, job_id)
            if current is None or current.provider_job_id is None:
                raise Conflict(f"job {job_id} no longer exists") from error
            return current.provider_job_id
        return provider_job_id

    def begin_job_submission(self, kind: type[JobRecord], owner: str, job_id: str) -> bool:
        """Mark that the submit task is about to send the job to the provider: only while it
        is queued (so not cancelled). Once it is set, :meth:`cancel_job` no longer passes.
        A submit retried after a crash finds it set and proceeds."""
        return self._update_if(
            Key={"PK": _owner_pk(owner), "SK": _JOB_PREFIX[kind] + job_id},
            UpdateExpression="SET submitting_at = if_not_exists(submitting_at, :now)",
            ConditionExpression="#status = :queued",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":queued": JobStatusName.QUEUED.value, ":now": now_iso()},
        )

    def cancel_job(self, kind: type[JobRecord], owner: str, job_id: str) -> JobRecord | None:
        """queued → cancelled, only while no submission has begun (the other side of
        :meth:`begin_job_submission`): answers the cancelled record, or None if the
        condition failed. It leaves the sweep: nothing of it runs any more."""
        try:
            item = self._table.update_item(
                Key={"PK": _owner_pk(owner), "SK": _JOB_PREFIX[kind] + job_id},
                UpdateExpression=(
                    "SET #status = :cancelled, updated_at = :now REMOVE active_pk, active_until"
                ),
                ConditionExpression=(
                    "#status = :queued AND attribute_not_exists(submitting_at)"
                    " AND attribute_not_exists(provider_job_id)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":cancelled": JobStatusName.CANCELLED.value,
                    ":queued": JobStatusName.QUEUED.value,
                    ":now": now_iso(),
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as error:
            if _is_condition_failure(error):
                return None
            raise
        return kind.model_validate(from_item(item))

    def delete_finished_job(self, kind: type[JobRecord], owner: str, job_id: str) -> bool:
        """Delete a job that nothing works on any more (succeeded, failed or cancelled);
        False when it is gone or still open."""
        try:
            self._table.delete_item(
                Key={"PK": _owner_pk(owner), "SK": _JOB_PREFIX[kind] + job_id},
                ConditionExpression="attribute_exists(PK) AND NOT (#status IN (:queued, :running))",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":queued": _OPEN_JOB[0], ":running": _OPEN_JOB[1]},
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def open_jobs_using_image(self, owner: str, image_id: str) -> list[str]:
        """Ids of the owner's open face-avatar and instant-avatar jobs made from this
        reference image (one Query per kind, reading only the key, image and status)."""
        found: list[str] = []
        for kind in (FaceJobRecord, InstantJobRecord):
            for item in self._query_all(
                KeyConditionExpression=Key("PK").eq(_owner_pk(owner))
                & Key("SK").begins_with(_JOB_PREFIX[kind]),
                ProjectionExpression="SK, image_id, #status",
                ExpressionAttributeNames={"#status": "status"},
                ConsistentRead=True,
            ):
                if item.get("image_id") == image_id and item.get("status") in _OPEN_JOB:
                    found.append(str(item["SK"]).split("#", 1)[1])
        return found

    def note_unknown_status(
        self, kind: type[JobRecord], owner: str, job_id: str, provider_status: str
    ) -> bool:
        """Remember a status word we do not know on the job, once: True the first time this
        job answers this word (so it is reported once), False after that or if it is gone."""
        return self._update_if(
            Key={"PK": _owner_pk(owner), "SK": _JOB_PREFIX[kind] + job_id},
            UpdateExpression="SET unknown_provider_status = :word",
            ConditionExpression=(
                "attribute_exists(PK) AND (attribute_not_exists(unknown_provider_status)"
                " OR unknown_provider_status <> :word)"
            ),
            ExpressionAttributeValues={":word": provider_status},
        )

    def set_job_execution(self, kind: type[JobRecord], owner: str, job_id: str, arn: str) -> None:
        self._table.update_item(
            Key={"PK": _owner_pk(owner), "SK": _JOB_PREFIX[kind] + job_id},
            UpdateExpression="SET execution_arn = :arn",
            ConditionExpression="attribute_exists(PK)",
            ExpressionAttributeValues={":arn": arn},
        )

    def delete_unstarted_job(self, kind: type[JobRecord], owner: str, job_id: str) -> bool:
        """Remove a queued job whose workflow could not be started, so nothing reads it as
        pending; never a job that has an execution or a provider job id."""
        try:
            self._table.delete_item(
                Key={"PK": _owner_pk(owner), "SK": _JOB_PREFIX[kind] + job_id},
                ConditionExpression=(
                    "#status = :queued AND attribute_not_exists(execution_arn)"
                    " AND attribute_not_exists(provider_job_id)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":queued": JobStatusName.QUEUED.value},
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def put_avatar(
        self, kind: type[JobRecord], owner: str, job_id: str, avatar: AvatarRecord
    ) -> bool:
        """Record one copied avatar; idempotent, keyed by its id. False if the job is gone."""
        return self._update_if(
            Key={"PK": _owner_pk(owner), "SK": _JOB_PREFIX[kind] + job_id},
            UpdateExpression="SET avatars.#avatar = :avatar, updated_at = :now",
            ConditionExpression="attribute_exists(PK)",
            ExpressionAttributeNames={"#avatar": avatar.avatar_id},
            ExpressionAttributeValues={
                ":avatar": to_item(avatar.model_dump(mode="json")),
                ":now": now_iso(),
            },
        )

    def finish_job(
        self,
        kind: type[JobRecord],
        owner: str,
        job_id: str,
        status: JobStatusName,
        error: str | None = None,
        only_execution: str | None = None,
    ) -> bool:
        """queued/running → succeeded/failed, once. False if already finished or gone (or,
        with ``only_execution``, if another execution has taken the job over)."""
        values: dict[str, Any] = {
            ":status": status.value,
            ":now": now_iso(),
            ":queued": _OPEN_JOB[0],
            ":running": _OPEN_JOB[1],
        }
        expression = "SET #status = :status, updated_at = :now"
        names = {"#status": "status"}
        condition = "#status IN (:queued, :running)"
        if error is not None:
            expression += ", #error = :error"
            values[":error"] = error
            names["#error"] = "error"
        if only_execution is not None:
            condition += " AND (execution_arn = :arn OR attribute_not_exists(execution_arn))"
            values[":arn"] = only_execution
        expression += " REMOVE active_pk, active_until"
        if error is None:
            # a job that succeeded after a resume drops the reason its workflow was resumed for
            expression += ", #error"
            names["#error"] = "error"
        return self._update_if(
            Key={"PK": _owner_pk(owner), "SK": _JOB_PREFIX[kind] + job_id},
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    # -- face-avatar reference images ---------------------------------------------------------

    def create_face_image(self, record: FaceImageRecord) -> None:
        self.refuse_if_deleted(record.owner)
        item = {
            "PK": _owner_pk(record.owner),
            "SK": f"FACEIMG#{record.image_id}",
            "kind": "face_image",
            **record.model_dump(mode="json"),
        }
        self._table.put_item(Item=to_item(item), ConditionExpression="attribute_not_exists(PK)")

    def get_face_image(self, owner: str, image_id: str) -> FaceImageRecord | None:
        item = self._table.get_item(
            Key={"PK": _owner_pk(owner), "SK": f"FACEIMG#{image_id}"}, ConsistentRead=True
        ).get("Item")
        return FaceImageRecord.model_validate(from_item(item)) if item else None

    def settle_face_image(
        self,
        record: FaceImageRecord,
        status: SelfieStatus,
        *,
        reason: str | None = None,
        fitted_key: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> bool:
        """pending → accepted/rejected, once; duplicate events find it settled."""
        changes = to_item(
            {
                "status": status.value,
                "reason": reason,
                "fitted_key": fitted_key,
                "width": width,
                "height": height,
                "updated_at": now_iso(),
            }
        )
        return self._update_if(
            Key={"PK": _owner_pk(record.owner), "SK": f"FACEIMG#{record.image_id}"},
            UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in changes),
            ConditionExpression="#status = :pending",
            ExpressionAttributeNames={f"#{k}": k for k in changes},
            ExpressionAttributeValues={
                **{f":{k}": v for k, v in changes.items()},
                ":pending": SelfieStatus.PENDING.value,
            },
        )

    def mark_face_image_deleted(self, owner: str, image_id: str) -> bool:
        """Note that the reference's image objects were deleted (its record stays, so GET
        says so); False if the record is gone."""
        stamp = now_iso()
        return self._update_if(
            Key={"PK": _owner_pk(owner), "SK": f"FACEIMG#{image_id}"},
            UpdateExpression="SET deleted_at = if_not_exists(deleted_at, :now), updated_at = :now",
            ConditionExpression="attribute_exists(PK)",
            ExpressionAttributeValues={":now": stamp},
        )

    def delete_face_image(self, owner: str, image_id: str) -> None:
        self._table.delete_item(Key={"PK": _owner_pk(owner), "SK": f"FACEIMG#{image_id}"})

    # -- the event log ----------------------------------------------------------------------

    def put_events(self, events: list[Event], at: datetime | None = None) -> None:
        """Append events to their owners' logs at the log position of ``at`` (now)."""
        moment = at or now()
        expires = int((moment + EVENT_LOG_RETENTION).timestamp())
        with self._table.batch_writer() as batch:
            for event in events:
                batch.put_item(
                    Item={
                        "PK": _owner_pk(event.owner),
                        "SK": "EVENT#" + log_position(moment, event.event_id),
                        "kind": "event",
                        "event_id": event.event_id,
                        "document": json.dumps(event.document(), separators=(",", ":")),
                        "expires_at_epoch": expires,
                    }
                )

    def list_events(
        self, owner: str, since: str | None, limit: int, settle_seconds: float
    ) -> tuple[list[Event], str, bool]:
        """The owner's events after log position ``since`` (from 7 days back when None),
        oldest first, up to ``settle_seconds`` ago: a write still in flight from a concurrent
        publisher lands at a position before that, never behind a cursor already handed out.
        Answers the events, the position to continue from, and whether more are waiting."""
        moment = now()
        oldest = log_position(moment - EVENT_LOG_RETENTION, "0" * 16)
        newest = log_position(moment - timedelta(seconds=settle_seconds), "0" * 16)
        start = max(since or "", oldest)
        if start >= newest:
            return [], since or oldest, False
        page = self._table.query(
            KeyConditionExpression=Key("PK").eq(_owner_pk(owner))
            & Key("SK").between(f"EVENT#{start}", f"EVENT#{newest}"),
            ConsistentRead=True,
            Limit=limit + 1,
        )
        items = [item for item in page.get("Items", []) if item["SK"] != f"EVENT#{start}"]
        more = len(items) > limit or "LastEvaluatedKey" in page
        items = items[:limit]
        events = [Event.model_validate_json(item["document"]) for item in items]
        cursor = items[-1]["SK"].removeprefix("EVENT#") if items else start
        return events, cursor, more

    # -- deleting everything of an owner (DELETE /v1/me) -----------------------------------
    # The receipt, the check that refuses new work while it exists, and the pages of the
    # deletion workflow. The receipt is under its own partition, so the owner's is emptied.

    @staticmethod
    def _receipt_key(owner: str) -> dict[str, str]:
        return {"PK": f"DELETION#{owner}", "SK": _RECEIPT_SK}

    def start_deletion(
        self, record: DeletionRecord, stale_before: str
    ) -> tuple[DeletionRecord, bool]:
        """Write the receipt of a new deletion unless one of this owner is running, and
        answer (receipt, started). A running one answers instead, unless it started before
        ``stale_before`` (its workflow has timed out by then). Of two concurrent requests
        exactly one starts a deletion; the other answers it."""
        expires = datetime.fromisoformat(record.started_at.replace("Z", "+00:00"))
        item = {
            **self._receipt_key(record.owner),
            "kind": "deletion",
            **record.model_dump(mode="json"),
            "expires_at_epoch": int((expires + DELETION_RECEIPT_RETENTION).timestamp()),
        }
        try:
            self._table.put_item(
                Item=to_item(item),
                ConditionExpression=(
                    "attribute_not_exists(PK) OR #status <> :running OR started_at < :stale"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":running": DeletionStatus.RUNNING.value,
                    ":stale": stale_before,
                },
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            current = self.get_deletion(record.owner)
            if current is None:  # it expired in between: a moment's race, the retry starts one
                raise Conflict("a deletion changed meanwhile; send the request again") from error
            return current, False
        return record, True

    def get_deletion(self, owner: str) -> DeletionRecord | None:
        item = self._table.get_item(Key=self._receipt_key(owner), ConsistentRead=True).get("Item")
        return DeletionRecord.model_validate(from_item(item)) if item else None

    def refuse_if_deleted(self, owner: str) -> None:
        """New work or uploads of an owner whose data is being deleted, or was, are refused
        (409) for as long as the receipt is kept: a deletion leaves nothing behind that a
        request racing it could write. One consistent read where work is accepted."""
        receipt = self.get_deletion(owner)
        if receipt is None:
            return
        if receipt.status is DeletionStatus.RUNNING:
            said = f"is being deleted (deletion {receipt.deletion_id})"
        elif receipt.status is DeletionStatus.FAILED:
            said = (
                f"was partly deleted (deletion {receipt.deletion_id} failed; "
                "send DELETE /v1/me again)"
            )
        else:
            said = f"was deleted (deletion {receipt.deletion_id}, {receipt.finished_at})"
        raise Conflict(f"this account's data {said}: nothing new can be started or uploaded")

    def owners_with_deletion(self, owners: set[str]) -> set[str]:
        """Which of these owners have a deletion receipt (BatchGetItem, keys only)."""
        found: set[str] = set()
        pending = [self._receipt_key(owner) for owner in sorted(owners)]
        while pending:
            request: dict[str, Any] = {
                self.table_name: {"Keys": pending[:100], "ProjectionExpression": "PK"}
            }
            pending = pending[100:]
            while request:
                answer = self._resource.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table_name, []):
                    found.add(str(item["PK"]).removeprefix("DELETION#"))
                request = answer.get("UnprocessedKeys") or {}
        return found

    def set_deletion_execution(self, owner: str, deletion_id: str, arn: str) -> bool:
        return self._update_if(
            Key=self._receipt_key(owner),
            UpdateExpression="SET execution_arn = :arn",
            ConditionExpression="deletion_id = :id",
            ExpressionAttributeValues={":arn": arn, ":id": deletion_id},
        )

    def count_deletion(
        self, owner: str, deletion_id: str, records: int, objects: int, stopped: int
    ) -> bool:
        """Add what one page deleted to the receipt (False if a newer deletion replaced it)."""
        return self._update_if(
            Key=self._receipt_key(owner),
            UpdateExpression=(
                "ADD records_deleted :records, objects_deleted :objects,"
                " executions_stopped :stopped SET updated_at = :now"
            ),
            ConditionExpression="deletion_id = :id",
            ExpressionAttributeValues={
                ":records": records,
                ":objects": objects,
                ":stopped": stopped,
                ":now": now_iso(),
                ":id": deletion_id,
            },
        )

    def finish_deletion(
        self, owner: str, deletion_id: str, status: DeletionStatus, error: str | None = None
    ) -> bool:
        """running → succeeded or failed, once; the receipt is then kept 30 more days."""
        moment = now()
        values: dict[str, Any] = {
            ":status": status.value,
            ":now": now_iso(),
            ":expires": int((moment + DELETION_RECEIPT_RETENTION).timestamp()),
            ":id": deletion_id,
            ":running": DeletionStatus.RUNNING.value,
        }
        names = {"#status": "status"}
        expression = (
            "SET #status = :status, finished_at = :now, updated_at = :now,"
            " expires_at_epoch = :expires"
        )
        if error is not None:
            expression += ", #error = :error"
            values[":error"] = error
            names["#error"] = "error"
        return self._update_if(
            Key=self._receipt_key(owner),
            UpdateExpression=expression,
            ConditionExpression="deletion_id = :id AND #status = :running",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def delete_owner_records(self, owner: str, limit: int) -> OwnerRecordsPage:
        """Delete the first ``limit`` records of the owner's partition (each model's selfies
        before the model, so a page cut short leaves no selfie without its model to find it
        by), and answer how many went and the executions of those still running, for the
        caller to stop now that no record is left for reconciliation to resume. The next
        call starts from the beginning again: what was deleted is no longer there."""
        page = self._table.query(
            KeyConditionExpression=Key("PK").eq(_owner_pk(owner)),
            ProjectionExpression="PK, SK, #status, execution_arn, training_execution_arn",
            ExpressionAttributeNames={"#status": "status"},
            ConsistentRead=True,
            Limit=limit,
        )
        items = page.get("Items", [])
        selfies = [
            {"PK": selfie["PK"], "SK": selfie["SK"]}
            for item in items
            if str(item["SK"]).startswith("MODEL#")
            for selfie in self._query_all(
                KeyConditionExpression=Key("PK").eq(
                    _model_pk(owner, str(item["SK"]).removeprefix("MODEL#"))
                ),
                ProjectionExpression="PK, SK",
                ConsistentRead=True,
            )
        ]
        self._delete_keys(selfies)
        self._delete_keys([{"PK": item["PK"], "SK": item["SK"]} for item in items])
        running = [
            str(item[arn])
            for item in items
            for arn in ("execution_arn", "training_execution_arn")
            if item.get(arn) and item.get("status") in (*_OPEN_JOB, ModelStatus.TRAINING.value)
        ]
        return OwnerRecordsPage(deleted=len(selfies) + len(items), running_executions=running)

    def _delete_keys(self, keys: list[dict[str, Any]]) -> None:
        with self._table.batch_writer() as batch:
            for key in keys:
                batch.delete_item(Key=key)

    # -- quotas and the spending guard -------------------------------------------------------

    def get_quota_ledger(self, owner: str, family: str) -> QuotaLedger:
        item = self._table.get_item(
            Key={"PK": _owner_pk(owner), "SK": f"QUOTA#{family}"}, ConsistentRead=True
        ).get("Item")
        return QuotaLedger.model_validate(from_item(item)) if item else QuotaLedger(family=family)

    def put_quota_ledger(
        self, owner: str, read: QuotaLedger, entries: dict[str, QuotaEntry]
    ) -> bool:
        """Replace the ledger's entries if nobody changed it since ``read`` (False if someone
        did: read it again and decide again)."""
        self.refuse_if_deleted(owner)  # a closed account's refused work writes no ledger
        item = {
            "PK": _owner_pk(owner),
            "SK": f"QUOTA#{read.family}",
            "kind": "quota",
            "family": read.family,
            "version": read.version + 1,
            "entries": {k: e.model_dump(mode="json") for k, e in entries.items()},
        }
        condition = "attribute_not_exists(PK)" if read.version == 0 else "version = :read"
        extra = {} if read.version == 0 else {"ExpressionAttributeValues": {":read": read.version}}
        return self._put_if(Item=to_item(item), ConditionExpression=condition, **extra)

    def drop_quota_entry(self, owner: str, family: str, key: str) -> None:
        """The work stops counting; concurrent reservations see the new version and decide
        again. Nothing happens if it was not counted."""
        self._update_if(
            Key={"PK": _owner_pk(owner), "SK": f"QUOTA#{family}"},
            UpdateExpression="REMOVE entries.#key SET version = version + :one",
            ConditionExpression="attribute_exists(entries.#key)",
            ExpressionAttributeNames={"#key": key},
            ExpressionAttributeValues={":one": 1},
        )

    def count_paid_submission(self, hour: datetime, cap: int) -> bool:
        """Count one paid submission in ``hour``, unless ``cap`` are counted already."""
        return self._update_if(
            Key={"PK": "STACK", "SK": f"PAID#{hour:%Y-%m-%dT%H}"},
            UpdateExpression="ADD submissions :one SET expires_at_epoch = :expires",
            ConditionExpression="attribute_not_exists(submissions) OR submissions < :cap",
            ExpressionAttributeValues={
                ":one": 1,
                ":cap": cap,
                ":expires": int((hour + timedelta(days=2)).timestamp()),
            },
        )

    def holdings(self, owner: str) -> dict[str, int]:
        """Counts of what we keep of the owner: records and the images behind them."""
        counts = dict.fromkeys(
            (
                "models",
                "selfies",
                "generations",
                "avatars",
                "face_images",
                "face_jobs",
                "instant_jobs",
            ),
            0,
        )
        kinds = {
            "MODEL#": "models",
            "GEN#": "generations",
            "FACEIMG#": "face_images",
            "FACE#": "face_jobs",
            "INSTANT#": "instant_jobs",
        }
        for prefix, name in kinds.items():
            for item in self._query_all(
                KeyConditionExpression=Key("PK").eq(_owner_pk(owner))
                & Key("SK").begins_with(prefix),
                ProjectionExpression="SK, accepted, pending, selfies_deleted_at, avatars, "
                "deleted_at",
            ):
                counts[name] += 1
                if name == "models" and "selfies_deleted_at" not in item:
                    counts["selfies"] += int(item.get("accepted", 0)) + int(item.get("pending", 0))
                counts["avatars"] += len(item.get("avatars") or {})
        return counts

    # -- provider circuit breakers (logic/breaker.py) -------------------------------------
    # One item per provider, present only while its breaker is open. ISO stamps compare as
    # text, so the conditions below are plain string comparisons.

    def get_breaker(self, provider: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key=_breaker_key(provider), ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def open_breaker(self, provider: str, reason: str, opened_at: str, probe_after: str) -> None:
        """Open (or open again, after a failed probe): no probe before ``probe_after``."""
        self._table.put_item(
            Item={
                **_breaker_key(provider),
                "provider": provider,
                "reason": reason,
                "opened_at": opened_at,
                "probe_after": probe_after,
            }
        )

    def claim_breaker_probe(self, provider: str, at: str, probe_until: str) -> bool:
        """Half-open: let one submission through as the probe. Conditional, so of many
        concurrent requests after the cool-off exactly one wins; False for the others."""
        try:
            self._table.update_item(
                Key=_breaker_key(provider),
                UpdateExpression="SET probe_until = :until",
                ConditionExpression="attribute_exists(PK) AND probe_after <= :at AND "
                "(attribute_not_exists(probe_until) OR probe_until <= :at)",
                ExpressionAttributeValues={":at": at, ":until": probe_until},
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def close_breaker(self, provider: str) -> bool:
        """A paid submission got through: the account works. False if it was not open."""
        try:
            self._table.delete_item(
                Key=_breaker_key(provider), ConditionExpression="attribute_exists(PK)"
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    # -- provider admission windows (logic/limiter.py) ------------------------------------
    # The limiter's WindowStore: one conditional ADD per attempt, no read. The key it passes
    # is ``<PK>#W#<window>``; each shard's windows share its partition key.

    def add_if_below(self, key: str, cap: int, expires_at: int) -> bool:
        """Count one request in the window ``key`` unless ``cap`` are counted already."""
        pk, _, window = key.rpartition("#W#")
        return self._update_if(
            Key={"PK": pk, "SK": f"W#{window}"},
            UpdateExpression="ADD n :one SET expires_at_epoch = :expires",
            ConditionExpression="attribute_not_exists(n) OR n < :cap",
            ExpressionAttributeValues={":one": 1, ":cap": cap, ":expires": expires_at},
        )

    # -- provider submission queues (logic/provider_queue.py) -------------------------------
    # The queue's QueueStore: one counter item per provider; every method one request.

    def note_job_queued(
        self, kind: type[JobRecord], owner: str, job_id: str, standing: QueueStanding | None
    ) -> None:
        """The job was not sent after all (its turn has not come, or the provider refused it
        for now, 429): a cancel may pass again at no cost, and ``standing`` (if any) shows
        where it waits. Only while nothing reached the provider for it."""
        update = "REMOVE submitting_at"
        values: dict[str, Any] = {":queued": JobStatusName.QUEUED.value}
        if standing is not None:
            update = "SET #queue = :standing " + update
            values[":standing"] = standing.model_dump()
        self._update_if(
            Key={"PK": _owner_pk(owner), "SK": _JOB_PREFIX[kind] + job_id},
            UpdateExpression=update,
            ConditionExpression="#status = :queued AND attribute_not_exists(provider_job_id)",
            ExpressionAttributeNames={
                "#status": "status",
                **({"#queue": "queue"} if standing else {}),
            },
            ExpressionAttributeValues=values,
        )

    def note_training_queued(
        self, owner: str, model_id: str, attempt: int, standing: QueueStanding | None
    ) -> None:
        """The selfies were not sent after all (see :meth:`note_job_queued`): a cancel may
        pass again, and ``standing`` (if any) shows where the training waits."""
        update = "REMOVE submitting_at"
        values: dict[str, Any] = {":training": ModelStatus.TRAINING.value, ":attempt": attempt}
        if standing is not None:
            update = "SET #queue = :standing " + update
            values[":standing"] = standing.model_dump()
        self._update_if(
            Key={"PK": _owner_pk(owner), "SK": f"MODEL#{model_id}"},
            UpdateExpression=update,
            ConditionExpression=(
                "#status = :training AND training_attempt = :attempt"
                " AND attribute_not_exists(provider_model_id)"
            ),
            ExpressionAttributeNames={
                "#status": "status",
                **({"#queue": "queue"} if standing else {}),
            },
            ExpressionAttributeValues=values,
        )

    def take_ticket(self, provider: str) -> tuple[int, QueueState]:
        """The next ticket of ``provider``'s queue (one ADD), and the queue as it now is."""
        item = self._table.update_item(
            Key=_queue_key(provider),
            UpdateExpression="ADD issued :one",
            ExpressionAttributeValues={":one": 1},
            ReturnValues="ALL_NEW",
        )["Attributes"]
        state = _queue_state(item)
        return state.issued, state

    def read(self, provider: str) -> QueueState:
        item = self._table.get_item(Key=_queue_key(provider), ConsistentRead=True).get("Item")
        return _queue_state(item or {})

    def advance(self, provider: str, at: float) -> None:
        """One more submission of ``provider``'s queue got through, at ``at``."""
        self._table.update_item(
            Key=_queue_key(provider),
            UpdateExpression="ADD admitted :one SET admitted_at = :at",
            ExpressionAttributeValues={":one": 1, ":at": _seconds(at)},
        )

    # -- owners' shares of a provider's queue (logic/owner_share.py) --------------------------
    # The OwnerShareStore: one item per owner and provider, in the owner's partition; a put
    # conditional on the version it read, a removal conditional on the entry.

    def read_share(self, provider: str, owner: str) -> tuple[dict[str, float], int | None]:
        item = self._table.get_item(
            Key=_share_key(provider, owner),
            ConsistentRead=True,
            ProjectionExpression="held, version",
        ).get("Item")
        if not item:
            return {}, None
        held = {str(h): float(at) for h, at in dict(item.get("held", {})).items()}
        return held, int(item["version"])

    def write_share(
        self, provider: str, owner: str, held: dict[str, float], read: int | None
    ) -> bool:
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(PK)"}
            if read is None
            else {
                "ConditionExpression": "version = :read",
                "ExpressionAttributeValues": {":read": read},
            }
        )
        return self._put_if(
            Item={
                **_share_key(provider, owner),
                "kind": "queue_share",
                "held": {h: _seconds(at) for h, at in held.items()},
                "version": (read or 0) + 1,
            },
            **condition,
        )

    def leave_share(self, provider: str, owner: str, holder: str) -> bool:
        return self._update_if(
            Key=_share_key(provider, owner),
            UpdateExpression="REMOVE held.#h ADD version :one",
            ConditionExpression="attribute_exists(held.#h)",
            ExpressionAttributeNames={"#h": holder},
            ExpressionAttributeValues={":one": 1},
        )

    # -- running-job slots (logic/run_slots.py) ---------------------------------------------
    # The RunSlotStore: one partition per provider, one item per slot; reads are one Query,
    # every write is conditional (on the slot being free, or on its holder).

    def list_slots(self, provider: str) -> list[Slot]:
        items = self._query_all(
            KeyConditionExpression=Key("PK").eq(_runs_pk(provider)),
            ProjectionExpression="SK, holder, lease_until, ticket",
            ConsistentRead=True,
        )
        return [
            Slot(
                index=int(str(item["SK"]).removeprefix("SLOT#")),
                holder=item.get("holder"),
                lease_until=float(item.get("lease_until", 0)),
                ticket=int(item["ticket"]) if item.get("ticket") is not None else None,
            )
            for item in items
        ]

    def take_slot(
        self,
        provider: str,
        index: int,
        holder: str,
        ticket: int | None,
        lease_until: float,
        moment: float,
    ) -> bool:
        item: dict[str, Any] = {
            "PK": _runs_pk(provider),
            "SK": f"SLOT#{index}",
            "holder": holder,
            "lease_until": _seconds(lease_until),
        }
        if ticket is not None:
            item["ticket"] = ticket
        return self._put_if(
            Item=item,
            ConditionExpression=(
                "attribute_not_exists(PK) OR attribute_not_exists(holder) OR lease_until <= :now"
            ),
            ExpressionAttributeValues={":now": _seconds(moment)},
        )

    def renew_slot(self, provider: str, index: int, holder: str, lease_until: float) -> bool:
        return self._update_if(
            Key={"PK": _runs_pk(provider), "SK": f"SLOT#{index}"},
            UpdateExpression="SET lease_until = :until",
            ConditionExpression="holder = :holder",
            ExpressionAttributeValues={
                ":until": _seconds(lease_until),
                ":holder": holder,
            },
        )

    def free_slot(self, provider: str, index: int, holder: str, moment: float) -> bool:
        return self._update_if(
            Key={"PK": _runs_pk(provider), "SK": f"SLOT#{index}"},
            UpdateExpression="SET lease_until = :now REMOVE holder, ticket",
            ConditionExpression="holder = :holder",
            ExpressionAttributeValues={
                ":now": _seconds(moment),
                ":holder": holder,
            },
        )

    # -- plumbing -------------------------------------------------------------------------

    # -- the sweep ------------------------------------------------------------------------

    def list_overdue(self, before: str, limit: int) -> list[tuple[str, str]]:
        """Keys (PK, SK) of records in the sparse Active index whose ``active_until`` has
        passed, at most ``limit`` per shard, oldest first."""
        keys: list[tuple[str, str]] = []
        for shard in range(ACTIVE_SHARDS):
            page = self._table.query(
                IndexName="Active",
                KeyConditionExpression=Key("active_pk").eq(f"ACTIVE#{shard}")
                & Key("active_until").lt(before),
                Limit=limit,
            )
            keys += [(item["PK"], item["SK"]) for item in page.get("Items", [])]
        return keys

    def get_by_key(self, pk: str, sk: str) -> ModelRecord | JobRecord | None:
        """A model or job record by its table key, as the sweep finds it."""
        item = self._table.get_item(Key={"PK": pk, "SK": sk}, ConsistentRead=True).get("Item")
        if item is None:
            return None
        if sk.startswith("MODEL#"):
            return ModelRecord.model_validate(from_item(item))
        for kind, prefix in _JOB_PREFIX.items():
            if sk.startswith(prefix):
                record: JobRecord = kind.model_validate(from_item(item))
                return record
        return None

    def leave_sweep(self, pk: str, sk: str) -> None:
        """Take a record out of the Active index (it needs the sweep no more)."""
        self._table.update_item(
            Key={"PK": pk, "SK": sk},
            UpdateExpression="REMOVE active_pk, active_until",
            ConditionExpression="attribute_exists(PK)",
        )

    def _query_all(self, **query: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = self._table.query(**query)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _seconds(moment: float) -> Decimal:
    """Epoch seconds (the limiter's clock) as DynamoDB stores them, to the millisecond."""
    return Decimal(str(round(moment, 3)))


def _share_key(provider: str, owner: str) -> dict[str, str]:
    return {"PK": _owner_pk(owner), "SK": f"QUEUESHARE#{provider}"}


def _runs_pk(provider: str) -> str:
    return f"RUNS#{provider}"


def _queue_key(provider: str) -> dict[str, str]:
    return {"PK": f"QUEUE#{provider}", "SK": "QUEUE"}


def _queue_state(item: dict[str, Any]) -> QueueState:
    at = item.get("admitted_at")
    return QueueState(
        issued=int(item.get("issued", 0)),
        admitted=int(item.get("admitted", 0)),
        admitted_at=float(at) if at is not None else None,
    )


def _breaker_key(provider: str) -> dict[str, str]:
    return {"PK": f"BREAKER#{provider}", "SK": "BREAKER"}
