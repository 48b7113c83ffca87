"""docs/clients.md tells app builders what the API and S3 expect: its examples send what the
presigner returns, the file last, and the lifetimes it states are the code's."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
from moto import mock_aws

from avatar_core.models.api import FaceUploadOut, UploadSlot, UploadsOut
from avatar_core.settings import Settings
from avatar_core.store.storage import Storage
from local.template import load_template
from tests.support.client_examples import CLIENTS_DOC, examples

UPLOAD_EXAMPLES = ("browser-upload", "ios-upload", "android-upload")
# How each language walks the presigned fields, generically
FIELDS_LOOP = {
    "browser-upload": "Object.entries(slot.fields)",
    "ios-upload": "in slot.fields {",
    "android-upload": "slot.fields.forEach",
}
FILE_PART = {
    "browser-upload": 'form.append("file"',
    "ios-upload": 'name=\\"file\\"',
    "android-upload": 'addFormDataPart("file"',
}


def doc() -> str:
    return CLIENTS_DOC.read_text()


@pytest.mark.parametrize("name", UPLOAD_EXAMPLES)
def test_each_upload_example_sends_every_presigned_field_then_the_file(name: str) -> None:
    # Given the example as the page prints it
    _, code = examples()[name]
    # Then it walks the fields the API handed out, whatever they are ...
    assert FIELDS_LOOP[name] in code
    # ... and appends the file after them: S3 ignores every field that follows the file
    assert code.index(FIELDS_LOOP[name]) < code.index(FILE_PART[name])
    # and it never names a signing field itself (a deployed Lambda adds x-amz-security-token)
    assert not re.search(r"x-amz-|AWSAccessKeyId|\"policy\"|\"key\"|\"signature\"", code, re.I)


@pytest.mark.parametrize("name", UPLOAD_EXAMPLES)
def test_the_examples_read_only_what_the_api_answers(name: str) -> None:
    _, code = examples()[name]
    slot_fields = set(UploadSlot.model_fields)
    read = set(re.findall(r"slot\.(\w+)", code))
    assert read and read <= slot_fields
    # the face reference upload answers the same url, fields and expiry
    assert {"url", "fields", "expires_at"} <= set(FaceUploadOut.model_fields)
    if "uploads" in code:
        assert "uploads" in UploadsOut.model_fields


def _presigned_fields(monkeypatch: pytest.MonkeyPatch, **credentials: str) -> dict[str, str]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="uploads")
        storage = Storage("uploads", "results")
        post = storage.presign_upload("selfies/o/m/s", "image/jpeg", 1024, 300)
    return post.fields


def test_the_fields_the_page_shows_are_the_ones_a_deployed_function_signs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the presigner signing as a Lambda does, with temporary credentials
    fields = _presigned_fields(
        monkeypatch,
        AWS_ACCESS_KEY_ID="ASIATESTING",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="session-token",
    )
    # Then the sample answer on the page names exactly those fields
    sample = re.search(r'```json\n(\{"uploads".*?)```', doc(), re.DOTALL)
    assert sample is not None
    shown: dict[str, Any] = json.loads(sample.group(1))["uploads"][0]
    assert set(shown) == set(UploadSlot.model_fields)
    assert set(shown["fields"]) == set(fields)
    assert "x-amz-security-token" in fields


def _template_env(name: str) -> set[int]:
    resources = load_template(CLIENTS_DOC.parents[1] / "template.yaml")["Resources"]
    return {
        int(r["Properties"]["Environment"]["Variables"][name])
        for r in resources.values()
        if r["Type"] == "AWS::Serverless::Function"
        and name in r.get("Properties", {}).get("Environment", {}).get("Variables", {})
    }


def _minutes(seconds: int) -> str:
    assert seconds % 60 == 0
    return f"**{seconds // 60} minutes**"


def test_the_lifetimes_and_limits_on_the_page_are_the_stacks() -> None:
    settings = Settings()
    text = doc()
    # upload forms: the template's value where it sets one, the code's default otherwise
    upload_ttls = _template_env("UPLOAD_URL_TTL_SECONDS") or {settings.upload_url_ttl_seconds}
    assert len(upload_ttls) == 1
    assert _minutes(upload_ttls.pop()) in text
    download_ttls = _template_env("DOWNLOAD_URL_TTL_SECONDS") or {settings.download_url_ttl_seconds}
    assert len(download_ttls) == 1
    assert _minutes(download_ttls.pop()) in text
    max_bytes = _template_env("UPLOAD_MAX_BYTES") or {settings.upload_max_bytes}
    assert f"**{max_bytes.pop() // 2**20} MiB**" in text
    client = load_template(CLIENTS_DOC.parents[1] / "template.yaml")["Resources"]["UserPoolClient"][
        "Properties"
    ]
    assert client["TokenValidityUnits"]["IdToken"] == "minutes"
    assert f"**{client['IdTokenValidity']} minutes**" in text
    # the sign-in flows the page promises are the ones the app client allows
    assert "ALLOW_USER_SRP_AUTH" in client["ExplicitAuthFlows"]
    assert "ALLOW_USER_PASSWORD_AUTH" not in client["ExplicitAuthFlows"]
