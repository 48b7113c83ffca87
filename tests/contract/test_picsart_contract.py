"""Contract of the Picsart AI Avatars adapter, replayed from recorded exchanges.

Each test registers a recorded answer with ``responses``, makes one adapter call and checks
both sides of the wire: the exact request sent (method, URL, key header, JSON body,
timeouts) and what the adapter made of the answer (a JobStatus or a typed error).
The secret getter is checked against moto's SSM and Secrets Manager.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import responses
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from moto import mock_aws

from avatar_core.errors import (
    RETRYABLE_PROVIDER_ERRORS,
    ProviderAuthFailed,
    ProviderError,
    ProviderOutcomeUnknown,
    ProviderOutOfCredits,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from avatar_core.providers.base import JobState, JobStatus
from avatar_core.providers.picsart import PicsartClient, StyleRequest
from avatar_core.providers.transport import parse_wait_header, secret_from_parameter
from avatar_core.settings import Settings
from tests.support.transport import expected_failure, transport_failures

RECORDINGS = json.loads((Path(__file__).parent / "recordings" / "picsart.json").read_text())
EXCHANGES: dict[str, Any] = RECORDINGS["exchanges"]
BASE_URL: str = RECORDINGS["base_url"]
API_KEY = "psk_live_6f1c2a9e4b7d8c3f0a5e1b2d9c8f7a6e"
MODEL_ID = "aae674a1-ae60-4c2f-8d3b-9e1f5a7c2b64"
INFERENCE_ID = "1e7113fa-ff37-4871-96b5-79470da5008a"
INSTANT_ID = "7b2f0c9e-4d1a-4e6b-9c3d-2a5f8e1b0c47"
INSTANT_BODY: dict[str, Any] = EXCHANGES["create_instant"]["request"]["json"]
SELFIES: list[str] = EXCHANGES["create_model"]["request"]["json"]["images"]
STYLE_REQUESTS = [
    StyleRequest(style="realistic", count=4, prompt="portrait in a sunlit library, soft rim light"),
    StyleRequest(style="realistic", count=2),
]

CALLS: dict[str, tuple[str, str, Callable[[PicsartClient], object]]] = {
    "submit_training": (
        "POST",
        "/avatars/models",
        lambda client: client.submit_training(image_urls=SELFIES, subject="woman"),
    ),
    "training_status": (
        "GET",
        f"/avatars/models/{MODEL_ID}",
        lambda client: client.training_status(MODEL_ID),
    ),
    "submit_generation": (
        "POST",
        f"/avatars/models/{MODEL_ID}/inferences",
        lambda client: client.submit_generation(MODEL_ID, STYLE_REQUESTS),
    ),
    "generation_status": (
        "GET",
        f"/avatars/models/{MODEL_ID}/inferences/{INFERENCE_ID}",
        lambda client: client.generation_status(MODEL_ID, INFERENCE_ID),
    ),
    "submit_instant": (
        "POST",
        "/avatars/instant",
        lambda client: client.submit_instant(
            image_url=INSTANT_BODY["image_url"],
            subject=INSTANT_BODY["type"],
            count=INSTANT_BODY["count"],
            prompt=INSTANT_BODY["prompt"],
        ),
    ),
    "instant_status": (
        "GET",
        f"/avatars/instant/{INSTANT_ID}",
        lambda client: client.instant_status(INSTANT_ID),
    ),
}
STATUS_CALLS = {
    "/avatars/models/": "training_status",
    "/inferences/": "generation_status",
    "/avatars/instant/": "instant_status",
}


def status_call(path: str) -> str:
    for marker, call in reversed(STATUS_CALLS.items()):
        if marker in path:
            return call
    raise AssertionError(path)


STATUS_ANSWERS = [name for name, ex in EXCHANGES.items() if ex["request"]["method"] == "GET"]
SUBMIT_ANSWERS = {
    "create_model": "submit_training",
    "create_model_success_word": "submit_training",
    "create_inference": "submit_generation",
    "create_instant": "submit_instant",
}


@pytest.mark.parametrize("recording", STATUS_ANSWERS)
def test_every_recorded_status_answer_is_understood(rsps, client, recording):
    recorded = replay(rsps, recording)
    expect = EXCHANGES[recording]["expect"]
    body = EXCHANGES[recording]["response"]["json"]
    _, _, invoke = CALLS[status_call(recorded["path"])]

    status = invoke(client)

    assert_sent(rsps, recorded)
    assert status.state.value == expect["state"]
    assert status.provider_status == body["status"]
    assert status.known_status is expect.get("known", True)
    if "progress" in expect:
        assert status.progress == expect["progress"]
    assert len(status.result_urls) == expect.get("urls", 0)
    if "error" in expect:
        assert status.error == expect["error"]
    else:
        assert status.error is None
    if not status.known_status and status.state is JobState.RUNNING:
        assert body["status"] in (status.note or "")


@pytest.mark.parametrize("recording", SUBMIT_ANSWERS)
def test_every_recorded_submit_answer_gives_the_job_id(rsps, client, recording):
    recorded = replay(rsps, recording)
    _, _, invoke = CALLS[SUBMIT_ANSWERS[recording]]

    job = invoke(client)

    if "json" in recorded:
        assert_sent(rsps, recorded)
    assert job.job_id == EXCHANGES[recording]["expect"]["job_id"]


def test_no_status_word_is_recorded_that_the_pages_do_not_document_unless_marked_a_variant():
    documented = {"ACCEPTED", "IN_PROGRESS", "DONE", "FAILED", "IMAGE_NOT_VALID"}
    for name, exchange in EXCHANGES.items():
        word = exchange["response"]["json"].get("status")
        if exchange["request"]["method"] == "GET" and word not in documented:
            assert exchange["kind"].startswith("variant"), name
            assert exchange["expect"].get("known") is False, name


def add_answer(rsps: responses.RequestsMock, method: str, path: str, answer: dict) -> None:
    headers = {k: v for k, v in answer.get("headers", {}).items() if k.lower() != "content-type"}
    content_type = answer.get("headers", {}).get("Content-Type", "application/json")
    body = json.dumps(answer["json"]) if "json" in answer else answer["text"]
    rsps.add(
        method,
        BASE_URL + path,
        body=body,
        status=answer["status"],
        headers=headers,
        content_type=content_type,
    )


def replay(rsps: responses.RequestsMock, name: str) -> dict:
    exchange = EXCHANGES[name]
    request = exchange["request"]
    add_answer(rsps, request["method"], request["path"], exchange["response"])
    return request


def assert_sent(rsps: responses.RequestsMock, recorded: dict, *, key: str = API_KEY) -> None:
    assert len(rsps.calls) == 1
    sent = rsps.calls[0].request
    assert sent.method == recorded["method"]
    assert sent.url == BASE_URL + recorded["path"]
    assert sent.headers["X-Picsart-API-Key"] == key
    assert sent.headers["Accept"] == "application/json"
    if "json" in recorded:
        assert sent.headers["Content-Type"] == "application/json"
        assert json.loads(sent.body) == recorded["json"]
    elif recorded["method"] == "GET":
        assert sent.body is None
    assert sent.req_kwargs["timeout"] == (5.0, 20.0)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def client() -> PicsartClient:
    return PicsartClient(BASE_URL, API_KEY, connect_timeout_seconds=5.0, read_timeout_seconds=20.0)


# --- training ----------------------------------------------------------------------------


def test_submit_training_sends_the_selfie_urls_and_subject_and_returns_the_model_id(rsps, client):
    recorded = replay(rsps, "create_model")

    job = client.submit_training(image_urls=SELFIES, subject="woman")

    assert_sent(rsps, recorded)
    assert job.job_id == MODEL_ID
    assert job.provider_status == "ACCEPTED"


def test_failed_training_keeps_the_providers_message(rsps, client):
    replay(rsps, "model_failed")

    status = client.training_status(MODEL_ID)

    assert status.state is JobState.FAILED
    assert status.provider_status == "FAILED"
    assert status.error == (
        "the provider failed the training (FAILED): Training failed: the model did not converge"
    )


def test_unusable_selfies_fail_the_training_with_a_message_a_person_can_act_on(rsps, client):
    replay(rsps, "model_image_not_valid")

    status = client.training_status(MODEL_ID)

    assert status.state is JobState.FAILED
    assert status.provider_status == "IMAGE_NOT_VALID"
    assert status.error == (
        "the provider could not use one or more selfies (IMAGE_NOT_VALID): "
        "No face was detected on 2 of 6 images"
    )


# --- avatars -----------------------------------------------------------------------------


def test_submit_generation_sends_one_entry_per_style_request_and_omits_missing_prompts(
    rsps, client
):
    recorded = replay(rsps, "create_inference")

    job = client.submit_generation(MODEL_ID, STYLE_REQUESTS)

    assert_sent(rsps, recorded)
    assert "prompt" not in json.loads(rsps.calls[0].request.body)["requests"][1]
    assert job.job_id == INFERENCE_ID
    assert job.provider_status == "success"


def test_generation_in_progress_reports_progress(rsps, client):
    recorded = replay(rsps, "inference_in_progress")

    status = client.generation_status(MODEL_ID, INFERENCE_ID)

    assert_sent(rsps, recorded)
    assert status.state is JobState.RUNNING
    assert status.progress == 37
    assert status.result_urls == []


def test_finished_generation_returns_the_result_urls_in_order(rsps, client):
    replay(rsps, "inference_done")

    status = client.generation_status(MODEL_ID, INFERENCE_ID)

    assert status.state is JobState.SUCCEEDED
    assert status.provider_status == "DONE"
    assert status.result_urls == [
        item["url"] for item in EXCHANGES["inference_done"]["response"]["json"]["data"]
    ]


def test_a_finished_generation_without_images_is_a_failure(rsps, client):
    replay(rsps, "inference_done_without_data")

    status = client.generation_status(MODEL_ID, INFERENCE_ID)

    assert status.state is JobState.FAILED
    assert status.provider_status == "DONE"
    assert "returned no images" in status.error
    assert status.result_urls == []


def test_failed_generation_keeps_the_providers_message(rsps, client):
    replay(rsps, "inference_failed")

    status = client.generation_status(MODEL_ID, INFERENCE_ID)

    assert status.state is JobState.FAILED
    assert status.error == (
        "the provider failed the avatar generation (FAILED): "
        "Inference failed: the prompt was rejected by the safety filter"
    )


def test_ids_are_quoted_into_the_path(rsps, client):
    rsps.add("GET", f"{BASE_URL}/avatars/models/..%2Fadmin%3Fx%3D1", json={"status": "DONE"})

    client.training_status("../admin?x=1")

    assert rsps.calls[0].request.url == f"{BASE_URL}/avatars/models/..%2Fadmin%3Fx%3D1"


# --- errors ------------------------------------------------------------------------------

ERROR_CASES = [
    ("unauthorized", ProviderAuthFailed, 401, "Unauthorized — Invalid or missing API key"),
    (
        "forbidden",
        ProviderAuthFailed,
        403,
        "Forbidden — This API key has no access to AI Avatars; contact sales",
    ),
    ("out_of_credits", ProviderOutOfCredits, 402, "Payment Required"),
    (
        "quota_exhausted",
        ProviderQuotaExhausted,
        429,
        "Rate limit quota violation. Quota limit exceeded. Identifier : _default "
        "(policies.ratelimit.QuotaViolation)",
    ),
    (
        "bad_request",
        ProviderRejected,
        400,
        "Bad Request — type: must be one of man, woman, couple, dog, cat",
    ),
    ("not_found", ProviderRejected, 404, "Model not found"),
    (
        "rate_limited",
        ProviderRateLimited,
        429,
        "Too Many Requests — Rate limit of 500 requests per minute exceeded",
    ),
    (
        "server_error",
        ProviderUnavailable,
        500,
        "Internal Server Error — Unexpected error, please retry",
    ),
    (
        "gateway_unavailable",
        ProviderUnavailable,
        503,
        "<html> <head><title>503 Service Temporarily Unavailable</title></head> <body> "
        "<center><h1>503 Service Temporarily Unavailable</h1></center> </body> </html>",
    ),
]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize(("answer", "error_type", "status_code", "provider_message"), ERROR_CASES)
def test_error_answers_become_typed_errors_that_keep_the_providers_words(
    rsps, client, call, answer, error_type, status_code, provider_message
):
    method, path, invoke = CALLS[call]
    recorded = RECORDINGS["errors"][answer]
    add_answer(rsps, method, path, recorded)

    with pytest.raises(ProviderError) as raised:
        invoke(client)

    error = raised.value
    assert type(error) is error_type
    assert error.provider == "picsart"
    assert error.status_code == status_code
    assert error.provider_message == provider_message
    assert provider_message in str(error)
    request_id = recorded["headers"].get("x-request-id")
    if request_id:
        assert request_id in str(error)
    retryable = error_type in (ProviderRateLimited, ProviderUnavailable)
    assert (type(error).__name__ in RETRYABLE_PROVIDER_ERRORS) is retryable


def test_rate_limit_carries_the_retry_after_seconds(rsps, client):
    method, path, invoke = CALLS["training_status"]
    add_answer(rsps, method, path, RECORDINGS["errors"]["rate_limited"])

    with pytest.raises(ProviderRateLimited) as raised:
        invoke(client)

    assert raised.value.retry_after == 30.0


def test_rate_limit_understands_a_retry_after_date(rsps, client):
    method, path, invoke = CALLS["training_status"]
    answer = dict(RECORDINGS["errors"]["rate_limited"])
    later = datetime.now(UTC) + timedelta(seconds=90)
    headers = {k: v for k, v in answer["headers"].items() if k != "X-Picsart-RateLimit-Reset-Time"}
    answer["headers"] = {**headers, "Retry-After": format_datetime(later, usegmt=True)}
    add_answer(rsps, method, path, answer)

    with pytest.raises(ProviderRateLimited) as raised:
        invoke(client)

    assert 80 <= raised.value.retry_after <= 90


def test_rate_limit_without_retry_after_leaves_the_backoff_to_the_caller(rsps, client):
    method, path, invoke = CALLS["training_status"]
    answer = dict(RECORDINGS["errors"]["rate_limited"])
    answer["headers"] = {"Content-Type": "application/json"}
    add_answer(rsps, method, path, answer)

    with pytest.raises(ProviderRateLimited) as raised:
        invoke(client)

    assert raised.value.retry_after is None


# A failure after a submit may have reached the provider: the job may exist, unseen.
PAID_WORK = ("submit_training", "submit_generation", "submit_instant")


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("answer", ["malformed_json", "wrong_shape"])
def test_an_unreadable_success_is_worth_a_retry_unless_it_started_paid_work(
    rsps, client, call, answer
):
    method, path, invoke = CALLS[call]
    add_answer(rsps, method, path, RECORDINGS["errors"][answer])

    expected = ProviderOutcomeUnknown if call in PAID_WORK else ProviderUnavailable
    with pytest.raises(expected) as raised:
        invoke(client)

    assert raised.value.status_code == 200


@pytest.mark.parametrize("call", CALLS)
@transport_failures
def test_timeouts_and_dropped_connections_are_worth_a_retry_unless_paid_work_may_have_started(
    rsps, client, call, failure
):
    method, path, invoke = CALLS[call]
    rsps.add(method, BASE_URL + path, body=failure)

    expected = expected_failure(failure, paid_work=call in PAID_WORK)
    with pytest.raises(expected) as raised:
        invoke(client)

    assert raised.value.status_code is None
    assert raised.value.__cause__ is failure


def test_redirects_are_not_followed_so_the_key_never_reaches_another_host(rsps, client):
    method, path, invoke = CALLS["training_status"]
    rsps.add(
        method,
        BASE_URL + path,
        status=302,
        headers={"Location": "https://collector.example.net/steal"},
    )

    with pytest.raises(ProviderUnavailable) as raised:
        invoke(client)

    assert raised.value.status_code == 302
    assert len(rsps.calls) == 1


# --- the key stays secret ------------------------------------------------------------------

LEAKY_ANSWERS = {
    "401 echoing the key": {
        "status": 401,
        "headers": {"Content-Type": "application/json"},
        "json": {"code": 401, "message": f"Invalid API key {API_KEY}", "detail": API_KEY},
    },
    "500 page echoing the key": {
        "status": 500,
        "headers": {"Content-Type": "text/plain"},
        "text": f"upstream failed for X-Picsart-API-Key: {API_KEY}",
    },
    "malformed success echoing the key": {
        "status": 200,
        "headers": {"Content-Type": "application/json"},
        "text": f'{{"debug": "{API_KEY}"',
    },
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize(
    "answer",
    [
        *LEAKY_ANSWERS,
        *RECORDINGS["errors"],
        requests.exceptions.ReadTimeout("Read timed out. (read timeout=20.0)"),
        requests.exceptions.ConnectionError("Connection refused"),
    ],
    ids=str,
)
def test_the_api_key_never_appears_in_errors_or_logs(rsps, client, caplog, call, answer):
    method, path, invoke = CALLS[call]
    if isinstance(answer, Exception):
        rsps.add(method, BASE_URL + path, body=answer)
    else:
        add_answer(rsps, method, path, LEAKY_ANSWERS.get(answer) or RECORDINGS["errors"][answer])
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ProviderError) as raised:
        invoke(client)

    error = raised.value
    assert API_KEY not in str(error)
    assert API_KEY not in repr(error)
    assert API_KEY not in (error.provider_message or "")
    assert API_KEY not in "".join(traceback.format_exception(error))
    assert API_KEY not in caplog.text


def test_an_empty_key_fails_before_calling_the_provider(rsps):
    client = PicsartClient(BASE_URL, lambda: "")

    with pytest.raises(ProviderAuthFailed):
        client.training_status(MODEL_ID)

    assert len(rsps.calls) == 0


# --- inputs are checked before anything is sent -------------------------------------------


@pytest.mark.parametrize(
    ("image_urls", "subject"),
    [
        (SELFIES[:4], "woman"),
        (SELFIES * 6, "woman"),
        (SELFIES, ""),
        ([*SELFIES[:5], "ftp://example.com/selfie.jpg"], "woman"),
        ([*SELFIES[:5], "selfie.jpg"], "woman"),
    ],
    ids=["too-few", "too-many", "no-subject", "not-http", "relative"],
)
def test_submit_training_rejects_bad_inputs_early(rsps, client, image_urls, subject):
    with pytest.raises(ValueError):
        client.submit_training(image_urls=image_urls, subject=subject)

    assert len(rsps.calls) == 0


@pytest.mark.parametrize(
    "invoke",
    [
        lambda client: client.training_status(""),
        lambda client: client.submit_generation(MODEL_ID, []),
        lambda client: client.submit_generation(" ", STYLE_REQUESTS),
        lambda client: client.generation_status(MODEL_ID, ""),
    ],
    ids=["empty-model-id", "no-style-requests", "blank-model-id", "empty-inference-id"],
)
def test_calls_reject_empty_ids_and_requests_early(rsps, client, invoke):
    with pytest.raises(ValueError):
        invoke(client)

    assert len(rsps.calls) == 0


@pytest.mark.parametrize("values", [{"style": "", "count": 1}, {"style": "realistic", "count": 0}])
def test_style_request_needs_a_style_and_a_positive_count(values):
    with pytest.raises(ValueError):
        StyleRequest(**values)


# --- poll advice -------------------------------------------------------------------------


def running(progress: float | None) -> JobStatus:
    return JobStatus(state=JobState.RUNNING, provider_status="IN_PROGRESS", progress=progress)


def test_training_is_first_checked_near_the_shortest_typical_training_then_every_two(client):
    # 20 minutes typical, sigma 0.35: its 2nd percentile, later than Picsart's 5 minutes
    assert client.training_poll_advice(0).wait_seconds == 595
    assert client.training_poll_advice(1).wait_seconds == 120
    assert client.training_poll_advice(7, running(40)).wait_seconds == 120


def test_a_nearly_finished_job_is_checked_at_the_near_interval(client):
    # with no time waited to estimate from: the accepted lag (half a training's interval,
    # 9 s for a generation)
    assert client.training_poll_advice(3, running(93.5)).wait_seconds == 60
    assert client.generation_poll_advice(3, running(90)).wait_seconds == 9
    finished = JobStatus(state=JobState.SUCCEEDED, provider_status="DONE", progress=100)
    assert client.generation_poll_advice(3, finished).wait_seconds == 10


def test_generation_is_first_checked_near_a_typical_minute_then_every_ten(client):
    # no progress reported: the first poll at the 21st percentile of 60 s (sigma 0.25)
    assert client.generation_poll_advice(0).wait_seconds == 49
    assert client.generation_poll_advice(1).wait_seconds == 10
    assert client.generation_poll_advice(12, running(None)).wait_seconds == 10
    # then 9 s past the earliest finish still plausible given it still runs: about every 10 s
    assert client.generation_poll_advice(1, running(None), waited_seconds=49).wait_seconds == 10
    assert client.generation_poll_advice(5, running(None), waited_seconds=90).wait_seconds == 10


def test_poll_advice_refuses_a_negative_count(client):
    with pytest.raises(ValueError):
        client.training_poll_advice(-1)


# --- the key comes from SSM or Secrets Manager ---------------------------------------------


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


def counted_ssm_reads() -> list[str]:
    """Install powertools' SSM provider on a client that records every GetParameter."""
    ssm = boto3.client("ssm")
    reads: list[str] = []
    ssm.meta.events.register(
        "provide-client-params.ssm.GetParameter", lambda params, **_: reads.append(params["Name"])
    )
    DEFAULT_PROVIDERS["ssm"] = parameters.SSMProvider(boto3_client=ssm)
    return reads


