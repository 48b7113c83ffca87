"""Posting a signed webhook to the app's backend, and the delivery queue's two SQS calls.

The receiver's URL is configuration, not user input, but it is still checked on every
attempt exactly as the result copier checks a provider's URL: https only, the host resolved
here and refused if any address is private, link-local, loopback or otherwise not public,
and the socket pinned to the validated address (``result_copy``'s ``PinningAdapter``), so a
name that re-resolves to the metadata address cannot move the connection. Redirects are
never followed: a 3xx is an answer like any other.

Time: one attempt has a total budget (``webhook_timeout_seconds``, 10 s) covering connect,
TLS, headers and body. Socket timeouts only bound each read, so a timer shuts the socket
down once the budget is spent: a receiver that trickles a byte a second cannot hold a
delivery, and so the whole batch, open.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import requests
from standardwebhooks import Webhook
from urllib3.util import parse_url

from avatar_core.errors import WebhookRefused
from avatar_core.models.webhooks import DeliveryAttempt, DeliveryOutcome, QueuedWebhook
from avatar_core.providers.transport import secret_from_parameter
from avatar_core.settings import Settings
from avatar_core.store import clients
from avatar_core.store.result_copy import (
    DEFAULT_PORTS,
    PinningAdapter,
    is_ip_literal,
    normalise_host,
    resolve_host,
    unsafe_address_reason,
)

USER_AGENT = "avatar-pipeline-webhooks/1"
MAX_ANSWER_BYTES = 1024
"""How much of a receiver's answer we read: a few words for the dead-letter reason."""


def check_webhook_url(
    url: str,
    *,
    allow_http: bool = False,
    allow_loopback: bool = False,
    resolve: Callable[[str, int], list[str]] | None = None,
) -> tuple[str, str, int, tuple[str, ...]]:
    """``(scheme, host, port, addresses)`` of a URL we may post to, or ``WebhookRefused``.

    http is allowed only with ``allow_http`` and only to a loopback receiver (the local
    stack); loopback addresses only with ``allow_loopback``. ``OSError`` when the host does
    not resolve: that may pass, so it is the caller's to retry.
    """
    try:
        parsed = parse_url(url)
    except ValueError as error:
        raise WebhookRefused(f"webhook URL is not a URL ({error})") from error
    scheme = (parsed.scheme or "").lower()
    host = normalise_host(parsed.host or "")
    if scheme not in DEFAULT_PORTS or (scheme == "http" and not allow_http):
        raise WebhookRefused("webhook URL must be https")
    if not host:
        raise WebhookRefused("webhook URL has no host")
    if parsed.auth:
        raise WebhookRefused("webhook URL must not carry credentials: the signature is ours")
    port = parsed.port or DEFAULT_PORTS[scheme]
    addresses = [host] if is_ip_literal(host) else (resolve or resolve_host)(host, port)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for address in addresses:
        reason = unsafe_address_reason(address, allow_loopback=allow_loopback)
        if reason:
            raise WebhookRefused(f"webhook URL resolves to {reason} {address}")
        if scheme == "http" and not ipaddress.ip_address(address).is_loopback:
            raise WebhookRefused(
                f"webhook URL must be https (http is allowed for loopback only, not {address})"
            )
    return scheme, host, port, tuple(str(ipaddress.ip_address(a)) for a in addresses)


