"""Qolaba Face Avatar: new images that keep the face of one reference photo.

Only this module knows Qolaba's wire format. Paths, response field names and status words
are in the block below; the request body's field names are those of ``FaceAvatarRequest``,
which is the wire body itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from avatar_core.providers.base import JobState, JobStatus, PollAdvice, SubmittedJob
from avatar_core.providers.transport import (
    ApiKey,
    PollSchedule,
    ProviderHttp,
    clip,
    compact_json,
    secret_from_parameter,
)
from avatar_core.settings import Settings

# --- the wire contract -------------------------------------------------------------------
# Sources: docs.qolaba.ai "Face Avatar" (POST /getImageToImage, body fields) and "Task Status"
# (POST /getImage with id and refID; its sample answer has every field as a string), and
# theneo's Qolaba reference ("Get Status"). The status words are not documented anywhere:
# the task-status page says tasks are scheduled "through Celery", so Celery's state names are
# our assumption, and an answer we cannot place is judged by its documented fields.
# Rate limits: Qolaba documents none, nor how a throttled call is answered; we assume 429
# with ``Retry-After`` (delta-seconds or HTTP date) and 402 for an account out of credits.
PROVIDER = "qolaba"
WAIT_HEADERS = ("Retry-After",)  # assumed
AUTH_HEADER = "Authorization"
AUTH_SCHEME = "Bearer"
SUBMIT_PATH = "/getImageToImage"
STATUS_PATH = "/getImage"
F_APP_ID = "app_id"
F_REF_ID = "refID"
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
DOCUMENTED_STATUS_FIELDS = frozenset(
    {F_STATUS, F_OUTPUT, F_ERROR, F_ERROR_DATA, F_TIME_REQUIRED, F_TASK_ID, "input", F_APP_ID}
)
STATUS_SUBMITTED = "PENDING"
MAX_REASON_CHARS = 2000
MAX_OUTPUT_URLS = 64
STATES = {
    "PENDING": JobState.QUEUED,
    "RECEIVED": JobState.QUEUED,
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
    is always true because the client relies on the queued answer's ``task_id``. ``refID`` is
    our own job id: the task-status page says a reference given with the input parameters
    identifies the request, so an operator can match a task whose answer we lost.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

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
    ref_id: str | None = Field(default=None, alias=F_REF_ID)


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=False)


def _task_id(value: object) -> object:
    """A task id sent as a number is still the task's id."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class _TaskQueued(_WireModel):
    task_id: str = Field(alias=F_TASK_ID, min_length=1)

    _id_as_text = field_validator("task_id", mode="before")(staticmethod(_task_id))


class _TaskReport(_WireModel):
    """The task-status answer. Every field may come as a string (the documented sample shows
    ``""`` for all of them), so each is read leniently and interpreted afterwards.
    ``time_required`` is accepted in any shape and not used: nothing depends on it."""

    status: Any = Field(default=None, alias=F_STATUS)
    output: Any = Field(default=None, alias=F_OUTPUT)
    error: Any = Field(default=None, alias=F_ERROR)
    error_data: Any = Field(default=None, alias=F_ERROR_DATA)
    time_required: Any = Field(default=None, alias=F_TIME_REQUIRED)

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, value: object) -> object:
        if not isinstance(value, dict):
            raise ValueError("the status answer is not a JSON object")
        if not DOCUMENTED_STATUS_FIELDS & set(value):
            raise ValueError("none of the documented status fields is in the answer")
        return value

    @property
    def word(self) -> str:
        if self.status is None:
            return ""
        return (self.status if isinstance(self.status, str) else compact_json(self.status)).strip()

    def urls(self) -> list[str]:
        return result_urls(self.output)

    def failure_text(self) -> str:
        parts = [text for text in (_text(self.error), _text(self.error_data)) if text]
        return clip(" — ".join(dict.fromkeys(parts)), MAX_REASON_CHARS)