def test_secret_is_read_decrypted_from_ssm(aws):
    boto3.client("ssm").put_parameter(
        Name="/avatar/picsart/api-key", Value=f"{API_KEY}\n", Type="SecureString"
    )

    assert secret_from_parameter("/avatar/picsart/api-key", max_age=300) == API_KEY


def test_a_second_read_within_max_age_does_not_call_ssm(aws):
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/avatar/picsart/api-key", Value=API_KEY, Type="SecureString")
    reads = counted_ssm_reads()

    first = secret_from_parameter("/avatar/picsart/api-key", max_age=300)
    ssm.put_parameter(
        Name="/avatar/picsart/api-key",
        Value="psk_live_rotated",
        Type="SecureString",
        Overwrite=True,
    )
    second = secret_from_parameter("/avatar/picsart/api-key", max_age=300)

    assert first == second == API_KEY
    assert reads == ["/avatar/picsart/api-key"]


def test_a_secrets_manager_arn_is_read_from_secrets_manager(aws):
    arn = boto3.client("secretsmanager").create_secret(
        Name="avatar/picsart-api-key", SecretString=API_KEY
    )["ARN"]

    assert arn.startswith("arn:aws:secretsmanager:")
    assert secret_from_parameter(arn, max_age=300) == API_KEY


