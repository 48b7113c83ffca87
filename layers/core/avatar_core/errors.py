"""Typed errors of the domain.

They are raised by logic, stores and provider clients, mapped to HTTP answers once (in
``avatar_core.api``), and named by their class name in the state machines' Retry/Catch
(Lambda reports an unhandled exception's class name as the error type). Never match on
message text: match on the class.
"""

from __future__ import annotations


class AvatarError(Exception):
    """Base of every error this package raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- client mistakes and states that forbid an action (4xx) -----------------------------


class InvalidRequest(AvatarError):
    """The request is malformed or a value is out of range (422), naming the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(AvatarError):
    """Missing, or owned by somebody else: both answer 404 alike."""


class Conflict(AvatarError):
    """The resource's state forbids the action (409); the message says what is needed."""


class PaidWorkKept(Conflict):
    """A cancel or delete came after the provider was sent the work (409): it is paid for,
    so it runs to its end and its results are kept."""


class IdempotencyKeyReused(AvatarError):
    """The same Idempotency-Key was sent with a different body (422)."""


class RequestInProgress(AvatarError):
    """A request with the same Idempotency-Key is still being handled (409)."""


class WorkflowUnavailable(AvatarError):
    """Step Functions would not start a workflow (throttled or failing) even after retries
    with backoff: nothing was started and the record is as it was, so the client retries
    after ``retry_after_seconds`` (503 with ``Retry-After``)."""

    def __init__(self, message: str, retry_after_seconds: int = 30) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class QuotaExceeded(AvatarError):
    """The owner has used a limit of theirs (429 with ``Retry-After``): the message names the
    limit and when it frees. Nothing was started or reserved."""

    def __init__(self, message: str, limit: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after_seconds = max(1, retry_after_seconds)


class SpendingPaused(AvatarError):
    """The stack's cap on paid submissions per hour is reached (503 with ``Retry-After``):
    no new paid work for anyone until the hour turns, whatever each owner's quota says."""

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = max(1, retry_after_seconds)


class ProviderPaused(AvatarError):
    """A provider's account is exhausted (out of credits, or its quota used up): new paid
    work for that provider answers 503 with ``Retry-After`` until a probe submission gets
    through (the circuit breaker in ``logic/breaker.py``). Nothing was started or reserved."""

    def __init__(self, message: str, provider: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.provider = provider
        self.retry_after_seconds = max(1, retry_after_seconds)


class PaidWorkPending(AvatarError):
    """A workflow's submit step failed (a timeout, a crash) after the provider accepted the
    work and its id was stored: recording 'failed' would waste paid work, so the workflow
    ends instead and reconciliation resumes it from the stored id."""


# --- images ------------------------------------------------------------------------------


class ImageRejected(AvatarError):
    """An uploaded image cannot be used; the message is shown to the end user as is."""


# --- upstream providers ------------------------------------------------------------------


class ProviderError(AvatarError):
    """An upstream AI provider refused or failed a call.

    ``provider_message`` keeps the provider's own words so a person can act on them.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        provider_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code
        self.provider_message = provider_message
        # seconds the provider asked us to wait (Retry-After, Picsart's reset time), if it did
        self.retry_after: float | None = None


class ProviderRateLimited(ProviderError):
    """429: retry later with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class AdmissionDenied(ProviderRateLimited):
    """Our own limiter (``logic/limiter.py``) has no token for this provider right now: the
    call was not made. A rate limit of ours, so it is busy like a 429 (wait ``retry_after``
    seconds and ask again), and certainly nothing was bought."""


class SubmissionQueued(AdmissionDenied):
    """A paid submission waits its turn in the provider's queue (``logic/provider_queue.py``):
    ``position`` tickets are ahead of it. It keeps ``ticket`` for its next turn, in
    ``retry_after`` seconds (None: it has none yet, its owner's share of the queue is full);
    ``estimated_start_seconds`` is what the client is told."""

    def __init__(
        self,
        message: str,
        *,
        ticket: int | None,
        position: int,
        estimated_start_seconds: int,
        **kwargs: object,
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.ticket = ticket
        self.position = position
        self.estimated_start_seconds = estimated_start_seconds


class ProviderUnavailable(ProviderError):
    """5xx, timeout, dropped connection or an unreadable answer: retry with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ProviderOutcomeUnknown(ProviderError):
    """A request that starts paid work was sent, but its answer was lost (read timeout,
    connection cut). The provider may have started the job: retrying could pay twice, and
    the provider offers no way to look the job up, so this is not retried automatically.
    """


class ProviderRejected(ProviderError):
    """A 4xx the provider will answer the same way again: do not retry."""


class ProviderOutOfCredits(ProviderRejected):
    """402: the account has no credits left; retrying costs nothing but time."""

    account_problem = (
        "is out of credits: nothing more can be generated until the operator tops it up"
    )


class ProviderQuotaExhausted(ProviderRejected):
    """The account's quota is used up (Picsart answers 429 with a ``fault`` body naming
    ``QuotaViolation``): unlike a rate limit, waiting a few seconds does not fix it."""

    account_problem = (
        "has used up its request quota: nothing more can be generated until the operator "
        "raises the quota or it renews"
    )


class ProviderAuthFailed(ProviderRejected):
    """401/403: the API key is wrong or lacks access to the service."""


class ProviderJobFailed(ProviderError):
    """The provider accepted the job and later reported that it failed."""


# --- copying results into our bucket -----------------------------------------------------


class UnsafeSource(AvatarError):
    """A result URL points somewhere we never download from (scheme, host or address)."""


class WebhookRefused(AvatarError):
    """The configured webhook URL is not one we post to (not https, or a private address):
    the delivery is given up at once, since no retry can change the answer."""


class ResultExpired(AvatarError):
    """The provider no longer serves the result (404/410): it expired before we copied it."""


class ResultRefused(AvatarError):
    """The result is not an image we accept (content type, size or decode)."""


class ResultFetchFailed(AvatarError):
    """A transient failure while fetching a result (timeout, 5xx, reset): retry."""


# The provider's account needs a person (credits, quota): no retry can help, new paid work
# for that provider pauses behind its breaker.
ACCOUNT_EXHAUSTED = (ProviderOutOfCredits, ProviderQuotaExhausted)
# The provider cannot take the call right now: wait as it advises and ask again.
PROVIDER_BUSY = (ProviderRateLimited, ProviderUnavailable)

RETRYABLE_PROVIDER_ERRORS = (ProviderRateLimited.__name__, ProviderUnavailable.__name__)

# Submit failures after which the provider certainly holds no paid work of ours: it refused,
# or we never asked (the record or its model was gone). A timeout or a 5xx may hide an
# accepted submission, so those keep counting against the owner's quota and keep their
# run slot (logic/run_slots.py) until its lease runs out.
UNPAID_SUBMIT_FAILURES = frozenset(
    {
        "ProviderRejected",
        "ProviderOutOfCredits",
        "ProviderQuotaExhausted",
        "ProviderAuthFailed",
        "ProviderRateLimited",
        "AdmissionDenied",
        "JobGone",
        "ModelGone",
        "StaleTraining",
    }
)
