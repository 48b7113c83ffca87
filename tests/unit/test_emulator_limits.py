"""The emulator enforces each provider's requests-per-minute limit in emulated time, answers
429 the way that provider does, and reports what it saw (local/emulator/limits.py).

The clocks here are all but frozen (a time factor of 10^-9) and moved by hand, so window
boundaries are asserted exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from avatar_core.errors import ProviderQuotaExhausted, ProviderRateLimited, ProviderRejected
from avatar_core.providers.picsart import PicsartClient
from avatar_core.providers.qolaba import QolabaClient
from local.emulator.app import EmulatorServer, EmulatorState, create_app
from local.emulator.core import EmulatorConfig, ResultFiles, ScaledClock
from local.emulator.faults import ROUTES
from local.emulator.limits import ROUTE_PROVIDERS, SlidingWindow
from local.stack import emulator_limits_from_env

PICSART_KEY = "test-picsart-key"
QOLABA_TOKEN = "test-qolaba-token"


def frozen_clock() -> ScaledClock:
    return ScaledClock(1e-9)


# --- the window ------------------------------------------------------------------------------


def test_the_limit_admits_that_many_requests_in_60_seconds_and_refuses_the_next():
    clock = frozen_clock()
    window = SlidingWindow(clock, limit=3)

    admitted = [window.take() for _ in range(3)]
    clock.advance(20)
    refused = window.take()

    assert admitted == [None, None, None]
    assert refused is not None
    assert refused.limit == 3
    assert refused.wait_seconds == pytest.approx(40, abs=0.01), "until the oldest leaves"
    assert refused.header_value == "40"


def test_the_window_slides_a_slot_frees_60_seconds_after_each_admitted_request():
    clock = frozen_clock()
    window = SlidingWindow(clock, limit=2)
    window.take()
    clock.advance(30)
    window.take()

    clock.advance(29)
    still_full = window.take()
    clock.advance(1.5)  # 60.5 s after the first request: its slot is free, not the second's
    first_slot = window.take()
    second_try = window.take()

    assert still_full is not None and still_full.wait_seconds == pytest.approx(1, abs=0.01)
    assert first_slot is None
    assert second_try is not None and second_try.wait_seconds == pytest.approx(29.5, abs=0.01)


def test_a_refused_request_takes_no_slot_but_counts_as_a_request_and_toward_the_peak():
    clock = frozen_clock()
    window = SlidingWindow(clock, limit=1)

    outcomes = [window.take() for _ in range(4)]
    clock.advance(61)
    after_a_minute = window.take()

    assert [o is None for o in outcomes] == [True, False, False, False]
    assert after_a_minute is None, "refusals did not push the slot back"
    assert (window.requests, window.refused, window.peak) == (5, 3, 4)


def test_the_peak_is_the_most_requests_within_any_60_seconds_not_the_latest():
    clock = frozen_clock()
    window = SlidingWindow(clock, limit=0)
    for _ in range(5):
        window.take()
        clock.advance(10)  # five requests within 50 s
    clock.advance(120)
    window.take()

    assert window.peak == 5
    assert window.refused == 0, "0 is unlimited"


def test_a_wait_of_a_fraction_of_a_second_is_advertised_as_one_whole_second():
    clock = frozen_clock()
    window = SlidingWindow(clock, limit=1)
    window.take()
    clock.advance(59.8)

    refused = window.take()

    assert refused is not None and refused.header_value == "1"


def test_limits_are_whole_numbers_of_zero_or_more():
    with pytest.raises(ValueError):
        SlidingWindow(frozen_clock(), limit=-1)
    with pytest.raises(ValueError):
        SlidingWindow(frozen_clock(), limit=2.5)  # type: ignore[arg-type]


def test_every_provider_route_belongs_to_one_provider():
    assert set(ROUTE_PROVIDERS) == set(ROUTES)


# --- the emulator's answers ------------------------------------------------------------------


def emulator(picsart: int = 0, qolaba: int = 0) -> tuple[FlaskClient, ScaledClock]:
    clock = frozen_clock()
    config = EmulatorConfig(
        picsart_api_key=PICSART_KEY,
        qolaba_token=QOLABA_TOKEN,
        picsart_requests_per_minute=picsart,
        qolaba_requests_per_minute=qolaba,
    )
    app = create_app(EmulatorState(config, clock, ResultFiles(clock)))
    return app.test_client(), clock


def picsart_status(client: FlaskClient) -> Any:
    return client.get(
        f"/picsart/v1/avatars/models/{uuid.uuid4()}", headers={"X-Picsart-API-Key": PICSART_KEY}
    )


def qolaba_status(client: FlaskClient) -> Any:
    return client.post(
        "/qolaba/getImage",
        json={"id": str(uuid.uuid4())},
        headers={"Authorization": f"Bearer {QOLABA_TOKEN}"},
    )


def test_picsart_over_its_limit_answers_429_with_its_reset_time_header_and_error_shape():
    client, clock = emulator(picsart=2)
    answered = [picsart_status(client).status_code for _ in range(2)]
    clock.advance(15)

    limited = picsart_status(client)

    assert answered == [404, 404], "within the limit the request is served as usual"
    assert limited.status_code == 429
    assert limited.headers["X-Picsart-RateLimit-Reset-Time"] == "45"
    assert "Retry-After" not in limited.headers, "Picsart documents the reset-time header only"
    assert limited.json == {
        "code": 429,
        "message": "Too Many Requests",
        "detail": "Rate limit of 2 requests per minute exceeded",
    }
    assert "fault" not in limited.json, "a QuotaViolation fault means an exhausted account"


def test_a_caller_that_waits_the_advertised_reset_time_gets_in():
    client, clock = emulator(picsart=1)
    picsart_status(client)
    clock.advance(0.4)
    wait = int(picsart_status(client).headers["X-Picsart-RateLimit-Reset-Time"])

    clock.advance(wait)

    assert picsart_status(client).status_code == 404


def test_qolaba_over_its_limit_answers_429_with_retry_after_in_fastapi_shape():
    client, clock = emulator(qolaba=1)
    qolaba_status(client)
    clock.advance(50)

    limited = qolaba_status(client)

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "10"
    assert limited.json == {"detail": "Rate limit of 1 requests per minute exceeded"}


def test_each_provider_has_its_own_limit():
    client, _ = emulator(picsart=1, qolaba=0)
    picsart_status(client)

    assert picsart_status(client).status_code == 429
    assert [qolaba_status(client).status_code for _ in range(5)] == [404] * 5


def test_the_limit_answers_before_a_scripted_fault_which_stays_for_the_next_request():
    client, clock = emulator(picsart=1)
    client.post(
        "/_emulator/script",
        json={"fail_next": [{"route": "train_status", "status": 503}]},
    )
    first = picsart_status(client)  # takes the slot, and the scripted fault
    client.post(
        "/_emulator/script",
        json={"fail_next": [{"route": "train_status", "status": 503}]},
    )
    limited = picsart_status(client)
    clock.advance(61)
    scripted = picsart_status(client)

    assert [first.status_code, limited.status_code, scripted.status_code] == [503, 429, 503]


def test_admin_routes_unauthenticated_calls_and_result_downloads_are_not_counted():
    client, _ = emulator(picsart=1)
    for _ in range(3):
        client.get("/_emulator/stats")
        client.get("/results/no-such-token")
        client.get(f"/picsart/v1/avatars/models/{uuid.uuid4()}")  # no API key: 401

    assert picsart_status(client).status_code == 404
    stats = client.get("/_emulator/stats").json
    assert stats["provider_requests"] == {"picsart": 1, "qolaba": 0}


def test_stats_report_requests_per_route_429s_and_the_peak_per_provider():
    client, clock = emulator(picsart=2, qolaba=3)
    for _ in range(5):
        picsart_status(client)
    qolaba_status(client)
    clock.advance(120)
    picsart_status(client)

    stats = client.get("/_emulator/stats").json

    assert stats["requests_by_route"] == {"train_status": 6, "face_status": 1}
    assert stats["rate_limited"] == {"picsart": 3, "qolaba": 0}
    assert stats["peak_requests_per_minute"] == {"picsart": 5, "qolaba": 1}
    assert stats["provider_requests"] == {"picsart": 6, "qolaba": 1}
    assert stats["requests_per_minute_limit"] == {"picsart": 2, "qolaba": 3}
    assert stats["faults_injected"] == {}, "a rate limit is the provider's, not a script's"


def test_limits_change_at_runtime_and_reset_restores_the_configured_ones_with_empty_windows():
    client, _ = emulator(picsart=5)
    changed = client.post("/_emulator/limits", json={"picsart": 1, "qolaba": 2})
    picsart_status(client)
    limited = picsart_status(client)
    client.post("/_emulator/reset")

    after_reset = client.get("/_emulator/stats").json

    assert changed.status_code == 200 and changed.json == {"picsart": 1, "qolaba": 2}
    assert limited.status_code == 429
    assert client.get("/_emulator/limits").json == {"picsart": 5, "qolaba": 0}
    assert after_reset["rate_limited"] == {"picsart": 0, "qolaba": 0}
    assert after_reset["peak_requests_per_minute"] == {"picsart": 0, "qolaba": 0}
    assert after_reset["requests_by_route"] == {}
    assert [picsart_status(client).status_code for _ in range(5)] == [404] * 5


@pytest.mark.parametrize(
    "body",
    [None, {}, {"picsart": -1}, {"picsart": 1.5}, {"picsart": True}, {"openai": 3}, [1]],
)
def test_bad_limits_are_refused_and_change_nothing(body):
    client, _ = emulator(picsart=4)

    answer = client.post("/_emulator/limits", json=body)

    assert answer.status_code == 400
    assert "error" in answer.json
    assert client.get("/_emulator/limits").json == {"picsart": 4, "qolaba": 0}


# --- what our clients make of it -----------------------------------------------------------


@pytest.fixture()
def limited_server() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        time_factor=1e-9,
        picsart_api_key=PICSART_KEY,
        qolaba_token=QOLABA_TOKEN,
        picsart_requests_per_minute=1,
        qolaba_requests_per_minute=1,
    )
    server = EmulatorServer(config).start()
    yield server
    server.stop()


def test_our_picsart_client_reads_the_limit_as_busy_for_the_advertised_time_not_exhausted(
    limited_server,
):
    client = PicsartClient(limited_server.picsart_base_url, lambda: PICSART_KEY)
    unknown = str(uuid.uuid4())
    with pytest.raises(ProviderRejected):  # 404: served, and it took the minute's one slot
        client.training_status(unknown)
    limited_server.state.clock.advance(20)

    with pytest.raises(ProviderRateLimited) as raised:
        client.training_status(unknown)

    assert not isinstance(raised.value, ProviderQuotaExhausted)
    assert raised.value.retry_after == 40


def test_our_qolaba_client_reads_the_limit_as_busy_for_the_retry_after_time(limited_server):
    client = QolabaClient(limited_server.qolaba_base_url, lambda: QOLABA_TOKEN, "app")
    with pytest.raises(ProviderRejected):
        client.face_avatar_status(str(uuid.uuid4()))
    limited_server.state.clock.advance(45)

    with pytest.raises(ProviderRateLimited) as raised:
        client.face_avatar_status(str(uuid.uuid4()))

    assert raised.value.retry_after == 15


# --- make run ----------------------------------------------------------------------------


def test_make_run_reads_the_providers_limits_from_the_environment():
    assert emulator_limits_from_env(
        {"PICSART_REQUESTS_PER_MINUTE": "500", "QOLABA_REQUESTS_PER_MINUTE": " 60 "}
    ) == {"picsart_requests_per_minute": 500, "qolaba_requests_per_minute": 60}
    assert emulator_limits_from_env({"PICSART_REQUESTS_PER_MINUTE": ""}) == {}
    assert emulator_limits_from_env({}) == {}


@pytest.mark.parametrize("value", ["-5", "fast", "1.5"])
def test_a_limit_that_is_not_a_whole_number_is_refused_with_the_variable_named(value):
    with pytest.raises(ValueError, match="PICSART_REQUESTS_PER_MINUTE"):
        emulator_limits_from_env({"PICSART_REQUESTS_PER_MINUTE": value})