def test_a_missing_parameter_is_reported_by_name(aws):
    with pytest.raises(GetParameterError, match="/avatar/missing"):
        secret_from_parameter("/avatar/missing", max_age=300)


def test_an_empty_parameter_name_is_a_configuration_error():
    with pytest.raises(ValueError):
        secret_from_parameter("", max_age=300)


def test_from_settings_reads_the_key_on_the_first_call_and_then_from_the_cache(aws, rsps):
    boto3.client("ssm").put_parameter(
        Name="/avatar/picsart/api-key", Value=API_KEY, Type="SecureString"
    )
    reads = counted_ssm_reads()
    settings = Settings(
        picsart_api_key_parameter="/avatar/picsart/api-key",
        provider_connect_timeout_seconds=3.0,
        provider_read_timeout_seconds=12.0,
        training_first_poll_seconds=900,
    )

    client = PicsartClient.from_settings(settings)
    assert reads == []
    replay(rsps, "model_in_progress")
    replay(rsps, "model_done")
    client.training_status(MODEL_ID)
    client.training_status(MODEL_ID)

    assert reads == ["/avatar/picsart/api-key"]
    for call in rsps.calls:
        assert call.request.url.startswith(settings.picsart_base_url)
        assert call.request.headers["X-Picsart-API-Key"] == API_KEY
        assert call.request.req_kwargs["timeout"] == (3.0, 12.0)
    assert client.training_poll_advice(0).wait_seconds == 900


