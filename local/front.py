"""A local stand-in for API Gateway HTTP API with a JWT authorizer (payload format 2.0).

moto has no execute-api data plane, so the local stack serves ``template.yaml``'s HttpApi
routes here: requests are matched like API Gateway matches routes, bearer tokens are checked
like its JWT authorizer checks them, and the Lambda receives the event API Gateway would send.
Invoking the Lambda is the caller's business (``invoke``); this module only speaks HTTP.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import mimetypes
import re
import secrets
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.auth import InvalidToken, JwtVerifier
from local.template import ACCOUNT_ID

log = logging.getLogger("local.front")

API_BASE_PATH = "/v1"
MAX_REQUEST_BODY_BYTES = 10 * 1024 * 1024
# HTTP API quotas: "total combined size of request line and header values: 10240 bytes".
# The answer's shape past it is assumed: a 431 with API Gateway's usual {"message": ...}.
MAX_REQUEST_HEADER_BYTES = 10240
DEFAULT_API_ID = "localapi01"
IMPLICIT_API = "ServerlessHttpApi"
DEFAULT_ROUTE = "$default"
ANY_METHOD = "ANY"
DEV_TOKEN_PATH = "/local/token"  # noqa: S105 - a route, not a secret

Invoke = Callable[[str, dict[str, Any]], Any]
DevTokens = Callable[[str], str]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TEXT_MEDIA_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/graphql",
    }
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_DEV_USER = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SIMPLE_METHODS = frozenset({"GET", "HEAD", "POST"})
_DRAIN_LIMIT_BYTES = 10 * MAX_REQUEST_BODY_BYTES
# What reading or writing a connection raises once the client has closed it (a browser drops
# connections it no longer needs, even mid-answer): an everyday event, not a failure.
_CLIENT_WENT_AWAY = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
_PSEUDO_PARAMETERS = {"AWS::AccountId": ACCOUNT_ID, "AWS::Partition": "aws"}


@dataclass(frozen=True)
class Route:
    """One HttpApi route: ``GET /v1/models/{model_id}``, ``ANY /{proxy+}`` or ``$default``."""

    method: str
    path: str
    function: str
    authorized: bool
    api: str = IMPLICIT_API
    _pattern: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", self.method.upper())
        object.__setattr__(self, "_pattern", _compile_path(self.path))

    @property
    def route_key(self) -> str:
        return DEFAULT_ROUTE if self.path == DEFAULT_ROUTE else f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when this route serves ``method path``, else ``None``."""
        if self.path == DEFAULT_ROUTE:
            return {}
        if self.method not in (ANY_METHOD, method):
            return None
        segments = path.split("/")[1:]
        params: dict[str, str] = {}
        for index, (kind, text) in enumerate(self._pattern):
            if kind == "greedy":
                rest = "/".join(segments[index:])
                if not rest:
                    return None
                params[text] = rest
                return params
            if index >= len(segments):
                return None
            segment = segments[index]
            if kind == "static" and segment != text:
                return None
            if kind == "param":
                if not segment:
                    return None
                params[text] = segment
        return params if len(segments) == len(self._pattern) else None

    def specificity(self) -> tuple[Any, ...]:
        """Sort key: full matches beat greedy ones, static segments beat parameters from
        the left, a named method beats ``ANY``, and ``$default`` comes last."""
        if self.path == DEFAULT_ROUTE:
            return (0,)
        ranks = {"static": 2, "param": 1, "greedy": 0}
        greedy = any(kind == "greedy" for kind, _ in self._pattern)
        segment_ranks = tuple(ranks[kind] for kind, _ in self._pattern)
        return (1, not greedy, segment_ranks, self.method != ANY_METHOD)


def match_route(
    routes: Iterable[Route], method: str, path: str
) -> tuple[Route, dict[str, str]] | None:
    """The most specific route serving ``method path`` and its path parameters."""
    candidates = []
    for route in routes:
        params = route.match(method, path)
        if params is not None:
            candidates.append((route, params))
    if not candidates:
        return None
    return max(candidates, key=lambda candidate: candidate[0].specificity())


