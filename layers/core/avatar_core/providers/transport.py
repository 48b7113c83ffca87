"""HTTP plumbing shared by the provider adapters.

Every call has an explicit (connect, read) timeout and is made exactly once: retrying and
waiting belong to the state machine, which reads the typed error's class name. Redirects
are not followed, because ``requests`` would forward a custom API-key header to whatever
host a redirect names. The API key is only ever placed in a request header: it is scrubbed
from every message this module builds, and never logged.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from statistics import NormalDist
from typing import Any, TypeVar

import requests
from aws_lambda_powertools.utilities import parameters
from pydantic import BaseModel, ValidationError
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from avatar_core.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderOutcomeUnknown,
    ProviderOutOfCredits,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from avatar_core.observability import MetricUnit, metrics
from avatar_core.providers.base import JobState, JobStatus, PollAdvice

logger = logging.getLogger(__name__)

SECRETS_MANAGER_ARN_PREFIX = "arn:aws:secretsmanager:"
REQUEST_ID_HEADERS = ("x-request-id", "x-amzn-requestid", "request-id")
REDACTED = "[REDACTED]"
MAX_ERROR_TEXT = 500
MAX_QUOTED_ANSWER = 300
# PollSchedule: the first poll's quantile (z of the normal); the quantile of the finish, given
# the job still runs, that the next poll aims just past; the accepted lag as a share of the
# interval, and how it grows with the time waited; the share of the way to the median finish
# one step may take; a reported progress's assumed errors (the provider's rate bias, relative,
# and its reporting noise, in points: Picsart documents that a running training "will show
# the current progress", not how accurate it is); how few past durations make no prior.
FIRST_POLL_Z = 2.0
EARLY_QUANTILE = 0.02
NEAR_SHARE = 0.5
NEAR_GROWTH = 45
STEP_SHARE = 0.4
PROGRESS_BIAS = 0.05
PROGRESS_NOISE_POINTS = 2.0
NEAR_DONE_PROGRESS = 90.0
MIN_HISTORY = 20

ApiKey = str | Callable[[], str]
Model = TypeVar("Model", bound=BaseModel)


def secret_from_parameter(name: str, max_age: int) -> str:
    """Read an API key from SSM Parameter Store (decrypted) or, given an ARN, Secrets Manager.

    Powertools keeps the value in memory for ``max_age`` seconds, so a warm Lambda does not
    call SSM on every request and still notices a rotated key within ``max_age``.
    """
    if not name:
        raise ValueError("the name of the parameter holding the API key is empty")
    if name.startswith(SECRETS_MANAGER_ARN_PREFIX):
        value: Any = parameters.get_secret(name, max_age=max_age)
    else:
        value = parameters.get_parameter(name, decrypt=True, max_age=max_age)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return str(value).strip()


@dataclass(frozen=True)
class PollSchedule:
    """When to look at an upstream job again, aimed at the moment it finishes.

    Detection lag (the provider is done, our record does not say so yet) is time a client
    waits for nothing; every poll costs a provider request and state transitions. The
    schedule keeps a belief about the job's duration ``D`` and aims each poll just past the
    earliest moment the job may plausibly be done:

    - **what past jobs took** (the prior): ``log D`` is normal around ``log typical_seconds``
      (their median) with sigma ``spread`` (``from_history`` measures both from past
      durations). Without a typical duration there is no prior;
    - **reported progress** ``p`` after ``waited`` seconds says ``D`` is about ``100 *
      waited / p``, wrong by the provider's rate bias (``progress_bias``, relative) and its
      reporting noise (``progress_noise`` points, so ``noise / p`` relative): a log-normal
      measurement, combined with the prior by their precisions. Without progress the prior
      alone decides;
    - the belief is conditioned on the job **not being done yet** (``D > waited``); the next
      poll goes ``step`` seconds past its ``early_quantile`` (2 %: the earliest plausible
      finish), so a job finishing there is seen within ``step``, where ``step`` is the lag we
      accept (``lag_seconds``, default ``NEAR_SHARE`` of ``every_seconds``: 60 s of 120 s) or,
      while the median finish is still far, ``STEP_SHARE`` of the way to it: polling a
      minute apart is only worth it where the job is likely to end (``step_share``);
    - **first poll**: not before ``first_seconds`` and not before the prior's lower quantile
      ``typical * exp(-first_z * spread)`` (``first_z`` 2: the 2nd percentile);
    - **bounds**: no wait is longer than ``max_factor`` intervals (a bad early estimate cannot
      park a job for long), and the step grows with the time waited (``waited /
      NEAR_GROWTH``), so a job stalled at 99 % does not burn its poll bound. No progress and
      no prior: every ``every_seconds``, the provider's own schedule.

    The waits are jittered only downwards (``polling.jittered``), so the lag each wait
    allows stays what is computed here. ``bench/polling.py`` measures lag and polls.
    """

    first_seconds: int
    every_seconds: int
    max_factor: int = 10
    typical_seconds: int | None = None
    spread: float = 0.3
    first_z: float = FIRST_POLL_Z
    early_quantile: float = EARLY_QUANTILE
    lag_seconds: int | None = None
    progress_bias: float = PROGRESS_BIAS
    progress_noise: float = PROGRESS_NOISE_POINTS
    step_share: float = STEP_SHARE

    def __post_init__(self) -> None:
        if self.first_seconds < 1 or self.every_seconds < 1:
            raise ValueError("poll intervals must be at least one second")
        if self.typical_seconds is not None and self.typical_seconds < 1:
            raise ValueError("a typical duration must be at least one second")
        if self.spread < 0 or self.progress_bias < 0 or self.progress_noise < 0:
            raise ValueError("a duration spread cannot be negative")
        if not 0 <= self.early_quantile < 1:
            raise ValueError("the early quantile must be in [0, 1)")
        if self.lag_seconds is not None and self.lag_seconds < 1:
            raise ValueError("the accepted lag must be at least one second")

    @classmethod
    def from_history(
        cls, first_seconds: int, every_seconds: int, durations: Sequence[float], **options: Any
    ) -> PollSchedule:
        """A schedule whose prior is what past jobs of the kind took: their median, and the
        log-normal sigma from their 16th and 84th percentiles (robust to a few stragglers).
        Fewer than ``MIN_HISTORY`` durations say too little: no prior then."""
        known = sorted(d for d in durations if d > 0 and math.isfinite(d))
        if len(known) < MIN_HISTORY:
            return cls(first_seconds, every_seconds, **options)

        def at(q: float) -> float:
            return known[min(len(known) - 1, max(0, math.ceil(q * len(known)) - 1))]

        spread = max(0.0, (math.log(at(0.8413)) - math.log(at(0.1587))) / 2)
        return cls(
            first_seconds,
            every_seconds,
            typical_seconds=max(1, round(at(0.5))),
            spread=spread,
            **options,
        )

    @property
    def first_wait_seconds(self) -> int:
        if self.typical_seconds is None:
            return self.first_seconds
        lower = math.floor(self.typical_seconds * math.exp(-self.first_z * self.spread))
        return max(self.first_seconds, lower)

    def near_seconds(self, waited_seconds: int | None = None) -> int:
        """The accepted lag: the step past the earliest plausible finish."""
        grown = math.ceil((waited_seconds or 0) / NEAR_GROWTH)
        lag = self.lag_seconds or math.ceil(self.every_seconds * NEAR_SHARE)
        return max(1, lag, grown)

    def belief(self, last: JobStatus | None, waited_seconds: int) -> tuple[float, float] | None:
        """(mu, sigma) of ``log D`` from the prior and the last reported progress, or None
        when there is neither."""
        prior = (
            (math.log(self.typical_seconds), self.spread)
            if self.typical_seconds is not None
            else None
        )
        progress = last.progress if last is not None else None
        if progress is None or not 0 < progress < 100 or waited_seconds <= 0:
            return prior
        measured = math.log(100 * waited_seconds / progress)
        error = math.hypot(self.progress_bias, self.progress_noise / progress)
        if prior is None or prior[1] <= 0:
            return (measured, error) if prior is None else prior
        if error <= 0:
            return measured, 0.0
        weight_prior, weight_measured = 1 / prior[1] ** 2, 1 / error**2
        mu = (prior[0] * weight_prior + measured * weight_measured) / (
            weight_prior + weight_measured
        )
        return mu, math.sqrt(1 / (weight_prior + weight_measured))

    def advice(
        self, polls_so_far: int, last: JobStatus | None = None, waited_seconds: int | None = None
    ) -> PollAdvice:
        if polls_so_far < 0:
            raise ValueError("polls_so_far cannot be negative")
        if polls_so_far == 0:
            return PollAdvice(wait_seconds=self.first_wait_seconds)
        waited = waited_seconds or 0
        near = self.near_seconds(waited)
        unfinished = last is not None and last.state in (JobState.QUEUED, JobState.RUNNING)
        progress = last.progress if unfinished and last is not None else None
        if progress is not None and progress >= 100:
            return PollAdvice(wait_seconds=near)
        if progress is not None and progress >= NEAR_DONE_PROGRESS and not waited:
            # nearly done, and no time to estimate from (the caller keeps none)
            return PollAdvice(wait_seconds=near)
        belief = self.belief(last if unfinished else None, waited) if waited > 0 else None
        if belief is None:
            return PollAdvice(wait_seconds=self.every_seconds)
        early, median = _still_running_quantiles(belief, waited, self.early_quantile)
        step = max(near, self.step_share * (median - max(waited, early)))
        wait = max(0.0, early - waited) + step
        longest = self.every_seconds * self.max_factor
        return PollAdvice(wait_seconds=max(1, min(math.ceil(wait), longest)))


def _still_running_quantiles(
    belief: tuple[float, float], waited: int, early_quantile: float
) -> tuple[float, float]:
    """The ``early_quantile`` and the median of a log-normal duration, given that the job
    has run ``waited`` seconds without finishing."""
    mu, sigma = belief
    if sigma <= 0:
        finish = max(float(waited), math.exp(mu))
        return finish, finish
    normal = NormalDist()
    done_by_now = normal.cdf((math.log(waited) - mu) / sigma)
    if done_by_now >= 1 - 1e-9:  # past every plausible finish: it may end any moment
        return float(waited), float(waited)

    def quantile(q: float) -> float:
        level = min(1 - 1e-12, done_by_now + q * (1 - done_by_now))
        return max(float(waited), math.exp(mu + sigma * normal.inv_cdf(level)))

    return quantile(early_quantile), quantile(0.5)


def resolve_api_key(api_key: ApiKey) -> Callable[[], str]:
    """Accept a key or a callable that returns it (read lazily, e.g. from SSM)."""
    if callable(api_key):
        return api_key
    fixed = api_key
    return lambda: fixed


def redact(text: str, secret: str) -> str:
    return text.replace(secret, REDACTED) if secret else text


def clip(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compact_json(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


# A bare number this large is a moment (Unix epoch seconds or milliseconds), not a delay:
# 10^9 seconds is 31 years, so no provider means it as "wait this long".
EPOCH_SECONDS_FROM = 1_000_000_000
EPOCH_MILLISECONDS_FROM = 1_000_000_000_000


def parse_wait_header(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a header that says when to ask again, in any shape a provider
    uses for it: delta-seconds (``Retry-After: 30``, ``12.5``), a Unix epoch in seconds or
    milliseconds (``1767225600``, ``1767225600000``), an HTTP date (``Retry-After``'s other
    form) or an ISO 8601 moment. A moment in the past means "now" (0); anything else that
    cannot be read is ignored (None), so the caller falls back to its own schedule."""
    if not value:
        return None
    value = value.strip()
    moment = time.time() if now is None else now
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        if math.isnan(number) or math.isinf(number):
            return None
        if number >= EPOCH_MILLISECONDS_FROM:
            return max(0.0, number / 1000 - moment)
        if number >= EPOCH_SECONDS_FROM:
            return max(0.0, number - moment)
        return max(0.0, number)
    when = _parse_moment(value)
    if when is None:
        return None
    return max(0.0, when.timestamp() - moment)


