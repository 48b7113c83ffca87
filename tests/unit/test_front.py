"""The local front answers like API Gateway HTTP API with a JWT authorizer (payload 2.0)."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from local.auth import LocalSigner
from local.front import (
    MAX_REQUEST_BODY_BYTES,
    MAX_REQUEST_HEADER_BYTES,
    ApiFront,
    CorsConfig,
    Route,
    cors_from_template,
    match_route,
    routes_from_template,
)
from local.template import load_template

FRONTEND_ORIGIN = "http://localhost:5173"

ROUTES = [
    Route("GET", "/v1/health", "HealthFunction", authorized=False),
    Route("GET", "/v1/models/{model_id}", "GetModelFunction", authorized=True),
    Route("GET", "/v1/models/latest", "LatestModelFunction", authorized=True),
    Route("POST", "/v1/models/{model_id}/selfies", "UploadFunction", authorized=True),
    Route("ANY", "/v1/files/{proxy+}", "FilesFunction", authorized=True),
    Route("GET", "/v1/files/special", "SpecialFileFunction", authorized=True),
    Route("GET", "/v1/respond", "RespondFunction", authorized=False),
]

CORS = CorsConfig(
    allow_origins=(FRONTEND_ORIGIN,),
    allow_methods=("GET", "POST", "DELETE"),
    allow_headers=("authorization", "content-type", "idempotency-key"),
    expose_headers=("x-request-id",),
    max_age=600,
)


@dataclass
class FakeLambdas:
    """Records every event and answers with what a test asked for."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, function: str, event: dict[str, Any]) -> Any:
        with self.lock:
            self.calls.append((function, event))
        answer = self.answers.get(function, {"statusCode": 200, "body": "{}"})
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def functions(self) -> list[str]:
        return [function for function, _ in self.calls]

    def only_event(self) -> dict[str, Any]:
        assert len(self.calls) == 1, self.functions
        return self.calls[0][1]


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> LocalSigner:
    return LocalSigner(tmp_path_factory.mktemp("jwt"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> LocalSigner:
    return LocalSigner(tmp_path_factory.mktemp("stranger-jwt"))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>avatars</title>")
    (root / "js" / "app.js").write_text("console.log('hi')")
    (root / ".env").write_text("SECRET=1")
    (tmp_path / "secret.txt").write_text("top secret")
    return root


@pytest.fixture
def lambdas() -> FakeLambdas:
    return FakeLambdas()


@pytest.fixture
def make_front(
    signer: LocalSigner, lambdas: FakeLambdas, site: Path
) -> Iterator[Callable[..., ApiFront]]:
    started: list[ApiFront] = []

    def make(**overrides: Any) -> ApiFront:
        options: dict[str, Any] = {
            "routes": ROUTES,
            "invoke": lambdas,
            "verifier": signer.verifier(),
            "cors": CORS,
            "port": 0,
            "static_dir": site,
        }
        options.update(overrides)
        front = ApiFront(**options)
        front.start()
        started.append(front)
        return front

    yield make
    for front in started:
        front.stop()


@pytest.fixture
def front(make_front: Callable[..., ApiFront]) -> ApiFront:
    return make_front()


@pytest.fixture
def auth(signer: LocalSigner) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.mint('alice-' + uuid.uuid4().hex[:8])}"}


def raw_request(
    front: ApiFront,
    method: str,
    target: str,
    headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    body: bytes | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Sends exactly what it is given, duplicate headers and unnormalised paths included."""
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


# --- the event the Lambda receives -------------------------------------------------------


def test_authorized_request_becomes_a_faithful_payload_2_event(
    front: ApiFront, lambdas: FakeLambdas, signer: LocalSigner
) -> None:
    token = signer.mint("alice", **{"cognito:groups": ["admins", "editors"], "verified": True})
    before_ms = int(time.time() * 1000)

    status, _, _ = raw_request(
        front,
        "GET",
        "/v1/models/m-123?tag=a&tag=b&q=x%20y&empty=",
        [
            ("Authorization", f"Bearer {token}"),
            ("Cookie", "session=abc; theme=dark"),
            ("X-Custom", "one"),
            ("X-Custom", "two"),
            ("User-Agent", "avatar-tests/1.0"),
        ],
    )

    assert status == 200
    event = lambdas.only_event()
    assert lambdas.functions == ["GetModelFunction"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /v1/models/{model_id}"
    assert event["rawPath"] == "/v1/models/m-123"
    assert event["rawQueryString"] == "tag=a&tag=b&q=x%20y&empty="
    assert event["queryStringParameters"] == {"tag": "a,b", "q": "x y", "empty": ""}
    assert event["pathParameters"] == {"model_id": "m-123"}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-custom"] == "one,two"
    assert event["headers"]["user-agent"] == "avatar-tests/1.0"
    assert event["headers"]["authorization"] == f"Bearer {token}"
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert all(name == name.lower() for name in event["headers"])
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    assert "stageVariables" not in event

    context = event["requestContext"]
    assert context["accountId"] == "123456789012"
    assert context["apiId"]
    assert context["domainName"] == "127.0.0.1"
    assert context["domainPrefix"]
    assert context["http"] == {
        "method": "GET",
        "path": "/v1/models/m-123",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "avatar-tests/1.0",
    }
    assert context["requestId"]
    assert context["routeKey"] == "GET /v1/models/{model_id}"
    assert context["stage"] == "$default"
    assert re.fullmatch(r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000", context["time"])
    assert before_ms <= context["timeEpoch"] <= int(time.time() * 1000)

    jwt_context = context["authorizer"]["jwt"]
    assert jwt_context["scopes"] is None
    claims = jwt_context["claims"]
    assert claims["sub"] == "alice"
    assert claims["iss"] == signer.issuer
    assert claims["aud"] == signer.audience
    assert claims["cognito:groups"] == "[admins editors]"
    assert claims["verified"] == "true"
    assert re.fullmatch(r"\d+", claims["exp"])
    assert all(isinstance(value, str) for value in claims.values())


def test_each_request_gets_its_own_request_id(
    front: ApiFront, lambdas: FakeLambdas, auth: dict[str, str]
) -> None:
    responses = [requests.get(f"{front.base_url}/v1/models/m-1", headers=auth, timeout=5)]
    responses.append(requests.get(f"{front.base_url}/v1/models/m-1", headers=auth, timeout=5))

    ids = [event["requestContext"]["requestId"] for _, event in lambdas.calls]
    assert len(set(ids)) == 2
    assert [r.headers["apigw-requestid"] for r in responses] == ids


def test_health_needs_no_token_and_carries_no_authorizer(
    front: ApiFront, lambdas: FakeLambdas
) -> None:
    response = requests.get(f"{front.base_url}/v1/health", timeout=5)

    assert response.status_code == 200
    event = lambdas.only_event()
    assert event["routeKey"] == "GET /v1/health"
    assert "authorizer" not in event["requestContext"]
    for absent in ("pathParameters", "queryStringParameters", "cookies", "body"):
        assert absent not in event


def test_json_body_arrives_as_text(
    front: ApiFront, lambdas: FakeLambdas, auth: dict[str, str]
) -> None:
    body = {"files": [{"content_type": "image/jpeg"}], "note": "é"}

    requests.post(f"{front.base_url}/v1/models/m-1/selfies", json=body, headers=auth, timeout=5)

    event = lambdas.only_event()
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == body


def test_binary_upload_arrives_base64_encoded(
    front: ApiFront, lambdas: FakeLambdas, auth: dict[str, str]
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

    requests.post(
        f"{front.base_url}/v1/models/m-1/selfies",
        data=png,
        headers={**auth, "Content-Type": "image/png"},
        timeout=5,
    )

    event = lambdas.only_event()
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == png
    assert event["pathParameters"] == {"model_id": "m-1"}


def test_chunked_body_is_read_whole(
    front: ApiFront, lambdas: FakeLambdas, auth: dict[str, str]
) -> None:
    chunks = iter([b'{"files": ', b'[{"content_type": "image/png"}]}'])

    requests.post(
        f"{front.base_url}/v1/models/m-1/selfies",
        data=chunks,
        headers={**auth, "Content-Type": "application/json"},
        timeout=5,
    )

    assert json.loads(lambdas.only_event()["body"]) == {"files": [{"content_type": "image/png"}]}


# --- routing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "function", "params"),
    [
        ("GET", "/v1/models/latest", "LatestModelFunction", None),
        ("GET", "/v1/models/m-9", "GetModelFunction", {"model_id": "m-9"}),
        ("GET", "/v1/files/special", "SpecialFileFunction", None),
        ("DELETE", "/v1/files/special", "FilesFunction", {"proxy": "special"}),
        ("GET", "/v1/files/a/b/c.png", "FilesFunction", {"proxy": "a/b/c.png"}),
    ],
)
def test_most_specific_route_wins(
    front: ApiFront,
    lambdas: FakeLambdas,
    auth: dict[str, str],
    method: str,
    path: str,
    function: str,
    params: dict[str, str] | None,
) -> None:
    response = requests.request(method, f"{front.base_url}{path}", headers=auth, timeout=5)

    assert response.status_code == 200
    assert lambdas.functions == [function]
    assert lambdas.only_event().get("pathParameters") == params


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nothing-here"),
        ("DELETE", "/v1/health"),
        ("GET", "/v1/files"),
        ("GET", "/v1/files/"),
        ("GET", "/v1/models/m-1/extra/segments"),
        ("POST", "/v2/models"),
    ],
)
def test_unknown_route_is_404_without_invoking(
    front: ApiFront, lambdas: FakeLambdas, auth: dict[str, str], method: str, path: str
) -> None:
    response = requests.request(method, f"{front.base_url}{path}", headers=auth, timeout=5)

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}
    assert lambdas.calls == []


@pytest.mark.parametrize(
    "token_bytes",
    [MAX_REQUEST_HEADER_BYTES + 1, 70_000, 8 << 20],
    ids=["just over 10 KB", "one line over http.server's 64 KiB", "8 MB"],
)
def test_headers_over_api_gateways_limit_are_431_json_and_nothing_runs(
    front: ApiFront, lambdas: FakeLambdas, token_bytes: int
) -> None:
    headers = {"Authorization": "Bearer " + "a" * token_bytes}
    response = requests.get(f"{front.base_url}/v1/models/m1", headers=headers, timeout=30)

    assert response.status_code == 431
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"message": "Request Header Fields Too Large"}
    assert lambdas.calls == []


def test_headers_just_inside_the_limit_reach_the_authorizer(
    front: ApiFront, lambdas: FakeLambdas
) -> None:
    # the request line, Host, User-Agent, Accept and Connection take well under 300 bytes
    headers = {"Authorization": "Bearer " + "a" * (MAX_REQUEST_HEADER_BYTES - 300)}
    response = requests.get(f"{front.base_url}/v1/models/m1", headers=headers, timeout=5)

    assert response.status_code == 401  # refused by the authorizer, not by the size limit
    assert lambdas.calls == []


def test_match_route_ranks_static_over_params_over_greedy_over_default() -> None:
    routes = [
        Route("ANY", "$default", "Fallback", authorized=False),
        Route("ANY", "/{proxy+}", "Everything", authorized=False),
        Route("GET", "/a/{x}/c", "ParamMiddle", authorized=False),
        Route("ANY", "/a/b/c", "StaticAny", authorized=False),
        Route("GET", "/a/b/c", "StaticGet", authorized=False),
    ]

    def target(method: str, path: str) -> str:
        matched = match_route(routes, method, path)
        assert matched is not None
        return matched[0].function

    assert target("GET", "/a/b/c") == "StaticGet"
    assert target("POST", "/a/b/c") == "StaticAny"
    assert target("GET", "/a/z/c") == "ParamMiddle"
    assert target("POST", "/a/z/c") == "Everything"
    assert target("GET", "/") == "Fallback"


def test_route_refuses_malformed_paths() -> None:
    with pytest.raises(ValueError):
        Route("GET", "/v1/{proxy+}/more", "F", authorized=False)
    with pytest.raises(ValueError):
        Route("GET", "/v1/model-{id}", "F", authorized=False)
    with pytest.raises(ValueError):
        Route("GET", "v1/models", "F", authorized=False)


def test_duplicate_routes_are_refused(signer: LocalSigner, lambdas: FakeLambdas) -> None:
    twice = [ROUTES[0], Route("get", "/v1/health", "Other", authorized=False)]

    with pytest.raises(ValueError, match="duplicate"):
        ApiFront(twice, lambdas, signer.verifier(), None, port=0)


# --- the JWT authorizer -----------------------------------------------------------------


def _expired(signer: LocalSigner, _: LocalSigner) -> str:
    now = int(time.time())
    return f"Bearer {signer.mint('alice', iat=now - 7200, exp=now - 3600)}"


def _alg_none(signer: LocalSigner, _: LocalSigner) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"iss": signer.issuer, "aud": signer.audience, "sub": "alice", "exp": 2**31}
    return f"Bearer {part({'alg': 'none', 'kid': signer.kid})}.{part(claims)}."


def _forged(signer: LocalSigner, stranger: LocalSigner) -> str:
    header, payload, _ = signer.mint("alice").split(".")
    signature = stranger.mint("alice").split(".")[2]
    return f"Bearer {header}.{payload}.{signature}"


BAD_AUTHORIZATIONS: dict[str, Callable[[LocalSigner, LocalSigner], str | None]] = {
    "no header": lambda s, o: None,
    "empty header": lambda s, o: "",
    "not bearer": lambda s, o: f"Basic {base64.b64encode(b'alice:pw').decode()}",
    "bearer without token": lambda s, o: "Bearer ",
    "malformed": lambda s, o: "Bearer not.a.jwt",
    "another issuer's key": lambda s, o: f"Bearer {o.mint('alice')}",
    "bad signature": _forged,
    "expired": _expired,
    "wrong audience": lambda s, o: f"Bearer {s.mint('alice', aud='someone-else')}",
    "wrong issuer": lambda s, o: f"Bearer {s.mint('alice', iss='https://evil.invalid')}",
    "not yet valid": lambda s, o: f"Bearer {s.mint('alice', nbf=int(time.time()) + 600)}",
    "alg none": _alg_none,
}


@pytest.mark.parametrize("case", list(BAD_AUTHORIZATIONS))
def test_bad_or_missing_token_is_401_and_the_lambda_never_runs(
    front: ApiFront,
    lambdas: FakeLambdas,
    signer: LocalSigner,
    stranger: LocalSigner,
    case: str,
) -> None:
    authorization = BAD_AUTHORIZATIONS[case](signer, stranger)
    headers = {} if authorization is None else {"Authorization": authorization}

    response = requests.get(f"{front.base_url}/v1/models/m-1", headers=headers, timeout=5)

    assert response.status_code == 401
    assert response.content == b'{"message":"Unauthorized"}'
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert lambdas.calls == []


def test_expired_token_says_why_in_www_authenticate(
    front: ApiFront, signer: LocalSigner, stranger: LocalSigner
) -> None:
    headers = {"Authorization": _expired(signer, stranger)}

    response = requests.get(f"{front.base_url}/v1/models/m-1", headers=headers, timeout=5)

    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert "expired" in response.headers["WWW-Authenticate"]


def test_bearer_scheme_is_case_insensitive(
    front: ApiFront, lambdas: FakeLambdas, signer: LocalSigner
) -> None:
    headers = {"Authorization": f"bearer {signer.mint('alice')}"}

    response = requests.get(f"{front.base_url}/v1/models/m-1", headers=headers, timeout=5)

    assert response.status_code == 200
    assert lambdas.only_event()["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "alice"


def test_token_minted_by_another_signer_on_the_same_state_dir_is_accepted(
    tmp_path: Path, make_front: Callable[..., ApiFront], lambdas: FakeLambdas
) -> None:
    stack = make_front(verifier=LocalSigner(tmp_path).verifier())
    token = LocalSigner(tmp_path).mint("erin")

    response = requests.get(
        f"{stack.base_url}/v1/models/m-1", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )

    assert response.status_code == 200


# --- Lambda failures and response mapping -----------------------------------------------


def test_lambda_error_payload_is_500_and_logged(
    front: ApiFront, lambdas: FakeLambdas, capsys: pytest.CaptureFixture[str]
) -> None:
    lambdas.answers["HealthFunction"] = {
        "errorType": "KeyError",
        "errorMessage": "'TABLE_NAME'",
        "stackTrace": ['  File "app.py", line 3'],
    }

    response = requests.get(f"{front.base_url}/v1/health", timeout=5)

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert "KeyError: 'TABLE_NAME'" in capsys.readouterr().err


def test_lambda_that_raises_is_500_and_logged(
    front: ApiFront, lambdas: FakeLambdas, capsys: pytest.CaptureFixture[str]
) -> None:
    lambdas.answers["HealthFunction"] = RuntimeError("moto is down")

    response = requests.get(f"{front.base_url}/v1/health", timeout=5)

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert "moto is down" in capsys.readouterr().err


@pytest.mark.parametrize(
    "answer",
    [
        {"statusCode": "teapot"},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
        {"statusCode": 200, "headers": {"X-Evil": "a\r\nSet-Cookie: stolen=1"}},
    ],
)
def test_response_api_gateway_cannot_map_is_500(
    front: ApiFront, lambdas: FakeLambdas, answer: dict[str, Any]
) -> None:
    lambdas.answers["RespondFunction"] = answer

    response = requests.get(f"{front.base_url}/v1/respond", timeout=5)

    assert response.status_code == 500
    assert "stolen" not in response.headers.get("Set-Cookie", "")


def test_status_headers_and_cookies_are_mapped(front: ApiFront, lambdas: FakeLambdas) -> None:
    lambdas.answers["RespondFunction"] = {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Request-Id": "r-1", "X-Count": 3},
        "multiValueHeaders": {"X-Multi": ["a", "b"]},
        "cookies": ["session=abc; HttpOnly", "theme=dark; Path=/"],
        "body": '{"model_id": "m-1"}',
    }

    status, headers, body = raw_request(front, "GET", "/v1/respond")

    assert status == 201
    assert json.loads(body) == {"model_id": "m-1"}
    assert ("Content-Type", "application/json") in headers
    assert ("X-Request-Id", "r-1") in headers
    assert ("X-Count", "3") in headers
    assert [v for n, v in headers if n == "X-Multi"] == ["a", "b"]
    assert [v for n, v in headers if n == "Set-Cookie"] == [
        "session=abc; HttpOnly",
        "theme=dark; Path=/",
    ]


def test_base64_response_body_is_decoded(front: ApiFront, lambdas: FakeLambdas) -> None:
    image = bytes(range(256)) * 4
    lambdas.answers["RespondFunction"] = {
        "statusCode": 200,
        "headers": {"content-type": "image/png"},
        "body": base64.b64encode(image).decode(),
        "isBase64Encoded": True,
    }

    response = requests.get(f"{front.base_url}/v1/respond", timeout=5)

    assert response.content == image
    assert response.headers["Content-Type"] == "image/png"


@pytest.mark.parametrize("result", [{"status": "ok", "n": 1}, ["a", "b"], "hello"])
def test_result_without_status_code_is_200_json(
    front: ApiFront, lambdas: FakeLambdas, result: Any
) -> None:
    lambdas.answers["RespondFunction"] = result

    response = requests.get(f"{front.base_url}/v1/respond", timeout=5)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == result


def test_no_content_sends_no_body(front: ApiFront, lambdas: FakeLambdas) -> None:
    lambdas.answers["RespondFunction"] = {"statusCode": 204, "body": "ignored"}

    status, _, body = raw_request(front, "GET", "/v1/respond")

    assert status == 204
    assert body == b""


# --- request size -----------------------------------------------------------------------


def test_body_over_10_mb_is_413_without_invoking(
    front: ApiFront, lambdas: FakeLambdas, auth: dict[str, str]
) -> None:
    response = requests.post(
        f"{front.base_url}/v1/models/m-1/selfies",
        data=b"x" * (MAX_REQUEST_BODY_BYTES + 1),
        headers={**auth, "Content-Type": "application/octet-stream"},
        timeout=30,
    )

    assert response.status_code == 413
    assert response.json() == {"message": "Request Entity Too Large"}
    assert lambdas.calls == []


def test_body_of_exactly_10_mb_is_accepted(
    front: ApiFront, lambdas: FakeLambdas, auth: dict[str, str]
) -> None:
    response = requests.post(
        f"{front.base_url}/v1/models/m-1/selfies",
        data=b"x" * MAX_REQUEST_BODY_BYTES,
        headers={**auth, "Content-Type": "text/plain"},
        timeout=30,
    )

    assert response.status_code == 200
    assert len(lambdas.only_event()["body"]) == MAX_REQUEST_BODY_BYTES


def test_oversized_upload_announced_with_expect_100_is_refused_before_sending(
    front: ApiFront, lambdas: FakeLambdas
) -> None:
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as connection:
        connection.sendall(
            b"POST /v1/models/m-1/selfies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: image/png\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {MAX_REQUEST_BODY_BYTES * 3}\r\n\r\n".encode()
        )
        reply = connection.recv(4096)

    assert reply.startswith(b"HTTP/1.1 413")
    assert lambdas.calls == []


# --- CORS -------------------------------------------------------------------------------


def test_preflight_is_answered_without_a_lambda_or_a_token(
    front: ApiFront, lambdas: FakeLambdas
) -> None:
    response = requests.options(
        f"{front.base_url}/v1/models/m-1/selfies",
        headers={
            "Origin": FRONTEND_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=5,
    )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND_ORIGIN
    assert response.headers["Access-Control-Allow-Methods"] == "GET,POST,DELETE"
    assert response.headers["Access-Control-Allow-Headers"] == (
        "authorization,content-type,idempotency-key"
    )
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert response.content == b""
    assert lambdas.calls == []


@pytest.mark.parametrize(
    ("origin", "method"),
    [("http://evil.invalid", "POST"), (FRONTEND_ORIGIN, "PUT")],
)
def test_preflight_from_a_foreign_origin_or_method_gets_no_cors_headers(
    front: ApiFront, lambdas: FakeLambdas, origin: str, method: str
) -> None:
    response = requests.options(
        f"{front.base_url}/v1/models",
        headers={"Origin": origin, "Access-Control-Request-Method": method},
        timeout=5,
    )

    assert response.status_code == 204
    assert "Access-Control-Allow-Origin" not in response.headers
    assert lambdas.calls == []


def test_cors_headers_come_from_the_config_not_the_lambda(
    front: ApiFront, lambdas: FakeLambdas
) -> None:
    lambdas.answers["RespondFunction"] = {
        "statusCode": 200,
        "headers": {"Access-Control-Allow-Origin": "*", "X-Request-Id": "r-1"},
        "body": "{}",
    }

    allowed = requests.get(
        f"{front.base_url}/v1/respond", headers={"Origin": FRONTEND_ORIGIN}, timeout=5
    )
    foreign = requests.get(
        f"{front.base_url}/v1/respond", headers={"Origin": "http://evil.invalid"}, timeout=5
    )

    assert allowed.headers["Access-Control-Allow-Origin"] == FRONTEND_ORIGIN
    assert allowed.headers["Access-Control-Expose-Headers"] == "x-request-id"
    assert "Access-Control-Allow-Origin" not in foreign.headers


def test_unauthorized_answers_carry_cors_headers_so_the_page_can_read_them(
    front: ApiFront,
) -> None:
    response = requests.get(
        f"{front.base_url}/v1/models/m-1", headers={"Origin": FRONTEND_ORIGIN}, timeout=5
    )

    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND_ORIGIN


def test_without_cors_config_options_is_routed_like_any_method(
    make_front: Callable[..., ApiFront], lambdas: FakeLambdas
) -> None:
    front = make_front(cors=None)

    response = requests.options(
        f"{front.base_url}/v1/files/x",
        headers={"Origin": FRONTEND_ORIGIN, "Access-Control-Request-Method": "GET"},
        timeout=5,
    )

    assert response.status_code == 401
    assert "Access-Control-Allow-Origin" not in response.headers
    assert lambdas.calls == []


# --- static files -----------------------------------------------------------------------


def test_static_index_and_assets_are_served_with_their_types(front: ApiFront) -> None:
    index = requests.get(f"{front.base_url}/", timeout=5)
    script = requests.get(f"{front.base_url}/js/app.js", timeout=5)

    assert index.status_code == 200
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<title>avatars</title>" in index.text
    assert script.status_code == 200
    assert "javascript" in script.headers["Content-Type"]


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/js/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2E%2E%2F%2E%2E%2Fsecret.txt",
        "/.env",
        "/missing.html",
        "/js/app.js%00.html",
    ],
)
def test_static_serving_refuses_escapes_and_hidden_files(front: ApiFront, target: str) -> None:
    status, _, body = raw_request(front, "GET", target)

    assert status == 404
    assert b"secret" not in body.lower()
    assert json.loads(body) == {"message": "Not Found"}


def test_paths_under_v1_are_never_static(front: ApiFront, site: Path) -> None:
    (site / "v1").mkdir()
    (site / "v1" / "index.html").write_text("not the api")

    response = requests.get(f"{front.base_url}/v1/", timeout=5)

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_without_static_dir_everything_is_routed(make_front: Callable[..., ApiFront]) -> None:
    front = make_front(static_dir=None)

    assert requests.get(f"{front.base_url}/", timeout=5).status_code == 404


# --- the local dev-token endpoint -------------------------------------------------------


@pytest.fixture
def minting_front(make_front: Callable[..., ApiFront], signer: LocalSigner) -> ApiFront:
    return make_front(dev_tokens=lambda user: signer.mint(user))


def test_dev_token_endpoint_mints_a_token_the_authorizer_accepts(
    minting_front: ApiFront, lambdas: FakeLambdas
) -> None:
    response = requests.post(
        f"{minting_front.base_url}/local/token", json={"user": "alice.b-2_x"}, timeout=5
    )

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    token = response.json()["token"]
    model = requests.get(
        f"{minting_front.base_url}/v1/models/m-1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert model.status_code == 200
    claims = lambdas.only_event()["requestContext"]["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == "alice.b-2_x"


def test_dev_token_endpoint_does_not_exist_unless_enabled(
    front: ApiFront, lambdas: FakeLambdas
) -> None:
    response = requests.post(f"{front.base_url}/local/token", json={"user": "alice"}, timeout=5)

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}
    assert lambdas.calls == []


@pytest.mark.parametrize(
    "body",
    [
        {"user": ""},
        {"user": "a" * 65},
        {"user": "alice smith"},
        {"user": "../alice"},
        {"user": "alice\n"},
        {"user": "élodie"},
        {"user": 42},
        {"name": "alice"},
        ["alice"],
    ],
)
def test_dev_token_endpoint_refuses_a_bad_user_name_naming_the_field(
    minting_front: ApiFront, body: Any
) -> None:
    response = requests.post(f"{minting_front.base_url}/local/token", json=body, timeout=5)

    assert response.status_code == 422
    assert response.json()["field"] == "user"
    assert "64 characters" in response.json()["message"]


def test_dev_token_endpoint_accepts_the_longest_name(minting_front: ApiFront) -> None:
    response = requests.post(
        f"{minting_front.base_url}/local/token", json={"user": "a" * 64}, timeout=5
    )

    assert response.status_code == 200


def test_dev_token_endpoint_refuses_a_body_that_is_not_json(minting_front: ApiFront) -> None:
    response = requests.post(
        f"{minting_front.base_url}/local/token",
        data=b"user=alice",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )

    assert response.status_code == 400
    assert "JSON" in response.json()["message"]


def test_dev_token_endpoint_only_answers_post(minting_front: ApiFront) -> None:
    response = requests.get(f"{minting_front.base_url}/local/token", timeout=5)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_dev_token_endpoint_answers_cross_origin_pages_of_allowed_origins(
    minting_front: ApiFront,
) -> None:
    preflight = requests.options(
        f"{minting_front.base_url}/local/token",
        headers={
            "Origin": FRONTEND_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=5,
    )
    response = requests.post(
        f"{minting_front.base_url}/local/token",
        json={"user": "alice"},
        headers={"Origin": FRONTEND_ORIGIN},
        timeout=5,
    )

    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == FRONTEND_ORIGIN
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND_ORIGIN


# --- lifecycle and logging --------------------------------------------------------------


def test_access_log_is_quiet_by_default_and_compact_when_enabled(
    make_front: Callable[..., ApiFront], capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = make_front()
    requests.get(f"{quiet.base_url}/v1/health", timeout=5)
    assert capsys.readouterr().err == ""

    chatty = make_front(access_log=True)
    requests.get(f"{chatty.base_url}/v1/health", timeout=5)
    assert re.fullmatch(r"GET /v1/health 200 \d+ms\n", capsys.readouterr().err)


def _settled(front: ApiFront) -> None:
    """Wait until the front has finished with every connection (its error report included)."""
    server = front._server
    assert server is not None
    deadline = time.monotonic() + 5
    while server._connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not server._connections, "a request thread never finished"


def test_a_client_that_goes_away_before_its_answer_is_one_debug_line_not_a_traceback(
    make_front: Callable[..., ApiFront],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    invoked, gone = threading.Event(), threading.Event()

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        invoked.set()
        gone.wait(5)
        return {"statusCode": 200, "body": "x" * 100_000}

    front = make_front(invoke=invoke)
    caplog.set_level(logging.DEBUG, logger="local.front")
    browser = socket.create_connection(("127.0.0.1", front.port), timeout=5)
    browser.sendall(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert invoked.wait(5)
    # closed with a reset while the Lambda runs, as a browser drops a connection mid-request
    browser.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    browser.close()
    time.sleep(0.1)
    gone.set()
    _settled(front)

    assert capsys.readouterr().err == ""
    went_away = [r for r in caplog.records if r.name == "local.front"]
    assert [(r.levelno, "went away" in r.getMessage()) for r in went_away] == [
        (logging.DEBUG, True)
    ]


def test_any_other_error_in_a_request_thread_is_still_printed_with_its_traceback(
    front: ApiFront, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_send(*args: Any, **kwargs: Any) -> None:
        raise ValueError("a bug in the front")

    monkeypatch.setattr("local.front._Handler._send", broken_send)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{front.base_url}/v1/health", timeout=5)
    _settled(front)

    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: a bug in the front" in err, err


def test_stopped_front_refuses_connections(make_front: Callable[..., ApiFront]) -> None:
    front = make_front()
    base_url = front.base_url
    assert requests.get(f"{base_url}/v1/health", timeout=5).status_code == 200

    front.stop()

    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base_url}/v1/health", timeout=5)


def test_port_zero_reads_back_the_real_port(front: ApiFront) -> None:
    assert front.port > 0
    assert front.base_url == f"http://127.0.0.1:{front.port}"


# --- reading the SAM template -----------------------------------------------------------

SAM_TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  FrontendOrigin:
    Type: String
    Default: http://localhost:5173
  ExtraOrigins:
    Type: CommaDelimitedList
    Default: ""
  CorsMaxAge:
    Type: Number
    Default: "300"
Globals:
  Function:
    Runtime: python3.13
    Environment:
      Variables:
        TABLE_NAME: !Ref Table
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  HttpApi:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: OwnerJwt
        Authorizers:
          OwnerJwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration:
              issuer: !Sub https://cognito-idp.${AWS::Region}.amazonaws.com/${UserPool}
              audience:
                - !Ref UserPoolClient
      CorsConfiguration:
        AllowOrigins:
          - !Ref FrontendOrigin
          - !Ref ExtraOrigins
          - !Sub https://${AWS::AccountId}.example.invalid
          - !GetAtt Site.Url
        AllowMethods: [GET, POST, DELETE]
        AllowHeaders: [authorization, content-type, idempotency-key]
        ExposeHeaders: [x-request-id]
        MaxAge: !Ref CorsMaxAge
  ApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/api/
      Handler: app.handler
      Role: !GetAtt ApiRole.Arn
      Events:
        Health:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Path: /v1/health
            Method: get
            Auth:
              Authorizer: NONE
        GetModel:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Path: /v1/models/{model_id}
            Method: GET
        Files:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Path: /v1/files/{proxy+}
            Method: ANY
        Uploaded:
          Type: S3
          Properties:
            Bucket: !Ref Bucket
            Events: s3:ObjectCreated:*
  FallbackFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/fallback/
      Handler: app.handler
      Events:
        Anything:
          Type: HttpApi
  NotAFunction:
    Type: AWS::Serverless::StateMachine
    Properties:
      Events:
        Ignored:
          Type: HttpApi
          Properties:
            Path: /ignored
            Method: GET
"""


@pytest.fixture
def template(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "template.yaml"
    path.write_text(SAM_TEMPLATE)
    return load_template(path)


def test_load_template_turns_short_tags_into_intrinsic_maps(template: dict[str, Any]) -> None:
    function = template["Resources"]["ApiFunction"]["Properties"]
    assert function["Role"] == {"Fn::GetAtt": ["ApiRole", "Arn"]}
    assert function["Events"]["Health"]["Properties"]["ApiId"] == {"Ref": "HttpApi"}


def test_routes_come_from_every_function_http_api_event(template: dict[str, Any]) -> None:
    routes = routes_from_template(template)

    assert [(r.route_key, r.function, r.authorized, r.api) for r in routes] == [
        ("GET /v1/health", "ApiFunction", False, "HttpApi"),
        ("GET /v1/models/{model_id}", "ApiFunction", True, "HttpApi"),
        ("ANY /v1/files/{proxy+}", "ApiFunction", True, "HttpApi"),
        ("$default", "FallbackFunction", False, "ServerlessHttpApi"),
    ]


def test_routes_can_be_limited_to_one_api(template: dict[str, Any]) -> None:
    routes = routes_from_template(template, api="HttpApi")

    assert {r.api for r in routes} == {"HttpApi"}
    assert len(routes) == 3


def test_event_authorizer_applies_even_without_a_default(template: dict[str, Any]) -> None:
    del template["Resources"]["HttpApi"]["Properties"]["Auth"]["DefaultAuthorizer"]
    events = template["Resources"]["ApiFunction"]["Properties"]["Events"]
    events["GetModel"]["Properties"]["Auth"] = {"Authorizer": "OwnerJwt"}

    routes = {r.route_key: r.authorized for r in routes_from_template(template)}

    assert routes["GET /v1/models/{model_id}"] is True
    assert routes["ANY /v1/files/{proxy+}"] is False


def test_globals_default_authorizer_covers_the_implicit_api(template: dict[str, Any]) -> None:
    template["Globals"]["HttpApi"] = {"Auth": {"DefaultAuthorizer": "OwnerJwt"}}

    routes = {r.route_key: r.authorized for r in routes_from_template(template)}

    assert routes["$default"] is True


def test_template_with_a_duplicate_route_is_refused(template: dict[str, Any]) -> None:
    events = template["Resources"]["ApiFunction"]["Properties"]["Events"]
    events["Again"] = {
        "Type": "HttpApi",
        "Properties": {"ApiId": {"Ref": "HttpApi"}, "Path": "/v1/health", "Method": "GET"},
    }

    with pytest.raises(ValueError, match="duplicate"):
        routes_from_template(template)


def test_cors_resolves_parameter_refs_and_drops_what_it_cannot_resolve(
    template: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    cors = cors_from_template(template)

    assert cors == CorsConfig(
        allow_origins=("http://localhost:5173", "https://123456789012.example.invalid"),
        allow_methods=("GET", "POST", "DELETE"),
        allow_headers=("authorization", "content-type", "idempotency-key"),
        expose_headers=("x-request-id",),
        max_age=300,
    )
    assert "Site" in capsys.readouterr().err


def test_cors_parameters_override_template_defaults(template: dict[str, Any]) -> None:
    cors = cors_from_template(
        template,
        parameters={
            "FrontendOrigin": "http://127.0.0.1:3000",
            "ExtraOrigins": "https://a.example,https://b.example",
            "CorsMaxAge": "60",
        },
    )

    assert cors is not None
    assert cors.allow_origins[:3] == (
        "http://127.0.0.1:3000",
        "https://a.example",
        "https://b.example",
    )
    assert cors.max_age == 60


@pytest.mark.parametrize(
    ("configuration", "expected"),
    [
        (None, None),
        (True, CorsConfig(allow_origins=("*",))),
        ({"Ref": "FrontendOrigin"}, CorsConfig(allow_origins=("http://localhost:5173",))),
    ],
)
def test_cors_shorthands(
    template: dict[str, Any], configuration: Any, expected: CorsConfig | None
) -> None:
    properties = template["Resources"]["HttpApi"]["Properties"]
    properties.pop("CorsConfiguration")
    if configuration is not None:
        properties["CorsConfiguration"] = configuration

    assert cors_from_template(template) == expected


def test_front_serves_the_templates_routes(
    template: dict[str, Any],
    make_front: Callable[..., ApiFront],
    lambdas: FakeLambdas,
    auth: dict[str, str],
) -> None:
    front = make_front(
        routes=routes_from_template(template, api="HttpApi"),
        cors=cors_from_template(template),
    )

    health = requests.get(f"{front.base_url}/v1/health", timeout=5)
    model = requests.get(f"{front.base_url}/v1/models/m-7", headers=auth, timeout=5)
    anonymous = requests.get(f"{front.base_url}/v1/models/m-7", timeout=5)

    assert (health.status_code, model.status_code, anonymous.status_code) == (200, 200, 401)
    assert lambdas.functions == ["ApiFunction", "ApiFunction"]
    assert [e["routeKey"] for _, e in lambdas.calls] == [
        "GET /v1/health",
        "GET /v1/models/{model_id}",
    ]
