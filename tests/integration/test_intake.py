"""Selfie intake on the local stack: the template deployed into moto, driven over HTTP and
S3 exactly as an app would drive the deployed API."""

from __future__ import annotations

import base64
import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from PIL import Image

from local import photos
from local.auth import LocalSigner
from local.client import ApiClient
from local.stack import LocalStack
from tests.support.journeys import upload_and_settle

pytestmark = pytest.mark.integration


def decoded_policy(slot: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(slot["fields"]["policy"]))


def test_health_answers_without_a_token(stack: LocalStack) -> None:
    response = ApiClient(stack.api_url, None).call("GET", "/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_a_new_model_is_collecting_and_listed_newest_first(client: ApiClient) -> None:
    first = client.create_model("woman", name="Ada")
    second = client.create_model("dog")
    assert first["status"] == "collecting"
    assert first["selfies"] == {"pending": 0, "accepted": 0, "rejected": 0}
    listed = client.list_models()["items"]
    assert [m["model_id"] for m in listed[:2]] == [second["model_id"], first["model_id"]]


def test_listing_pages_with_an_opaque_cursor(client: ApiClient) -> None:
    created = [client.create_model("cat")["model_id"] for _ in range(3)]
    page1 = client.list_models(limit=2)
    page2 = client.list_models(limit=2, cursor=page1["next_cursor"])
    seen = [m["model_id"] for m in page1["items"] + page2["items"]]
    assert seen == list(reversed(created))
    assert page2["next_cursor"] is None


def test_the_upload_policy_pins_key_type_and_size(stack: LocalStack, client: ApiClient) -> None:
    model = client.create_model("man")
    slot = client.request_uploads(model["model_id"], ["image/png"])[0]
    policy = decoded_policy(slot)
    conditions = policy["conditions"]
    assert {"Content-Type": "image/png"} in conditions
    assert ["content-length-range", 1, 15 * 1024 * 1024] in conditions
    key_condition = next(c for c in conditions if isinstance(c, dict) and "key" in c)
    assert key_condition["key"] == slot["fields"]["key"]
    assert key_condition["key"].endswith(f"/{model['model_id']}/{slot['selfie_id']}")
    assert {"bucket": stack.output("UploadsBucketName")} in conditions
    # short expiry: the policy dies within the configured five minutes
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    remaining = (expires - datetime.now(UTC)).total_seconds()
    assert 240 < remaining <= 300


def test_good_selfies_are_accepted_and_normalised_to_512_jpeg(
    stack: LocalStack, client: ApiClient, user: str
) -> None:
    model = client.create_model("woman")
    settled = upload_and_settle(
        client,
        model["model_id"],
        [
            ("image/jpeg", photos.selfie_jpeg(1)),
            ("image/jpeg", photos.selfie_jpeg(2, exif_orientation=6)),
            ("image/png", photos.selfie_png(3, alpha=True)),
        ],
    )
    assert [s["status"] for s in settled] == ["accepted"] * 3
    assert client.get_model(model["model_id"])["selfies"] == {
        "pending": 0,
        "accepted": 3,
        "rejected": 0,
    }
    s3 = boto3.client("s3")
    bucket = stack.output("UploadsBucketName")
    for selfie in settled:
        key = f"normalised/{user}/{model['model_id']}/{selfie['selfie_id']}.jpg"
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        image = Image.open(io.BytesIO(body))
        assert (image.format, image.size) == ("JPEG", (512, 512))


def test_the_selfie_rules_tell_a_signed_in_client_what_ingest_takes_and_refuses(
    stack: LocalStack, client: ApiClient
) -> None:
    assert ApiClient(stack.api_url, None).call("GET", "/selfie-rules").status_code == 401

    rules = client.call("GET", "/selfie-rules").json()

    assert "image/heic" in rules["content_types"] and "image/jpeg" in rules["content_types"]
    assert (rules["max_bytes"], rules["min_side"]) == (15 * 1024 * 1024, 256)
    assert (rules["min_selfies_for_training"], rules["max_selfies_per_model"]) == (5, 30)
    refusals = {check["name"]: check["refusal"] for check in rules["checks"]}
    assert refusals["blur"] == "the photo is blurred: take it again in better light"
    assert refusals["near_duplicate"].startswith("this photo is almost the same as selfie")
    assert set(refusals) == {"transparency", "single_colour", "blur", "near_duplicate"}


def test_the_same_selfie_uploaded_again_is_refused_naming_the_first_and_a_blurred_one_too(
    stack: LocalStack, client: ApiClient, user: str
) -> None:
    model_id = client.create_model("woman")["model_id"]
    (first,) = upload_and_settle(client, model_id, [("image/jpeg", photos.selfie_jpeg(21))])
    assert first["status"] == "accepted"

    again, blurred = upload_and_settle(
        client,
        model_id,
        [
            ("image/jpeg", photos.selfie_jpeg(21, quality=70)),
            ("image/jpeg", photos.blurred_selfie_jpeg(22)),
        ],
    )

    assert again["status"] == "rejected"
    assert again["reason"] == "this photo is almost the same as selfie 1: use different angles"
    assert blurred["status"] == "rejected"
    assert blurred["reason"] == "the photo is blurred: take it again in better light"
    assert client.get_model(model_id)["selfies"] == {"pending": 0, "accepted": 1, "rejected": 2}
    normalised = boto3.client("s3").list_objects_v2(
        Bucket=stack.output("UploadsBucketName"), Prefix=f"normalised/{user}/{model_id}/"
    )
    assert [item["Key"] for item in normalised.get("Contents", [])] == [
        f"normalised/{user}/{model_id}/{first['selfie_id']}.jpg"
    ]


def test_phone_formats_are_accepted_through_the_presigned_post_and_normalised_to_512_jpeg(
    stack: LocalStack, client: ApiClient, user: str
) -> None:
    model = client.create_model("woman")
    files = [
        ("image/heic", photos.selfie_heic(4, size=(900, 1200))),
        ("image/webp", photos.selfie_webp(5, size=(900, 1200))),
        ("image/webp", photos.animated_webp((6, 7, 8), size=(600, 800))),
    ]
    (slot,) = client.request_uploads(model["model_id"], ["image/heic"])
    assert {"Content-Type": "image/heic"} in decoded_policy(slot)["conditions"]
    # another photo: the same one again would be refused as a near-duplicate
    heic = photos.selfie_heic(3, size=(900, 1200))
    ApiClient.upload(slot, heic, "selfie.heic").raise_for_status()

    settled = upload_and_settle(client, model["model_id"], files)

    assert [s["status"] for s in settled] == ["accepted"] * 3
    assert [s["frames_in_file"] for s in settled] == [1, 1, 3]
    s3 = boto3.client("s3")
    bucket = stack.output("UploadsBucketName")
    for selfie in settled:
        key = f"normalised/{user}/{model['model_id']}/{selfie['selfie_id']}.jpg"
        image = Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        assert (image.format, image.size) == ("JPEG", (512, 512))


def test_a_heic_upload_must_declare_the_type_its_policy_signed(client: ApiClient) -> None:
    model = client.create_model("man")
    (slot,) = client.request_uploads(model["model_id"], ["image/heic"])
    slot["fields"]["Content-Type"] = "image/webp"

    response = ApiClient.upload(slot, photos.selfie_heic(9, size=(600, 800)), "selfie.heic")

    assert response.status_code == 403
    assert "Policy Condition failed" in response.text


@pytest.mark.parametrize(
    ("declared", "data", "reason_part"),
    [
        ("image/jpeg", photos.text_file_named_jpg(), "not a JPEG, PNG, HEIC or WebP"),
        ("image/jpeg", photos.truncated_jpeg(), "damaged"),
        ("image/png", photos.decompression_bomb_png(), "too large"),
        ("image/jpeg", photos.tiny_jpeg((200, 180)), "too small: 200×180"),
    ],
    ids=["text-named-jpg", "truncated-jpeg", "decompression-bomb", "too-small"],
)
def test_bad_files_are_rejected_with_a_reason_and_removed(
    stack: LocalStack, client: ApiClient, user: str, declared: str, data: bytes, reason_part: str
) -> None:
    model = client.create_model("man")
    (selfie,) = upload_and_settle(client, model["model_id"], [(declared, data)])
    assert selfie["status"] == "rejected"
    assert reason_part in selfie["reason"]
    s3 = boto3.client("s3")
    bucket = stack.output("UploadsBucketName")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"selfies/{user}/{model['model_id']}/")
    normalised = s3.list_objects_v2(Bucket=bucket, Prefix=f"normalised/{user}/{model['model_id']}/")
    assert listed.get("KeyCount", 0) == 0
    assert normalised.get("KeyCount", 0) == 0
    counts = client.get_model(model["model_id"])["selfies"]
    assert counts == {"pending": 0, "accepted": 0, "rejected": 1}


