"""A webhook receiver on loopback, as an app's backend would be: it verifies every request
with the ``standardwebhooks`` library and keeps what it verified, in arrival order.

``make demo`` runs one in-process and prints what it got; the tests script its answers
(``answer_with([500, 500, 200])``, ``answer_with([410])``) or its slowness (``delay``).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

SECRET_FILE_NAME = "webhook-secret"  # noqa: S105 (a file name, not a secret)


def local_secret(state_dir: Path) -> str:
    """The local stack's signing secret, created once and kept under ``state_dir``."""
    path = Path(state_dir) / SECRET_FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        path.write_text(secret + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass(frozen=True)
class Delivery:
    """One verified request, as received. ``status`` is what the receiver answered it."""

    webhook_id: str
    type: str
    data: dict[str, Any]
    status: int
    body: bytes
    headers: dict[str, str]


class WebhookReceiver:
    def __init__(self, secret: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self._webhook = Webhook(secret)
        self._lock = threading.Condition()
        self._statuses: list[int] = []
        self.delay = 0.0
        """Seconds to wait before answering each request."""
        self.retry_after = "120"
        """The Retry-After header sent with a scripted 429."""
        self.trickle = 0.0
        """Seconds over which each answer is sent a byte at a time, headers included."""
        self.deliveries: list[Delivery] = []
        """Every verified delivery, retries included, in arrival order."""
        self.refused = 0
        """Requests whose signature did not verify (answered 400)."""
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/webhooks"

    def answer_with(self, statuses: Iterable[int]) -> None:
        """Answer the next requests with these statuses, in turn; then 200 again."""
        with self._lock:
            self._statuses = list(statuses)

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        """The deliveries once there are at least ``count``; TimeoutError if they do not come."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.deliveries) >= count, timeout):
                raise TimeoutError(
                    f"{len(self.deliveries)} of {count} webhook deliveries in {timeout:g} s"
                )
            return list(self.deliveries)

    def _receive(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            payload = self._webhook.verify(body, headers)
        except WebhookVerificationError:
            with self._lock:
                self.refused += 1
            return 400
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            status = self._statuses.pop(0) if self._statuses else 200
            self.deliveries.append(
                Delivery(
                    webhook_id=headers["webhook-id"],
                    type=payload["type"],
                    data=payload["data"],
                    status=status,
                    body=body,
                    headers=headers,
                )
            )
            self._lock.notify_all()
        return status

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = receiver._receive(body, headers)
                answer = json.dumps({"status": status}).encode()
                try:
                    if receiver.trickle:
                        self._trickle(status, answer, receiver.trickle)
                        return
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    if status == 429:
                        self.send_header("Retry-After", receiver.retry_after)
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the sender gave up waiting: exactly what a slow receiver earns

            def _trickle(self, status: int, answer: bytes, seconds: float) -> None:
                head = (
                    f"HTTP/1.1 {status} Slow\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(answer)}\r\n\r\n"
                ).encode()
                whole = head + answer
                for index in range(len(whole)):
                    self.wfile.write(whole[index : index + 1])
                    self.wfile.flush()
                    time.sleep(seconds / len(whole))
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