def test_from_settings_needs_the_parameter_name():
    with pytest.raises(ValueError, match="picsart_api_key_parameter"):
        PicsartClient.from_settings(Settings())


def test_a_training_is_polled_just_after_the_earliest_finish_its_progress_allows(client):
    # 25% after 5 minutes: about 20 minutes in all, 2nd percentile of the finish ~16 min
    assert client.training_poll_advice(1, running(25), waited_seconds=300).wait_seconds == 778
    # 50% after 10 minutes: ~1,060 s at the earliest, then the accepted 60 s (and a step
    # towards the median finish, still far)
    assert client.training_poll_advice(2, running(50), waited_seconds=600).wait_seconds == 515
    # 85% after 20 minutes: inside the plausible window, two minutes on
    assert client.training_poll_advice(3, running(85), waited_seconds=1200).wait_seconds == 120
    # 95%: it may be done already, so about every accepted lag
    assert client.training_poll_advice(4, running(95), waited_seconds=1300).wait_seconds == 65
    # no progress reported: what past trainings took decides, given it still runs at 900 s
    assert client.training_poll_advice(3, running(None), waited_seconds=900).wait_seconds == 177


def test_a_submit_that_never_left_is_worth_a_retry(rsps, client):
    import urllib3

    refused = requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(
            None, BASE_URL, reason=urllib3.exceptions.NewConnectionError(None, "refused")
        )
    )
    for call in PAID_WORK:
        method, path, invoke = CALLS[call]
        rsps.add(method, BASE_URL + path, body=refused)
        with pytest.raises(ProviderUnavailable):
            invoke(client)


