"""The provider emulator speaks both providers' contracts, on loopback, in emulated time.

Two emulators run for this module: ``emulator`` with a high time factor (a 20-minute training
takes two real seconds) and ``frozen`` with a factor of 1 whose clock the tests move by hand,
so phase boundaries are asserted exactly. A tiny HTTP server plays S3, serving generated
selfies behind presigned-looking URLs.
"""

from __future__ import annotations

import io
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
import requests
from PIL import Image, ImageChops, ImageDraw

from local.emulator.app import EmulatorServer, EmulatorState, create_app
from local.emulator.core import EmulatorConfig, ResultFiles, ScaledClock

PICSART_KEY = "test-picsart-key"
QOLABA_TOKEN = "test-qolaba-token"
SIGNATURE = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=1800&X-Amz-Signature=abc123"
TIMEOUT = 10


# --- a loopback "S3" serving generated images ---------------------------------------------


@dataclass
class SelfieHost:
    base_url: str
    files: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)

    def put(self, path: str, body: bytes, content_type: str = "image/jpeg", status: int = 200):
        self.files[path] = (status, content_type, body)
        return f"{self.base_url}{quote(path)}{SIGNATURE}"

    def model_selfies(self, count: int = 5, owner: str | None = None) -> tuple[str, list[str]]:
        """Upload ``count`` selfies under one of our model prefixes; returns (prefix, urls)."""
        prefix = f"/bucket/normalised/{owner or uuid.uuid4()}/{uuid.uuid4()}"
        urls = [self.put(f"{prefix}/{index}.jpg", selfie_jpeg(index)) for index in range(count)]
        return prefix, urls


