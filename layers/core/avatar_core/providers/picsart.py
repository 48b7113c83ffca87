"""Picsart AI Avatars: train a model from selfies, then create avatars from it.

Only this module knows Picsart's wire format. Every path, field name and status word is in
the block below, so a correction to the contract is a one-line change.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

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
PROVIDER = "picsart"
API_KEY_HEADER = "X-Picsart-API-Key"
CREATE_MODEL_PATH = "/avatars/models"
MODEL_PATH = "/avatars/models/{model_id}"
CREATE_INFERENCE_PATH = "/avatars/models/{model_id}/inferences"
INFERENCE_PATH = "/avatars/models/{model_id}/inferences/{inference_id}"
F_IMAGES = "images"
F_TYPE = "type"
F_REQUESTS = "requests"
F_STYLE = "style"
F_COUNT = "count"
F_PROMPT = "prompt"
F_MODEL_ID = "model_id"
F_INFERENCE_ID = "inference_id"
F_STATUS = "status"
F_PROGRESS = "progress"
F_MESSAGE = "message"
F_DETAIL = "detail"
F_DATA = "data"
F_URL = "url"
STATUS_ACCEPTED = "ACCEPTED"
STATUS_IMAGE_NOT_VALID = "IMAGE_NOT_VALID"
STATES = {
    STATUS_ACCEPTED: JobState.QUEUED,
    "IN_PROGRESS": JobState.RUNNING,
    "DONE": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    STATUS_IMAGE_NOT_VALID: JobState.FAILED,
}
SUBJECTS = frozenset({"man", "woman", "couple", "dog", "cat"})
MIN_IMAGES = 5
MAX_IMAGES = 30
MAX_REASON_CHARS = 2000
# -----------------------------------------------------------------------------------------


class StyleRequest(BaseModel):
    """``count`` avatars in one ``style``, optionally steered by a prompt."""

    model_config = ConfigDict(frozen=True)

    style: str = Field(min_length=1)
    count: int = Field(ge=1)
    prompt: str | None = None


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=False)


class _ModelAccepted(_WireModel):
    model_id: str = Field(alias=F_MODEL_ID, min_length=1)
    status: str = Field(default=STATUS_ACCEPTED, alias=F_STATUS)


class _InferenceAccepted(_WireModel):
    inference_id: str = Field(alias=F_INFERENCE_ID, min_length=1)
    status: str = Field(default=STATUS_ACCEPTED, alias=F_STATUS)


class _Avatar(_WireModel):
    url: str = Field(alias=F_URL, min_length=1)


class _JobReport(_WireModel):
    status: str = Field(alias=F_STATUS, min_length=1)
    progress: float | None = Field(default=None, alias=F_PROGRESS)
    message: str | None = Field(default=None, alias=F_MESSAGE)
    data: list[_Avatar] | None = Field(default=None, alias=F_DATA)


def describe_error(body: object) -> str | None:
    """Picsart's error body is ``{code, message, detail}``; keep message and detail."""
    if not isinstance(body, dict):
        return None
    parts: list[str] = []
    for field in (F_MESSAGE, F_DETAIL):
        value = body.get(field)
        if value in (None, "", [], {}):
            continue
        text = compact_json(value)
        if text not in parts:
            parts.append(text)
    return " — ".join(parts) or None