def test_a_model_holds_at_most_30_selfies(client: ApiClient) -> None:
    model = client.create_model("couple")
    client.request_uploads(model["model_id"], ["image/jpeg"] * 30)
    response = client.call(
        "POST",
        f"/models/{model['model_id']}/selfies",
        json={"files": [{"content_type": "image/jpeg"}]},
    )
    assert response.status_code == 409
    assert "at most 30" in response.json()["message"]
    assert client.get_model(model["model_id"])["selfies"]["pending"] == 30


def test_a_duplicate_s3_event_changes_nothing(
    stack: LocalStack, client: ApiClient, user: str
) -> None:
    model = client.create_model("woman")
    (selfie,) = upload_and_settle(
        client, model["model_id"], [("image/jpeg", photos.selfie_jpeg(7))]
    )
    before = client.get_model(model["model_id"])
    key = f"selfies/{user}/{model['model_id']}/{selfie['selfie_id']}"
    event = {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Post",
                "s3": {
                    "bucket": {"name": stack.output("UploadsBucketName")},
                    "object": {"key": key, "size": 1},
                },
            }
        ]
    }
    lambda_client = boto3.client("lambda")
    response = lambda_client.invoke(
        FunctionName=stack.stack.function_name("IngestFunction"), Payload=json.dumps(event).encode()
    )
    result = json.loads(response["Payload"].read())
    assert result["results"][0]["outcome"] == "duplicate"
    assert client.get_model(model["model_id"])["selfies"] == before["selfies"]


