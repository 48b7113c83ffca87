"""The local stack's DynamoDB is as atomic as DynamoDB: one item's conditional writes are
linearisable under concurrent requests, and a cancelled transaction leaves the table's stream
flowing. Every test talks HTTP to a real moto server, as the Lambdas do."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local import dynamodb_atomic
from tests.support.moto_server import moto_server, raw_client

WORKERS = 16


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server(dynamodb_atomic.install) as url:
        yield url


@pytest.fixture()
def client(endpoint: str) -> Any:
    return raw_client("dynamodb", endpoint, pool=WORKERS)


@pytest.fixture()
def table(client: Any) -> Iterator[str]:
    name = f"atomic-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    yield name
    client.delete_table(TableName=name)


def all_at_once(count: int, attempt: Callable[[int], Any]) -> list[Any]:
    """Run ``attempt(i)`` on ``count`` threads released together; return their results."""
    gate = threading.Barrier(count)

    def run(index: int) -> Any:
        gate.wait(timeout=30)
        return attempt(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def failed_condition(error: ClientError) -> bool:
    code = error.response["Error"]["Code"]
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


def won(write: Callable[[], Any]) -> bool:
    """True when the conditional ``write`` commits, False when its condition refuses it."""
    try:
        write()
        return True
    except ClientError as error:
        assert failed_condition(error), error
        return False


def test_only_one_of_many_concurrent_claims_on_an_item_wins(client: Any, table: str) -> None:
    for round_ in range(5):
        key = {"pk": {"S": f"job-{round_}"}}

        def claim(worker: int, key: dict[str, Any] = key) -> bool:
            return won(
                lambda: client.update_item(
                    TableName=table,
                    Key=key,
                    UpdateExpression="SET claimed_by = :me",
                    ConditionExpression="attribute_not_exists(claimed_by)",
                    ExpressionAttributeValues={":me": {"S": f"worker-{worker}"}},
                )
            )

        wins = all_at_once(WORKERS, claim)

        assert wins.count(True) == 1
        stored = client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
        assert stored["claimed_by"]["S"] == f"worker-{wins.index(True)}"


def test_only_one_concurrent_transaction_claiming_an_item_commits(client: Any, table: str) -> None:
    for round_ in range(5):
        key = f"upload-{round_}"

        def claim(worker: int, key: str = key) -> bool:
            return won(
                lambda: client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": table,
                                "Item": {"pk": {"S": key}, "owner": {"S": f"worker-{worker}"}},
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                        {
                            "Update": {
                                "TableName": table,
                                "Key": {"pk": {"S": f"{key}-count"}},
                                "UpdateExpression": "ADD claims :one",
                                "ExpressionAttributeValues": {":one": {"N": "1"}},
                            }
                        },
                    ]
                )
            )

        wins = all_at_once(WORKERS, claim)

        assert wins.count(True) == 1
        count = client.get_item(TableName=table, Key={"pk": {"S": f"{key}-count"}})["Item"]
        assert count["claims"]["N"] == "1"
        owner = client.get_item(TableName=table, Key={"pk": {"S": key}})["Item"]["owner"]["S"]
        assert owner == f"worker-{wins.index(True)}"


def test_concurrent_capped_increments_admit_exactly_the_cap(client: Any, table: str) -> None:
    cap, tries_per_worker = WORKERS // 2, 2
    for round_ in range(6):
        key = {"pk": {"S": f"slots-{round_}"}}

        def take_slots(_: int, key: dict[str, Any] = key) -> int:
            taken = 0
            for _attempt in range(tries_per_worker):
                taken += won(
                    lambda: client.update_item(
                        TableName=table,
                        Key=key,
                        UpdateExpression="ADD in_use :one",
                        ConditionExpression="attribute_not_exists(in_use) OR in_use < :cap",
                        ExpressionAttributeValues={":one": {"N": "1"}, ":cap": {"N": str(cap)}},
                    )
                )
            return taken

        taken = sum(all_at_once(WORKERS, take_slots))

        in_use = client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]["in_use"]
        assert taken == cap
        assert int(in_use["N"]) == cap


def stream_records(client_for: Callable[[str], Any], table: str) -> Iterator[list[Any]]:
    streams = client_for("dynamodbstreams")
    arn = client_for("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    while True:
        page = streams.get_records(ShardIterator=iterator)
        iterator = page["NextShardIterator"]
        yield page["Records"]


def test_a_cancelled_transaction_leaves_the_stream_delivering_later_writes(
    client: Any, table: str, endpoint: str
) -> None:
    def client_for(service: str) -> Any:
        return raw_client(service, endpoint)

    reader = stream_records(client_for, table)
    client.put_item(TableName=table, Item={"pk": {"S": "before"}})
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in next(reader)] == ["before"]

    with pytest.raises(ClientError) as cancelled:
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": {"S": "rolled-back"}}}},
                {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": {"pk": {"S": "before"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    client.put_item(TableName=table, Item={"pk": {"S": "after"}})

    # the cancelled transaction wrote nothing, to the table or to its stream
    assert "Item" not in client.get_item(TableName=table, Key={"pk": {"S": "rolled-back"}})
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in next(reader)] == ["after"]


def test_a_cancelled_transaction_undoes_its_writes_and_only_its_writes(client: Any) -> None:
    name = f"atomic-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )

    def key(sk: str) -> dict[str, Any]:
        return {"pk": {"S": "owner"}, "sk": {"S": sk}}

    client.put_item(TableName=name, Item={**key("counter"), "n": {"N": "1"}})
    client.put_item(TableName=name, Item={**key("doomed"), "v": {"S": "kept"}})
    client.put_item(TableName=name, Item={**key("bystander"), "v": {"S": "untouched"}})

    with pytest.raises(ClientError) as cancelled:
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": name, "Item": {**key("new"), "v": {"S": "x"}}}},
                {
                    "Update": {
                        "TableName": name,
                        "Key": key("counter"),
                        "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
                {"Delete": {"TableName": name, "Key": key("doomed")}},
                {
                    "ConditionCheck": {
                        "TableName": name,
                        "Key": key("bystander"),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"

    items = client.query(
        TableName=name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "owner"}},
    )["Items"]
    assert {item["sk"]["S"]: item for item in items} == {
        "bystander": {**key("bystander"), "v": {"S": "untouched"}},
        "counter": {**key("counter"), "n": {"N": "1"}},
        "doomed": {**key("doomed"), "v": {"S": "kept"}},
    }

    # a transaction that passes commits all of it
    client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": name, "Item": {**key("new"), "v": {"S": "x"}}}},
            {"Delete": {"TableName": name, "Key": key("doomed")}},
        ]
    )
    assert "Item" in client.get_item(TableName=name, Key=key("new"))
    assert "Item" not in client.get_item(TableName=name, Key=key("doomed"))
    client.delete_table(TableName=name)
