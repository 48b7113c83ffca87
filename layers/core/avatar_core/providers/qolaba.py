"""Qolaba Face Avatar: new images that keep the face of one reference photo.

Only this module knows Qolaba's wire format. Paths, response field names and status words
are in the block below; the request body's field names are those of ``FaceAvatarRequest``,
which is the wire body itself.
"""

from __future__ import annotations

from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field

from avatar_core.providers.base import JobState, JobStatus, PollAdvice, SubmittedJob
from avatar_core.providers.transport import (
    ApiKey,
    PollSchedule,
    ProviderHttp,
    clip,
    compact_json,
    parse_body,
    secret_from_parameter,
)
from avatar_core.settings import Settings

# --- the wire contract -------------------------------------------------------------------
PROVIDER = "qolaba"
AUTH_HEADER = "Authorization"
AUTH_SCHEME = "Bearer"
SUBMIT_PATH = "/getImageToImage"
STATUS_PATH = "/getImage"
F_TASK_ID = "task_id"
F_STATUS_REQUEST_ID = "id"
F_STATUS = "status"
F_OUTPUT = "output"
F_ERROR = "error"
F_ERROR_DATA = "error_data"
F_TIME_REQUIRED = "time_required"
F_DETAIL = "detail"
F_DETAIL_LOCATION = "loc"
F_DETAIL_MESSAGE = "msg"
STATUS_SUBMITTED = "PENDING"
MAX_REASON_CHARS = 2000
STATES = {
    "PENDING": JobState.QUEUED,
    "IN_PROGRESS": JobState.RUNNING,
    "STARTED": JobState.RUNNING,
    "RETRY": JobState.RUNNING,
    "SUCCESS": JobState.SUCCEEDED,
    "FAILURE": JobState.FAILED,
    "REVOKED": JobState.FAILED,
}
# -----------------------------------------------------------------------------------------


class FaceAvatarRequest(BaseModel):
    """The ``/getImageToImage`` body. Ranges are validated by the API before this point.

    ``app_id`` is left empty by callers and filled from configuration by the client;
    ``prompt=None`` asks for the provider's default prompt, steered by ``gender``; ``celery``
    is always true because the client relies on the queued answer's ``task_id``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_id: str | None = None
    image: str = Field(min_length=1, description="URL of the reference face")
    prompt: str | None = None
    negative_prompt: str
    gender: str
    batch: int
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    remove_background: bool
    bg_color: str
    celery: Literal[True] = True


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=False)


class _TaskQueued(_WireModel):
    task_id: str = Field(alias=F_TASK_ID, min_length=1)


class _TaskReport(_WireModel):
    status: str = Field(alias=F_STATUS, min_length=1)
    output: list[str] | None = Field(default=None, alias=F_OUTPUT)
    error: str | None = Field(default=None, alias=F_ERROR)
    error_data: Any = Field(default=None, alias=F_ERROR_DATA)
    time_required: float | None = Field(default=None, alias=F_TIME_REQUIRED)


def describe_error(body: object) -> str | None:
    """Qolaba answers ``{"detail": "..."}``, or FastAPI's ``{"detail": [{loc, msg}, ...]}``."""
    if not isinstance(body, dict) or body.get(F_DETAIL) in (None, "", []):
        return None
    detail = body[F_DETAIL]
    if isinstance(detail, list):
        return "; ".join(_describe_detail_item(item) for item in detail)
    return compact_json(detail)


def _describe_detail_item(item: object) -> str:
    if not isinstance(item, dict) or F_DETAIL_MESSAGE not in item:
        return compact_json(item)
    location = item.get(F_DETAIL_LOCATION)
    if isinstance(location, list) and location:
        return f"{'.'.join(str(part) for part in location)}: {item[F_DETAIL_MESSAGE]}"
    return str(item[F_DETAIL_MESSAGE])


class QolabaClient:
    """Qolaba's Face Avatar over HTTPS. One call per method; retries are the caller's."""

    def __init__(
        self,
        base_url: str,
        api_key: ApiKey,
        app_id: str,
        *,
        connect_timeout_seconds: float = 5.0,
        read_timeout_seconds: float = 20.0,
        session: requests.Session | None = None,
        face_first_poll_seconds: int = 10,
        face_poll_seconds: int = 5,
    ) -> None:
        if not app_id:
            raise ValueError("the Qolaba app_id is not configured")
        self._app_id = app_id
        self._http = ProviderHttp(
            provider=PROVIDER,
            base_url=base_url,
            api_key=api_key,
            auth_headers=lambda key: {AUTH_HEADER: f"{AUTH_SCHEME} {key}"},
            describe_error=describe_error,
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            session=session,
        )
        self._schedule = PollSchedule(face_first_poll_seconds, face_poll_seconds)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, session: requests.Session | None = None
    ) -> QolabaClient:
        """The token is read from its parameter on the first call, then from powertools' cache."""
        parameter = settings.qolaba_api_key_parameter
        if not parameter:
            raise ValueError("qolaba_api_key_parameter is not configured")
        if not settings.qolaba_base_url:
            raise ValueError("qolaba_base_url is not configured")
        max_age = settings.secret_cache_seconds
        return cls(
            settings.qolaba_base_url,
            lambda: secret_from_parameter(parameter, max_age),
            settings.qolaba_app_id,
            connect_timeout_seconds=settings.provider_connect_timeout_seconds,
            read_timeout_seconds=settings.provider_read_timeout_seconds,
            session=session,
            face_first_poll_seconds=settings.face_first_poll_seconds,
            face_poll_seconds=settings.face_poll_seconds,
        )

    def submit_face_avatar(self, params: FaceAvatarRequest) -> SubmittedJob:
        body = params.model_dump(mode="json")
        body["app_id"] = params.app_id or self._app_id
        call = f"POST {SUBMIT_PATH}"
        answer = self._http.post(SUBMIT_PATH, body, call=call, starts_paid_work=True)
        queued = parse_body(
            _TaskQueued, answer, provider=PROVIDER, call=call, starts_paid_work=True
        )
        return SubmittedJob(job_id=queued.task_id, provider_status=STATUS_SUBMITTED)

    def face_avatar_status(self, task_id: str) -> JobStatus:
        if not task_id or not task_id.strip():
            raise ValueError("task_id is empty")
        call = f"POST {STATUS_PATH}"
        answer = self._http.post(STATUS_PATH, {F_STATUS_REQUEST_ID: task_id}, call=call)
        report = parse_body(_TaskReport, answer, provider=PROVIDER, call=call)
        return _job_status(report)

    def face_poll_advice(self, polls_so_far: int, last: JobStatus | None = None) -> PollAdvice:
        return self._schedule.advice(polls_so_far, last)


def _job_status(report: _TaskReport) -> JobStatus:
    word = report.status
    state = STATES.get(word.upper(), JobState.RUNNING)
    urls = list(report.output or [])
    error = None
    if state is JobState.FAILED:
        error = f"the provider failed the face avatar ({word}): {_failure_reason(report)}"
    elif state is JobState.SUCCEEDED and not urls:
        state = JobState.FAILED
        error = f"the provider reported the face avatar {word} but returned no images"
    return JobStatus(
        state=state,
        provider_status=word,
        error=error,
        result_urls=urls if state is JobState.SUCCEEDED else [],
    )


def _failure_reason(report: _TaskReport) -> str:
    error_data = None if report.error_data is None else compact_json(report.error_data)
    parts = [text for text in (report.error, error_data) if text]
    return clip(" — ".join(parts), MAX_REASON_CHARS) or "no reason given"
