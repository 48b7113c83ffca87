"""Unit-test fixtures: the DynamoDB table built in moto from template.yaml's own definition,
so the tests cannot drift from the infrastructure."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from avatar_core.store.repository import AvatarRepository
from local.template import load_template

ROOT = Path(__file__).resolve().parents[2]


def table_definition() -> dict[str, Any]:
    props = load_template(ROOT / "template.yaml")["Resources"]["AvatarTable"]["Properties"]
    return {
        key: props[key]
        for key in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
    }


@pytest.fixture()
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


@pytest.fixture()
def repo(aws: None) -> AvatarRepository:
    boto3.client("dynamodb").create_table(TableName="avatars", **table_definition())
    return AvatarRepository("avatars")


@pytest.fixture(scope="module")
def server_repo() -> Iterator[AvatarRepository]:
    """The repository against a moto *server* (with the local stack's atomic conditional
    writes), for tests that race real threads: in-process moto serialises nothing for us."""
    from local import dynamodb_atomic
    from tests.support.moto_server import moto_server

    with moto_server(dynamodb_atomic.install) as url:
        resource = boto3.resource(
            "dynamodb",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        # one table per module: the server may outlive the module
        name = f"avatars-{uuid.uuid4().hex[:8]}"
        resource.meta.client.create_table(TableName=name, **table_definition())
        yield AvatarRepository(name, resource=resource)
