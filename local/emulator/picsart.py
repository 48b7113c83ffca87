"""Emulated Picsart AI Avatars: train a model from 5 to 30 selfie URLs, then create avatars;
or make Instant Avatars (2048x2048) from one image URL, a prompt and a count.

Like the real service, training fetches every image URL when it is submitted, so an expired
or unreachable presigned URL is refused at once. Avatars are derived from the model's own
training images by simple image processing, one look per style, and carry the EMULATED band.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from flask import Blueprint, Response, jsonify, request
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from local.emulator.core import (
    FetchFailed,
    ImageInvalid,
    decode_image,
    fetch,
    stamp_emulated,
    without_query,
)
from local.emulator.faults import Outcome, guarded

if TYPE_CHECKING:
    from local.emulator.app import EmulatorState

API_KEY_HEADER = "X-Picsart-API-Key"
SUBJECT_TYPES = ("man", "woman", "couple", "dog", "cat")
MIN_IMAGES = 5
MAX_IMAGES = 30
MAX_AVATARS_PER_INFERENCE = 100
SCRIPTABLE_TRAINING_OUTCOMES = ("FAILED", "IMAGE_NOT_VALID")
SCRIPTABLE_INFERENCE_OUTCOMES = ("FAILED",)
SCRIPTABLE_INSTANT_OUTCOMES = ("FAILED", "IMAGE_NOT_VALID")
INSTANT_SUBJECT_TYPES = ("man", "woman", "couple")
MAX_INSTANT_COUNT = 10
INSTANT_SIDE = 2048

# Shares of a job's duration: queued at first, and where a scripted failure lands.
ACCEPTED_SHARE = 0.05
INFERENCE_ACCEPTED_SHARE = 0.1
FAILURE_SHARE = 0.5

AVATAR_SIDE = 512
KEPT_IMAGE_SIDE = 320
FETCH_WORKERS = 8
CARTOON_STYLES = frozenset({"anime", "cartoon", "comic", "manga", "pixar", "3d", "toon"})
SKETCH_STYLES = frozenset({"sketch", "pencil"})
REALISTIC_STYLES = frozenset({"realistic", "photo", "portrait"})


def error_response(status: int, message: str, detail: str) -> Response:
    """Picsart's error shape: ``{"code", "message", "detail"}``."""
    response = jsonify({"code": status, "message": message, "detail": detail})
    response.status_code = status
    return response


def _bad_request(detail: str) -> Response:
    return error_response(400, "Bad Request", detail)


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _scripted_error(status: int, message: str | None) -> Response:
    return error_response(
        status, _status_phrase(status), message or "Scripted failure of the provider emulator"
    )


@dataclass
class _Training:
    model_id: str
    submitted_at: float
    images: list[Image.Image]
    invalid_reason: str | None
    outcome: Outcome | None
    never_finish: bool


@dataclass(frozen=True)
class _AvatarRequest:
    style: str
    count: int
    prompt: str | None


@dataclass
class _Inference:
    inference_id: str
    training: _Training
    requests: list[_AvatarRequest]
    submitted_at: float
    outcome: Outcome | None
    never_finish: bool
    results: list[dict[str, str]] | None = None
    render_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Instant:
    inference_id: str
    image: Image.Image | None
    invalid_reason: str | None
    subject: str
    count: int
    prompt: str | None
    submitted_at: float
    outcome: Outcome | None
    never_finish: bool
    results: list[dict[str, str]] | None = None
    render_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class _Phase:
    status: str
    progress: int
    message: str | None = None