def selfie_jpeg(seed: int, size: tuple[int, int] = (600, 600)) -> bytes:
    width, height = size
    image = Image.new("RGB", size, (40 + seed * 37 % 180, 90, 150))
    draw = ImageDraw.Draw(image)
    draw.ellipse([width * 0.3, height * 0.2, width * 0.7, height * 0.75], fill=(224, 172, 140))
    for eye_x in (0.42, 0.58):
        draw.ellipse(
            [width * (eye_x - 0.03), height * 0.4, width * (eye_x + 0.03), height * 0.45],
            fill=(30, 30, 30),
        )
    draw.arc([width * 0.42, height * 0.5, width * 0.58, height * 0.62], 0, 180, fill=(150, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def selfies() -> Iterator[SelfieHost]:
    files: dict[str, tuple[int, str, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content_type, body = files.get(
                unquote(urlsplit(self.path).path),
                (403, "application/xml", b"<Error>AccessDenied</Error>"),
            )
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SelfieHost(f"http://127.0.0.1:{server.server_port}", files)
    server.shutdown()
    thread.join(timeout=5)


def _config(time_factor: float) -> EmulatorConfig:
    return EmulatorConfig(
        time_factor=time_factor, picsart_api_key=PICSART_KEY, qolaba_token=QOLABA_TOKEN
    )


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(_config(600)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def frozen() -> Iterator[EmulatorServer]:
    server = EmulatorServer(_config(1)).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean_script(emulator: EmulatorServer, frozen: EmulatorServer) -> None:
    for server in (emulator, frozen):
        requests.post(f"{server.base_url}/_emulator/reset", timeout=TIMEOUT).raise_for_status()


# --- helpers ---------------------------------------------------------------------------------


def picsart(server: EmulatorServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"X-Picsart-API-Key": PICSART_KEY, **kwargs.pop("headers", {})}
    return requests.request(
        method, f"{server.picsart_base_url}{path}", headers=headers, timeout=TIMEOUT, **kwargs
    )


def qolaba(server: EmulatorServer, path: str, body: Any, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {QOLABA_TOKEN}", **kwargs.pop("headers", {})}
    return requests.post(
        f"{server.qolaba_base_url}{path}", json=body, headers=headers, timeout=TIMEOUT, **kwargs
    )


def admin(server: EmulatorServer, path: str, body: Any = None) -> requests.Response:
    return requests.post(f"{server.base_url}/_emulator/{path}", json=body, timeout=TIMEOUT)


def stats(server: EmulatorServer) -> dict[str, Any]:
    return requests.get(f"{server.base_url}/_emulator/stats", timeout=TIMEOUT).json()


def advance(server: EmulatorServer, seconds: float) -> None:
    admin(server, "advance-clock", {"seconds": seconds}).raise_for_status()


def poll_until(fetch: Callable[[], dict[str, Any]], done: set[str], limit: float = 15) -> list:
    """Poll every 20 ms until the status is in ``done``; returns every answer seen."""
    seen = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        answer = fetch()
        seen.append(answer)
        if answer["status"] in done:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"still {seen[-1]} after {limit}s")


def submit_training(server: EmulatorServer, urls: list[str], subject: str = "woman") -> str:
    response = picsart(server, "POST", "/avatars/models", json={"images": urls, "type": subject})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "ACCEPTED"
    return response.json()["model_id"]


def training_status(server: EmulatorServer, model_id: str) -> dict[str, Any]:
    response = picsart(server, "GET", f"/avatars/models/{model_id}")
    assert response.status_code == 200, response.text
    return response.json()


def trained_model(server: EmulatorServer, selfies: SelfieHost) -> str:
    """A DONE model on the frozen emulator, without waiting."""
    model_id = submit_training(server, selfies.model_selfies()[1])
    advance(server, server.config.training_seconds)
    assert training_status(server, model_id)["status"] == "DONE"
    return model_id


def download(url: str) -> tuple[requests.Response, Image.Image]:
    response = requests.get(url, timeout=TIMEOUT)
    assert response.status_code == 200, url
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return response, image


def is_stamp_red(pixel: tuple[int, ...]) -> bool:
    red, green, blue = pixel[:3]
    return red > 150 and green < 70 and blue < 70


def assert_stamped(image: Image.Image) -> None:
    """The EMULATED band: red across the bottom, right side (the text sits on the left)."""
    width, height = image.size
    assert is_stamp_red(image.getpixel((width - 3, height - 3)))
    assert is_stamp_red(image.getpixel((width - 3, height - 8)))
    assert not is_stamp_red(image.getpixel((width // 2, height // 3)))


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


FACE_BODY = {
    "app_id": "face-avatar",
    "prompt": None,
    "negative_prompt": "blurry",
    "gender": "female",
    "batch": 2,
    "width": 640,
    "height": 768,
    "num_inference_steps": 30,
    "guidance_scale": 7.5,
    "remove_background": False,
    "bg_color": "#2050A0",
    "celery": True,
}


# --- Picsart: authentication and training ---------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-Picsart-API-Key": "wrong"}])
def test_picsart_refuses_a_missing_or_wrong_api_key(emulator, headers):
    response = requests.get(
        f"{emulator.picsart_base_url}/avatars/models/{uuid.uuid4()}", headers=headers, timeout=5
    )

    assert response.status_code == 401
    assert response.json() == {
        "code": 401,
        "message": "Unauthorized",
        "detail": "Invalid or missing X-Picsart-API-Key header",
    }


@pytest.mark.parametrize(
    ("body", "detail_mentions"),
    [
        ("not json", "JSON object"),
        ({"type": "man"}, "'images' is required"),
        ({"images": "http://x/a.jpg", "type": "man"}, "list"),
        ({"images": ["http://x/a.jpg"] * 4, "type": "man"}, "between 5 and 30"),
        ({"images": ["http://x/a.jpg"] * 31, "type": "man"}, "between 5 and 30"),
        ({"images": ["ftp://x/a.jpg"] * 5, "type": "man"}, "http(s)"),
        ({"images": [1, 2, 3, 4, 5], "type": "man"}, "string"),
        ({"images": ["http://x/a.jpg"] * 5, "type": "robot"}, "'type'"),
    ],
)
def test_training_submit_rejects_bad_bodies_in_picsart_error_shape(emulator, body, detail_mentions):
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}

    response = picsart(emulator, "POST", "/avatars/models", **kwargs)

    assert response.status_code == 400
    answer = response.json()
    assert answer["code"] == 400
    assert answer["message"]
    assert detail_mentions in answer["detail"]
    assert stats(emulator)["trainings_submitted"] == 0


@pytest.mark.parametrize("broken", ["expired", "refused"])
def test_an_inaccessible_selfie_url_is_refused_and_nothing_trains(emulator, selfies, broken):
    prefix, urls = selfies.model_selfies()
    if broken == "expired":
        urls[2] = f"{selfies.base_url}{prefix}/never-uploaded.jpg{SIGNATURE}"
    else:
        urls[2] = f"http://127.0.0.1:{unused_port()}{prefix}/2.jpg{SIGNATURE}"

    response = picsart(emulator, "POST", "/avatars/models", json={"images": urls, "type": "man"})

    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "message": "Image URL is not accessible",
        "detail": urls[2].split("?")[0],
    }
    assert stats(emulator)["trainings_submitted"] == 0


def test_training_moves_through_its_phases_with_emulated_time(frozen, selfies):
    model_id = submit_training(frozen, selfies.model_selfies(7)[1])

    first = training_status(frozen, model_id)
    advance(frozen, 5 * 60)
    after_five_minutes = training_status(frozen, model_id)
    advance(frozen, 14 * 60)
    after_nineteen_minutes = training_status(frozen, model_id)
    advance(frozen, 61)
    after_twenty_minutes = training_status(frozen, model_id)

    assert first == {"model_id": model_id, "status": "ACCEPTED", "progress": 0}
    assert after_five_minutes["status"] == "IN_PROGRESS"
    assert 20 <= after_five_minutes["progress"] <= 30
    assert after_nineteen_minutes["status"] == "IN_PROGRESS"
    assert 90 <= after_nineteen_minutes["progress"] <= 99
    assert after_twenty_minutes == {"model_id": model_id, "status": "DONE", "progress": 100}


def test_a_twenty_minute_training_takes_seconds_at_a_high_time_factor(emulator, selfies):
    model_id = submit_training(emulator, selfies.model_selfies()[1])

    seen = poll_until(lambda: training_status(emulator, model_id), {"DONE"})

    statuses = [answer["status"] for answer in seen]
    order = ["ACCEPTED", "IN_PROGRESS", "DONE"]
    assert [order.index(status) for status in statuses] == sorted(
        order.index(status) for status in statuses
    )
    assert "IN_PROGRESS" in statuses
    progress = [answer["progress"] for answer in seen]
    assert progress == sorted(progress)


def test_selfies_that_are_not_jpeg_or_png_make_the_model_image_not_valid(frozen, selfies):
    prefix, urls = selfies.model_selfies()
    urls[3] = selfies.put(f"{prefix}/3.jpg", b"definitely not an image")

    model_id = submit_training(frozen, urls)
    advance(frozen, 2 * 60)
    status = training_status(frozen, model_id)

    assert status["status"] == "IMAGE_NOT_VALID"
    assert "Image 4 of 5" in status["message"]
    assert urls[3].split("?")[0] in status["message"]
    assert "X-Amz-Signature" not in status["message"]


def test_an_unknown_model_is_404_in_picsart_error_shape(emulator):
    response = picsart(emulator, "GET", f"/avatars/models/{uuid.uuid4()}")

    assert response.status_code == 404
    assert response.json()["code"] == 404
    assert set(response.json()) == {"code", "message", "detail"}


def test_unrouted_picsart_paths_answer_in_picsart_error_shape(emulator):
    response = picsart(emulator, "DELETE", "/avatars/models")

    assert response.status_code == 405
    assert response.json()["code"] == 405


def test_trainings_are_counted_per_source_prefix(emulator, selfies):
    prefix, urls = selfies.model_selfies(owner="auth0|owner-1")
    other_prefix, other_urls = selfies.model_selfies()

    submit_training(emulator, urls)
    submit_training(emulator, urls)
    submit_training(emulator, other_urls)

    counters = stats(emulator)
    assert counters["trainings_submitted"] == 3
    assert counters["trainings_by_source"] == {prefix: 2, other_prefix: 1}


# --- Picsart: inferences -----------------------------------------------------------------


def test_avatars_cannot_be_requested_before_the_model_is_done(frozen, selfies):
    model_id = submit_training(frozen, selfies.model_selfies()[1])

    response = picsart(
        frozen,
        "POST",
        f"/avatars/models/{model_id}/inferences",
        json={"requests": [{"style": "realistic", "count": 1}]},
    )

    assert response.status_code == 400
    assert response.json()["message"] == "Model is not ready"


def test_avatars_for_an_unknown_model_are_404(emulator):
    response = picsart(
        emulator,
        "POST",
        f"/avatars/models/{uuid.uuid4()}/inferences",
        json={"requests": [{"style": "realistic", "count": 1}]},
    )

    assert response.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"requests": []},
        {"requests": [{"count": 1}]},
        {"requests": [{"style": "realistic", "count": 0}]},
        {"requests": [{"style": "realistic", "count": "2"}]},
        {"requests": [{"style": "realistic", "count": 1, "prompt": 7}]},
        {"requests": [{"style": "realistic", "count": 101}]},
    ],
)
def test_avatar_requests_with_a_bad_body_are_400(frozen, selfies, body):
    model_id = trained_model(frozen, selfies)

    response = picsart(frozen, "POST", f"/avatars/models/{model_id}/inferences", json=body)

    assert response.status_code == 400
    assert response.json()["code"] == 400


def test_avatars_are_stamped_512px_jpegs_one_per_request_in_order(emulator, frozen, selfies):
    model_id = trained_model(frozen, selfies)
    requested = [
        {"style": "realistic", "count": 2, "prompt": "at the beach"},
        {"style": "anime", "count": 1},
        {"style": "sketch", "count": 1},
        {"style": "steampunk", "count": 1},
    ]
    submitted = picsart(
        frozen, "POST", f"/avatars/models/{model_id}/inferences", json={"requests": requested}
    )
    assert submitted.status_code == 202
    inference_id = submitted.json()["inference_id"]
    path = f"/avatars/models/{model_id}/inferences/{inference_id}"

    pending = picsart(frozen, "GET", path).json()
    advance(frozen, frozen.config.inference_seconds)
    done = picsart(frozen, "GET", path).json()
    again = picsart(frozen, "GET", path).json()

    assert pending == {"inference_id": inference_id, "status": "ACCEPTED", "progress": 0}
    assert done["status"] == "DONE"
    assert done["progress"] == 100
    assert [avatar["style"] for avatar in done["data"]] == [
        "realistic",
        "realistic",
        "anime",
        "sketch",
        "steampunk",
    ]
    assert again["data"] == done["data"]
    assert len({avatar["id"] for avatar in done["data"]}) == 5
    images = []
    for avatar in done["data"]:
        response, image = download(avatar["url"])
        assert response.headers["Content-Type"] == "image/jpeg"
        assert image.format == "JPEG"
        assert image.size == (512, 512)
        assert_stamped(image)
        images.append(image)
    red, green, blue = images[3].crop((0, 0, 512, 440)).split()
    assert ImageChops.difference(red, green).getextrema()[1] < 16
    assert ImageChops.difference(green, blue).getextrema()[1] < 16
    assert images[0].tobytes() != images[1].tobytes()
    assert stats(frozen)["results_served"] == 5
    assert stats(frozen)["inferences_submitted"] == 1


def test_inference_at_a_high_time_factor_finishes_after_a_few_polls(emulator, selfies):
    model_id = submit_training(emulator, selfies.model_selfies()[1])
    poll_until(lambda: training_status(emulator, model_id), {"DONE"})
    inference_id = picsart(
        emulator,
        "POST",
        f"/avatars/models/{model_id}/inferences",
        json={"requests": [{"style": "cartoon", "count": 2}]},
    ).json()["inference_id"]

    seen = poll_until(
        lambda: picsart(
            emulator, "GET", f"/avatars/models/{model_id}/inferences/{inference_id}"
        ).json(),
        {"DONE", "FAILED"},
    )

    assert seen[-1]["status"] == "DONE"
    assert all("data" not in answer for answer in seen[:-1])
    assert len(seen[-1]["data"]) == 2


def test_result_urls_expire_after_their_ttl_and_on_demand(frozen, selfies):
    model_id = trained_model(frozen, selfies)
    inference_id = picsart(
        frozen,
        "POST",
        f"/avatars/models/{model_id}/inferences",
        json={"requests": [{"style": "realistic", "count": 1}]},
    ).json()["inference_id"]
    advance(frozen, frozen.config.inference_seconds)
    path = f"/avatars/models/{model_id}/inferences/{inference_id}"
    url = picsart(frozen, "GET", path).json()["data"][0]["url"]
    later_id = picsart(
        frozen,
        "POST",
        f"/avatars/models/{model_id}/inferences",
        json={"requests": [{"style": "realistic", "count": 1}]},
    ).json()["inference_id"]

    advance(frozen, 47 * 3600)
    before_ttl = requests.get(url, timeout=TIMEOUT).status_code
    advance(frozen, 3600 + 1)
    after_ttl = requests.get(url, timeout=TIMEOUT).status_code
    later_url = picsart(frozen, "GET", f"/avatars/models/{model_id}/inferences/{later_id}").json()[
        "data"
    ][0]["url"]
    before_expiry_hook = requests.get(later_url, timeout=TIMEOUT).status_code
    admin(frozen, "expire-results").raise_for_status()
    after_expiry_hook = requests.get(later_url, timeout=TIMEOUT).status_code

    assert (before_ttl, after_ttl) == (200, 404)
    assert (before_expiry_hook, after_expiry_hook) == (200, 404)


# --- Qolaba Face Avatar ----------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", QOLABA_TOKEN])
def test_qolaba_refuses_a_missing_or_wrong_token(emulator, authorization):
    headers = {"Authorization": authorization} if authorization else {}

    response = requests.post(
        f"{emulator.qolaba_base_url}/getImage", json={"id": "x"}, headers=headers, timeout=5
    )

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token"}


@pytest.mark.parametrize(
    ("field", "value", "error_type"),
    [
        ("batch", 0, "greater_than_equal"),
        ("batch", 9, "less_than_equal"),
        ("batch", "eight", "int_parsing"),
        ("width", 255, "greater_than_equal"),
        ("height", 1537, "less_than_equal"),
        ("num_inference_steps", 51, "less_than_equal"),
        ("guidance_scale", 0.5, "greater_than_equal"),
        ("guidance_scale", 31, "less_than_equal"),
        ("bg_color", "blue", "string_pattern_mismatch"),
        ("remove_background", "maybe", "bool_parsing"),
        ("image", None, "string_type"),
    ],
)
def test_face_avatar_rejects_out_of_range_fields_fastapi_style(
    emulator, selfies, field, value, error_type
):
    body = {**FACE_BODY, "image": selfies.put("/refs/face.jpg", selfie_jpeg(1)), field: value}

    response = qolaba(emulator, "/getImageToImage", body)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", field]
    assert error["type"] == error_type
    assert error["msg"]
    assert stats(emulator)["face_jobs_submitted"] == 0


def test_face_avatar_reports_missing_fields_and_broken_json_fastapi_style(emulator):
    missing = qolaba(emulator, "/getImageToImage", {"prompt": None})
    broken = requests.post(
        f"{emulator.qolaba_base_url}/getImageToImage",
        data="{not json",
        headers={"Authorization": f"Bearer {QOLABA_TOKEN}", "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )

    assert missing.status_code == 422
    assert {tuple(error["loc"]) for error in missing.json()["detail"]} == {
        ("body", "app_id"),
        ("body", "image"),
    }
    assert {error["type"] for error in missing.json()["detail"]} == {"missing"}
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["type"] == "json_invalid"


def test_an_unreachable_reference_image_is_refused(emulator, selfies):
    url = f"{selfies.base_url}/refs/gone.jpg{SIGNATURE}"

    response = qolaba(emulator, "/getImageToImage", {**FACE_BODY, "image": url})

    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)
    assert url.split("?")[0] in response.json()["detail"]
    assert "X-Amz-Signature" not in response.json()["detail"]


def test_an_unknown_face_task_is_404(emulator):
    response = qolaba(emulator, "/getImage", {"id": str(uuid.uuid4())})

    assert response.status_code == 404
    assert response.json() == {"detail": "Task not found"}


def test_face_task_moves_from_pending_to_success_in_emulated_time(frozen, selfies):
    body = {**FACE_BODY, "image": selfies.put("/refs/big.jpg", selfie_jpeg(2, (2000, 1800)))}
    task_id = qolaba(frozen, "/getImageToImage", body).json()["task_id"]

    pending = qolaba(frozen, "/getImage", {"id": task_id}).json()
    advance(frozen, 10)
    running = qolaba(frozen, "/getImage", {"id": task_id}).json()
    advance(frozen, frozen.config.face_seconds)
    success = qolaba(frozen, "/getImage", {"id": task_id}).json()

    # the documented shape: every field present, "" when empty (docs.qolaba.ai Task Status)
    quiet = {"output": "", "error": "", "error_data": "", "time_required": "", "input": ""}
    ids = {"app_id": FACE_BODY["app_id"], "task_id": task_id}
    assert pending == {"status": "PENDING", **quiet, **ids}
    assert running == {"status": "STARTED", **quiet, **ids}
    assert success["status"] == "SUCCESS"
    assert len(success["output"]) == 2
    assert success["error"] == ""
    assert float(success["time_required"]) > 0


def test_face_avatars_are_the_requested_size_on_the_requested_background(emulator, selfies):
    body = {**FACE_BODY, "batch": 3, "image": selfies.put("/refs/face.jpg", selfie_jpeg(3))}
    task_id = qolaba(emulator, "/getImageToImage", body).json()["task_id"]

    seen = poll_until(lambda: qolaba(emulator, "/getImage", {"id": task_id}).json(), {"SUCCESS"})

    output = seen[-1]["output"]
    assert len(output) == 3
    for url in output:
        response, image = download(url)
        assert response.headers["Content-Type"] == "image/jpeg"
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (640, 768))
        for corner in [(2, 2), (637, 2)]:
            assert all(
                abs(got - want) <= 8
                for got, want in zip(image.getpixel(corner), (0x20, 0x50, 0xA0), strict=True)
            )
        assert_stamped(image)
    assert stats(emulator)["face_jobs_submitted"] == 1


def test_face_avatars_without_background_are_transparent_pngs(emulator, selfies):
    body = {
        **FACE_BODY,
        "batch": 1,
        "width": 512,
        "height": 512,
        "remove_background": True,
        "image": selfies.put("/refs/face.png", selfie_jpeg(4)),
    }
    task_id = qolaba(emulator, "/getImageToImage", body).json()["task_id"]

    [url] = poll_until(lambda: qolaba(emulator, "/getImage", {"id": task_id}).json(), {"SUCCESS"})[
        -1
    ]["output"]
    response, image = download(url)

    assert response.headers["Content-Type"] == "image/png"
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (512, 512))
    assert image.getpixel((2, 2))[3] == 0
    assert image.getpixel((256, 220))[3] == 255
    assert_stamped(image)
    assert image.getpixel((509, 509))[3] == 255


def test_a_reference_that_is_not_an_image_fails_the_task_with_the_reason(frozen, selfies):
    body = {**FACE_BODY, "image": selfies.put("/refs/notes.jpg", b"plain text", "text/plain")}
    task_id = qolaba(frozen, "/getImageToImage", body).json()["task_id"]

    advance(frozen, frozen.config.face_seconds)
    answer = qolaba(frozen, "/getImage", {"id": task_id}).json()

    assert answer["status"] == "FAILURE"
    assert answer["output"] == ""
    assert "Invalid image" in answer["error"]


# --- scripted failures -----------------------------------------------------------------------


def test_scripted_rate_limits_and_server_errors_hit_the_next_calls_only(emulator, selfies):
    _, urls = selfies.model_selfies()
    admin(
        emulator,
        "script",
        {
            "fail_next": [
                {"route": "train_submit", "status": 429, "times": 2, "retry_after": 1},
                {"route": "train_status", "status": 500, "times": 3},
            ]
        },
    ).raise_for_status()
    body = {"images": urls, "type": "dog"}

    limited = [picsart(emulator, "POST", "/avatars/models", json=body) for _ in range(2)]
    model_id = submit_training(emulator, urls)
    failing = [picsart(emulator, "GET", f"/avatars/models/{model_id}") for _ in range(3)]
    recovered = picsart(emulator, "GET", f"/avatars/models/{model_id}")

    for response in limited:
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        assert response.json()["code"] == 429
    assert [response.status_code for response in failing] == [500, 500, 500]
    assert failing[0].json()["code"] == 500
    assert recovered.status_code == 200
    counters = stats(emulator)
    assert counters["trainings_submitted"] == 1
    assert counters["faults_injected"] == {"train_submit": 2, "train_status": 3}
    assert counters["requests_by_route"] == {"train_submit": 3, "train_status": 4}


def test_scripted_faults_answer_in_qolaba_shape(emulator, selfies):
    admin(
        emulator,
        "script",
        {
            "fail_next": [
                {"route": "face_submit", "status": 503},
                {"route": "face_status", "status": 429, "retry_after": 2, "message": "Slow down"},
            ]
        },
    ).raise_for_status()
    body = {**FACE_BODY, "image": selfies.put("/refs/face.jpg", selfie_jpeg(5))}

    unavailable = qolaba(emulator, "/getImageToImage", body)
    task_id = qolaba(emulator, "/getImageToImage", body).json()["task_id"]
    limited = qolaba(emulator, "/getImage", {"id": task_id})

    assert unavailable.status_code == 503
    assert unavailable.json() == {"detail": "Service Unavailable"}
    assert limited.status_code == 429
    assert limited.json() == {"detail": "Slow down"}
    assert limited.headers["Retry-After"] == "2"


def test_scripted_training_outcome_fails_the_next_trainings_with_the_message(frozen, selfies):
    admin(
        frozen, "script", {"training_outcome": "FAILED", "message": "GPU on fire"}
    ).raise_for_status()
    model_id = submit_training(frozen, selfies.model_selfies()[1])

    advance(frozen, 2 * 60)
    running = training_status(frozen, model_id)
    advance(frozen, 10 * 60)
    failed = training_status(frozen, model_id)
    advance(frozen, 60 * 60)
    still_failed = training_status(frozen, model_id)

    assert running["status"] == "IN_PROGRESS"
    assert failed["status"] == "FAILED"
    assert failed["message"] == "GPU on fire"
    assert still_failed == failed


def test_scripted_inference_and_face_outcomes_fail_those_jobs(frozen, selfies):
    model_id = trained_model(frozen, selfies)
    admin(
        frozen,
        "script",
        {
            "inference_outcome": {"status": "FAILED", "message": "NSFW prompt"},
            "face_outcome": {"status": "FAILURE", "message": "No face detected"},
        },
    ).raise_for_status()
    inference_id = picsart(
        frozen,
        "POST",
        f"/avatars/models/{model_id}/inferences",
        json={"requests": [{"style": "realistic", "count": 1}]},
    ).json()["inference_id"]
    face_body = {**FACE_BODY, "image": selfies.put("/refs/face.jpg", selfie_jpeg(6))}
    task_id = qolaba(frozen, "/getImageToImage", face_body).json()["task_id"]

    advance(frozen, 3600)
    inference = picsart(frozen, "GET", f"/avatars/models/{model_id}/inferences/{inference_id}")
    face = qolaba(frozen, "/getImage", {"id": task_id}).json()

    assert inference.json()["status"] == "FAILED"
    assert inference.json()["message"] == "NSFW prompt"
    assert "data" not in inference.json()
    assert face["status"] == "FAILURE"
    assert face["error"] == "No face detected"
    assert face["output"] == ""


def test_never_finish_keeps_trainings_in_progress(frozen, selfies):
    admin(frozen, "script", {"never_finish": True}).raise_for_status()
    model_id = submit_training(frozen, selfies.model_selfies()[1])

    advance(frozen, 10 * 3600)
    status = training_status(frozen, model_id)

    assert status["status"] == "IN_PROGRESS"
    assert status["progress"] <= 99


def test_slow_answers_delay_the_response_in_wall_clock_time(emulator):
    admin(
        emulator,
        "script",
        {
            "fail_next": [
                {"route": "face_status", "slow_seconds": 0.3},
                {"route": "face_status", "slow_seconds": 2},
            ]
        },
    ).raise_for_status()

    started = time.monotonic()
    slow = qolaba(emulator, "/getImage", {"id": "unknown"})
    elapsed = time.monotonic() - started
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            f"{emulator.qolaba_base_url}/getImage",
            json={"id": "unknown"},
            headers={"Authorization": f"Bearer {QOLABA_TOKEN}"},
            timeout=0.5,
        )

    assert elapsed >= 0.3
    assert slow.status_code == 404


def test_a_dropped_connection_and_a_lost_response(emulator, selfies):
    prefix, urls = selfies.model_selfies()
    admin(
        emulator,
        "script",
        {
            "fail_next": [
                {"route": "train_submit", "drop_connection": True},
                {"route": "train_submit", "lose_response": True},
            ]
        },
    ).raise_for_status()
    body = {"images": urls, "type": "cat"}

    with pytest.raises(requests.exceptions.ConnectionError):
        picsart(emulator, "POST", "/avatars/models", json=body)
    after_drop = stats(emulator)["trainings_submitted"]
    with pytest.raises(requests.exceptions.ConnectionError):
        picsart(emulator, "POST", "/avatars/models", json=body)
    after_lost_response = stats(emulator)

    assert after_drop == 0
    assert after_lost_response["trainings_submitted"] == 1
    assert after_lost_response["trainings_by_source"] == {prefix: 1}


def test_the_script_is_validated_described_and_reset(emulator):
    bad_route = admin(emulator, "script", {"fail_next": [{"route": "nope", "status": 500}]})
    bad_status = admin(
        emulator, "script", {"fail_next": [{"route": "train_submit", "status": 200}]}
    )
    bad_outcome = admin(emulator, "script", {"training_outcome": "DONE"})
    admin(
        emulator,
        "script",
        {"fail_next": [{"route": "infer_status", "status": 502, "times": 2}]},
    ).raise_for_status()
    described = requests.get(f"{emulator.base_url}/_emulator/script", timeout=TIMEOUT).json()
    admin(emulator, "reset").raise_for_status()
    after_reset = requests.get(f"{emulator.base_url}/_emulator/script", timeout=TIMEOUT).json()

    assert [r.status_code for r in (bad_route, bad_status, bad_outcome)] == [400, 400, 400]
    assert "route" in bad_route.json()["error"]
    assert described["fail_next"] == [{"route": "infer_status", "times": 2, "status": 502}]
    assert after_reset == {
        "fail_next": [],
        "outcomes": {},
        "never_finish": [],
        "result_ttl_seconds": None,
        "result_urls": None,
        "status_words": {},
        "chaos": None,
    }


def test_admin_endpoints_answer_loopback_callers_only():
    clock = ScaledClock()
    app = create_app(EmulatorState(EmulatorConfig(), clock, ResultFiles(clock)))
    client = app.test_client()

    remote = client.post("/_emulator/reset", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    remote_stats = client.get("/_emulator/stats", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    local = client.post("/_emulator/reset", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    local_v6 = client.get("/_emulator/stats", environ_base={"REMOTE_ADDR": "::1"})

    assert (remote.status_code, remote_stats.status_code) == (403, 403)
    assert (local.status_code, local_v6.status_code) == (200, 200)


def test_results_can_be_scripted_to_expire_early(emulator: EmulatorServer) -> None:
    admin = f"{emulator.base_url}/_emulator/script"
    assert requests.post(admin, json={"result_ttl_seconds": "soon"}, timeout=5).status_code == 400
    assert requests.post(admin, json={"result_ttl_seconds": 0}, timeout=5).status_code == 200
    assert emulator.state.faults.result_ttl(3600.0) == 0.0
    requests.post(admin, json={"result_ttl_seconds": None}, timeout=5).raise_for_status()
    assert emulator.state.faults.result_ttl(3600.0) == 3600.0


def test_chaos_draws_faults_by_rate_and_can_be_stopped(emulator: EmulatorServer) -> None:
    admin = f"{emulator.base_url}/_emulator/script"
    too_much = {"chaos": {"error_rate": 0.7, "drop_rate": 0.5}}
    assert requests.post(admin, json=too_much, timeout=5).status_code == 400
    chaos = {"chaos": {"seed": 3, "error_rate": 0.3, "rate_limit_rate": 0.2, "retry_after": 2}}
    requests.post(admin, json=chaos, timeout=5).raise_for_status()
    faults = [emulator.state.faults.take("train_status") for _ in range(2000)]
    errors = sum(1 for f in faults if f and f.status and f.status >= 500)
    limited = [f for f in faults if f and f.status == 429]
    assert 500 < errors < 700
    assert 300 < len(limited) < 500
    assert all(f.retry_after == 2 for f in limited)
    requests.post(admin, json={"chaos": None}, timeout=5).raise_for_status()
    assert emulator.state.faults.take("train_status") is None


def test_instant_avatars_are_2048_pixel_stamped_variations_of_the_one_image(frozen, selfies):
    url = selfies.put("/refs/instant.jpg", selfie_jpeg(4))
    body = {"image_url": url, "type": "woman", "count": 2, "prompt": "watercolour"}
    accepted = picsart(frozen, "POST", "/avatars/instant", json=body)
    inference_id = accepted.json()["inference_id"]

    first = picsart(frozen, "GET", f"/avatars/instant/{inference_id}").json()
    advance(frozen, frozen.config.instant_seconds)
    done = picsart(frozen, "GET", f"/avatars/instant/{inference_id}").json()

    assert accepted.status_code == 202
    assert accepted.json()["status"] == "success"
    assert first["status"] == "ACCEPTED"
    assert done["status"] == "DONE"
    assert len(done["data"]) == 2
    for item in done["data"]:
        _, image = download(item["url"])
        assert image.size == (2048, 2048)
        assert image.getpixel((5, 2047)) == pytest.approx((200, 0, 0), abs=40)  # EMULATED band


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"type": "dog"}, "'type' must be one of man, woman, couple"),
        ({"count": 0}, "'count' must be an integer"),
        ({"image_url": "ftp://x/y.jpg"}, "'image_url' must be an http(s) URL"),
    ],
)
def test_instant_avatar_bodies_are_checked(emulator, change, problem):
    body = {"image_url": "https://example.com/a.jpg", "type": "man", "count": 1, **change}

    response = picsart(emulator, "POST", "/avatars/instant", json=body)

    assert response.status_code == 400
    assert problem in response.json()["detail"]


def test_scripted_status_words_replace_the_answered_word(frozen, selfies):
    admin(frozen, "script", {"status_words": {"SUCCESS": "COMPLETED"}}).raise_for_status()
    face_body = {**FACE_BODY, "image": selfies.put("/refs/face.jpg", selfie_jpeg(6))}
    task_id = qolaba(frozen, "/getImageToImage", face_body).json()["task_id"]

    advance(frozen, 3600)
    face = qolaba(frozen, "/getImage", {"id": task_id, "refID": "face_x"}).json()

    assert face["status"] == "COMPLETED"
    assert len(face["output"]) == FACE_BODY["batch"]
