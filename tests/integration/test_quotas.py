"""Quotas on the local stack, under real concurrent requests: each limit refuses at exactly
its limit (429 naming it, with Retry-After), GET /v1/me agrees, a retry with the same
Idempotency-Key counts once, and work the provider refused gives its units back."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from local import photos
from local.client import ApiClient, wait_until
from local.stack import LocalStack
from tests.integration.test_face_avatars import upload_reference
from tests.support.journeys import Emulator, model_with_selfies, wait_for_model

pytestmark = pytest.mark.integration


def at_once(count: int, call: Callable[[int], requests.Response]) -> list[requests.Response]:
    """``call(0)`` … ``call(count - 1)`` released together from a barrier, each on its own
    thread; their answers in that order."""
    barrier = threading.Barrier(count)

    def one(index: int) -> requests.Response:
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def limit(client: ApiClient, name: str) -> dict[str, Any]:
    me = client.call("GET", "/me")
    assert me.status_code == 200, me.text
    return next(item for item in me.json()["limits"] if item["name"] == name)


@pytest.fixture()
def face_owner(stack: LocalStack) -> tuple[ApiClient, str]:
    client = ApiClient(stack.api_url, stack.token(f"quota-{uuid.uuid4().hex[:10]}"))
    image = upload_reference(client, photos.selfie_jpeg(91, size=(900, 1200)))
    assert image["status"] == "accepted"
    return client, str(image["image_id"])


def test_24_concurrent_face_batches_against_a_limit_of_20_start_exactly_20(
    face_owner: tuple[ApiClient, str],
) -> None:
    client, image_id = face_owner
    keys = [f"batch-{uuid.uuid4().hex}" for _ in range(24)]

    def post(index: int) -> requests.Response:
        return client.call(
            "POST",
            "/face-avatars",
            json={"image_id": image_id, "prompt": "astronaut", "batch": 1},
            headers={"Idempotency-Key": keys[index]},
        )

    answers = at_once(24, post)
    # As a client does: an answer that is not one (the local runtime's 15 s timeout on this
    # small machine, or "still being processed") is asked again with the same key, which
    # never counts twice; every request ends as exactly one of 202 or 429.
    for index, answer in enumerate(answers):
        tries = 0
        while answer.status_code >= 500 or answer.status_code == 409:
            assert tries < 20, answer.text
            time.sleep(1)
            answer, tries = post(index), tries + 1
        answers[index] = answer
    assert Counter(a.status_code for a in answers) == {202: 20, 429: 4}
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["message"].startswith(
        "daily face-avatar batch limit reached: 20 of 20 batches in the last 24 hours"
    )
    assert 0 < int(refused.headers["Retry-After"]) <= 24 * 3600 + 1
    batches = limit(client, "face_batches_per_day")
    assert (batches["limit"], batches["used"], batches["remaining"]) == (20, 20, 0)
    assert batches["frees_at"] is not None and batches["window_hours"] == 24
    assert limit(client, "face_images_per_day")["used"] == 20


def test_a_retry_with_the_same_idempotency_key_counts_once(
    face_owner: tuple[ApiClient, str],
) -> None:
    client, image_id = face_owner
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    body = {"image_id": image_id, "prompt": "astronaut", "batch": 2}
    answers = at_once(6, lambda _: client.call("POST", "/face-avatars", json=body, headers=key))
    assert {a.status_code for a in answers} <= {202, 409}  # 409: the first still running
    assert len({a.json()["job_id"] for a in answers if a.status_code == 202}) == 1
    assert limit(client, "face_batches_per_day")["used"] == 1
    assert limit(client, "face_images_per_day")["used"] == 2


def test_a_batch_the_provider_refused_gives_its_units_back(
    face_owner: tuple[ApiClient, str], emulator: Emulator
) -> None:
    client, image_id = face_owner
    emulator.script(fail_next=[{"route": "face_submit", "status": 400, "message": "bad image"}])
    started = client.call(
        "POST", "/face-avatars", json={"image_id": image_id, "prompt": "astronaut", "batch": 4}
    )
    assert started.status_code == 202, started.text
    job = wait_until(
        lambda: client.call("GET", f"/face-avatars/{started.json()['job_id']}").json(),
        lambda job: job["status"] in ("succeeded", "failed"),
        timeout=60,
    )
    assert job["status"] == "failed"
    assert limit(client, "face_images_per_day")["used"] == 0
    assert limit(client, "face_batches_per_day")["used"] == 0


def test_three_trainings_at_once_against_a_limit_of_two_start_two_and_the_third_once_one_ends(
    client: ApiClient,
) -> None:
    models = [model_with_selfies(client, 5, seed=10 * i) for i in range(3)]
    started = at_once(3, lambda i: client.call("POST", f"/models/{models[i]}/training"))
    answers = dict(zip(models, started, strict=True))
    codes = Counter(a.status_code for a in answers.values())
    assert codes == {202: 2, 429: 1}, {m: a.text for m, a in answers.items()}
    (waiting,) = [m for m, a in answers.items() if a.status_code == 429]
    assert (
        answers[waiting]
        .json()["message"]
        .startswith("concurrent training limit reached: 2 of 2 trainings are running")
    )
    assert limit(client, "concurrent_trainings")["used"] == 2
    for model_id, answer in answers.items():
        if answer.status_code == 202:
            assert wait_for_model(client, model_id)["status"] == "ready"
    assert limit(client, "concurrent_trainings")["used"] == 0
    assert client.call("POST", f"/models/{waiting}/training").status_code == 202
    trainings = limit(client, "trainings_per_day")
    assert (trainings["used"], trainings["remaining"]) == (3, 2)
    holdings = client.call("GET", "/me").json()["holdings"]
    assert holdings["models"] == 3