def make_blueprint(state: EmulatorState) -> Blueprint:
    config = state.config
    blueprint = Blueprint("picsart", __name__)
    trainings: dict[str, _Training] = {}
    inferences: dict[str, _Inference] = {}
    instants: dict[str, _Instant] = {}
    registry_lock = threading.Lock()

    @blueprint.before_request
    def authenticate() -> Response | None:
        key = request.headers.get(API_KEY_HEADER, "")
        if not secrets.compare_digest(key.encode(), config.picsart_api_key.encode()):
            return error_response(
                401, "Unauthorized", f"Invalid or missing {API_KEY_HEADER} header"
            )
        return None

    @blueprint.post("/avatars/models")
    @guarded(state, "train_submit", _scripted_error)
    def submit_training() -> Response:
        body = request.get_json(force=True, silent=True)
        problem = _training_body_problem(body)
        if problem:
            return _bad_request(problem)
        urls: list[str] = body["images"]
        downloads = _fetch_all(urls, config.fetch_timeout_seconds)
        for url, download in zip(urls, downloads, strict=True):
            if isinstance(download, FetchFailed):
                return error_response(400, "Image URL is not accessible", without_query(url))
        images, invalid_reason = _decode_all(urls, downloads)
        training = _Training(
            model_id=str(uuid.uuid4()),
            submitted_at=state.clock.now(),
            images=images,
            invalid_reason=invalid_reason,
            outcome=state.faults.outcome_for("training"),
            never_finish=state.faults.never_finishes("training"),
        )
        with registry_lock:
            trainings[training.model_id] = training
        state.count("trainings_submitted")
        state.count_in("trainings_by_source", source_key(urls))
        state.record_job("training", training.model_id, source_key(urls))
        return _accepted({"status": "ACCEPTED", "model_id": training.model_id})

    @blueprint.get("/avatars/models/<model_id>")
    @guarded(state, "train_status", _scripted_error)
    def training_status(model_id: str) -> Response:
        training = trainings.get(model_id)
        if training is None:
            return _model_not_found(model_id)
        phase = _training_phase(training, state.clock.now(), config.training_seconds)
        answer: dict[str, Any] = {
            "model_id": model_id,
            "status": phase.status,
            "progress": phase.progress,
        }
        if phase.message:
            answer["message"] = phase.message
        return jsonify(answer)

    @blueprint.post("/avatars/models/<model_id>/inferences")
    @guarded(state, "infer_submit", _scripted_error)
    def submit_inference(model_id: str) -> Response:
        training = trainings.get(model_id)
        if training is None:
            return _model_not_found(model_id)
        body = request.get_json(force=True, silent=True)
        avatar_requests = _parse_inference_body(body)
        if isinstance(avatar_requests, str):
            return _bad_request(avatar_requests)
        phase = _training_phase(training, state.clock.now(), config.training_seconds)
        if phase.status != "DONE":
            return error_response(
                400, "Model is not ready", f"Model {model_id} is {phase.status}, not DONE"
            )
        inference = _Inference(
            inference_id=str(uuid.uuid4()),
            training=training,
            requests=avatar_requests,
            submitted_at=state.clock.now(),
            outcome=state.faults.outcome_for("inference"),
            never_finish=state.faults.never_finishes("inference"),
        )
        with registry_lock:
            inferences[inference.inference_id] = inference
        state.count("inferences_submitted")
        state.record_job(
            "inference",
            inference.inference_id,
            inference.training.model_id,
            sum(r.count for r in inference.requests),
        )
        return _accepted({"status": "ACCEPTED", "inference_id": inference.inference_id})

    @blueprint.get("/avatars/models/<model_id>/inferences/<inference_id>")
    @guarded(state, "infer_status", _scripted_error)
    def inference_status(model_id: str, inference_id: str) -> Response:
        if model_id not in trainings:
            return _model_not_found(model_id)
        inference = inferences.get(inference_id)
        if inference is None or inference.training.model_id != model_id:
            return error_response(
                404, "Not Found", f"Inference {inference_id} of model {model_id} not found"
            )
        now = state.clock.now()
        phase = _inference_phase(inference, now, config.inference_seconds)
        answer: dict[str, Any] = {
            "inference_id": inference_id,
            "status": state.faults.status_word(phase.status),
            "progress": phase.progress,
        }
        if phase.message:
            answer["message"] = phase.message
        if phase.status == "DONE":
            answer["data"] = _results(inference, now)
        return jsonify(answer)

    @blueprint.post("/avatars/instant")
    @guarded(state, "instant_submit", _scripted_error)
    def submit_instant() -> Response:
        body = request.get_json(force=True, silent=True)
        problem = _instant_body_problem(body)
        if problem:
            return _bad_request(problem)
        url: str = body["image_url"]
        try:
            data = fetch(url, config.fetch_timeout_seconds)
        except FetchFailed:
            return error_response(400, "Image URL is not accessible", without_query(url))
        try:
            image, invalid = decode_image(data, KEPT_IMAGE_SIDE), None
        except ImageInvalid as error:
            image, invalid = None, f"The image is not a valid JPEG or PNG image ({error})"
        instant = _Instant(
            inference_id=str(uuid.uuid4()),
            image=image,
            invalid_reason=invalid,
            subject=body["type"],
            count=body["count"],
            prompt=body.get("prompt"),
            submitted_at=state.clock.now(),
            outcome=state.faults.outcome_for("instant"),
            never_finish=state.faults.never_finishes("instant"),
        )
        with registry_lock:
            instants[instant.inference_id] = instant
        state.count("instant_jobs_submitted")
        state.record_job("instant", instant.inference_id, without_query(url), instant.count)
        return _accepted({"status": "success", "inference_id": instant.inference_id})

    @blueprint.get("/avatars/instant/<inference_id>")
    @guarded(state, "instant_status", _scripted_error)
    def instant_status(inference_id: str) -> Response:
        instant = instants.get(inference_id)
        if instant is None:
            return error_response(404, "Not Found", f"Inference {inference_id} not found")
        now = state.clock.now()
        phase = _job_phase(
            elapsed=now - instant.submitted_at,
            duration=config.instant_seconds,
            queued_share=INFERENCE_ACCEPTED_SHARE,
            invalid_reason=instant.invalid_reason,
            outcome=instant.outcome,
            never_finish=instant.never_finish,
            default_failure="Instant avatar failed (scripted by the provider emulator)",
        )
        answer: dict[str, Any] = {
            "inference_id": inference_id,
            "status": state.faults.status_word(phase.status),
            "progress": phase.progress,
        }
        if phase.message:
            answer["message"] = phase.message
        if phase.status == "DONE":
            answer["data"] = _instant_results(instant, now)
        return jsonify(answer)

    def _instant_results(instant: _Instant, now: float) -> list[dict[str, str]]:
        with instant.render_lock:
            if instant.results is None:
                assert instant.image is not None
                finished_at = instant.submitted_at + config.instant_seconds
                ttl = finished_at + state.faults.result_ttl(config.result_ttl_seconds) - now
                instant.results = [
                    {"id": str(uuid.uuid4()), "url": state.files.publish(jpeg, "image/jpeg", ttl)}
                    for jpeg in _render_instant(instant)
                ]
                scripted = state.faults.take_result_urls()
                if scripted:
                    for result, url in zip(instant.results, scripted, strict=False):
                        result["url"] = url
            return instant.results

    def _results(inference: _Inference, now: float) -> list[dict[str, str]]:
        """Render once, on the first DONE poll; URLs expire a TTL after the job finished."""
        with inference.render_lock:
            if inference.results is None:
                finished_at = inference.submitted_at + config.inference_seconds
                ttl = finished_at + state.faults.result_ttl(config.result_ttl_seconds) - now
                inference.results = [
                    {
                        "id": str(uuid.uuid4()),
                        "url": state.files.publish(jpeg, "image/jpeg", ttl),
                        "style": style,
                    }
                    for style, jpeg in _render_avatars(inference)
                ]
                scripted = state.faults.take_result_urls()
                if scripted:
                    for result, url in zip(inference.results, scripted, strict=False):
                        result["url"] = url
            return inference.results

    return blueprint


