"""What the shared resolver answers for requests it cannot use, and for its own mistakes:
a client's malformed request is a 4xx with ``{"message", "field"}``, never a 500, and an
answer that breaks its declared schema is a 500, never the client's fault."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel

from avatar_core.api import create_resolver, json_response


class Thing(BaseModel):
    name: str


class ThingOut(BaseModel):
    name: str
    size: int


app = create_resolver()


@app.post("/v1/things")
def create_thing(body: Thing) -> Response[ThingOut]:
    return json_response(201, {"name": body.name, "size": len(body.name)})


@app.get("/v1/broken")
def broken() -> Response[ThingOut]:
    return json_response(200, {"name": "no size"})


def event(
    method: str, path: str, body: bytes | None = None, content_type: str | None = None
) -> dict[str, Any]:
    headers = {"content-type": content_type} if content_type else {}
    raw: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "http": {"method": method, "path": path, "sourceIp": "203.0.113.10"},
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        try:
            raw["body"] = body.decode("utf-8")
        except UnicodeDecodeError:  # what API Gateway does with a body that is not text
            raw["body"], raw["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return raw


def answer(raw: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    result = app.resolve(raw, None)
    return result["statusCode"], json.loads(result["body"])


def test_a_valid_body_is_answered_with_its_declared_schema() -> None:
    status, body = answer(event("POST", "/v1/things", b'{"name": "abc"}', "application/json"))
    assert (status, body) == (201, {"name": "abc", "size": 3})


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "\xff\xfe"}',
        b"[" * 10_000 + b"]" * 10_000,
        b'{"name": ',
        b'{"name": ' + b"9" * 4301 + b"}",
    ],
    ids=["not UTF-8", "nested too deeply", "truncated", "integer over 4,300 digits"],
)
def test_a_body_that_is_not_json_is_the_clients_mistake(raw: bytes) -> None:
    status, body = answer(event("POST", "/v1/things", raw, "application/json"))
    assert status == 422
    assert body["field"] == "body"
    assert body["message"].startswith("body: not valid JSON")


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream"])
def test_a_body_of_another_media_type_is_refused_with_415(content_type: str) -> None:
    status, body = answer(event("POST", "/v1/things", b'{"name": "abc"}', content_type))
    assert status == 415
    assert body == {
        "message": "the body must be JSON (Content-Type: application/json)",
        "field": "Content-Type",
    }


def test_an_answer_that_breaks_its_declared_schema_is_our_500_not_a_422() -> None:
    status, body = answer(event("GET", "/v1/broken"))
    assert (status, body) == (500, {"message": "internal error"})