@dataclass(frozen=True)
class CorsConfig:
    """An HttpApi ``CorsConfiguration``; API Gateway answers preflights from it."""

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.allow_origins or origin.lower() in {
            allowed.lower() for allowed in self.allow_origins
        }

    def allows_method(self, method: str) -> bool:
        if not self.allow_methods:
            return method.upper() in _SIMPLE_METHODS
        allowed = {m.upper() for m in self.allow_methods}
        return "*" in allowed or method.upper() in allowed

    def origin_headers(self, origin: str) -> list[tuple[str, str]]:
        """What API Gateway adds to any response for a request from an allowed ``origin``."""
        if "*" in self.allow_origins and not self.allow_credentials:
            headers = [("Access-Control-Allow-Origin", "*")]
        else:
            headers = [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        if self.allow_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        if self.expose_headers:
            headers.append(("Access-Control-Expose-Headers", ",".join(self.expose_headers)))
        return headers

    def preflight_headers(
        self, origin: str, requested_headers: str | None
    ) -> list[tuple[str, str]]:
        headers = self.origin_headers(origin)
        if self.allow_methods:
            headers.append(("Access-Control-Allow-Methods", ",".join(self.allow_methods)))
        if "*" in self.allow_headers and requested_headers:
            headers.append(("Access-Control-Allow-Headers", requested_headers))
        elif self.allow_headers:
            headers.append(("Access-Control-Allow-Headers", ",".join(self.allow_headers)))
        if self.max_age is not None:
            headers.append(("Access-Control-Max-Age", str(self.max_age)))
        return headers


def routes_from_template(template: Mapping[str, Any], api: str | None = None) -> list[Route]:
    """A route per ``HttpApi`` event of each ``AWS::Serverless::Function``, in template order.

    ``api`` keeps only the routes of that HttpApi (logical id; ``ServerlessHttpApi`` is the
    implicit one). A route is authorized when its event names an authorizer other than
    ``NONE`` or its API has a ``DefaultAuthorizer``, which is how SAM wires it.
    """
    routes: list[Route] = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        events = (resource.get("Properties") or {}).get("Events") or {}
        for event_name, event in events.items():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties") or {}
            api_id = _api_logical_id(props.get("ApiId"), f"{logical_id}.{event_name}")
            if api is not None and api_id != api:
                continue
            method, path = _event_method_and_path(props, f"{logical_id}.{event_name}")
            authorizer = (props.get("Auth") or {}).get("Authorizer")
            default = (_api_properties(template, api_id).get("Auth") or {}).get("DefaultAuthorizer")
            authorized = authorizer != "NONE" and bool(authorizer or default)
            routes.append(Route(method, path, logical_id, authorized, api_id))
    _refuse_duplicates(routes)
    return routes


def cors_from_template(
    template: Mapping[str, Any],
    parameters: Mapping[str, str] | None = None,
    api: str | None = None,
) -> CorsConfig | None:
    """The ``CorsConfiguration`` of the HttpApi ``api`` (default: the template's only one).

    ``Ref``s to template parameters resolve from ``parameters``, then from the parameter's
    ``Default``; a value that still cannot be resolved is left out (with a warning), so an
    unresolvable origin is refused rather than allowed.
    """
    api_id = api or _only_http_api(template)
    raw = _api_properties(template, api_id).get("CorsConfiguration")
    if raw is None or raw is False:
        return None
    if raw is True:
        return CorsConfig(allow_origins=("*",))
    resolver = _Resolver(template, parameters or {})
    if _is_intrinsic(raw):
        return CorsConfig(allow_origins=resolver.strings(raw, "AllowOrigins"))
    if not isinstance(raw, Mapping):
        raise ValueError(f"{api_id}: CorsConfiguration must be true or a map")
    max_age = resolver.scalar(raw["MaxAge"], "MaxAge") if "MaxAge" in raw else None
    credentials = resolver.scalar(raw.get("AllowCredentials", False), "AllowCredentials")
    return CorsConfig(
        allow_origins=resolver.strings(raw.get("AllowOrigins", []), "AllowOrigins"),
        allow_methods=resolver.strings(raw.get("AllowMethods", []), "AllowMethods"),
        allow_headers=resolver.strings(raw.get("AllowHeaders", []), "AllowHeaders"),
        expose_headers=resolver.strings(raw.get("ExposeHeaders", []), "ExposeHeaders"),
        max_age=int(max_age) if max_age is not None else None,
        allow_credentials=str(credentials).lower() == "true",
    )


class ApiFront:
    """Serves the routes over HTTP like API Gateway would, in a background thread.

    ``invoke(function_logical_id, event)`` runs the Lambda and returns its result; it is
    called from the server's request threads, possibly concurrently. An error payload
    (``errorType``/``errorMessage``) or an exception becomes a 500, as in API Gateway.

    ``dev_tokens(user)``, when given, mints a bearer token for ``user`` and enables the
    local-only ``POST /local/token`` that the try-it page signs in with. API Gateway has no
    such route: without ``dev_tokens`` it does not exist (404), as in a deployed stack.
    """

    def __init__(
        self,
        routes: Iterable[Route],
        invoke: Invoke,
        verifier: JwtVerifier,
        cors: CorsConfig | None,
        host: str = "127.0.0.1",
        port: int = 3000,
        static_dir: Path | None = None,
        *,
        api_id: str = DEFAULT_API_ID,
        access_log: bool = False,
        dev_tokens: DevTokens | None = None,
    ) -> None:
        self.routes = list(routes)
        _refuse_duplicates(self.routes)
        self.invoke = invoke
        self.verifier = verifier
        self.cors = cors
        self.host = host
        self.api_id = api_id
        self.access_log = access_log
        self.dev_tokens = dev_tokens
        self.static_dir = static_dir.resolve() if static_dir is not None else None
        self._requested_port = port
        self._server: _FrontServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the front is already running")
        server = _FrontServer((self.host, self._requested_port), _Handler)
        server.front = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"api-front-{server.server_port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ApiFront:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the front is not running")
        return int(self._server.server_port)

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104 - compared, never bound  # nosec B104
        return f"http://{host}:{self.port}"

    def _handle(self, request: _Request) -> _Reply:
        """Answers one request as API Gateway would; never raises."""
        try:
            reply = self._answer(request)
        except Exception:
            _log(f"front: {request.method} {request.path} failed:\n{traceback.format_exc()}")
            reply = _Reply.message(500, "Internal Server Error")
        return self._with_cors(request, reply)

    def _answer(self, request: _Request) -> _Reply:
        if request.body is None:
            return _Reply.message(413, "Request Entity Too Large")
        if self._is_preflight(request):
            return self._preflight(request)
        if self.dev_tokens is not None and request.path == DEV_TOKEN_PATH:
            return _dev_token(self.dev_tokens, request)
        if self.static_dir is not None and self._is_static(request):
            return _serve_static(self.static_dir, request)
        matched = match_route(self.routes, request.method, request.path)
        if matched is None:
            return _Reply.message(404, "Not Found")
        route, path_params = matched
        claims: dict[str, Any] | None = None
        if route.authorized:
            try:
                claims = self.verifier.verify(_bearer_token(request.header("authorization")))
            except InvalidToken as exc:
                return _unauthorized(exc)
        event = self._event(request, route, path_params, claims)
        return _invoke(self.invoke, route, event)

    def _is_preflight(self, request: _Request) -> bool:
        return (
            self.cors is not None
            and request.method == "OPTIONS"
            and request.header("origin") is not None
            and request.header("access-control-request-method") is not None
        )

    def _preflight(self, request: _Request) -> _Reply:
        assert self.cors is not None
        origin = request.header("origin") or ""
        method = request.header("access-control-request-method") or ""
        if not (self.cors.allows_origin(origin) and self.cors.allows_method(method)):
            return _Reply(204, cors_applied=True)
        headers = self.cors.preflight_headers(
            origin, request.header("access-control-request-headers")
        )
        return _Reply(204, headers, cors_applied=True)

    def _with_cors(self, request: _Request, reply: _Reply) -> _Reply:
        if self.cors is None or reply.cors_applied:
            return reply
        # With CORS configured, API Gateway drops the integration's own CORS headers.
        headers = [(n, v) for n, v in reply.headers if not n.lower().startswith("access-control-")]
        origin = request.header("origin")
        if origin is not None and self.cors.allows_origin(origin):
            headers.extend(self.cors.origin_headers(origin))
        return _Reply(reply.status, headers, reply.body, cors_applied=True)

    @staticmethod
    def _is_static(request: _Request) -> bool:
        under_api = request.path == API_BASE_PATH or request.path.startswith(API_BASE_PATH + "/")
        return request.method in ("GET", "HEAD") and not under_api

    def _event(
        self,
        request: _Request,
        route: Route,
        path_params: dict[str, str],
        claims: dict[str, Any] | None,
    ) -> dict[str, Any]:
        headers, cookies = _headers_and_cookies(request.headers)
        forwarded = headers.get("x-forwarded-for")
        source_ip = request.client_ip
        headers["x-forwarded-for"] = f"{forwarded}, {source_ip}" if forwarded else source_ip
        headers.setdefault("x-forwarded-port", str(request.server_port))
        headers.setdefault("x-forwarded-proto", "http")
        headers.setdefault("x-amzn-trace-id", _trace_id(request.received_at))

        domain_name = (headers.get("host") or self.host).rsplit(":", 1)[0].strip("[]")
        domain_prefix = domain_name if _is_ip(domain_name) else domain_name.split(".", 1)[0]
        received = datetime.fromtimestamp(request.received_at, UTC)
        request_context: dict[str, Any] = {
            "accountId": ACCOUNT_ID,
            "apiId": self.api_id,
            "domainName": domain_name,
            "domainPrefix": domain_prefix,
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.protocol,
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request.request_id,
            "routeKey": route.route_key,
            "stage": "$default",
            "time": f"{received:%d}/{_MONTHS[received.month - 1]}/{received:%Y:%H:%M:%S} +0000",
            "timeEpoch": int(request.received_at * 1000),
        }
        if claims is not None:
            request_context["authorizer"] = {
                "jwt": {
                    "claims": {name: _claim_text(value) for name, value in claims.items()},
                    "scopes": None,
                }
            }
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": request.path,
            "rawQueryString": request.query,
        }
        if cookies:
            event["cookies"] = cookies
        event["headers"] = headers
        query = _query_parameters(request.query)
        if query:
            event["queryStringParameters"] = query
        event["requestContext"] = request_context
        event["isBase64Encoded"] = False
        if request.body:
            event["body"], event["isBase64Encoded"] = _event_body(
                request.body, headers.get("content-type")
            )
        if path_params:
            event["pathParameters"] = path_params
        return event


