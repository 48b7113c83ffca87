"""The local stack's S3 holds a browser POST upload to its signed policy, as S3 does: a form
that breaks it is answered with S3's error and stores nothing, so no event starts ingest.
Every test posts with ``requests`` to a real moto server the form our own
``Storage.presign_upload`` (boto3's ``generate_presigned_post``) made, signed both ways
botocore signs one: SigV4, as against AWS, and SigV2, which botocore falls back to for a
presigned POST to a custom endpoint such as the local stack's."""

from __future__ import annotations

import base64
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from avatar_core.store.storage import PresignedPost, Storage
from local import s3_post_policy
from tests.support.moto_server import moto_server, raw_client

MAX_BYTES = 1024
JPEG = "image/jpeg"
BODY = b"\xff\xd8\xff" + b"selfie" * 20


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    # Locally every caller signs with the process's credentials; raw_client's are these.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "local")
        env.setenv("AWS_SECRET_ACCESS_KEY", "local")
        with moto_server(s3_post_policy.install) as url:
            yield url


# where each signature version puts the signature and the access key
SIGNATURE_FIELD = {"s3v4": "x-amz-signature", "s3": "signature"}
ACCESS_KEY_FIELD = {"s3v4": "x-amz-credential", "s3": "AWSAccessKeyId"}