class _Deadline:
    """Shuts down every socket of one attempt once its budget is spent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._descriptors: list[int] = []
        self._finished = True
        self._timer: threading.Timer | None = None
        self.expired = False

    def start(self, seconds: float) -> None:
        self._descriptors, self._finished, self.expired = [], False, False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        # The descriptor, not the object: TLS wraps the socket into a new object on this fd.
        with self._lock:
            self._descriptors.append(sock.fileno())

    def finish(self) -> None:
        """Before the sockets are closed, so the timer never touches a reused descriptor."""
        with self._lock:
            self._finished = True
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            for descriptor in self._descriptors:
                try:
                    borrowed = socket.socket(fileno=descriptor)
                except OSError:
                    continue  # already closed: nothing left to cut
                try:
                    borrowed.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # the peer hung up first
                finally:
                    borrowed.detach()


class WebhookSender:
    """Signs and posts one payload to the configured URL; never raises for the receiver's
    behaviour (that is a ``DeliveryAttempt``), only ``WebhookRefused`` for the URL."""

    def __init__(
        self,
        url: str,
        secret: Callable[[], str],
        *,
        timeout_seconds: float = 10.0,
        allow_http: bool = False,
        allow_loopback: bool = False,
        resolve: Callable[[str, int], list[str]] | None = None,
    ) -> None:
        self._url = url
        self._secret = secret
        self._timeout = timeout_seconds
        self._allow_http = allow_http
        self._allow_loopback = allow_loopback
        self._resolve = resolve
        self._deadline = _Deadline()
        self._transport = PinningAdapter(on_socket=self._deadline.watch)

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSender:
        """The secret is read from its SSM parameter on first use, then from the cache."""
        parameter = settings.webhook_secret_parameter
        max_age = settings.secret_cache_seconds
        return cls(
            settings.webhook_url,
            lambda: secret_from_parameter(parameter, max_age),
            timeout_seconds=settings.webhook_timeout_seconds,
            allow_http=settings.webhook_allow_http,
            allow_loopback=settings.webhook_allow_loopback,
        )

    def send(self, webhook_id: str, body: str) -> DeliveryAttempt:
        if not self._url:
            raise WebhookRefused("no webhook URL is configured")
        headers = self._headers(webhook_id, body)  # reads the secret: not the receiver's time
        started = time.monotonic()
        try:
            scheme, host, port, addresses = check_webhook_url(
                self._url,
                allow_http=self._allow_http,
                allow_loopback=self._allow_loopback,
                resolve=self._resolve,
            )
        except OSError as error:
            return self._attempt(started, error=f"cannot resolve the webhook host: {error}")
        self._transport.pin(scheme, host, port, addresses)
        request = requests.Request(
            "POST", self._url, data=body.encode("utf-8"), headers=headers
        ).prepare()
        remaining = max(self._timeout - (time.monotonic() - started), 0.001)
        self._deadline.start(remaining)
        try:
            response = self._transport.send(
                request,
                stream=True,
                timeout=(remaining, remaining),
                verify=True,
                cert=None,
                proxies={},
            )
            answer = response.raw.read(MAX_ANSWER_BYTES, decode_content=False)
        except Exception as error:
            self._deadline.finish()
            self._transport.close()
            if self._deadline.expired:
                return self._attempt(started, error=self._too_slow())
            return self._attempt(started, error=f"{type(error).__name__}: {error}")
        self._deadline.finish()
        response.close()
        self._transport.close()
        if self._deadline.expired or time.monotonic() - started > self._timeout:
            return self._attempt(started, error=self._too_slow())
        return self._attempt(
            started,
            status=response.status_code,
            retry_after=response.headers.get("Retry-After"),
            error=None if response.ok else answer.decode("utf-8", "replace")[:200] or None,
        )

    def _headers(self, webhook_id: str, body: str) -> dict[str, str]:
        moment = time.time()
        signature = Webhook(self._secret()).sign(
            webhook_id, datetime.fromtimestamp(moment, UTC), body
        )
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(moment)),
            "webhook-signature": signature,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "accept-encoding": "identity",
        }

    def _too_slow(self) -> str:
        return f"the receiver did not answer within {self._timeout:g} s"

    @staticmethod
    def _attempt(started: float, **fields: Any) -> DeliveryAttempt:
        return DeliveryAttempt(elapsed_ms=(time.monotonic() - started) * 1000, **fields)


class DeliveryQueue:
    """The two things delivery asks of SQS: come back later, or go to the dead letters."""

    def __init__(self, dead_letter_queue_url: str) -> None:
        self._dead_letter_queue_url = dead_letter_queue_url

    @cached_property
    def _sqs(self) -> Any:
        return clients.client("sqs")

    def retry_later(self, message: QueuedWebhook, delay_seconds: int) -> None:
        self._sqs.change_message_visibility(
            QueueUrl=self._queue_url(message.queue_arn),
            ReceiptHandle=message.receipt_handle,
            VisibilityTimeout=delay_seconds,
        )

    def dead_letter(self, message: QueuedWebhook, outcome: DeliveryOutcome) -> None:
        if not self._dead_letter_queue_url:
            raise ValueError("webhook_dead_letter_queue_url is not configured")
        extra: dict[str, str] = {}
        if self._dead_letter_queue_url.endswith(".fifo"):
            extra = {
                "MessageGroupId": message.group_id or message.deduplication_id,
                "MessageDeduplicationId": message.deduplication_id,
            }
        self._sqs.send_message(
            QueueUrl=self._dead_letter_queue_url,
            MessageBody=message.body,
            MessageAttributes=_reason_attributes(outcome),
            **extra,
        )

    @staticmethod
    def _queue_url(queue_arn: str) -> str:
        """``arn:aws:sqs:region:account:name`` -> the queue's URL, without a GetQueueUrl call
        (SQS finds the queue by account and name; the client's endpoint is used either way)."""
        _, partition, _, region, account, name = queue_arn.split(":", 5)
        domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
        return f"https://sqs.{region}.{domain}/{account}/{name}"


def _reason_attributes(outcome: DeliveryOutcome) -> dict[str, dict[str, str]]:
    """Why a webhook was given up, on the dead letter itself, for the operator."""
    attributes = {
        "reason": {"DataType": "String", "StringValue": (outcome.reason or "unknown")[:1000]},
        "attempts": {"DataType": "Number", "StringValue": str(outcome.attempts)},
    }
    if outcome.status is not None:
        attributes["status"] = {"DataType": "Number", "StringValue": str(outcome.status)}
    return attributes
