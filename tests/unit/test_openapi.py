"""The checked-in OpenAPI document is the one the API functions generate, and it documents
exactly the template's routes, with the statuses the code answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from local import openapi
from local.front import routes_from_template
from local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "openapi.json"
ERROR_REF = "#/components/schemas/ErrorOut"


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    return openapi.generate()


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def test_the_checked_in_document_is_the_generated_one(generated: dict[str, Any]) -> None:
    assert CHECKED_IN.read_text() == openapi.render(generated), (
        "openapi.json differs from what the API functions generate: run `make openapi` "
        "and commit the result"
    )


def test_the_document_is_valid_openapi(generated: dict[str, Any]) -> None:
    validate(generated)
    assert generated["info"]["title"] == "avatar-pipeline"
    assert generated["info"]["version"] == openapi.api_version()


def test_it_documents_every_route_of_the_template_and_nothing_else(
    generated: dict[str, Any],
) -> None:
    template = load_template(ROOT / "template.yaml")
    routes = {(route.method, route.path) for route in routes_from_template(template)}
    assert set(operations(generated)) == routes


def test_every_route_but_health_needs_a_bearer_token(generated: dict[str, Any]) -> None:
    scheme = generated["components"]["securitySchemes"][openapi.SECURITY_SCHEME]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    assert generated["security"] == [{openapi.SECURITY_SCHEME: []}]
    for key, operation in operations(generated).items():
        public = key == ("GET", "/v1/health")
        assert operation.get("security", generated["security"]) == (
            [] if public else [{openapi.SECURITY_SCHEME: []}]
        ), key
        assert ("401" in operation["responses"]) != public, key


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/v1/models", "201"),
        ("POST", "/v1/models/{model_id}/selfies", "201"),
        ("POST", "/v1/face-avatars/uploads", "201"),
        ("POST", "/v1/models/{model_id}/training", "202"),
        ("POST", "/v1/models/{model_id}/generations", "202"),
        ("POST", "/v1/face-avatars", "202"),
        ("DELETE", "/v1/models/{model_id}", "204"),
        ("GET", "/v1/models/{model_id}", "200"),
    ],
)
def test_the_documented_success_is_the_status_the_code_answers(
    generated: dict[str, Any], method: str, path: str, status: str
) -> None:
    responses = operations(generated)[(method, path)]["responses"]
    assert [code for code in responses if code.startswith("2")] == [status]
    if status == "204":
        assert not responses[status].get("content")
    else:
        assert responses[status]["content"]["application/json"]["schema"]


def test_every_error_is_a_message_with_an_optional_field(generated: dict[str, Any]) -> None:
    error = generated["components"]["schemas"]["ErrorOut"]
    assert error["required"] == ["message"]
    assert set(error["properties"]) >= {"message", "field"}
    for key, operation in operations(generated).items():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (key, status)


def test_what_can_be_invalid_documents_its_422_and_a_body_its_415(
    generated: dict[str, Any],
) -> None:
    for key, operation in operations(generated).items():
        takes_input = "requestBody" in operation or any(
            parameter["in"] in ("query", "header") for parameter in operation.get("parameters", [])
        )
        assert ("422" in operation["responses"]) == takes_input, key
        assert ("415" in operation["responses"]) == ("requestBody" in operation), key
