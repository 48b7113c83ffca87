"""Picsart AI Avatars: train a model from selfies and create avatars from it, or make
Instant Avatars from one image.

Only this module knows Picsart's wire format. Every path, field name and status word is in
the block below, so a correction to the contract is a one-line change.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator

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
# Sources: docs.picsart.io "AI Avatars 101" (both versions: trained models, then Instant
# Avatar), the reference pages "Get avatar model" (first check 5 min, then every 2 min) and
# "Get instant avatar inferences" (first check 20 s, then every 10 s), "Error Responses"
# ({code, message, detail}) and "Quotas and limits" (the 429 ``fault`` body). The pages do
# not show request body field names: the ones marked "assumed" are ours (README, providers).
PROVIDER = "picsart"
API_KEY_HEADER = "X-Picsart-API-Key"
CREATE_MODEL_PATH = "/avatars/models"
MODEL_PATH = "/avatars/models/{model_id}"
CREATE_INFERENCE_PATH = "/avatars/models/{model_id}/inferences"
INFERENCE_PATH = "/avatars/models/{model_id}/inferences/{inference_id}"
CREATE_INSTANT_PATH = "/avatars/instant"
INSTANT_PATH = "/avatars/instant/{inference_id}"
F_IMAGES = "images"  # assumed
F_TYPE = "type"  # documented ("the type parameter")
F_REQUESTS = "requests"  # assumed
F_STYLE = "style"  # assumed
F_COUNT = "count"  # documented for Instant Avatar ("the count of avatars"), assumed here
F_PROMPT = "prompt"  # documented ("add prompts")
F_IMAGE_URL = "image_url"  # assumed: Instant Avatar takes "only one image" by URL
F_MODEL_ID = "model_id"  # documented
F_INFERENCE_ID = "inference_id"  # documented
F_STATUS = "status"  # documented
F_PROGRESS = "progress"  # assumed
F_MESSAGE = "message"  # documented (error body)
F_DETAIL = "detail"  # documented (error body)
F_DATA = "data"  # assumed: where the avatar URLs are
F_URL = "url"  # documented ("each generated avatar is provided with a URL")
F_FAULT = "fault"  # documented (quota answer)
F_FAULT_STRING = "faultstring"
F_FAULT_DETAIL = "detail"
F_FAULT_CODE = "errorcode"
QUOTA_FAULT_CODE = "QuotaViolation"  # documented: "policies.ratelimit.QuotaViolation"
# How long to wait after a 429. "Quotas and limits" documents the header and that it tells
# "how long to wait before retrying your request", not its unit: delta-seconds is our
# reading of those words (documented meaning, assumed unit); a Unix epoch (seconds or ms)
# and an HTTP/ISO date are accepted too (assumed), read by transport.parse_wait_header.
# Retry-After (not documented by Picsart) is read if the reset time is missing (assumed).
RESET_TIME_HEADER = "X-Picsart-RateLimit-Reset-Time"
WAIT_HEADERS = (RESET_TIME_HEADER, "Retry-After")
# 402 {"message": "Payment Required"}: the credits are used up (documented).
STATUS_ACCEPTED = "ACCEPTED"
STATUS_IMAGE_NOT_VALID = "IMAGE_NOT_VALID"
STATES = {
    STATUS_ACCEPTED: JobState.QUEUED,
    "IN_PROGRESS": JobState.RUNNING,
    "DONE": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    STATUS_IMAGE_NOT_VALID: JobState.FAILED,
}
MIN_IMAGES = 5
MAX_IMAGES = 30
MAX_REASON_CHARS = 2000
# What jobs of each kind typically take (the median) and how widely (the log-normal sigma):
# the poll schedule's prior (PollSchedule.from_history builds one from measured durations).
# It aims its first poll at a lower quantile of that spread (a training's at the 2nd
# percentile, 595 s). About 20 min and 60 s, as the emulator's typical durations; the
# sigmas are assumed (no provider documents a spread); bench/polling.py measures the
# detection lag and polls this gives, and the trade-off behind the generation's settings.
TRAINING_TYPICAL_SECONDS = 20 * 60
TRAINING_SPREAD = 0.35
GENERATION_TYPICAL_SECONDS = 60
GENERATION_SPREAD = 0.25
GENERATION_FIRST_Z = 0.8
GENERATION_EARLY_QUANTILE = 0.02
GENERATION_LAG_SECONDS = 9
# -----------------------------------------------------------------------------------------


class StyleRequest(BaseModel):
    """``count`` avatars in one ``style``, optionally steered by a prompt."""

    model_config = ConfigDict(frozen=True)

    style: str = Field(min_length=1)
    count: int = Field(ge=1)
    prompt: str | None = None


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=False)


def _id_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class _ModelAccepted(_WireModel):
    model_id: str = Field(alias=F_MODEL_ID, min_length=1)
    status: str = Field(default=STATUS_ACCEPTED, alias=F_STATUS)

    _id_as_text = field_validator("model_id", mode="before")(staticmethod(_id_text))


class _InferenceAccepted(_WireModel):
    inference_id: str = Field(alias=F_INFERENCE_ID, min_length=1)
    status: str = Field(default=STATUS_ACCEPTED, alias=F_STATUS)

    _id_as_text = field_validator("inference_id", mode="before")(staticmethod(_id_text))


class _JobReport(_WireModel):
    status: str = Field(alias=F_STATUS, min_length=1)
    progress: Any = Field(default=None, alias=F_PROGRESS)
    message: Any = Field(default=None, alias=F_MESSAGE)
    detail: Any = Field(default=None, alias=F_DETAIL)
    data: Any = Field(default=None, alias=F_DATA)

    def percent(self) -> float | None:
        """``progress`` as 0-100, whether sent as 42, 42.5 or "42"."""
        value = self.progress
        if isinstance(value, str):
            try:
                value = float(value.strip().rstrip("%"))
            except ValueError:
                return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return min(100.0, max(0.0, float(value))) if math.isfinite(value) else None

    def urls(self) -> list[str]:
        """The avatar URLs: ``data`` as a list of ``{url}`` objects (or of plain URLs)."""
        items = self.data if isinstance(self.data, list) else []
        urls = []
        for item in items:
            url = item.get(F_URL) if isinstance(item, dict) else item
            if isinstance(url, str) and url.strip():
                urls.append(url.strip())
        return urls

    def reason(self) -> str:
        parts = [
            compact_json(value)
            for value in (self.message, self.detail)
            if value not in (None, "", [], {})
        ]
        return clip(" — ".join(dict.fromkeys(parts)), MAX_REASON_CHARS)


def describe_error(body: object) -> str | None:
    """Picsart's error body is ``{code, message, detail}``; a quota answer is
    ``{"fault": {"faultstring", "detail": {"errorcode"}}}``. Keep the words of either."""
    if not isinstance(body, dict):
        return None
    fault = body.get(F_FAULT)
    if isinstance(fault, dict):
        text = compact_json(fault.get(F_FAULT_STRING) or "").strip()
        detail = fault.get(F_FAULT_DETAIL)
        code = detail.get(F_FAULT_CODE) if isinstance(detail, dict) else None
        if code:
            text = f"{text} ({code})" if text else str(code)
        return text or compact_json(fault)
    parts: list[str] = []
    for field in (F_MESSAGE, F_DETAIL):
        value = body.get(field)
        if value in (None, "", [], {}):
            continue
        text = compact_json(value)
        if text not in parts:
            parts.append(text)
    return " — ".join(parts) or None


def is_quota_fault(body: object) -> bool:
    """The 429 a demo account gets once its quota is used up: no retry fixes it."""
    fault = body.get(F_FAULT) if isinstance(body, dict) else None
    detail = fault.get(F_FAULT_DETAIL) if isinstance(fault, dict) else None
    code = detail.get(F_FAULT_CODE) if isinstance(detail, dict) else None
    return isinstance(code, str) and code.endswith(QUOTA_FAULT_CODE)


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
        admit: Callable[[], None] | None = None,
        training_first_poll_seconds: int = 300,
        training_poll_seconds: int = 120,
        generation_first_poll_seconds: int = 20,
        generation_poll_seconds: int = 10,
        instant_first_poll_seconds: int = 20,
        instant_poll_seconds: int = 10,
    ) -> None:
        self._http = ProviderHttp(
            provider=PROVIDER,
            base_url=base_url,
            api_key=api_key,
            auth_headers=lambda key: {API_KEY_HEADER: key},
            describe_error=describe_error,
            is_quota_fault=is_quota_fault,
            wait_headers=WAIT_HEADERS,
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
            session=session,
            admit=admit,
        )
        self._training_schedule = PollSchedule(
            training_first_poll_seconds,
            training_poll_seconds,
            typical_seconds=TRAINING_TYPICAL_SECONDS,
            spread=TRAINING_SPREAD,
        )
        self._generation_schedule = PollSchedule(
            generation_first_poll_seconds,
            generation_poll_seconds,
            typical_seconds=GENERATION_TYPICAL_SECONDS,
            spread=GENERATION_SPREAD,
            # No progress to correct an early first poll with: every poll before the finish
            # is spent for nothing, so the first goes later (the 21st percentile, 49 s); then
            # 9 s past the 2nd percentile of what is left (jittered to 7-9 s near the median).
            first_z=GENERATION_FIRST_Z,
            early_quantile=GENERATION_EARLY_QUANTILE,
            lag_seconds=GENERATION_LAG_SECONDS,
        )
        self._instant_schedule = PollSchedule(instant_first_poll_seconds, instant_poll_seconds)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        admit: Callable[[], None] | None = None,
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
            admit=admit,
            training_first_poll_seconds=settings.training_first_poll_seconds,
            training_poll_seconds=settings.training_poll_seconds,
            generation_first_poll_seconds=settings.generation_first_poll_seconds,
            generation_poll_seconds=settings.generation_poll_seconds,
            instant_first_poll_seconds=settings.instant_first_poll_seconds,
            instant_poll_seconds=settings.instant_poll_seconds,
        )

    # --- training ------------------------------------------------------------------------

    def submit_training(self, *, image_urls: list[str], subject: str) -> SubmittedJob:
        if not MIN_IMAGES <= len(image_urls) <= MAX_IMAGES:
            raise ValueError(
                f"training needs {MIN_IMAGES} to {MAX_IMAGES} selfie URLs, got {len(image_urls)}"
            )
        for url in image_urls:
            _require_http_url(url)
        if not subject:
            raise ValueError("a subject is needed")
        body = {F_IMAGES: list(image_urls), F_TYPE: subject}
        call = f"POST {CREATE_MODEL_PATH}"
        answer = self._http.post(CREATE_MODEL_PATH, body, call=call, starts_paid_work=True)
        accepted = self._http.parse(_ModelAccepted, answer, call=call, starts_paid_work=True)
        return SubmittedJob(job_id=accepted.model_id, provider_status=accepted.status)

    def training_status(self, provider_model_id: str) -> JobStatus:
        path = MODEL_PATH.format(model_id=_path_id(provider_model_id, F_MODEL_ID))
        call = f"GET {MODEL_PATH}"
        answer = self._http.get(path, call=call)
        report = self._http.parse(_JobReport, answer, call=call)
        return _job_status(report, job="training", expects_results=False, answer=answer)

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
        accepted = self._http.parse(_InferenceAccepted, answer, call=call, starts_paid_work=True)
        return SubmittedJob(job_id=accepted.inference_id, provider_status=accepted.status)

    def generation_status(self, provider_model_id: str, inference_id: str) -> JobStatus:
        path = INFERENCE_PATH.format(
            model_id=_path_id(provider_model_id, F_MODEL_ID),
            inference_id=_path_id(inference_id, F_INFERENCE_ID),
        )
        call = f"GET {INFERENCE_PATH}"
        answer = self._http.get(path, call=call)
        report = self._http.parse(_JobReport, answer, call=call)
        return _job_status(report, job="avatar generation", expects_results=True, answer=answer)

    def generation_poll_advice(
        self, polls_so_far: int, last: JobStatus | None = None, waited_seconds: int | None = None
    ) -> PollAdvice:
        return self._generation_schedule.advice(polls_so_far, last, waited_seconds)

    # --- instant avatars -----------------------------------------------------------------

    def submit_instant(
        self, *, image_url: str, subject: str, count: int, prompt: str | None = None
    ) -> SubmittedJob:
        """One reference image in, ``count`` avatars out; no trained model involved."""
        _require_http_url(image_url)
        if not subject:
            raise ValueError("a subject is needed")
        if count < 1:
            raise ValueError("count must be at least 1")
        body: dict[str, Any] = {F_IMAGE_URL: image_url, F_TYPE: subject, F_COUNT: count}
        if prompt:
            body[F_PROMPT] = prompt
        call = f"POST {CREATE_INSTANT_PATH}"
        answer = self._http.post(CREATE_INSTANT_PATH, body, call=call, starts_paid_work=True)
        accepted = self._http.parse(_InferenceAccepted, answer, call=call, starts_paid_work=True)
        return SubmittedJob(job_id=accepted.inference_id, provider_status=accepted.status)

    def instant_status(self, inference_id: str) -> JobStatus:
        path = INSTANT_PATH.format(inference_id=_path_id(inference_id, F_INFERENCE_ID))
        call = f"GET {INSTANT_PATH}"
        answer = self._http.get(path, call=call)
        report = self._http.parse(_JobReport, answer, call=call)
        return _job_status(report, job="instant avatar", expects_results=True, answer=answer)

    def instant_poll_advice(self, polls_so_far: int, last: JobStatus | None = None) -> PollAdvice:
        return self._instant_schedule.advice(polls_so_far, last)


def _style_body(request: StyleRequest) -> dict[str, Any]:
    body: dict[str, Any] = {F_STYLE: request.style, F_COUNT: request.count}
    if request.prompt:
        body[F_PROMPT] = request.prompt
    return body


def _job_status(
    report: _JobReport, *, job: str, expects_results: bool, answer: object
) -> JobStatus:
    """The documented words decide. An undocumented word with avatar URLs is a finished job;
    without them it counts as running, and what the provider said is kept as a note."""
    word = report.status.strip()
    known = STATES.get(word.upper())
    urls = report.urls()
    note = None
    if known is None:
        state = JobState.SUCCEEDED if expects_results and urls else JobState.RUNNING
        if state is JobState.RUNNING:
            note = f"the provider answered a status we do not know ({word}): " + clip(
                compact_json(answer), MAX_REASON_CHARS
            )
    else:
        state = known
    error = None
    if state is JobState.FAILED:
        reason = report.reason() or "no reason given"
        if word.upper() == STATUS_IMAGE_NOT_VALID:
            what = "one or more selfies" if job == "training" else "the reference image"
            error = f"the provider could not use {what} ({word}): {reason}"
        else:
            error = f"the provider failed the {job} ({word}): {reason}"
    elif state is JobState.SUCCEEDED and expects_results and not urls:
        state = JobState.FAILED
        error = f"the provider reported the {job} {word} but returned no images"
    return JobStatus(
        state=state,
        provider_status=word,
        progress=report.percent(),
        error=error,
        note=note,
        known_status=known is not None,
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
