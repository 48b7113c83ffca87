"""The public API's OpenAPI document, generated from the API functions' own resolvers.

Every function with an HttpApi event in ``template.yaml`` is imported with harmless settings
(boto3 builds clients at import but calls nothing) and asked for its powertools document;
the documents are merged into one. What API Gateway adds in front of the functions comes
from the template: the JWT authorizer, as a bearer security scheme on every authorized
route, and its 401; its size limits, as 413 and 431 answers.

``python -m local.openapi > openapi.json`` (``make openapi``) writes the checked-in copy;
``tests/unit/test_openapi.py`` fails when the two drift apart.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from local.front import routes_from_template
from local.template import load_template

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "core"
TITLE = "avatar-pipeline"
SECURITY_SCHEME = "bearerAuth"
ERROR_REF = "#/components/schemas/ErrorOut"
_SCHEMA_REF_PREFIX = "#/components/schemas/"
_GENERIC_VALIDATION_ERROR = "HTTPValidationError"
# Enough for the functions' settings and boto3's client construction; nothing is called.
_IMPORT_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "TABLE_NAME": "openapi-table",
    "UPLOADS_BUCKET": "openapi-uploads",
    "RESULTS_BUCKET": "openapi-results",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}
_DESCRIPTION = (
    "Selfie intake, model training, avatar generation and face avatars. Every route but "
    "`GET /v1/health` needs `Authorization: Bearer <JWT>`; the owner is the token's `sub`, "
    "and another owner's resource answers 404 like a missing one. Errors are "
    '`{"message": "...", "field": "..."}` (`field` when one input is to blame).'
)


def api_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


def generate() -> dict[str, Any]:
    """The merged document, with keys sorted and routes in a stable order."""
    template = load_template(ROOT / "template.yaml")
    routes = routes_from_template(template)
    functions = sorted({route.function for route in routes})
    document: dict[str, Any] = {}
    for logical_id in functions:
        _merge(document, _function_document(template, logical_id), logical_id)
    authorized = {(r.method.lower(), r.path) for r in routes if r.authorized}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            _replace_generic_errors(operation)
            _apply_authorizer(operation, (method, path) in authorized)
            _apply_gateway_limits(operation)
    document["components"]["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A JWT from the stack's issuer (Cognito or your IdP), checked by "
            "API Gateway's JWT authorizer.",
        }
    }
    document["security"] = [{SECURITY_SCHEME: []}]
    _drop_unreferenced_schemas(document)
    return _sorted(document)


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _function_document(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    properties = template["Resources"][logical_id]["Properties"]
    module_name = properties["Handler"].rpartition(".")[0]
    source = ROOT / properties["CodeUri"] / f"{module_name.replace('.', '/')}.py"
    with _import_environment():
        spec = importlib.util.spec_from_file_location(f"openapi_{logical_id}", source)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {source}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    text = module.app.get_openapi_json_schema(
        title=TITLE, version=api_version(), description=_DESCRIPTION
    )
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _merge(document: dict[str, Any], part: dict[str, Any], source: str) -> None:
    if not document:
        document.update({key: value for key, value in part.items() if key != "paths"})
        document["paths"] = {}
        document["components"] = {"schemas": {}}
    paths = document["paths"]
    for path, item in part.get("paths", {}).items():
        for method, operation in item.items():
            if method in paths.get(path, {}):
                raise ValueError(f"{method.upper()} {path} is served twice (again by {source})")
            paths.setdefault(path, {})[method] = operation
    schemas = document["components"]["schemas"]
    for name, schema in part.get("components", {}).get("schemas", {}).items():
        if name in schemas and schemas[name] != schema:
            raise ValueError(f"schema {name} of {source} differs from another function's")
        schemas[name] = schema


def _replace_generic_errors(operation: dict[str, Any]) -> None:
    """powertools documents its own error bodies on every route; ours are ``ErrorOut``s.

    A 422 in powertools' shape is on a route that declared none of its own (nothing it
    takes can be invalid), so it is dropped; its 500 for a response that breaks the
    route's own schema is answered by our resolver like any failure.
    """
    responses = operation["responses"]
    if _refs(responses.get("422")) == {_GENERIC_VALIDATION_ERROR}:
        del responses["422"]
    if "500" in responses:
        responses["500"] = _error("Internal error: a bug, never the client's fault")


def _apply_authorizer(operation: dict[str, Any], authorized: bool) -> None:
    """The authorizer answers 401 before the function runs; public routes need no token."""
    responses = operation["responses"]
    if authorized:
        responses["401"] = _error("Missing, expired or invalid bearer token")
    else:
        operation["security"] = []


def _apply_gateway_limits(operation: dict[str, Any]) -> None:
    """API Gateway refuses oversized requests before the authorizer or the function runs."""
    responses = operation["responses"]
    responses["431"] = _error("The request line and headers exceed 10,240 bytes")
    if "requestBody" in operation:
        responses["413"] = _error("The body exceeds 10 MB")


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }


def _drop_unreferenced_schemas(document: dict[str, Any]) -> None:
    """powertools always adds its own validation-error schemas; ours replace them."""
    schemas = document["components"]["schemas"]
    reachable: set[str] = set()
    pending = _refs({key: value for key, value in document.items() if key != "components"})
    while pending:
        name = pending.pop()
        if name not in reachable:
            reachable.add(name)
            pending |= _refs(schemas[name])
    for name in set(schemas) - reachable:
        del schemas[name]


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMA_REF_PREFIX):
            found.add(ref.removeprefix(_SCHEMA_REF_PREFIX))
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _sorted(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _sorted(node[key]) for key in sorted(node)}
    if isinstance(node, list):
        return [_sorted(value) for value in node]
    return node


@contextmanager
def _import_environment() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in _IMPORT_ENV}
    os.environ.update(_IMPORT_ENV)
    if str(LAYER) not in sys.path:
        sys.path.insert(0, str(LAYER))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


if __name__ == "__main__":
    sys.stdout.write(render(generate()))