@dataclass
class _Request:
    method: str
    path: str
    query: str
    protocol: str
    headers: list[tuple[str, str]]
    body: bytes | None
    client_ip: str
    server_port: int
    received_at: float = field(default_factory=time.time)
    request_id: str = field(default_factory=lambda: _request_id())

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name]
        return ",".join(values) if values else None


@dataclass
class _Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    cors_applied: bool = False

    @classmethod
    def message(cls, status: int, message: str) -> _Reply:
        return cls.with_json(status, {"message": message})

    @classmethod
    def with_json(cls, status: int, payload: Mapping[str, Any]) -> _Reply:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, [("Content-Type", "application/json")], body)


class _LambdaResponseError(Exception):
    """The Lambda's result is not something API Gateway can turn into an HTTP response."""


def _invoke(invoke: Invoke, route: Route, event: dict[str, Any]) -> _Reply:
    try:
        result = invoke(route.function, event)
    except Exception:
        _log(f"front: {route.route_key} -> {route.function} raised:\n{traceback.format_exc()}")
        return _Reply.message(500, "Internal Server Error")
    if _is_error_payload(result):
        trace = "".join(f"\n  {line}" for line in result.get("stackTrace") or [])
        _log(
            f"front: {route.route_key} -> {route.function} failed: "
            f"{result.get('errorType')}: {result.get('errorMessage')}{trace}"
        )
        return _Reply.message(500, "Internal Server Error")
    try:
        return _reply_from_result(result)
    except _LambdaResponseError as exc:
        _log(f"front: {route.route_key} -> {route.function} returned a bad response: {exc}")
        return _Reply.message(500, "Internal Server Error")