# --- instant avatars and the quota fault ---------------------------------------------------


def test_submit_instant_sends_one_image_a_subject_a_count_and_the_prompt(rsps, client):
    recorded = replay(rsps, "create_instant")

    job = CALLS["submit_instant"][2](client)

    assert_sent(rsps, recorded)
    assert job.job_id == INSTANT_ID


def test_submit_instant_omits_a_missing_prompt(rsps, client):
    replay(rsps, "create_instant")

    client.submit_instant(image_url=INSTANT_BODY["image_url"], subject="man", count=1)

    assert json.loads(rsps.calls[0].request.body) == {
        "image_url": INSTANT_BODY["image_url"],
        "type": "man",
        "count": 1,
    }


def test_instant_avatars_are_polled_on_picsarts_schedule(client):
    assert client.instant_poll_advice(0).wait_seconds == 20
    assert client.instant_poll_advice(1).wait_seconds == 10
    assert client.instant_poll_advice(9, running(None)).wait_seconds == 10


def test_a_quota_fault_is_its_own_error_that_no_retry_is_spent_on(rsps, client):
    method, path, invoke = CALLS["instant_status"]
    add_answer(rsps, method, path, RECORDINGS["errors"]["quota_exhausted"])

    with pytest.raises(ProviderQuotaExhausted) as raised:
        invoke(client)

    assert isinstance(raised.value, ProviderRejected)
    assert "QuotaViolation" in str(raised.value)
    assert type(raised.value).__name__ not in RETRYABLE_PROVIDER_ERRORS