@pytest.fixture(params=["s3v4", "s3"])
def version(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture()
def s3(endpoint: str) -> Any:
    return raw_client("s3", endpoint)


@pytest.fixture()
def presigner(endpoint: str, version: str) -> Any:
    """A client that presigns with ``version``, with the same credentials as raw_client."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(signature_version=version),
    )


@pytest.fixture()
def bucket(s3: Any) -> Iterator[str]:
    name = f"post-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    yield name
    for entry in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=entry["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture()
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The key of every S3 event notification moto sends during the test."""
    from moto.s3 import notifications

    sent: list[str] = []
    original = notifications.send_event

    def record(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        sent.append(key.name)
        original(account_id, event_name, bucket, key)

    monkeypatch.setattr(notifications, "send_event", record)
    return sent


def presign(presigner: Any, bucket: str, key: str, ttl_seconds: int = 300) -> PresignedPost:
    return Storage(bucket, bucket, presigner).presign_upload(key, JPEG, MAX_BYTES, ttl_seconds)


def post(
    slot: PresignedPost,
    fields: dict[str, str] | None = None,
    data: bytes = BODY,
    content_type: str = JPEG,
) -> requests.Response:
    """POST the form as a browser does: the fields, then the file last."""
    form = slot.fields if fields is None else fields
    files = {"file": ("selfie.jpg", data, content_type)}
    return requests.post(slot.url, data=form, files=files, timeout=30)


def error(response: requests.Response) -> tuple[int, str, str]:
    root = ET.fromstring(response.content)  # noqa: S314 (our own moto server's answer)
    return response.status_code, root.findtext("Code") or "", root.findtext("Message") or ""


def stored(s3: Any, bucket: str) -> list[str]:
    return [entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def signed_policy(slot: PresignedPost) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(base64.b64decode(slot.fields["policy"]))
    return policy


def test_a_form_as_presigned_is_stored(
    s3: Any, presigner: Any, bucket: str, events: list[str]
) -> None:
    slot = presign(presigner, bucket, "selfies/u/m/1")
    response = post(slot)
    assert response.status_code == 204, response.text
    assert s3.get_object(Bucket=bucket, Key="selfies/u/m/1")["Body"].read() == BODY
    assert events == ["selfies/u/m/1"]


def test_another_key_than_signed_is_refused_and_nothing_stored(
    s3: Any, presigner: Any, bucket: str, events: list[str]
) -> None:
    slot = presign(presigner, bucket, "selfies/u/m/1")
    response = post(slot, {**slot.fields, "key": "selfies/someone-else/m/1"})
    status, code, message = error(response)
    assert (status, code) == (403, "AccessDenied")
    assert message == (
        'Invalid according to Policy: Policy Condition failed: ["eq", "$key", "selfies/u/m/1"]'
    )
    assert stored(s3, bucket) == []
    assert events == []


def test_an_expired_policy_is_refused_and_nothing_stored(
    s3: Any, presigner: Any, bucket: str, events: list[str]
) -> None:
    slot = presign(presigner, bucket, "selfies/u/m/1", ttl_seconds=-60)
    assert error(post(slot)) == (
        403,
        "AccessDenied",
        "Invalid according to Policy: Policy expired.",
    )
    assert stored(s3, bucket) == []
    assert events == []


def test_a_tampered_signature_does_not_match(
    s3: Any, presigner: Any, bucket: str, version: str
) -> None:
    slot = presign(presigner, bucket, "selfies/u/m/1")
    field = SIGNATURE_FIELD[version]
    signature = slot.fields[field]
    tampered = ("A" if signature[0] != "A" else "B") + signature[1:]
    status, code, _ = error(post(slot, {**slot.fields, field: tampered}))
    assert (status, code) == (403, "SignatureDoesNotMatch")
    assert stored(s3, bucket) == []


def test_a_policy_rewritten_without_resigning_does_not_match(
    s3: Any, presigner: Any, bucket: str
) -> None:
    # Widening the size limit in the policy itself is what the signature is there to stop.
    slot = presign(presigner, bucket, "selfies/u/m/1")
    policy = signed_policy(slot)
    policy["conditions"] = [
        ["content-length-range", 1, 10 * MAX_BYTES] if isinstance(c, list) else c
        for c in policy["conditions"]
    ]
    forged = base64.b64encode(json.dumps(policy).encode()).decode()
    status, code, _ = error(post(slot, {**slot.fields, "policy": forged}, data=b"x" * 2048))
    assert (status, code) == (403, "SignatureDoesNotMatch")
    assert stored(s3, bucket) == []


def test_an_unknown_access_key_is_refused(
    s3: Any, presigner: Any, bucket: str, version: str
) -> None:
    slot = presign(presigner, bucket, "selfies/u/m/1")
    field = ACCESS_KEY_FIELD[version]
    stranger = "AKIDSTRANGER" + slot.fields[field][len("local") :]
    status, code, _ = error(post(slot, {**slot.fields, field: stranger}))
    assert (status, code) == (403, "InvalidAccessKeyId")
    assert stored(s3, bucket) == []


def test_a_file_over_the_range_is_too_large_and_nothing_stored(
    s3: Any, presigner: Any, bucket: str, events: list[str]
) -> None:
    slot = presign(presigner, bucket, "selfies/u/m/1")
    response = post(slot, data=b"\xff" * (MAX_BYTES + 1))
    status, code, _ = error(response)
    assert (status, code) == (400, "EntityTooLarge")
    root = ET.fromstring(response.content)  # noqa: S314
    assert (root.findtext("ProposedSize"), root.findtext("MaxSizeAllowed")) == ("1025", "1024")
    assert stored(s3, bucket) == []
    assert events == []


def test_a_file_of_exactly_the_limit_is_stored(s3: Any, presigner: Any, bucket: str) -> None:
    slot = presign(presigner, bucket, "selfies/u/m/1")
    assert post(slot, data=b"\xff" * MAX_BYTES).status_code == 204
    assert stored(s3, bucket) == ["selfies/u/m/1"]


def test_an_empty_file_is_too_small(s3: Any, presigner: Any, bucket: str) -> None:
    slot = presign(presigner, bucket, "selfies/u/m/1")
    assert error(post(slot, data=b""))[:2] == (400, "EntityTooSmall")
    assert stored(s3, bucket) == []


def test_another_content_type_than_signed_is_refused(s3: Any, presigner: Any, bucket: str) -> None:
    slot = presign(presigner, bucket, "selfies/u/m/1")
    fields = {**slot.fields, "Content-Type": "text/html"}
    status, code, message = error(post(slot, fields, content_type="text/html"))
    assert (status, code) == (403, "AccessDenied")
    assert message.endswith('Policy Condition failed: ["eq", "$Content-Type", "image/jpeg"]')
    assert stored(s3, bucket) == []


def test_an_extra_unsigned_field_is_refused(s3: Any, presigner: Any, bucket: str) -> None:
    slot = presign(presigner, bucket, "selfies/u/m/1")
    fields = {**slot.fields, "x-amz-meta-owner": "someone"}
    expected = (
        403,
        "AccessDenied",
        "Invalid according to Policy: Extra input fields: x-amz-meta-owner",
    )
    assert error(post(slot, fields)) == expected
    assert stored(s3, bucket) == []


def test_an_x_ignore_field_needs_no_condition(s3: Any, presigner: Any, bucket: str) -> None:
    slot = presign(presigner, bucket, "selfies/u/m/1")
    assert post(slot, {**slot.fields, "x-ignore-tracking": "1"}).status_code == 204
    assert stored(s3, bucket) == ["selfies/u/m/1"]


def test_a_form_without_a_policy_is_anonymous_and_denied(
    s3: Any, presigner: Any, bucket: str, events: list[str]
) -> None:
    slot = presign(presigner, bucket, "selfies/u/m/1")
    fields = {"key": "selfies/u/m/1", "Content-Type": JPEG}
    assert error(post(slot, fields)) == (403, "AccessDenied", "Access Denied")
    assert stored(s3, bucket) == []
    assert events == []


def test_a_policy_without_its_signature_is_refused(
    s3: Any, presigner: Any, bucket: str, version: str
) -> None:
    slot = presign(presigner, bucket, "selfies/u/m/1")
    fields = {k: v for k, v in slot.fields.items() if k != SIGNATURE_FIELD[version]}
    status, code, _ = error(post(slot, fields))
    assert (status, code) == (400, "InvalidArgument")
    assert stored(s3, bucket) == []


def test_a_filename_key_is_stored_under_the_uploaded_name(
    s3: Any, presigner: Any, bucket: str
) -> None:
    post_form = presigner.generate_presigned_post(
        Bucket=bucket,
        Key="selfies/u/m/${filename}",
        Fields={"Content-Type": JPEG},
        Conditions=[{"Content-Type": JPEG}, ["content-length-range", 1, MAX_BYTES]],
    )
    slot = PresignedPost(url=post_form["url"], fields=post_form["fields"], expires_at="")
    assert post(slot).status_code == 204
    assert stored(s3, bucket) == ["selfies/u/m/selfie.jpg"]


def test_delete_objects_still_passes_through(s3: Any, bucket: str) -> None:
    # DeleteObjects is a POST to the bucket too, signed in its headers, not a form.
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}]})
    assert stored(s3, bucket) == []


def test_install_is_idempotent() -> None:
    from moto.s3.responses import S3Response

    s3_post_policy.install()
    s3_post_policy.install()
    handler = S3Response.__dict__["_bucket_response_post"]
    assert not hasattr(handler.__wrapped__, "__wrapped__")