def _is_error_payload(result: Any) -> bool:
    return (
        isinstance(result, Mapping)
        and "statusCode" not in result
        and "errorMessage" in result
        and "errorType" in result
    )


def _reply_from_result(result: Any) -> _Reply:
    if not (isinstance(result, Mapping) and "statusCode" in result):
        body = json.dumps(result).encode()
        return _Reply(200, [("Content-Type", "application/json")], body)
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise _LambdaResponseError(f"statusCode {status!r} is not an HTTP status")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((name, _header_text(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, _header_text(value)) for value in values)
    headers.extend(("Set-Cookie", _header_text(cookie)) for cookie in result.get("cookies") or [])
    for name, value in headers:
        if not _HEADER_NAME.match(name) or "\r" in value or "\n" in value:
            raise _LambdaResponseError(f"header {name!r} cannot be sent")
    headers = [(n, v) for n, v in headers if n.lower() not in ("content-length", "connection")]
    raw_body = result.get("body")
    if raw_body is None:
        body = b""
    elif not isinstance(raw_body, str):
        raise _LambdaResponseError("body must be a string")
    elif result.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw_body, validate=True)
        except binascii.Error as exc:
            raise _LambdaResponseError("isBase64Encoded body is not base64") from exc
    else:
        body = raw_body.encode("utf-8")
    return _Reply(status, headers, body)