def test_an_unexpected_body_is_quoted_clipped_in_the_error(rsps, client):
    method, path, invoke = CALLS["instant_status"]
    rsps.add(method, BASE_URL + path, json={"state": "x" * 5000})

    with pytest.raises(ProviderUnavailable) as raised:
        invoke(client)

    assert 'it said: {"state":"xxx' in str(raised.value)
    assert len(str(raised.value)) < 600


# --- what the operator sees ----------------------------------------------------------------


def _counts() -> dict[str, float]:
    from avatar_core.observability import metrics

    return {
        name: sum(m["Value"]) if m["Unit"] == "Count" else len(m["Value"])
        for name, m in metrics.metric_set.items()
    }


def test_every_call_and_every_failed_call_is_counted_for_the_error_rate_alarm(rsps, client):
    url = f"{BASE_URL}/avatars/models/{MODEL_ID}"
    rsps.add("GET", url, status=503, json={"code": 503, "message": "busy"})
    rsps.add("GET", url, status=429, json={"code": 429, "message": "slow down"})
    rsps.add("GET", url, status=404, json={"code": 404, "message": "no such model"})
    rsps.add("GET", url, body=requests.ConnectionError("reset"))
    for _ in range(4):
        with pytest.raises(Exception):  # noqa: B017 - each answer's typed error is tested above
            client.training_status(MODEL_ID)
    replay(rsps, "model_failed")
    client.training_status(MODEL_ID)

    # a 404 is the provider answering, not failing; no answer, 429 and 5xx are failures;
    # every answer's latency is measured
    assert _counts() == {"PicsartCalls": 5, "PicsartErrors": 3, "PicsartLatency": 4}


