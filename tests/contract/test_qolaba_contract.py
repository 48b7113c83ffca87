"""Contract of the Qolaba Face Avatar adapter, replayed from recorded exchanges.

Each test registers a recorded answer with ``responses``, makes one adapter call and checks
both sides of the wire: the exact request sent (method, URL, bearer token, JSON body,
timeouts) and what the adapter made of the answer (a JobStatus or a typed error).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import responses
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS
from moto import mock_aws
from pydantic import ValidationError

from avatar_core.errors import (
    RETRYABLE_PROVIDER_ERRORS,
    ProviderAuthFailed,
    ProviderError,
    ProviderOutcomeUnknown,
    ProviderOutOfCredits,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from avatar_core.providers.base import JobState
from avatar_core.providers.qolaba import FaceAvatarRequest, QolabaClient, result_urls
from avatar_core.settings import Settings
from tests.support.transport import expected_failure, transport_failures

RECORDINGS = json.loads((Path(__file__).parent / "recordings" / "qolaba.json").read_text())
EXCHANGES: dict[str, Any] = RECORDINGS["exchanges"]
BASE_URL: str = RECORDINGS["base_url"]
APP_ID: str = RECORDINGS["app_id"]
REF_ID: str = RECORDINGS["ref_id"]
TOKEN = "qlb_sk_2c9e7f1a4d6b8e0c3f5a7d9b1e4c6a8f"
TASK_ID = "3f9b6c1e-8d2a-4e7f-b5c0-91a4d6e2f873"
SUBMITTED: dict[str, Any] = EXCHANGES["submit"]["request"]["json"]
FACE_REQUEST = FaceAvatarRequest(**{k: v for k, v in SUBMITTED.items() if k != "app_id"})

CALLS: dict[str, tuple[str, Callable[[QolabaClient], object]]] = {
    "submit_face_avatar": (
        "/getImageToImage",
        lambda client: client.submit_face_avatar(FACE_REQUEST),
    ),
    "face_avatar_status": (
        "/getImage",
        lambda client: client.face_avatar_status(TASK_ID, REF_ID),
    ),
}


def add_answer(rsps: responses.RequestsMock, path: str, answer: dict) -> None:
    headers = {k: v for k, v in answer.get("headers", {}).items() if k.lower() != "content-type"}
    content_type = answer.get("headers", {}).get("Content-Type", "application/json")
    body = json.dumps(answer["json"]) if "json" in answer else answer["text"]
    rsps.add(
        "POST",
        BASE_URL + path,
        body=body,
        status=answer["status"],
        headers=headers,
        content_type=content_type,
    )


def replay(rsps: responses.RequestsMock, name: str) -> dict:
    exchange = EXCHANGES[name]
    request = exchange["request"]
    assert request["method"] == "POST"
    add_answer(rsps, request["path"], exchange["response"])
    return request


def assert_sent(rsps: responses.RequestsMock, recorded: dict) -> None:
    assert len(rsps.calls) == 1
    sent = rsps.calls[0].request
    assert sent.method == recorded["method"]
    assert sent.url == BASE_URL + recorded["path"]
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.body) == recorded["json"]
    assert sent.req_kwargs["timeout"] == (5.0, 20.0)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def client() -> QolabaClient:
    return QolabaClient(
        BASE_URL, TOKEN, APP_ID, connect_timeout_seconds=5.0, read_timeout_seconds=20.0
    )


# --- submitting --------------------------------------------------------------------------


def test_submit_sends_the_seed_body_with_the_configured_app_id_and_returns_the_task(rsps, client):
    recorded = replay(rsps, "submit")

    job = client.submit_face_avatar(FACE_REQUEST)

    assert_sent(rsps, recorded)
    body = json.loads(rsps.calls[0].request.body)
    assert body["app_id"] == APP_ID
    assert body["prompt"] is None
    assert body["celery"] is True
    assert job.job_id == TASK_ID
    assert job.provider_status == "PENDING"
    assert body["refID"] == REF_ID


def test_a_custom_prompt_is_passed_through(rsps, client):
    replay(rsps, "submit")
    prompt = "watercolour portrait of a smiling woman, pastel background"

    client.submit_face_avatar(FACE_REQUEST.model_copy(update={"prompt": prompt}))

    assert json.loads(rsps.calls[0].request.body)["prompt"] == prompt


def test_the_request_model_is_exactly_the_wire_body():
    wire_names = {field.alias or name for name, field in FaceAvatarRequest.model_fields.items()}
    assert wire_names == set(SUBMITTED)
    with pytest.raises(ValidationError):
        FaceAvatarRequest(**{**SUBMITTED, "seed": 42})
    with pytest.raises(ValidationError):
        FaceAvatarRequest(**{**SUBMITTED, "celery": False})
    with pytest.raises(ValidationError):
        FaceAvatarRequest(**{**SUBMITTED, "batch": "four"})


# --- status: every recorded answer, documented sample and variants -------------------------

STATUS_ANSWERS = [name for name, ex in EXCHANGES.items() if ex["request"]["path"] == "/getImage"]
SUBMIT_ANSWERS = [
    name for name, ex in EXCHANGES.items() if ex["request"]["path"] == "/getImageToImage"
]


@pytest.mark.parametrize("recording", STATUS_ANSWERS)
def test_every_recorded_status_answer_is_understood(rsps, client, recording):
    recorded = replay(rsps, recording)
    expect = EXCHANGES[recording]["expect"]
    body = EXCHANGES[recording]["response"]["json"]

    status = client.face_avatar_status(TASK_ID, REF_ID)

    assert_sent(rsps, recorded)
    assert status.state.value == expect["state"]
    assert status.provider_status == body["status"]
    assert status.known_status is expect.get("known", True)
    if "urls" in expect:
        assert len(status.result_urls) == expect["urls"]
        assert all(url.startswith("https://") for url in status.result_urls)
    if "error" in expect:
        assert status.error == expect["error"]
        assert status.result_urls == []
    if status.state is JobState.RUNNING and not status.known_status:
        # an answer we cannot place is kept, clipped, so a job given up on says what it was
        assert status.note is not None
        assert repr(body["status"])[1:-1] in status.note


@pytest.mark.parametrize("recording", SUBMIT_ANSWERS)
def test_every_recorded_submit_answer_gives_the_task_id(rsps, client, recording):
    recorded = replay(rsps, recording)

    job = client.submit_face_avatar(FACE_REQUEST)

    assert_sent(rsps, recorded)
    assert job.job_id == EXCHANGES[recording]["expect"]["job_id"]


def test_the_documented_sample_has_every_documented_field():
    documented = {"time_required", "error", "error_data", "input", "output", "app_id", "task_id"}
    sample = EXCHANGES["documented_sample"]["response"]["json"]

    assert documented | {"status"} == set(sample)
    assert all(value == "" for value in sample.values())


def test_output_urls_are_read_from_every_shape_in_order():
    urls = ["https://r.example/a.png", "https://r.example/b.png"]

    assert result_urls("") == []
    assert result_urls(None) == []
    assert result_urls(urls[0]) == urls[:1]
    assert result_urls(urls) == urls
    assert result_urls({"images": urls}) == urls
    assert result_urls({"data": [{"url": urls[0]}, {"url": urls[1]}]}) == urls
    assert result_urls(json.dumps(urls)) == urls
    assert result_urls([urls[0], urls[0]]) == urls[:1]
    assert result_urls("not a url") == []
    assert result_urls(["ftp://r.example/a.png", 42, True]) == []


def test_the_job_id_travels_as_ref_id_to_submit_and_status(rsps, client):
    replay(rsps, "submit")
    replay(rsps, "pending")

    client.submit_face_avatar(FACE_REQUEST)
    client.face_avatar_status(TASK_ID, REF_ID)

    assert [json.loads(call.request.body)["refID"] for call in rsps.calls] == [REF_ID, REF_ID]


def test_without_a_ref_id_none_is_sent(rsps, client):
    rsps.add("POST", BASE_URL + "/getImage", json={"status": "PENDING"})

    client.face_avatar_status(TASK_ID)

    assert json.loads(rsps.calls[0].request.body) == {"id": TASK_ID}


def test_a_failure_without_any_text_still_says_so(rsps, client):
    rsps.add("POST", BASE_URL + "/getImage", json={"status": "FAILURE", "output": None})

    status = client.face_avatar_status(TASK_ID)

    assert status.error == "the provider failed the face avatar (FAILURE): no reason given"


def test_an_empty_task_id_is_refused_before_calling(rsps, client):
    with pytest.raises(ValueError):
        client.face_avatar_status("")

    assert len(rsps.calls) == 0


# --- errors ------------------------------------------------------------------------------

ERROR_CASES = [
    ("unauthorized", ProviderAuthFailed, 401, "Invalid token"),
    ("forbidden", ProviderAuthFailed, 403, "Not authenticated"),
    ("out_of_credits", ProviderOutOfCredits, 402, "Insufficient credits: 12 required, 3 available"),
    (
        "validation_failed",
        ProviderRejected,
        422,
        "body.batch: ensure this value is less than or equal to 8; "
        "body.guidance_scale: value is not a valid float",
    ),
    ("bad_request", ProviderRejected, 400, "Could not download the image from the given URL"),
    ("rate_limited", ProviderRateLimited, 429, "Too many requests"),
    ("server_error", ProviderUnavailable, 500, "Internal Server Error"),
    (
        "gateway_unavailable",
        ProviderUnavailable,
        503,
        "<html><body><h1>503 Service Unavailable</h1>No server is available to handle this "
        "request.</body></html>",
    ),
]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize(("answer", "error_type", "status_code", "provider_message"), ERROR_CASES)
def test_error_answers_become_typed_errors_that_keep_the_providers_words(
    rsps, client, call, answer, error_type, status_code, provider_message
):
    path, invoke = CALLS[call]
    add_answer(rsps, path, RECORDINGS["errors"][answer])

    with pytest.raises(ProviderError) as raised:
        invoke(client)

    error = raised.value
    assert type(error) is error_type
    assert error.provider == "qolaba"
    assert error.status_code == status_code
    assert error.provider_message == provider_message
    assert provider_message in str(error)
    retryable = error_type in (ProviderRateLimited, ProviderUnavailable)
    assert (type(error).__name__ in RETRYABLE_PROVIDER_ERRORS) is retryable


def test_rate_limit_carries_the_retry_after_seconds(rsps, client):
    path, invoke = CALLS["face_avatar_status"]
    add_answer(rsps, path, RECORDINGS["errors"]["rate_limited"])

    with pytest.raises(ProviderRateLimited) as raised:
        invoke(client)

    assert raised.value.retry_after == 12.0


# A failure after a submit may have reached the provider: the job may exist, unseen.
PAID_WORK = ("submit_face_avatar",)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("answer", ["malformed_json", "wrong_shape"])
def test_an_unreadable_success_is_worth_a_retry_unless_it_started_paid_work(
    rsps, client, call, answer
):
    path, invoke = CALLS[call]
    add_answer(rsps, path, RECORDINGS["errors"][answer])

    expected = ProviderOutcomeUnknown if call in PAID_WORK else ProviderUnavailable
    with pytest.raises(expected) as raised:
        invoke(client)

    assert raised.value.status_code == 200


@pytest.mark.parametrize("call", CALLS)
@transport_failures
def test_timeouts_and_dropped_connections_are_worth_a_retry_unless_paid_work_may_have_started(
    rsps, client, call, failure
):
    path, invoke = CALLS[call]
    rsps.add("POST", BASE_URL + path, body=failure)

    expected = expected_failure(failure, paid_work=call in PAID_WORK)
    with pytest.raises(expected) as raised:
        invoke(client)

    assert raised.value.status_code is None
    assert raised.value.__cause__ is failure


# --- the token stays secret ----------------------------------------------------------------

LEAKY_ANSWERS = {
    "401 echoing the token": {
        "status": 401,
        "headers": {"Content-Type": "application/json"},
        "json": {"detail": f"Invalid token: Bearer {TOKEN}"},
    },
    "422 echoing the token": {
        "status": 422,
        "headers": {"Content-Type": "application/json"},
        "json": {"detail": [{"loc": ["header", "authorization"], "msg": TOKEN, "type": "x"}]},
    },
    "502 echoing the token": {
        "status": 502,
        "headers": {"Content-Type": "text/plain"},
        "text": f"bad gateway (Authorization: Bearer {TOKEN})",
    },
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize(
    "answer",
    [
        *LEAKY_ANSWERS,
        *RECORDINGS["errors"],
        requests.exceptions.ReadTimeout("Read timed out. (read timeout=20.0)"),
    ],
    ids=str,
)
def test_the_token_never_appears_in_errors_or_logs(rsps, client, caplog, call, answer):
    path, invoke = CALLS[call]
    if isinstance(answer, Exception):
        rsps.add("POST", BASE_URL + path, body=answer)
    else:
        add_answer(rsps, path, LEAKY_ANSWERS.get(answer) or RECORDINGS["errors"][answer])
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ProviderError) as raised:
        invoke(client)

    error = raised.value
    assert TOKEN not in str(error)
    assert TOKEN not in repr(error)
    assert TOKEN not in (error.provider_message or "")
    assert TOKEN not in "".join(traceback.format_exception(error))
    assert TOKEN not in caplog.text


# --- poll advice -------------------------------------------------------------------------


def test_face_avatars_are_polled_on_the_configured_schedule():
    client = QolabaClient(BASE_URL, TOKEN, APP_ID, face_first_poll_seconds=15, face_poll_seconds=4)

    assert client.face_poll_advice(0).wait_seconds == 15
    assert client.face_poll_advice(1).wait_seconds == 4
    assert client.face_poll_advice(30).wait_seconds == 4


# --- configuration -----------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # a local stack may be up
    parameters.clear_caches()
    with mock_aws():
        yield
    parameters.clear_caches()


def test_from_settings_reads_the_token_from_secrets_manager_once(aws, rsps):
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name="avatar/qolaba-token", SecretString=TOKEN)["ARN"]
    reads: list[str] = []
    secrets.meta.events.register(
        "provide-client-params.secrets-manager.GetSecretValue",
        lambda params, **_: reads.append(params["SecretId"]),
    )
    DEFAULT_PROVIDERS["secrets"] = parameters.SecretsProvider(boto3_client=secrets)
    settings = Settings(
        qolaba_base_url=BASE_URL,
        qolaba_api_key_parameter=arn,
        qolaba_app_id=APP_ID,
        face_first_poll_seconds=12,
    )

    client = QolabaClient.from_settings(settings)
    assert reads == []
    replay(rsps, "submit")
    replay(rsps, "pending")
    client.submit_face_avatar(FACE_REQUEST)
    client.face_avatar_status(TASK_ID, REF_ID)

    assert reads == [arn]
    for call in rsps.calls:
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert client.face_poll_advice(0).wait_seconds == 12


@pytest.mark.parametrize(
    ("missing", "settings"),
    [
        ("qolaba_base_url", Settings(qolaba_api_key_parameter="/q/token", qolaba_app_id=APP_ID)),
        ("qolaba_api_key_parameter", Settings(qolaba_base_url=BASE_URL, qolaba_app_id=APP_ID)),
        ("app_id", Settings(qolaba_base_url=BASE_URL, qolaba_api_key_parameter="/q/token")),
    ],
)
def test_from_settings_refuses_incomplete_configuration(missing, settings):
    with pytest.raises(ValueError, match=missing):
        QolabaClient.from_settings(settings)


def test_a_submit_that_never_left_is_worth_a_retry(rsps, client):
    import urllib3

    refused = requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(
            None, BASE_URL, reason=urllib3.exceptions.NewConnectionError(None, "refused")
        )
    )
    for call in PAID_WORK:
        path, invoke = CALLS[call]
        rsps.add("POST", BASE_URL + path, body=refused)
        with pytest.raises(ProviderUnavailable):
            invoke(client)