def _header_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _dev_token(mint: DevTokens, request: _Request) -> _Reply:
    """``POST /local/token`` ``{"user": "<name>"}`` -> ``{"token": "<jwt>"}`` (local only)."""
    if request.method != "POST":
        reply = _Reply.message(405, "Method Not Allowed")
        reply.headers.append(("Allow", "POST"))
        return reply
    try:
        body = json.loads(request.body or b"")
    except ValueError:
        return _Reply.message(400, 'the body must be JSON: {"user": "<name>"}')
    user = body.get("user") if isinstance(body, dict) else None
    if not isinstance(user, str) or not _DEV_USER.fullmatch(user):
        return _Reply.with_json(
            422,
            {
                "message": "user: 1 to 64 characters, each a letter, a digit, '.', '_' or '-'",
                "field": "user",
            },
        )
    reply = _Reply.with_json(200, {"token": mint(user)})
    reply.headers.append(("Cache-Control", "no-store"))
    return reply


def _unauthorized(exc: InvalidToken) -> _Reply:
    reply = _Reply.message(401, "Unauthorized")
    if exc.reason == "missing":
        challenge = "Bearer"
    else:
        description = exc.detail.replace("\\", "\\\\").replace('"', '\\"')
        challenge = f'Bearer scope="" error="invalid_token" error_description="{description}"'
    reply.headers.append(("WWW-Authenticate", challenge))
    return reply


def _bearer_token(authorization: str | None) -> str | None:
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("malformed", "the Authorization header is not 'Bearer <token>'")
    return token.strip()