def source_key(urls: list[str]) -> str:
    """Where a training's images come from: the common folder of their URL paths.

    Our selfie keys are ``/<bucket>/normalised/<owner>/<model_id>/<selfie>.jpg``, so the key
    names one of our models however many times its training is submitted.
    """
    folders = [unquote(urlsplit(url).path).split("/")[:-1] for url in urls]
    common: list[str] = []
    for parts in zip(*folders, strict=False):
        if any(part != parts[0] for part in parts):
            break
        common.append(parts[0])
    return "/".join(common) or "/"


def _accepted(answer: dict[str, str]) -> Response:
    response = jsonify(answer)
    response.status_code = 202
    return response


def _model_not_found(model_id: str) -> Response:
    return error_response(404, "Not Found", f"Model {model_id} not found")


def _training_body_problem(body: object) -> str | None:
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    images = body.get("images")
    if images is None:
        return "'images' is required"
    if not isinstance(images, list):
        return "'images' must be a list of image URLs"
    if not MIN_IMAGES <= len(images) <= MAX_IMAGES:
        return (
            f"'images' must contain between {MIN_IMAGES} and {MAX_IMAGES} URLs, got {len(images)}"
        )
    for index, url in enumerate(images):
        if not isinstance(url, str):
            return f"'images[{index}]' must be a string URL"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return f"'images[{index}]' must be an http(s) URL"
    subject = body.get("type")
    if subject not in SUBJECT_TYPES:
        return f"'type' must be one of {', '.join(SUBJECT_TYPES)}"
    return None