def result_urls(output: object) -> list[str]:
    """Every http(s) URL in ``output``, in order: ``""``, one URL, a list of URLs, an object
    holding a list, or any of these JSON-encoded in a string."""
    found: list[str] = []

    def walk(value: object, depth: int) -> None:
        if depth > 4 or len(found) >= MAX_OUTPUT_URLS:
            return
        if isinstance(value, str):
            text = value.strip()
            if text[:1] in ("[", "{"):
                try:
                    walk(json.loads(text), depth + 1)
                except ValueError:
                    return
                return
            if text.lower().startswith(("https://", "http://")) and not any(
                ch.isspace() for ch in text
            ):
                found.append(text)
        elif isinstance(value, list):
            for item in value:
                walk(item, depth + 1)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item, depth + 1)

    walk(output, 0)
    return list(dict.fromkeys(found))


def _text(value: object) -> str:
    if value in (None, "", [], {}):
        return ""
    return compact_json(value).strip()


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
        admit: Callable[[], None] | None = None,
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
            wait_headers=WAIT_HEADERS,
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            session=session,
            admit=admit,
        )
        self._schedule = PollSchedule(face_first_poll_seconds, face_poll_seconds)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        admit: Callable[[], None] | None = None,
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
            admit=admit,
            face_first_poll_seconds=settings.face_first_poll_seconds,
            face_poll_seconds=settings.face_poll_seconds,
        )

    def submit_face_avatar(self, params: FaceAvatarRequest) -> SubmittedJob:
        body = params.model_dump(mode="json", by_alias=True, exclude_none=False)
        body[F_APP_ID] = params.app_id or self._app_id
        if params.ref_id is None:
            del body[F_REF_ID]
        call = f"POST {SUBMIT_PATH}"
        answer = self._http.post(SUBMIT_PATH, body, call=call, starts_paid_work=True)
        queued = self._http.parse(_TaskQueued, answer, call=call, starts_paid_work=True)
        return SubmittedJob(job_id=queued.task_id, provider_status=STATUS_SUBMITTED)

    def face_avatar_status(self, task_id: str, ref_id: str | None = None) -> JobStatus:
        if not task_id or not task_id.strip():
            raise ValueError("task_id is empty")
        call = f"POST {STATUS_PATH}"
        query = {F_STATUS_REQUEST_ID: task_id}
        if ref_id:
            query[F_REF_ID] = ref_id
        answer = self._http.post(STATUS_PATH, query, call=call)
        report = self._http.parse(_TaskReport, answer, call=call)
        return _job_status(report, answer)

    def face_poll_advice(self, polls_so_far: int, last: JobStatus | None = None) -> PollAdvice:
        return self._schedule.advice(polls_so_far, last)


def _job_status(report: _TaskReport, answer: object) -> JobStatus:
    """Known words decide; an unknown (or empty) word is judged by the documented fields:
    URLs in ``output`` mean done, text in ``error``/``error_data`` means failed."""
    word = report.word
    known = STATES.get(word.upper())
    urls = report.urls()
    failure = report.failure_text()
    shown = word or "no status"
    error = None
    note = None
    if known is None:
        if urls:
            state = JobState.SUCCEEDED
        elif failure:
            state = JobState.FAILED
            error = f"the provider failed the face avatar ({shown}): {failure}"
        else:
            state = JobState.RUNNING
            note = f"the provider answered a status we do not know ({shown}): " + clip(
                compact_json(answer), MAX_REASON_CHARS
            )
    else:
        state = known
        if state is JobState.FAILED:
            error = f"the provider failed the face avatar ({shown}): {failure or 'no reason given'}"
        elif state is JobState.SUCCEEDED and not urls:
            state = JobState.FAILED
            error = f"the provider reported the face avatar {shown} but returned no images"
            if failure:
                error += f": {failure}"
    return JobStatus(
        state=state,
        provider_status=word,
        error=error,
        note=note,
        known_status=known is not None,
        result_urls=urls if state is JobState.SUCCEEDED else [],
    )
