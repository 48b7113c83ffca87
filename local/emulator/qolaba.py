"""Emulated Qolaba Face Avatar: one reference face in, a batch of consistent avatars out.

The service is a FastAPI app, so validation errors come back as FastAPI's 422 list and other
errors as ``{"detail": "..."}``; the emulator answers the same way (it validates with
pydantic, as FastAPI does). Jobs are queued (``celery: true``) and polled by task id.

Status answers have the documented shape (docs.qolaba.ai "Task Status": every field
present, ``""`` when empty) and Celery's state words, which the docs imply but never list;
``status_words`` in the admin script swaps a word for another to test a client's judgement.
"""

from __future__ import annotations

import io
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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

SCRIPTABLE_FACE_OUTCOMES = ("FAILURE",)
PENDING_SHARE = 0.1
FAILURE_SHARE = 0.5
KEPT_REFERENCE_SIDE = 768
FACE_SHARE = 0.65
HEX_COLOUR = r"^#[0-9A-Fa-f]{6}$"


class FaceAvatarBody(BaseModel):
    """The body of ``POST /getImageToImage``, with the seed's ranges."""

    model_config = ConfigDict(extra="ignore")

    app_id: str
    image: str
    prompt: str | None = None
    negative_prompt: str | None = None
    gender: str | None = None
    batch: int = Field(default=1, ge=1, le=8)
    width: int = Field(default=1024, ge=256, le=1536)
    height: int = Field(default=1024, ge=256, le=1536)
    num_inference_steps: int = Field(default=30, ge=1, le=50)
    guidance_scale: float = Field(default=7.5, ge=1, le=30)
    remove_background: bool = False
    bg_color: str = Field(default="#000000", pattern=HEX_COLOUR)
    celery: bool = False
    refID: str | None = None  # the provider's own field name


class TaskQuery(BaseModel):
    """The body of ``POST /getImage``: the task id and, optionally, the caller's reference."""

    id: str
    refID: str | None = None  # the provider's own field name


def error_response(status: int, detail: Any) -> Response:
    """FastAPI's error shape: ``{"detail": ...}``."""
    response = jsonify({"detail": detail})
    response.status_code = status
    return response


def _scripted_error(status: int, message: str | None) -> Response:
    if message is None:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "Error"
    return error_response(status, message)


def _unprocessable(errors: list[dict[str, Any]]) -> Response:
    return error_response(422, errors)


@dataclass
class _FaceTask:
    task_id: str
    body: FaceAvatarBody
    reference: Image.Image | None
    invalid_reason: str | None
    submitted_at: float
    outcome: Outcome | None
    never_finish: bool
    output: list[str] | None = None
    render_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class _Phase:
    status: str
    error: str | None = None
    error_data: dict[str, Any] | None = None
    time_required: float | None = None


def make_blueprint(state: EmulatorState) -> Blueprint:
    config = state.config
    blueprint = Blueprint("qolaba", __name__)
    tasks: dict[str, _FaceTask] = {}
    registry_lock = threading.Lock()

    @blueprint.before_request
    def authenticate() -> Response | None:
        expected = f"Bearer {config.qolaba_token}"
        given = request.headers.get("Authorization", "")
        if not secrets.compare_digest(given.encode(), expected.encode()):
            return error_response(401, "Invalid token")
        return None

    @blueprint.post("/getImageToImage")
    @guarded(state, "face_submit", _scripted_error)
    def submit_face_avatar() -> Response:
        body = _validated(FaceAvatarBody)
        if isinstance(body, Response):
            return body
        if not body.celery:
            return _unprocessable(
                [
                    {
                        "type": "value_error",
                        "loc": ["body", "celery"],
                        "msg": "The provider emulator runs queued jobs only: send celery=true",
                        "input": body.celery,
                    }
                ]
            )
        try:
            data = fetch(body.image, config.fetch_timeout_seconds)
        except FetchFailed as error:
            return error_response(
                422, f"Unable to download the image from {without_query(body.image)} ({error})"
            )
        try:
            reference, invalid_reason = decode_image(data, KEPT_REFERENCE_SIDE), None
        except ImageInvalid as error:
            reference, invalid_reason = None, f"Invalid image: {error}"
        task = _FaceTask(
            task_id=str(uuid.uuid4()),
            body=body,
            reference=reference,
            invalid_reason=invalid_reason,
            submitted_at=state.clock.now(),
            outcome=state.faults.outcome_for("face"),
            never_finish=state.faults.never_finishes("face"),
        )
        with registry_lock:
            tasks[task.task_id] = task
        state.count("face_jobs_submitted")
        state.record_job(
            "face",
            task.task_id,
            without_query(task.body.image),
            task.body.batch,
            ref_id=task.body.refID,
        )
        return jsonify({"task_id": task.task_id})

    @blueprint.post("/getImage")
    @guarded(state, "face_status", _scripted_error)
    def face_avatar_status() -> Response:
        query = _validated(TaskQuery)
        if isinstance(query, Response):
            return query
        task = tasks.get(query.id)
        if task is None:
            return error_response(404, "Task not found")
        now = state.clock.now()
        phase = _phase(task, now, config.face_seconds)
        output = _output(task, now) if phase.status == "SUCCESS" else ""
        return jsonify(
            {
                "status": state.faults.status_word(phase.status),
                "output": output,
                "error": phase.error or "",
                "error_data": phase.error_data or "",
                "time_required": "" if phase.time_required is None else str(phase.time_required),
                "input": "",
                "app_id": task.body.app_id,
                "task_id": task.task_id,
            }
        )

    def _output(task: _FaceTask, now: float) -> list[str]:
        """Render once, on the first SUCCESS poll; URLs expire a TTL after the job finished."""
        with task.render_lock:
            if task.output is None:
                assert task.reference is not None
                finished_at = task.submitted_at + config.face_seconds
                ttl = finished_at + state.faults.result_ttl(config.result_ttl_seconds) - now
                content_type = "image/png" if task.body.remove_background else "image/jpeg"
                task.output = [
                    state.files.publish(
                        _render_face(task.reference, task.body, variant), content_type, ttl
                    )
                    for variant in range(task.body.batch)
                ]
                scripted = state.faults.take_result_urls()
                if scripted:
                    task.output[: len(scripted)] = scripted[: len(task.output)]
            return task.output

    return blueprint