def test_a_key_outside_the_layout_is_ignored(stack: LocalStack) -> None:
    s3 = boto3.client("s3")
    s3.put_object(Bucket=stack.output("UploadsBucketName"), Key="selfies/whatever.jpg", Body=b"x")
    failures = [f for f in stack.runtime.failures if f[0] == "IngestFunction"]
    assert failures == []


def test_bad_bodies_answer_422_naming_the_field(client: ApiClient) -> None:
    response = client.call("POST", "/models", json={"subject": "robot"})
    assert response.status_code == 422
    assert response.json()["field"] == "subject"
    model = client.create_model("man")
    response = client.call(
        "POST",
        f"/models/{model['model_id']}/selfies",
        json={"files": [{"content_type": "image/gif"}]},
    )
    assert response.status_code == 422
    assert "content_type" in response.json()["field"]
    response = client.call("POST", "/models", json=None)
    assert response.status_code in (400, 422)


def test_another_owner_sees_404_everywhere(client: ApiClient, other_client: ApiClient) -> None:
    model = client.create_model("cat")
    model_id = model["model_id"]
    for method, path in [
        ("GET", f"/models/{model_id}"),
        ("DELETE", f"/models/{model_id}"),
        ("GET", f"/models/{model_id}/selfies"),
    ]:
        assert other_client.call(method, path).status_code == 404
    response = other_client.call(
        "POST", f"/models/{model_id}/selfies", json={"files": [{"content_type": "image/jpeg"}]}
    )
    assert response.status_code == 404
    assert model_id not in [m["model_id"] for m in other_client.list_models()["items"]]
    assert client.get_model(model_id)["status"] == "collecting"


def test_deleting_a_model_removes_its_selfies_and_records(
    stack: LocalStack, client: ApiClient, user: str
) -> None:
    model = client.create_model("woman")
    upload_and_settle(client, model["model_id"], [("image/jpeg", photos.selfie_jpeg(9))])
    client.delete_model(model["model_id"])
    assert client.call("GET", f"/models/{model['model_id']}").status_code == 404
    s3 = boto3.client("s3")
    bucket = stack.output("UploadsBucketName")
    for prefix in ("selfies", "normalised"):
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{user}/{model['model_id']}/")
        assert listed.get("KeyCount", 0) == 0


@pytest.mark.parametrize("header", [None, "Bearer not-a-jwt", "Basic dXNlcjpwYXNz"])
def test_missing_or_bad_tokens_get_401(stack: LocalStack, header: str | None) -> None:
    client = ApiClient(stack.api_url, None)
    headers = {"Authorization": header} if header else None
    response = client.call("GET", "/models", headers=headers)
    assert response.status_code == 401


def test_an_expired_token_gets_401(stack: LocalStack) -> None:
    signer = LocalSigner(stack.config.state_dir / "jwt")
    expired = signer.mint("late-user", iat=int(time.time()) - 3600, exp=int(time.time()) - 120)
    client = ApiClient(stack.api_url, expired)
    assert client.call("GET", "/models").status_code == 401


def test_a_token_from_another_issuer_gets_401(stack: LocalStack, tmp_path: Path) -> None:
    stranger = LocalSigner(tmp_path / "other-key").mint("someone")
    assert ApiClient(stack.api_url, stranger).call("GET", "/models").status_code == 401