# --- how long to wait: X-Picsart-RateLimit-Reset-Time, in every shape it may take -------------

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30.0),  # documented "how long to wait": delta-seconds, our reading
        ("12.5", 12.5),
        ("0", 0.0),
        (str(int(NOW + 45)), 45.0),  # a Unix epoch in seconds (assumed)
        (str(int((NOW + 45) * 1000)), 45.0),  # a Unix epoch in milliseconds (assumed)
        ("Thu, 01 Jan 2026 00:01:00 GMT", 60.0),  # an HTTP date, as Retry-After allows
        ("2026-01-01T00:00:20Z", 20.0),  # an ISO 8601 moment (assumed)
        ("2026-01-01T00:00:20+00:00", 20.0),
        (str(int(NOW - 100)), 0.0),  # a moment already past: ask now
    ],
)
def test_the_reset_time_header_is_read_in_every_shape(header: str, seconds: float) -> None:
    assert parse_wait_header(header, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "inf", "-"])
def test_a_reset_time_we_cannot_read_is_ignored(header: str | None) -> None:
    assert parse_wait_header(header, now=NOW) is None


def test_the_reset_time_wins_over_retry_after(rsps, client):
    method, path, invoke = CALLS["training_status"]
    answer = dict(RECORDINGS["errors"]["rate_limited"])
    answer["headers"] = {**answer["headers"], "X-Picsart-RateLimit-Reset-Time": "7"}
    add_answer(rsps, method, path, answer)

    with pytest.raises(ProviderRateLimited) as raised:
        invoke(client)

    assert raised.value.retry_after == 7.0


def test_a_503_with_retry_after_carries_the_wait_too(rsps, client):
    method, path, invoke = CALLS["training_status"]
    add_answer(
        rsps,
        method,
        path,
        {"status": 503, "headers": {"Retry-After": "11"}, "json": {"message": "busy"}},
    )

    with pytest.raises(ProviderUnavailable) as raised:
        invoke(client)

    assert raised.value.retry_after == 11.0


@pytest.mark.parametrize(
    ("recording", "sentence"),
    [
        (
            "out_of_credits",
            "the Picsart account is out of credits: nothing more can be generated until the "
            "operator tops it up",
        ),
        ("quota_exhausted", "the Picsart account has used up its request quota"),
    ],
)
def test_an_exhausted_account_says_the_operator_must_act(rsps, client, recording, sentence):
    method, path, invoke = CALLS["submit_generation"]
    add_answer(rsps, method, path, RECORDINGS["errors"][recording])

    with pytest.raises((ProviderOutOfCredits, ProviderQuotaExhausted)) as raised:
        invoke(client)

    assert str(raised.value).startswith(sentence)
