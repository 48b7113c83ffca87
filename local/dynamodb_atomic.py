"""Make moto's DynamoDB as atomic as DynamoDB under concurrent requests.

moto 5.2.5's server answers each request on its own thread, and its DynamoDB backend is not
thread-safe: two conditional writes on one item can both pass their condition, an increment
can be lost, and a scan can die on a dict that changes size under it. DynamoDB is
linearisable per item and its transactions are serialisable, so the local stack serialises
every DynamoDB and DynamoDB Streams request behind one re-entrant lock. DynamoDB itself runs
writes to different items in parallel; moto's data are small and in memory, so one lock
costs little and is easy to show correct.

Two more moto bugs would make a stream reader lie:

* a cancelled TransactWriteItems is rolled back by swapping a deep copy of the table into the
  backend, but open shard iterators hold the old table's shard, so they never see another
  record. Rollback here restores the items the transaction names inside the same table
  object and drops the stream records the cancelled transaction had appended (DynamoDB
  emits none for it). moto's copy of the whole table, made before every transaction, is
  skipped: it made each transaction cost the size of the table.
* a table with a Lambda event source mapping has its records sent synchronously from inside
  the write, and moto then empties the shard (so readers lose records and sequence numbers
  repeat). Here a record stays in the shard, and the delivery to the mapped Lambdas runs once
  the lock is released: a Lambda that writes to the table again cannot deadlock on it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

_lock = threading.RLock()
_local = threading.local()
_installed = False


def _state() -> Any:
    if not hasattr(_local, "depth"):
        _local.depth = 0
        _local.deliveries = []
    return _local


@contextmanager
def serialised() -> Iterator[None]:
    """Hold the DynamoDB lock; stream deliveries queued inside run after the outermost exit."""
    state = _state()
    with _lock:
        state.depth += 1
        try:
            yield
        finally:
            state.depth -= 1
    if state.depth == 0 and state.deliveries:
        deliveries, state.deliveries = state.deliveries, []
        for deliver in deliveries:
            deliver()


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    def under_lock(*args: Any, **kwargs: Any) -> Any:
        with serialised():
            return method(*args, **kwargs)

    under_lock.__name__ = method.__name__
    under_lock.__doc__ = method.__doc__
    under_lock.__wrapped__ = method  # type: ignore[attr-defined]
    return under_lock


def _touched_items(backend: Any, transact_items: list[dict[str, Any]]) -> list[_Saved]:
    """A deep copy of each item the transaction names, as it is before it runs (None: absent)."""
    from moto.dynamodb.exceptions import MockValidationException

    saved = []
    for entry in transact_items:
        for op_type, operation in entry.items():
            if not isinstance(operation, dict) or operation.get("TableName") not in backend.tables:
                continue
            table = backend.tables[operation["TableName"]]
            key = operation.get("Item") if op_type == "Put" else operation.get("Key")
            try:
                hash_key, range_key = backend.get_keys_value(table, key or {})
                item = table.get_item(hash_key, range_key)
            except MockValidationException:
                continue  # a malformed key: moto refuses the transaction before any write
            saved.append(_Saved(table, hash_key, range_key, copy.deepcopy(item)))
    return saved


@dataclass
class _Saved:
    table: Any
    hash_key: Any
    range_key: Any
    item: Any

    def restore(self) -> None:
        items = self.table.items
        if self.range_key is not None:
            partition = items[self.hash_key]
            if self.item is None:
                partition.pop(self.range_key, None)
            else:
                partition[self.range_key] = self.item
        elif self.item is None:
            items.pop(self.hash_key, None)
        else:
            items[self.hash_key] = self.item


class _NoTableCopies:
    """moto's ``copy`` module for its DynamoDB backend, except that a whole ``Table`` is not
    deep-copied: ``transact_write_items`` copies every table it touches, once per item of the
    transaction, to roll back by swapping the copy in. That makes each transaction cost the
    size of the table (a local run slows down as its table grows) and breaks open stream
    iterators; the rollback here restores only the items the transaction names."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _rolled_back_in_place(original: Callable[..., Any]) -> Callable[..., Any]:
    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> Any:
        with serialised():
            saved = _touched_items(backend, transact_items)
            shards = {
                id(entry.table): (entry.table, len(entry.table.stream_shard.items))
                for entry in saved
                if entry.table.stream_shard is not None
            }
            deliveries_before = len(_state().deliveries)
            try:
                return original(backend, transact_items)
            except BaseException:
                # moto "restores" the live tables themselves (_NoTableCopies): undo in them
                for entry in reversed(saved):
                    entry.restore()
                for table, records in shards.values():
                    del table.stream_shard.items[records:]
                del _state().deliveries[deliveries_before:]
                raise

    transact_write_items.__wrapped__ = original  # type: ignore[attr-defined]
    return transact_write_items


def _add_record_then_deliver(shard: Any, old: Any, new: Any) -> None:
    """moto's ``StreamShard.add`` without emptying the shard or invoking under the lock."""
    from moto.awslambda.utils import get_backend
    from moto.dynamodb.models.table import StreamRecord

    view_type = shard.table.stream_specification["StreamViewType"]
    if old is None:
        event_name = "INSERT"
    elif new is None:
        event_name = "REMOVE"
    else:
        event_name = "MODIFY"
    sequence = len(shard.items) + shard.starting_sequence_number
    record = StreamRecord(shard.table, view_type, event_name, old, new, sequence)
    shard.items.append(record)
    for function_arn, mapping in list(shard.table.lambda_event_source_mappings.items()):
        region = function_arn.split(":")[3]
        lambdas = get_backend(shard.account_id, region)

        def deliver(
            lambdas: Any = lambdas, arn: str = function_arn, source: str = mapping.event_source_arn
        ) -> None:
            lambdas.send_dynamodb_items(arn, [record], source)

        state = _state()
        if state.depth:
            state.deliveries.append(deliver)
        else:
            deliver()


def install() -> None:
    """Patch moto's DynamoDB and DynamoDB Streams in this process; safe to call again."""
    global _installed
    if _installed:
        return
    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import StreamShard, Table
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    # Every request, so reads see no half-applied write and the logic moto keeps in its
    # responses (batch writes, TransactGetItems, PartiQL) is covered too.
    for handler in (DynamoHandler, DynamoDBStreamsHandler):
        setattr(handler, "call_action", _locked(handler.call_action))  # noqa: B010
    # Backend callers that bypass HTTP (CloudFormation, other services' integrations).
    for name in ("put_item", "update_item", "delete_item", "get_item", "query", "scan"):
        setattr(DynamoDBBackend, name, _locked(getattr(DynamoDBBackend, name)))
    setattr(models, "copy", _NoTableCopies(Table))  # noqa: B010
    transact = _rolled_back_in_place(DynamoDBBackend.transact_write_items)
    setattr(DynamoDBBackend, "transact_write_items", transact)  # noqa: B010
    setattr(StreamShard, "add", _add_record_then_deliver)  # noqa: B010
    _installed = True