def _instant_body_problem(body: object) -> str | None:
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    url = body.get("image_url")
    if not isinstance(url, str):
        return "'image_url' is required and must be a string URL"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "'image_url' must be an http(s) URL"
    if body.get("type") not in INSTANT_SUBJECT_TYPES:
        return f"'type' must be one of {', '.join(INSTANT_SUBJECT_TYPES)}"
    count = body.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_INSTANT_COUNT:
        return f"'count' must be an integer between 1 and {MAX_INSTANT_COUNT}"
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        return "'prompt' must be a string"
    return None


def _render_instant(instant: _Instant) -> list[bytes]:
    """``count`` square 2048x2048 variations of the one image, tinted by the prompt."""
    assert instant.image is not None
    rendered = []
    for variant in range(instant.count):
        framed = _framed(instant.image, variant).resize(
            (INSTANT_SIDE, INSTANT_SIDE), Image.Resampling.BICUBIC
        )
        styled = _tinted(_realistic(framed), instant.prompt or instant.subject)
        buffer = io.BytesIO()
        stamp_emulated(styled).save(buffer, "JPEG", quality=85)
        rendered.append(buffer.getvalue())
    return rendered


def _parse_inference_body(body: object) -> list[_AvatarRequest] | str:
    """The avatar requests, or what is wrong with the body."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    raw_requests = body.get("requests")
    if not isinstance(raw_requests, list) or not raw_requests:
        return "'requests' must be a non-empty list"
    parsed: list[_AvatarRequest] = []
    for index, raw in enumerate(raw_requests):
        where = f"'requests[{index}]"
        if not isinstance(raw, dict):
            return f"{where}' must be an object"
        style, count, prompt = raw.get("style"), raw.get("count"), raw.get("prompt")
        if not isinstance(style, str) or not style.strip():
            return f"{where}.style' must be a non-empty string"
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            return f"{where}.count' must be an integer >= 1"
        if prompt is not None and not isinstance(prompt, str):
            return f"{where}.prompt' must be a string"
        parsed.append(_AvatarRequest(style=style, count=count, prompt=prompt))
    total = sum(avatar_request.count for avatar_request in parsed)
    if total > MAX_AVATARS_PER_INFERENCE:
        return f"at most {MAX_AVATARS_PER_INFERENCE} avatars per inference, got {total}"
    return parsed


def _fetch_all(urls: list[str], timeout: float) -> list[bytes | FetchFailed]:
    def attempt(url: str) -> bytes | FetchFailed:
        try:
            return fetch(url, timeout)
        except FetchFailed as error:
            return error

    with ThreadPoolExecutor(max_workers=min(FETCH_WORKERS, len(urls))) as pool:
        return list(pool.map(attempt, urls))


def _decode_all(
    urls: list[str], downloads: list[bytes | FetchFailed]
) -> tuple[list[Image.Image], str | None]:
    images: list[Image.Image] = []
    for index, (url, data) in enumerate(zip(urls, downloads, strict=True)):
        assert isinstance(data, bytes)
        try:
            images.append(decode_image(data, KEPT_IMAGE_SIDE))
        except ImageInvalid as error:
            return [], (
                f"Image {index + 1} of {len(urls)} is not a valid JPEG or PNG image "
                f"({error}): {without_query(url)}"
            )
    return images, None


def _training_phase(training: _Training, now: float, duration: float) -> _Phase:
    return _job_phase(
        elapsed=now - training.submitted_at,
        duration=duration,
        queued_share=ACCEPTED_SHARE,
        invalid_reason=training.invalid_reason,
        outcome=training.outcome,
        never_finish=training.never_finish,
        default_failure="Training failed (scripted by the provider emulator)",
    )


def _inference_phase(inference: _Inference, now: float, duration: float) -> _Phase:
    return _job_phase(
        elapsed=now - inference.submitted_at,
        duration=duration,
        queued_share=INFERENCE_ACCEPTED_SHARE,
        invalid_reason=None,
        outcome=inference.outcome,
        never_finish=inference.never_finish,
        default_failure="Inference failed (scripted by the provider emulator)",
    )


def _job_phase(
    *,
    elapsed: float,
    duration: float,
    queued_share: float,
    invalid_reason: str | None,
    outcome: Outcome | None,
    never_finish: bool,
    default_failure: str,
) -> _Phase:
    """ACCEPTED, then IN_PROGRESS with rising progress, then DONE or the scripted ending."""
    if elapsed < duration * queued_share:
        return _Phase("ACCEPTED", 0)
    if invalid_reason:
        return _Phase("IMAGE_NOT_VALID", 0, invalid_reason)
    if never_finish:
        return _Phase("IN_PROGRESS", _progress(elapsed, duration))
    if outcome and elapsed >= duration * FAILURE_SHARE:
        failed_at = _progress(duration * FAILURE_SHARE, duration)
        return _Phase(outcome.status, failed_at, outcome.message or default_failure)
    if elapsed >= duration:
        return _Phase("DONE", 100)
    return _Phase("IN_PROGRESS", _progress(elapsed, duration))


def _progress(elapsed: float, duration: float) -> int:
    """Percent done while running: never 0 once started, never 100 before DONE."""
    if duration <= 0:
        return 99
    return max(1, min(99, int(100 * elapsed / duration)))


def _render_avatars(inference: _Inference) -> list[tuple[str, bytes]]:
    sources = inference.training.images
    rendered: list[tuple[str, bytes]] = []
    for avatar_request in inference.requests:
        for _ in range(avatar_request.count):
            variant = len(rendered)
            framed = _framed(sources[variant % len(sources)], variant)
            avatar = stamp_emulated(_styled(framed, avatar_request.style))
            buffer = io.BytesIO()
            avatar.save(buffer, "JPEG", quality=85)
            rendered.append((avatar_request.style, buffer.getvalue()))
    return rendered


def _framed(source: Image.Image, variant: int) -> Image.Image:
    """A square crop that differs a little per avatar, so a batch is not one image N times."""
    zoom = 1.0 - 0.06 * (variant % 4)
    side = int(min(source.size) * zoom)
    shift = (variant % 3 - 1) * (min(source.size) - side) // 2
    left = (source.width - side) // 2 + shift
    top = (source.height - side) // 2
    left = max(0, min(source.width - side, left))
    crop = source.crop((left, top, left + side, top + side))
    return crop.resize((AVATAR_SIDE, AVATAR_SIDE), Image.Resampling.LANCZOS)


def _styled(image: Image.Image, style: str) -> Image.Image:
    key = style.strip().lower()
    if key in REALISTIC_STYLES:
        return _realistic(image)
    if key in SKETCH_STYLES:
        return _sketch(image)
    if key in CARTOON_STYLES:
        return _cartoon(image)
    return _tinted(image, key)


def _realistic(image: Image.Image) -> Image.Image:
    image = ImageEnhance.Contrast(image).enhance(1.12)
    red, green, blue = image.split()
    red = red.point(lambda value: min(255, int(value * 1.06) + 4))
    blue = blue.point(lambda value: int(value * 0.92))
    return Image.merge("RGB", (red, green, blue))


def _cartoon(image: Image.Image) -> Image.Image:
    flat = ImageOps.posterize(image.filter(ImageFilter.SMOOTH_MORE), 3)
    flat = ImageEnhance.Color(flat).enhance(1.4)
    edges = ImageOps.grayscale(image).filter(ImageFilter.FIND_EDGES)
    lines = edges.point(lambda value: 255 if value > 40 else 0)
    return Image.composite(Image.new("RGB", image.size, (20, 20, 20)), flat, lines)


def _sketch(image: Image.Image) -> Image.Image:
    edges = ImageOps.grayscale(image).filter(ImageFilter.FIND_EDGES)
    paper = ImageOps.autocontrast(ImageOps.invert(edges), cutoff=2)
    return paper.convert("RGB")


def _tinted(image: Image.Image, style: str) -> Image.Image:
    """Unknown styles: a tint of a colour derived from the style name, stable across runs."""
    digest = hashlib.sha256(style.encode()).digest()
    tint = Image.new("RGB", image.size, (digest[0], digest[1], digest[2]))
    return Image.blend(image, tint, 0.3)
