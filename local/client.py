"""A small client of the public API, used by the demo, the integration tests and the benches
exactly as an app would use the API: JSON over HTTP with a bearer token, and uploads as
multipart POSTs straight to the presigned S3 URL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests

T = TypeVar("T")


class ApiError(Exception):
    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        try:
            self.body: Any = response.json()
        except ValueError:
            self.body = response.text
        super().__init__(f"{response.request.method} {response.url} -> {self.status}: {self.body}")


class ApiClient:
    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> requests.Response:
        return self.session.request(
            method,
            f"{self.base_url}{path}",
            json=json,
            headers=headers,
            params=params,
            timeout=self.timeout,
        )

    def _ok(self, response: requests.Response) -> Any:
        if response.status_code >= 400:
            raise ApiError(response)
        return response.json() if response.content else None

    # -- models and selfies -----------------------------------------------------------------

    def create_model(self, subject: str, name: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"subject": subject}
        if name is not None:
            body["name"] = name
        return self._ok(self.call("POST", "/models", json=body))  # type: ignore[no-any-return]

    def get_model(self, model_id: str) -> dict[str, Any]:
        return self._ok(self.call("GET", f"/models/{model_id}"))  # type: ignore[no-any-return]

    def list_models(self, **params: Any) -> dict[str, Any]:
        return self._ok(self.call("GET", "/models", params=params))  # type: ignore[no-any-return]

    def delete_model(self, model_id: str) -> None:
        self._ok(self.call("DELETE", f"/models/{model_id}"))

    def request_uploads(self, model_id: str, content_types: list[str]) -> list[dict[str, Any]]:
        body = {"files": [{"content_type": c} for c in content_types]}
        response = self._ok(self.call("POST", f"/models/{model_id}/selfies", json=body))
        return response["uploads"]  # type: ignore[no-any-return]

    def list_selfies(self, model_id: str) -> list[dict[str, Any]]:
        return self._ok(self.call("GET", f"/models/{model_id}/selfies"))["items"]  # type: ignore[no-any-return]

    @staticmethod
    def upload(
        slot: dict[str, Any], data: bytes, filename: str = "selfie.jpg"
    ) -> requests.Response:
        """POST the file to S3 the way a browser form does: the policy fields, then the file."""
        content_type = slot["fields"].get("Content-Type", "application/octet-stream")
        return requests.post(
            slot["url"],
            data=slot["fields"],
            files={"file": (filename, data, content_type)},
            timeout=60,
        )

    # -- training, generations, face avatars --------------------------------------------------

    def start_training(
        self, model_id: str, idempotency_key: str | None = None
    ) -> requests.Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.call("POST", f"/models/{model_id}/training", headers=headers)

    def create_generation(
        self, model_id: str, requests_: list[dict[str, Any]], idempotency_key: str | None = None
    ) -> requests.Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.call(
            "POST", f"/models/{model_id}/generations", json={"requests": requests_}, headers=headers
        )

    def get_generation(self, generation_id: str) -> dict[str, Any]:
        return self._ok(self.call("GET", f"/generations/{generation_id}"))  # type: ignore[no-any-return]

    # -- events -----------------------------------------------------------------------------

    def events_page(self, since: str | None = None, limit: int = 100) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if since:
            params["since"] = since
        return self._ok(self.call("GET", "/events", params=params))  # type: ignore[no-any-return]


class EventFeed:
    """The owner's events as an app keeps up with them: the cursor remembered between reads."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.cursor: str | None = None
        self.seen: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        """Every event since the last read, oldest first."""
        new: list[dict[str, Any]] = []
        while True:
            page = self.client.events_page(self.cursor)
            new += page["items"]
            self.cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        self.seen += new
        return new

    def wait_for(self, event_type: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Read until an event of this type (with these field values) has arrived."""

        def found() -> dict[str, Any] | None:
            self.read()
            for event in self.seen:
                if event["type"] == event_type and all(
                    event.get(k) == v for k, v in fields.items()
                ):
                    return event
            return None

        return wait_until(found, lambda event: event is not None, timeout=timeout)  # type: ignore[return-value]


def wait_until(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    interval: float = 0.2,
    on_change: Callable[[T], None] | None = None,
) -> T:
    """Poll ``probe`` until ``done`` holds; report each new value; fail loudly on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = object()
    while True:
        value = probe()
        if on_change is not None and value != last:
            on_change(value)
            last = value
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f}s; last value: {value!r}")
        time.sleep(interval)
