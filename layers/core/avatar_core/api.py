"""What every API function shares: the resolver, the caller's identity, and the one place
where typed errors become HTTP answers.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from avatar_core.errors import (
    AvatarError,
    Conflict,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    RequestInProgress,
)
from avatar_core.ids import owner_id
from avatar_core.observability import logger

_STATUS_OF: list[tuple[type[AvatarError], HTTPStatus]] = [
    (InvalidRequest, HTTPStatus.UNPROCESSABLE_ENTITY),
    (IdempotencyKeyReused, HTTPStatus.UNPROCESSABLE_ENTITY),
    (NotFound, HTTPStatus.NOT_FOUND),
    (Conflict, HTTPStatus.CONFLICT),
    (RequestInProgress, HTTPStatus.CONFLICT),
]


class Unauthorized(AvatarError):
    """No usable identity on the request (the authorizer should have stopped it)."""


def json_response(status: HTTPStatus | int, body: Any) -> Response:
    return Response(
        status_code=int(status),
        content_type=content_types.APPLICATION_JSON,
        body=body,
    )


def error_response(status: HTTPStatus, message: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"message": message}
    if field:
        body["field"] = field
    return json_response(status, body)


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
    field = ".".join(location) or "body"
    message = error.get("msg") or error.get("type", "invalid value")
    return field, f"{field}: {message}"


def create_resolver() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response:
        problems = [_describe(e) for e in error.errors()]
        field, message = problems[0] if problems else ("body", "request is not valid")
        body = {"message": message, "field": field, "errors": [m for _, m in problems]}
        return json_response(HTTPStatus.UNPROCESSABLE_ENTITY, body)

    @app.exception_handler(Unauthorized)
    def _unauthorized(error: Unauthorized) -> Response:
        return error_response(HTTPStatus.UNAUTHORIZED, error.message)

    @app.exception_handler(AvatarError)
    def _domain(error: AvatarError) -> Response:
        for kind, status in _STATUS_OF:
            if isinstance(error, kind):
                return error_response(status, error.message, getattr(error, "field", None))
        logger.exception("unmapped domain error")
        return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    @app.not_found
    def _no_route(_: Exception) -> Response:
        return error_response(HTTPStatus.NOT_FOUND, "no such route")

    return app


def caller(app: APIGatewayHttpResolver) -> str:
    """The owner key of the caller, from the JWT authorizer's verified ``sub`` claim."""
    authorizer = app.current_event.request_context.authorizer
    claims = authorizer.jwt_claim if authorizer is not None else None
    sub = (claims or {}).get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("Unauthorized")
    return owner_id(sub)
