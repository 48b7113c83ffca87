"""What every API function shares: the resolver, the caller's identity, and the one place
where typed errors become HTTP answers.
"""

from __future__ import annotations

import json
from functools import cached_property
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Header
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from avatar_core.errors import (
    AvatarError,
    Conflict,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    ProviderPaused,
    QuotaExceeded,
    RequestInProgress,
    SpendingPaused,
    WorkflowUnavailable,
)
from avatar_core.ids import owner_id
from avatar_core.models.api import ErrorOut
from avatar_core.observability import logger

_STATUS_OF: list[tuple[type[AvatarError], HTTPStatus]] = [
    (InvalidRequest, HTTPStatus.UNPROCESSABLE_ENTITY),
    (IdempotencyKeyReused, HTTPStatus.UNPROCESSABLE_ENTITY),
    (NotFound, HTTPStatus.NOT_FOUND),
    (Conflict, HTTPStatus.CONFLICT),
    (RequestInProgress, HTTPStatus.CONFLICT),
]


# The error answers a route documents (``answers``), by what they mean to the client.
NOT_FOUND = HTTPStatus.NOT_FOUND
CONFLICT = HTTPStatus.CONFLICT
INVALID = HTTPStatus.UNPROCESSABLE_ENTITY
NOT_JSON = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
UNAVAILABLE = HTTPStatus.SERVICE_UNAVAILABLE
OVER_QUOTA = HTTPStatus.TOO_MANY_REQUESTS

# The header of the POSTs that start paid work (``avatar_core.idempotency`` checks its value).
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Retry safely: a retry with the same key and body answers the first "
        "response and starts nothing new; the same key with another body is refused (422).",
    ),
]

_ERROR_MEANING: dict[HTTPStatus, str] = {
    HTTPStatus.NOT_FOUND: "No such resource for this owner (another owner's is just as missing)",
    HTTPStatus.CONFLICT: "The resource's state forbids the action; the message says what is needed",
    HTTPStatus.UNPROCESSABLE_ENTITY: "The request is not valid; `field` names the culprit",
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: "The body is not `application/json`",
    HTTPStatus.SERVICE_UNAVAILABLE: "Nothing was started and nothing changed: the workflow could "
    "not be started, or the service's hourly cap on paid work is reached (the message says "
    "which); retry after the `Retry-After` header's seconds",
    HTTPStatus.TOO_MANY_REQUESTS: "A limit of yours is reached and nothing was started: the "
    "message names it and when it frees (GET /v1/me shows them all); retry after the "
    "`Retry-After` header's seconds",
}


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


def answers(success: HTTPStatus, meaning: str, *errors: HTTPStatus) -> dict[int, OpenAPIResponse]:
    """A route's documented answers: its success, whose body is the handler's return
    annotation (none for 204), and the errors it can give, each an ``ErrorOut``."""
    documented: dict[int, OpenAPIResponse] = {int(success): {"description": meaning}}
    if success == HTTPStatus.NO_CONTENT:
        documented[int(success)]["content"] = {}
    for status in errors:
        documented[int(status)] = {
            "description": _ERROR_MEANING[status],
            "content": {content_types.APPLICATION_JSON: {"model": ErrorOut}},
        }
    return documented


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    if error.get("type") == "json_invalid":  # its location is a character offset
        reason = (error.get("ctx") or {}).get("error") or "JSON decode error"
        return "body", f"body: not valid JSON ({reason})"
    where = ("body", "query", "path", "header")
    location = [str(part) for part in error.get("loc", ()) if part not in where]
    field = ".".join(location) or "body"
    message = error.get("msg") or error.get("type", "invalid value")
    return field, f"{field}: {message}"


class _HttpApiEvent(APIGatewayProxyEventV2):
    """The request as API Gateway sends it, with a body that cannot be JSON read as not JSON.

    API Gateway base64-encodes a body that is not UTF-8, a deeply nested document exhausts
    the parser's recursion, and an integer of more than 4,300 digits is refused by Python's
    int conversion: all are the client's malformed JSON, not our failure.
    """

    @cached_property
    def json_body(self) -> Any:
        try:
            text = self.decoded_body
        except UnicodeDecodeError as error:
            raise json.JSONDecodeError("the body is not UTF-8", "", error.start) from error
        if not text:
            return None
        try:
            return self._json_deserializer(text)
        except RecursionError as error:
            raise json.JSONDecodeError("nested too deeply", text, 0) from error
        except json.JSONDecodeError:
            raise
        except ValueError as error:  # an integer longer than Python's 4,300-digit limit
            raise json.JSONDecodeError("a number has too many digits", text, 0) from error


class _Resolver(APIGatewayHttpResolver):
    def _to_proxy_event(self, event: dict) -> APIGatewayProxyEventV2:
        return _HttpApiEvent(event, self._json_body_deserializer)


def create_resolver() -> APIGatewayHttpResolver:
    # A handler's answer that breaks its own declared schema is our bug: a 500, never a 422.
    app = _Resolver(
        enable_validation=True,
        response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
    )

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response:
        problems = [_describe(e) for e in error.errors()]
        field, message = problems[0] if problems else ("body", "request is not valid")
        body = {"message": message, "field": field, "errors": [m for _, m in problems]}
        return json_response(HTTPStatus.UNPROCESSABLE_ENTITY, body)

    @app.exception_handler(RequestUnsupportedContentType)
    def _not_json(_: RequestUnsupportedContentType) -> Response:
        return error_response(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON (Content-Type: application/json)",
            "Content-Type",
        )

    @app.exception_handler(ResponseValidationError)
    def _broken_answer(error: ResponseValidationError) -> Response:
        where = [{"loc": e.get("loc"), "type": e.get("type")} for e in error.errors()]
        logger.error("answer breaks its declared schema", extra={"errors": where})
        return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    @app.exception_handler(Unauthorized)
    def _unauthorized(error: Unauthorized) -> Response:
        return error_response(HTTPStatus.UNAUTHORIZED, error.message)

    @app.exception_handler(WorkflowUnavailable)
    def _unavailable(error: WorkflowUnavailable) -> Response:
        logger.warning("workflow could not be started", extra={"reason": error.message})
        response = error_response(HTTPStatus.SERVICE_UNAVAILABLE, error.message)
        response.headers["Retry-After"] = str(error.retry_after_seconds)
        return response

    @app.exception_handler(QuotaExceeded)
    def _over_quota(error: QuotaExceeded) -> Response:
        response = error_response(HTTPStatus.TOO_MANY_REQUESTS, error.message)
        response.headers["Retry-After"] = str(error.retry_after_seconds)
        return response

    @app.exception_handler(SpendingPaused)
    def _spending_paused(error: SpendingPaused) -> Response:
        response = error_response(HTTPStatus.SERVICE_UNAVAILABLE, error.message)
        response.headers["Retry-After"] = str(error.retry_after_seconds)
        return response

    @app.exception_handler(ProviderPaused)
    def _provider_paused(error: ProviderPaused) -> Response:
        response = error_response(HTTPStatus.SERVICE_UNAVAILABLE, error.message)
        response.headers["Retry-After"] = str(error.retry_after_seconds)
        return response

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