def _validated(model: type[BaseModel]) -> Any:
    """The parsed body, or FastAPI's 422 answer for it."""
    raw = request.get_data(cache=True)
    if not raw:
        return _unprocessable(
            [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
        )
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        position = getattr(error, "pos", 0)
        return _unprocessable(
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", position],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": getattr(error, "msg", str(error))},
                }
            ]
        )
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        return _unprocessable(
            [
                {**_jsonable(detail), "loc": ["body", *detail["loc"]]}
                for detail in error.errors(include_url=False)
            ]
        )


def _jsonable(detail: Any) -> dict[str, Any]:
    """Pydantic error details, with ``ctx`` values made JSON-safe as FastAPI does."""
    plain = dict(detail)
    if "ctx" in plain:
        plain["ctx"] = {key: _json_safe(value) for key, value in plain["ctx"].items()}
    return plain


def _json_safe(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _phase(task: _FaceTask, now: float, duration: float) -> _Phase:
    elapsed = now - task.submitted_at
    if elapsed < duration * PENDING_SHARE:
        return _Phase("PENDING")
    if task.invalid_reason:
        return _Phase(
            "FAILURE",
            error=task.invalid_reason,
            error_data={"image": without_query(task.body.image)},
            time_required=round(float(duration * PENDING_SHARE), 3),
        )
    if task.never_finish:
        return _Phase("STARTED")
    if task.outcome and elapsed >= duration * FAILURE_SHARE:
        return _Phase(
            task.outcome.status,
            error=task.outcome.message or "Face avatar failed (scripted by the provider emulator)",
            error_data={"scripted": True},
            time_required=round(float(duration * FAILURE_SHARE), 3),
        )
    if elapsed >= duration:
        return _Phase("SUCCESS", time_required=round(float(duration), 3))
    return _Phase("STARTED")


def _render_face(reference: Image.Image, body: FaceAvatarBody, variant: int) -> bytes:
    """The reference face, cartoon-flattened, in an oval on the requested background."""
    width, height = body.width, body.height
    if body.remove_background:
        canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    else:
        canvas = Image.new("RGB", (width, height), _rgb(body.bg_color))
    band = max(14, height // 12)
    side = int(min(width, height - band) * (0.72 - 0.04 * (variant % 3)))
    face = ImageOps.fit(_face_region(reference), (side, side), centering=(0.5, 0.4))
    face = ImageOps.posterize(ImageOps.autocontrast(face, cutoff=1, preserve_tone=True), 4)
    face = face.filter(ImageFilter.SMOOTH_MORE)
    face = ImageEnhance.Brightness(face).enhance(0.94 + 0.04 * (variant % 4))
    oval = Image.new("L", (side, side), 0)
    ImageDraw.Draw(oval).ellipse([side * 0.1, 0, side * 0.9, side - 1], fill=255)
    shift = (variant % 3 - 1) * (width - side) // 6
    left = (width - side) // 2 + shift
    top = (height - band - side) // 2
    canvas.paste(face.convert(canvas.mode), (left, top), oval)
    stamped = stamp_emulated(canvas)
    buffer = io.BytesIO()
    if body.remove_background:
        stamped.save(buffer, "PNG", compress_level=1)
    else:
        stamped.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _face_region(reference: Image.Image) -> Image.Image:
    """The middle of the reference, where a selfie's face is, so the oval is mostly face."""
    width, height = reference.size
    side = int(min(width, height) * FACE_SHARE)
    left, top = (width - side) // 2, max(0, (height - side) // 2 - side // 10)
    return reference.crop((left, top, left + side, top + side))


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)