class PicsartClient:
    """Picsart AI Avatars over HTTPS. One call per method; retries are the caller's."""

    def __init__(
        self,
        base_url: str,
        api_key: ApiKey,
        *,
        connect_timeout_seconds: float = 5.0,
        read_timeout_seconds: float = 20.0,
        session: requests.Session | None = None,
        training_first_poll_seconds: int = 300,
        training_poll_seconds: int = 120,
        generation_first_poll_seconds: int = 20,
        generation_poll_seconds: int = 10,
    ) -> None:
        self._http = ProviderHttp(
            provider=PROVIDER,
            base_url=base_url,
            api_key=api_key,
            auth_headers=lambda key: {API_KEY_HEADER: key},
            describe_error=describe_error,
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            session=session,
        )
        self._training_schedule = PollSchedule(training_first_poll_seconds, training_poll_seconds)
        self._generation_schedule = PollSchedule(
            generation_first_poll_seconds, generation_poll_seconds
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, session: requests.Session | None = None
    ) -> PicsartClient:
        """The key is read from its parameter on the first call, then from powertools' cache."""
        parameter = settings.picsart_api_key_parameter
        if not parameter:
            raise ValueError("picsart_api_key_parameter is not configured")
        max_age = settings.secret_cache_seconds
        return cls(
            settings.picsart_base_url,
            lambda: secret_from_parameter(parameter, max_age),
            connect_timeout_seconds=settings.provider_connect_timeout_seconds,
            read_timeout_seconds=settings.provider_read_timeout_seconds,
            session=session,
            training_first_poll_seconds=settings.training_first_poll_seconds,
            training_poll_seconds=settings.training_poll_seconds,
            generation_first_poll_seconds=settings.generation_first_poll_seconds,
            generation_poll_seconds=settings.generation_poll_seconds,
        )

    # --- training ------------------------------------------------------------------------

    def submit_training(self, *, image_urls: list[str], subject: str) -> SubmittedJob:
        if not MIN_IMAGES <= len(image_urls) <= MAX_IMAGES:
            raise ValueError(
                f"training needs {MIN_IMAGES} to {MAX_IMAGES} selfie URLs, got {len(image_urls)}"
            )
        for url in image_urls:
            _require_http_url(url)
        if subject not in SUBJECTS:
            raise ValueError(f"subject must be one of {sorted(SUBJECTS)}, got {subject!r}")
        body = {F_IMAGES: list(image_urls), F_TYPE: subject}
        call = f"POST {CREATE_MODEL_PATH}"
        answer = self._http.post(CREATE_MODEL_PATH, body, call=call, starts_paid_work=True)
        accepted = parse_body(
            _ModelAccepted, answer, provider=PROVIDER, call=call, starts_paid_work=True
        )
        return SubmittedJob(job_id=accepted.model_id, provider_status=accepted.status)

    def training_status(self, provider_model_id: str) -> JobStatus:
        path = MODEL_PATH.format(model_id=_path_id(provider_model_id, F_MODEL_ID))
        call = f"GET {MODEL_PATH}"
        answer = self._http.get(path, call=call)
        report = parse_body(_JobReport, answer, provider=PROVIDER, call=call)
        return _job_status(report, job="training", expects_results=False)

    def training_poll_advice(
        self, polls_so_far: int, last: JobStatus | None = None, waited_seconds: int | None = None
    ) -> PollAdvice:
        return self._training_schedule.advice(polls_so_far, last, waited_seconds)

    # --- avatars -------------------------------------------------------------------------

    def submit_generation(
        self, provider_model_id: str, requests: list[StyleRequest]
    ) -> SubmittedJob:
        if not requests:
            raise ValueError("at least one style request is needed")
        path = CREATE_INFERENCE_PATH.format(model_id=_path_id(provider_model_id, F_MODEL_ID))
        body = {F_REQUESTS: [_style_body(request) for request in requests]}
        call = f"POST {CREATE_INFERENCE_PATH}"
        answer = self._http.post(path, body, call=call, starts_paid_work=True)
        accepted = parse_body(
            _InferenceAccepted, answer, provider=PROVIDER, call=call, starts_paid_work=True
        )
        return SubmittedJob(job_id=accepted.inference_id, provider_status=accepted.status)

    def generation_status(self, provider_model_id: str, inference_id: str) -> JobStatus:
        path = INFERENCE_PATH.format(
            model_id=_path_id(provider_model_id, F_MODEL_ID),
            inference_id=_path_id(inference_id, F_INFERENCE_ID),
        )
        call = f"GET {INFERENCE_PATH}"
        answer = self._http.get(path, call=call)
        report = parse_body(_JobReport, answer, provider=PROVIDER, call=call)
        return _job_status(report, job="avatar generation", expects_results=True)

    def generation_poll_advice(
        self, polls_so_far: int, last: JobStatus | None = None
    ) -> PollAdvice:
        return self._generation_schedule.advice(polls_so_far, last)


def _style_body(request: StyleRequest) -> dict[str, Any]:
    body: dict[str, Any] = {F_STYLE: request.style, F_COUNT: request.count}
    if request.prompt:
        body[F_PROMPT] = request.prompt
    return body


def _job_status(report: _JobReport, *, job: str, expects_results: bool) -> JobStatus:
    word = report.status
    state = STATES.get(word.upper(), JobState.RUNNING)
    progress = None if report.progress is None else min(100.0, max(0.0, report.progress))
    urls = [avatar.url for avatar in report.data or []]
    error = None
    if state is JobState.FAILED:
        reason = clip(report.message or "", MAX_REASON_CHARS) or "no reason given"
        if word.upper() == STATUS_IMAGE_NOT_VALID:
            error = f"the provider could not use one or more selfies ({word}): {reason}"
        else:
            error = f"the provider failed the {job} ({word}): {reason}"
    elif state is JobState.SUCCEEDED and expects_results and not urls:
        state = JobState.FAILED
        error = f"the provider reported the {job} {word} but returned no images"
    return JobStatus(
        state=state,
        provider_status=word,
        progress=progress,
        error=error,
        result_urls=urls if state is JobState.SUCCEEDED else [],
    )


def _path_id(value: str, name: str) -> str:
    if not value or not value.strip():
        raise ValueError(f"{name} is empty")
    return quote(value, safe="")


def _require_http_url(url: str) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("every selfie URL must be an absolute http(s) URL")