def _parse_moment(value: str) -> datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` is either delta-seconds or an HTTP date; anything else is ignored."""
    return parse_wait_header(value)


def parse_body(
    model: type[Model],
    body: object,
    *,
    provider: str,
    call: str,
    starts_paid_work: bool = False,
    secret: str = "",
) -> Model:
    """Validate a 2xx body; an unexpected shape is the provider's fault and worth a retry,
    unless the call started paid work: then the job may exist and we cannot read its id.

    The message names the offending fields and quotes the answer, clipped and with the key
    redacted, so whoever reads the job's error sees what the provider actually said.
    """
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        said = redact(clip(compact_json(body), MAX_QUOTED_ANSWER), secret)
        what = (
            f"{provider} answered {call} with an unexpected body ({clip(problems)}); "
            f"it said: {said}"
        )
        if starts_paid_work:
            raise ProviderOutcomeUnknown(
                f"{what}; it may have started the job, so it was not sent again",
                provider=provider,
                status_code=200,
            ) from None
        raise ProviderUnavailable(what, provider=provider, status_code=200) from None


class ProviderHttp:
    """One provider's JSON API: base URL, credentials, timeouts and the error mapping.

    ``auth_headers`` turns the key into the headers the provider expects; ``describe_error``
    extracts the provider's own words from a decoded error body (or returns None).
    ``admit`` runs before every request is sent: the stack's admission control for this
    provider (``logic/limiter.py``), which raises a busy error instead of sending.
    """

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        api_key: ApiKey,
        auth_headers: Callable[[str], Mapping[str, str]],
        describe_error: Callable[[object], str | None],
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        session: requests.Session | None = None,
        is_quota_fault: Callable[[object], bool] = lambda body: False,
        wait_headers: tuple[str, ...] = ("Retry-After",),
        admit: Callable[[], None] | None = None,
    ) -> None:
        if not base_url:
            raise ValueError(f"the {provider} base URL is not configured")
        if connect_timeout_seconds <= 0 or read_timeout_seconds <= 0:
            raise ValueError("timeouts must be positive")
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._api_key = resolve_api_key(api_key)
        self._auth_headers = auth_headers
        self._describe_error = describe_error
        self._is_quota_fault = is_quota_fault
        self._wait_headers = wait_headers
        self.timeout = (connect_timeout_seconds, read_timeout_seconds)
        self._session = session or requests.Session()
        self._admit = admit

    def parse(
        self, model: type[Model], body: object, *, call: str, starts_paid_work: bool = False
    ) -> Model:
        """``parse_body`` for this provider, with its key kept out of any message."""
        return parse_body(
            model,
            body,
            provider=self.provider,
            call=call,
            starts_paid_work=starts_paid_work,
            secret=self._api_key(),
        )

    def get(self, path: str, *, call: str) -> object:
        return self.request("GET", path, call=call)

    def post(self, path: str, body: Any, *, call: str, starts_paid_work: bool = False) -> object:
        return self.request("POST", path, body=body, call=call, starts_paid_work=starts_paid_work)

    def request(
        self,
        method: str,
        path: str,
        *,
        call: str,
        body: Any = None,
        starts_paid_work: bool = False,
    ) -> object:
        """Send one request and return its decoded JSON body, or raise a typed error.

        ``path`` is already filled in and quoted; ``call`` names the endpoint without ids,
        for messages and logs. For a call that ``starts_paid_work``, a failure after the
        request may have reached the provider (read timeout, connection cut, unreadable
        answer) raises :class:`ProviderOutcomeUnknown` instead of a retryable error.
        """
        key = self._api_key()
        if not key:
            raise ProviderAuthFailed(
                f"no {self.provider} API key is configured", provider=self.provider
            )
        if self._admit is not None:
            self._admit()
        headers = {"Accept": "application/json", **self._auth_headers(key)}
        started = time.monotonic()
        try:
            response = self._session.request(
                method,
                f"{self.base_url}{path}",
                json=body,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            self._count_call(failed=True)
            if starts_paid_work and not _never_sent(exc):
                raise self._outcome_unknown(f"did not answer {call} in time", key) from exc
            raise self._unavailable(f"did not answer {call} in time", key) from exc
        except (
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            self._count_call(failed=True)
            what = f"could not be reached for {call} ({type(exc).__name__})"
            if starts_paid_work and not _never_sent(exc):
                raise self._outcome_unknown(what, key) from exc
            raise self._unavailable(what, key) from exc
        request_id = _request_id(response)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        self._count_call(failed=response.status_code in (408, 429) or response.status_code >= 500)
        metrics.add_metric(
            name=f"{self.provider.title()}Latency", unit=MetricUnit.Milliseconds, value=elapsed_ms
        )
        logger.info(
            "provider call",
            extra={
                "provider": self.provider,
                "call": call,
                "status_code": response.status_code,
                "elapsed_ms": elapsed_ms,
                "provider_request_id": request_id,
            },
        )
        if 200 <= response.status_code < 300:
            try:
                return self._decode_success(response, call, key)
            except ProviderUnavailable as exc:
                if starts_paid_work:
                    unknown = self._outcome_unknown(
                        exc.message.removeprefix(f"{self.provider} "), key
                    )
                    unknown.status_code = exc.status_code
                    raise unknown from exc
                raise
        raise self._error_for(response, call, key, request_id)

    def _count_call(self, *, failed: bool) -> None:
        """``<Provider>Calls`` and ``<Provider>Errors`` (no answer, 408, 429, 5xx): the
        provider error-rate alarm divides one by the other."""
        name = self.provider.title()
        metrics.add_metric(name=f"{name}Calls", unit=MetricUnit.Count, value=1)
        if failed:
            metrics.add_metric(name=f"{name}Errors", unit=MetricUnit.Count, value=1)

    def _outcome_unknown(self, what: str, key: str) -> ProviderOutcomeUnknown:
        text = redact(
            f"{self.provider} {what}; it may have started the job, so it was not sent again "
            "(that could pay twice)",
            key,
        )
        return ProviderOutcomeUnknown(text, provider=self.provider)

    def _unavailable(self, what: str, key: str) -> ProviderUnavailable:
        return ProviderUnavailable(redact(f"{self.provider} {what}", key), provider=self.provider)

    def _decode_success(self, response: requests.Response, call: str, key: str) -> object:
        try:
            return response.json()
        except ValueError:
            raise ProviderUnavailable(
                f"{self.provider} answered {call} with HTTP {response.status_code} "
                "and a body that is not JSON",
                provider=self.provider,
                status_code=response.status_code,
                provider_message=_safe_text(response, key) or None,
            ) from None

    def _error_for(
        self, response: requests.Response, call: str, key: str, request_id: str | None
    ) -> ProviderError:
        status = response.status_code
        decoded = _json_or_none(response)
        provider_message = self._provider_message(response, decoded, key)
        summary = f"{self.provider} answered {call} with HTTP {status}"
        if provider_message:
            summary += f": {provider_message}"
        if request_id:
            summary += f" (request id {request_id})"
        summary = redact(summary, key)
        common: dict[str, Any] = {
            "provider": self.provider,
            "status_code": status,
            "provider_message": provider_message,
        }
        if status in (401, 403):
            return ProviderAuthFailed(summary, **common)
        name = self.provider.title()
        if status == 402:
            return ProviderOutOfCredits(
                f"the {name} account {ProviderOutOfCredits.account_problem} ({summary})", **common
            )
        if self._is_quota_fault(decoded):
            return ProviderQuotaExhausted(
                f"the {name} account {ProviderQuotaExhausted.account_problem} ({summary})",
                **common,
            )
        wait = self.advised_wait(response)
        if status == 429:
            return ProviderRateLimited(summary, retry_after=wait, **common)
        if status == 408 or status >= 500:
            return ProviderUnavailable(summary, retry_after=wait, **common)
        if 400 <= status < 500:
            return ProviderRejected(summary, **common)
        return ProviderUnavailable(f"{summary}, which is not an answer we expect", **common)

    def advised_wait(self, response: requests.Response) -> float | None:
        """Seconds the provider asks us to wait: the first of ``wait_headers`` it sent that
        we can read (Picsart's reset time before ``Retry-After``), or None."""
        for header in self._wait_headers:
            seconds = parse_wait_header(response.headers.get(header))
            if seconds is not None:
                return seconds
        return None

    def _provider_message(
        self, response: requests.Response, decoded: object, key: str
    ) -> str | None:
        if decoded is None:
            return _safe_text(response, key) or None
        described = self._describe_error(decoded)
        if not described:
            return _safe_text(response, key) or None
        return clip(redact(described, key))


def _json_or_none(response: requests.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _never_sent(exc: Exception) -> bool:
    """True when the failure happened before the request could reach the provider."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError | NameResolutionError | ConnectTimeoutError)


def _request_id(response: requests.Response) -> str | None:
    for header in REQUEST_ID_HEADERS:
        value = response.headers.get(header)
        if value:
            return clip(value, 100)
    return None


def _safe_text(response: requests.Response, key: str) -> str:
    try:
        text = response.text
    except (UnicodeDecodeError, LookupError):
        return ""
    return clip(redact(text, key))
