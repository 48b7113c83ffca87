"""Webhook delivery: what an attempt's answer means, when to try again, and order per subject.

* 2xx: delivered. Timeouts, connection errors, 429 and 5xx: tried again later, after
  ``max(Retry-After, full-jitter exponential backoff)``, never more than an hour (SQS FIFO
  would allow 12 h of invisibility; an hour keeps a recovered receiver from waiting long).
* Any other answer (3xx, 4xx including 410 Gone), a URL we refuse or a body that is not a
  webhook payload: given up at once, to the dead-letter queue; no retry can change them.
* Retries go on for ``retry_window`` (24 h) since the event was first queued; a retry is
  never scheduled past that, and a failure after it is given up.
* Events of one subject (an SQS message group) are delivered in order: once one waits for
  its retry, the later ones of its group in the batch wait too, unattempted.

The queue does the waiting: a retry is the message made invisible for the delay and
reported failed, so nothing sleeps inside the Lambda.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, ValidationError

from avatar_core.errors import WebhookRefused
from avatar_core.ids import now
from avatar_core.models.webhooks import (
    DeliveryAttempt,
    DeliveryOutcome,
    QueuedWebhook,
    Verdict,
    WebhookPayload,
)

logger = logging.getLogger(__name__)

BASE_DELAY_SECONDS = 30
MAX_DELAY_SECONDS = 3600


class Sender(Protocol):
    def send(self, webhook_id: str, body: str) -> DeliveryAttempt: ...


class Queue(Protocol):
    def retry_later(self, message: QueuedWebhook, delay_seconds: int) -> None: ...

    def dead_letter(self, message: QueuedWebhook, outcome: DeliveryOutcome) -> None: ...


class BatchReport(BaseModel):
    outcomes: list[DeliveryOutcome]

    @property
    def failed_message_ids(self) -> list[str]:
        """The records SQS must keep: retries and those left unattempted behind them."""
        return [
            outcome.message_id
            for outcome in self.outcomes
            if outcome.verdict in (Verdict.RETRY, Verdict.SKIPPED)
        ]


def verdict_for(attempt: DeliveryAttempt) -> Verdict:
    status = attempt.status
    if status is None:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 429 or status >= 500:
        return Verdict.RETRY
    return Verdict.GIVE_UP


def backoff_seconds(attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform over [0, min(cap, base * 2^(attempt-1))]."""
    doublings = min(max(attempt, 1) - 1, 16)
    return rng.uniform(0, min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2**doublings))


def retry_after_seconds(value: str | None, moment: datetime) -> float | None:
    """``Retry-After`` as seconds from ``moment`` (delta-seconds or an HTTP-date), capped;
    None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - moment).total_seconds()
    return min(max(seconds, 0.0), MAX_DELAY_SECONDS)


def retry_delay(attempt: int, retry_after: float | None, rng: random.Random) -> int:
    """Whole seconds of invisibility before the next attempt: at least 1, at most the cap."""
    delay = max(retry_after or 0.0, backoff_seconds(attempt, rng))
    return max(1, min(MAX_DELAY_SECONDS, math.ceil(delay)))


def deliver(
    message: QueuedWebhook,
    sender: Sender,
    queue: Queue,
    *,
    retry_window: timedelta,
    clock: Callable[[], datetime] = now,
    rng: random.Random | None = None,
) -> DeliveryOutcome:
    """Attempt one queued webhook and tell the queue what follows."""
    base = {
        "message_id": message.message_id,
        "group_id": message.group_id,
        "attempts": message.receive_count,
    }
    try:
        payload = WebhookPayload.model_validate_json(message.body)
    except ValidationError as error:
        outcome = DeliveryOutcome(
            **base,
            verdict=Verdict.GIVE_UP,
            reason=f"not a webhook payload: {error.errors()[0]['msg']}",
        )
        queue.dead_letter(message, outcome)
        return outcome
    base["webhook_id"] = payload.data.event_id
    try:
        attempt = sender.send(payload.data.event_id, message.body)
    except WebhookRefused as error:
        outcome = DeliveryOutcome(**base, verdict=Verdict.GIVE_UP, reason=error.message)
        queue.dead_letter(message, outcome)
        return outcome
    except Exception as error:
        # The signing secret could not be read (SSM throttled, the parameter missing): like
        # a connection error, it may pass, so it backs off and counts against the window.
        logger.exception("webhook %s could not be sent", message.message_id)
        attempt = DeliveryAttempt(error=f"not sent: {type(error).__name__}: {error}", elapsed_ms=0)

    verdict = verdict_for(attempt)
    answered = {"status": attempt.status, "elapsed_ms": attempt.elapsed_ms}
    reason = _reason(attempt)
    if verdict is Verdict.DELIVERED:
        return DeliveryOutcome(**base, **answered, verdict=verdict)
    if verdict is Verdict.RETRY:
        moment = clock()
        left = message.first_sent_at + retry_window - moment
        if left.total_seconds() >= 1:
            retry_after = retry_after_seconds(attempt.retry_after, moment)
            delay = retry_delay(message.receive_count, retry_after, rng or random.SystemRandom())
            delay = min(delay, math.floor(left.total_seconds()))
            queue.retry_later(message, delay)
            return DeliveryOutcome(
                **base, **answered, verdict=verdict, reason=reason, delay_seconds=delay
            )
        hours = retry_window.total_seconds() / 3600
        reason = f"{reason}; still failing {hours:g} h after the event"
    outcome = DeliveryOutcome(**base, **answered, verdict=Verdict.GIVE_UP, reason=reason)
    queue.dead_letter(message, outcome)
    return outcome


def _reason(attempt: DeliveryAttempt) -> str | None:
    """``answered 410: {"error": "gone"}``, or the error when there was no answer."""
    if attempt.status is None:
        return attempt.error
    answer = " ".join((attempt.error or "").split())
    return f"answered {attempt.status}" + (f": {answer}" if answer else "")


def deliver_batch(
    messages: Iterable[QueuedWebhook],
    sender: Sender,
    queue: Queue,
    *,
    retry_window: timedelta,
    has_time: Callable[[], bool] = lambda: True,
    clock: Callable[[], datetime] = now,
    rng: random.Random | None = None,
) -> BatchReport:
    """Deliver in order; a subject whose event waits keeps its later events waiting too.

    ``has_time`` is asked before each attempt: records left when the invocation runs short
    are reported failed, unattempted, rather than cut off by the Lambda timeout.
    """
    waiting_groups: set[str] = set()
    outcomes: list[DeliveryOutcome] = []
    for message in messages:
        if message.group_id in waiting_groups or not has_time():
            waiting_groups.add(message.group_id)
            outcomes.append(
                DeliveryOutcome(
                    message_id=message.message_id,
                    group_id=message.group_id,
                    attempts=message.receive_count,
                    verdict=Verdict.SKIPPED,
                )
            )
            continue
        try:
            outcome = deliver(
                message, sender, queue, retry_window=retry_window, clock=clock, rng=rng
            )
        except Exception as error:
            # SQS itself failed us (visibility or dead-letter call): keep the message, and
            # the rest of the batch, rather than lose or redeliver what already succeeded.
            logger.exception("webhook %s could not be settled", message.message_id)
            outcome = DeliveryOutcome(
                message_id=message.message_id,
                group_id=message.group_id,
                attempts=message.receive_count,
                verdict=Verdict.RETRY,
                reason=f"{type(error).__name__}: {error}",
            )
        if outcome.verdict is Verdict.RETRY:
            waiting_groups.add(message.group_id)
        outcomes.append(outcome)
    return BatchReport(outcomes=outcomes)