def _claim_text(value: Any) -> str:
    """Claims as API Gateway hands them over: every value flattened to a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + " ".join(_claim_text(item) for item in value) + "]"
    if isinstance(value, dict):
        items = " ".join(f"{k}:{_claim_text(v)}" for k, v in sorted(value.items()))
        return f"map[{items}]"
    if value is None:
        return "<nil>"
    return str(value)


def _headers_and_cookies(raw: list[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Lower-cased headers with repeats comma-joined; the Cookie header becomes a list."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in raw:
        lower = name.lower()
        if lower == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
        elif lower in headers:
            headers[lower] = f"{headers[lower]},{value}"
        else:
            headers[lower] = value
    return headers, cookies


def _event_body(body: bytes, content_type: str | None) -> tuple[str, bool]:
    """The body as API Gateway passes it: text for textual types, base64 for the rest."""
    if _is_text(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _query_parameters(raw_query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    return params


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return (
        media_type.startswith("text/")
        or media_type in _TEXT_MEDIA_TYPES
        or media_type.endswith(("+json", "+xml"))
    )


def _serve_static(root: Path, request: _Request) -> _Reply:
    parts = request.path.split("/")[1:]
    if any(p.startswith(".") or "\x00" in p or "\\" in p for p in parts):
        return _Reply.message(404, "Not Found")
    candidate = root.joinpath(*[p for p in parts if p]).resolve()
    if candidate.is_dir():
        candidate = candidate / "index.html"
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return _Reply.message(404, "Not Found")
    content_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type in _TEXT_MEDIA_TYPES:
        content_type += "; charset=utf-8"
    headers = [
        ("Content-Type", content_type),
        ("Cache-Control", "no-cache"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    return _Reply(200, headers, candidate.read_bytes())


def _compile_path(path: str) -> tuple[tuple[str, str], ...]:
    if path == DEFAULT_ROUTE:
        return ()
    if not path.startswith("/"):
        raise ValueError(f"route path {path!r} must start with '/'")
    segments = path.split("/")[1:]
    pattern: list[tuple[str, str]] = []
    for index, segment in enumerate(segments):
        if segment.startswith("{") and segment.endswith("}"):
            name = segment[1:-1]
            if name.endswith("+"):
                if index != len(segments) - 1:
                    raise ValueError(f"greedy parameter must be last in {path!r}")
                pattern.append(("greedy", name[:-1]))
            else:
                pattern.append(("param", name))
        elif "{" in segment or "}" in segment:
            raise ValueError(f"path parameter must be a whole segment in {path!r}")
        else:
            pattern.append(("static", segment))
    return tuple(pattern)


def _refuse_duplicates(routes: Iterable[Route]) -> None:
    seen: set[tuple[str, str]] = set()
    for route in routes:
        key = (route.api, route.route_key)
        if key in seen:
            raise ValueError(f"duplicate route {route.route_key!r} on {route.api}")
        seen.add(key)


def _event_method_and_path(props: Mapping[str, Any], where: str) -> tuple[str, str]:
    path, method = props.get("Path"), props.get("Method")
    if not path and not method:
        return ANY_METHOD, DEFAULT_ROUTE
    if not isinstance(path, str) or not isinstance(method, str):
        raise ValueError(f"{where}: HttpApi Path and Method must both be plain strings")
    method = method.upper()
    if method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
        method = ANY_METHOD
    return method, path


def _api_logical_id(api_id: Any, where: str) -> str:
    if api_id is None:
        return IMPLICIT_API
    if isinstance(api_id, str):
        return api_id
    if isinstance(api_id, Mapping) and isinstance(api_id.get("Ref"), str):
        return str(api_id["Ref"])
    raise ValueError(f"{where}: ApiId must be a !Ref to an AWS::Serverless::HttpApi")


def _api_properties(template: Mapping[str, Any], api_id: str) -> dict[str, Any]:
    """The HttpApi's properties merged over ``Globals.HttpApi`` as SAM merges them."""
    merged = dict((template.get("Globals") or {}).get("HttpApi") or {})
    resource = (template.get("Resources") or {}).get(api_id) or {}
    for name, value in (resource.get("Properties") or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    return merged


def _only_http_api(template: Mapping[str, Any]) -> str:
    apis = [
        logical_id
        for logical_id, resource in (template.get("Resources") or {}).items()
        if resource.get("Type") == "AWS::Serverless::HttpApi"
    ]
    if len(apis) > 1:
        raise ValueError(f"the template has several HttpApis {apis}: name one with api=")
    return apis[0] if apis else IMPLICIT_API


def _is_intrinsic(value: Any) -> bool:
    if not isinstance(value, Mapping) or len(value) != 1:
        return False
    name = str(next(iter(value)))
    return name == "Ref" or name.startswith("Fn::")


class _Resolver:
    """Resolves the simple intrinsics a CorsConfiguration holds: ``Ref`` and ``Fn::Sub``."""

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
        self._declared = template.get("Parameters") or {}
        self._parameters = parameters

    def strings(self, value: Any, where: str) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        resolved: list[str] = []
        for item in items:
            if isinstance(item, Mapping) and set(item) == {"Ref"} and self._is_list(item["Ref"]):
                text = self.scalar(item, where)
                if text is not None:
                    resolved.extend(part.strip() for part in text.split(",") if part.strip())
                continue
            text = self.scalar(item, where)
            if text is not None:
                resolved.append(text)
        return tuple(resolved)

    def scalar(self, value: Any, where: str) -> str | None:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, Mapping) and set(value) == {"Ref"}:
            return self._ref(str(value["Ref"]), where)
        if isinstance(value, Mapping) and set(value) == {"Fn::Sub"}:
            return self._sub(value["Fn::Sub"], where)
        _log(f"front: CORS {where}: cannot resolve {value!r} locally; leaving it out")
        return None

    def _ref(self, name: str, where: str) -> str | None:
        if name in self._parameters:
            return str(self._parameters[name])
        if name in _PSEUDO_PARAMETERS:
            return _PSEUDO_PARAMETERS[name]
        declared = self._declared.get(name)
        if isinstance(declared, Mapping) and "Default" in declared:
            default = declared["Default"]
            return ",".join(map(str, default)) if isinstance(default, list) else str(default)
        _log(f"front: CORS {where}: no value for !Ref {name}; leaving it out")
        return None

    def _sub(self, spec: Any, where: str) -> str | None:
        template, variables = (spec, {}) if isinstance(spec, str) else (spec[0], spec[1])
        unresolved = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal unresolved
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            value = (
                self.scalar(variables[name], where) if name in variables else self._ref(name, where)
            )
            if value is None:
                unresolved = True
                return ""
            return value

        text = re.sub(r"\$\{([^}]+)\}", substitute, template)
        return None if unresolved else text

    def _is_list(self, name: str) -> bool:
        declared = self._declared.get(name)
        kind = str(declared.get("Type", "")) if isinstance(declared, Mapping) else ""
        return kind == "CommaDelimitedList" or kind.startswith("List<")


class _FrontServer(ThreadingHTTPServer):
    daemon_threads = True
    # API Gateway takes a burst of connections; socketserver's default backlog of 5 resets
    # the sixth simultaneous one, which no client of the real API would ever see
    request_queue_size = 128
    front: ApiFront

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver prints every error of a request thread with its traceback; a client
        that went away gets one debug line instead. Any other error is still printed."""
        error = sys.exc_info()[1]
        if isinstance(error, _CLIENT_WENT_AWAY):
            log.debug("front: %s went away: %r", client_address[0], error)
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Ends kept-alive connections too, so a stopped front really stops answering."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FrontServer

    def do_GET(self) -> None:
        started = time.perf_counter()
        front = self.server.front
        if self._header_bytes() > MAX_REQUEST_HEADER_BYTES:
            self._read_body()
            reply = _Reply.message(431, "Request Header Fields Too Large")
            self._send(reply, _request_id(), close=True)
            return
        target = urlsplit(self.path)
        request = _Request(
            method=self.command,
            path=unquote(target.path) or "/",
            query=target.query,
            protocol=self.request_version,
            headers=list(self.headers.items()),
            body=self._read_body(),
            client_ip=self.client_address[0],
            server_port=self.server.server_port,
        )
        reply = front._handle(request)
        if front.access_log:
            # logged before the answer leaves, so a client that has its answer sees the line
            elapsed_ms = (time.perf_counter() - started) * 1000
            _log(f"{request.method} {request.path} {reply.status} {elapsed_ms:.0f}ms")
        self._send(reply, request.request_id, close=request.body is None)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def version_string(self) -> str:
        return "avatar-pipeline-local-front"

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What http.server refuses before a route runs (a header line over 64 KiB, a
        malformed request line) answers in the API's JSON error shape, not an HTML page."""
        reason = {431: "Request Header Fields Too Large"}.get(code, message or "Bad Request")
        if code == 431:
            self._drain_headers()
        self.close_connection = True
        self._send(_Reply.message(code, reason), _request_id(), close=True)

    def _drain_headers(self) -> None:
        """Read the rest of an oversized header block (bounded), so the client, still
        sending, reads our answer instead of a connection reset."""
        remaining = _DRAIN_LIMIT_BYTES
        while remaining > 0:
            line = self.rfile.readline(1 << 16)
            remaining -= len(line)
            if line in (b"", b"\r\n", b"\n"):
                return

    def _header_bytes(self) -> int:
        return len(self.requestline) + sum(len(k) + len(v) for k, v in self.headers.items())

    def handle_expect_100(self) -> bool:
        if self._declared_length() > MAX_REQUEST_BODY_BYTES:
            reply = _Reply.message(413, "Request Entity Too Large")
            self._send(reply, _request_id(), close=True)
            return False
        return super().handle_expect_100()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access lines come from ``do_GET`` when the front's ``access_log`` is on."""

    def log_message(self, format: str, *args: Any) -> None:
        _log(f"front: {self.address_string()} {format % args}")

    def _declared_length(self) -> int:
        try:
            return int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return 0

    def _read_body(self) -> bytes | None:
        """The request body, or ``None`` when it exceeds API Gateway's limit."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = self._declared_length()
        if length <= MAX_REQUEST_BODY_BYTES:
            return self.rfile.read(length) if length > 0 else b""
        if length <= _DRAIN_LIMIT_BYTES:
            # Reading the rest lets the client finish sending and see the 413.
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
        return None

    def _read_chunked(self) -> bytes | None:
        body = bytearray()
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            except ValueError:
                size = 0
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass
                return bytes(body)
            if len(body) + size > MAX_REQUEST_BODY_BYTES:
                return None
            body += self.rfile.read(size)
            self.rfile.readline(1024)

    def _send(self, reply: _Reply, request_id: str, close: bool) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("apigw-requestid", request_id)
        body = b"" if reply.status in (204, 304) else reply.body
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)


def _request_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode("ascii")


def _trace_id(received_at: float) -> str:
    return f"Root=1-{int(received_at):08x}-{uuid.uuid4().hex[:24]}"


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
