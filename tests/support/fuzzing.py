"""Fuzzing the public API with schemathesis, shared by ``bench/fuzz.py`` and the
integration tests.

Cases are generated from the checked-in ``openapi.json`` (positive and negative, with path
parameters either generated or pinned to a user's real resources so the deep paths run
too) and sent over HTTP to a running local stack with a valid bearer token. Hand-written
probes add what a generator never sends: bodies that are not JSON, the wrong content type,
JSON that is not an object, huge and odd path parameters, forged cursors, missing and bad
tokens. Every answer is checked: no 5xx, the documented schema for its status, and only
documented statuses and content types.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from avatar_core.ids import owner_id
from local import photos
from local.client import ApiClient, wait_until
from local.stack import LocalStack
from tests.support.journeys import trained_model

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "openapi.json"

CHECKS: dict[str, Callable[..., Any]] = {
    "5xx": not_a_server_error,
    "schema": response_schema_conformance,
    "status": status_code_conformance,
    "content-type": content_type_conformance,
}
REQUEST_TIMEOUT = 30.0
# Bodies and parameters schemathesis never generates: its bodies are always valid JSON of
# the declared media type. (name, content type, raw body)
_RAW_BODIES: list[tuple[str, str | None, bytes]] = [
    ("truncated JSON", "application/json", b'{"subject": "wo'),
    ("JSON array", "application/json", b"[]"),
    ("JSON string", "application/json", b'"woman"'),
    ("JSON null", "application/json", b"null"),
    ("JSON number", "application/json", b"1e999"),
    ("deep JSON", "application/json", b"[" * 5000 + b"]" * 5000),
    ("empty body", "application/json", b""),
    ("invalid UTF-8", "application/json", b'{"subject": "\xff\xfe"}'),
    ("no content type", None, b'{"subject": "woman"}'),
    ("text/plain", "text/plain", b'{"subject": "woman"}'),
    ("form", "application/x-www-form-urlencoded", b"subject=woman&files=1"),
    ("multipart", "multipart/form-data; boundary=x", b"--x\r\n\r\n--x--\r\n"),
    ("octet-stream", "application/octet-stream", b"\x00\x01\x02"),
    ("json with charset", "application/json; charset=latin-1", b'{"subject": "woman"}'),
    # Python refuses to parse an integer of more than 4,300 digits (a ValueError, not a
    # JSONDecodeError): the client's malformed input all the same.
    ("4,301-digit integer", "application/json", b'{"count": ' + b"9" * 4301 + b"}"),
    ("a million digits", "application/json", b"[" + b"1" * 1_000_000 + b"]"),
]
_ODD_IDS = [
    "x" * 5000,
    "mdl_" + "0" * 26,
    "%00",
    "..",
    "null",
    "\u00e9\u4e2d\U0001f600",
    "a b",
    "-1",
]
_ODD_QUERIES: list[dict[str, str]] = [
    {"limit": "abc"},
    {"limit": "0"},
    {"limit": "1e3"},
    {"limit": "99999999999999999999999"},
    {"limit": "", "cursor": ""},
    {"cursor": "!!!"},
    {"cursor": "e30"},
    {"cursor": "W10"},
    {"cursor": "eyJQSyI6MX0"},
    {"cursor": "x" * 3000},
]


@dataclass
class Fixtures:
    """Real resources of the fuzzing user and configured values, by the name of the path
    parameter or body field that holds them."""

    owner: str
    ids: dict[str, list[str]]
    # DELETE gets models of its own: the shared ones must survive the run.
    disposable_models: list[str]


@dataclass
class Probe:
    """One hand-written request: what kind of oddity it is, the path parameters, and what
    it sends."""

    kind: str
    path_parameters: dict[str, str]
    body: bytes | None = None
    headers: dict[str, str | None] = field(default_factory=dict)  # None: not sent at all
    query: dict[str, str] | None = None


@dataclass
class Finding:
    check: str
    route: str
    status: int
    detail: str
    reproduce: str


@dataclass
class FuzzReport:
    requests: int = 0
    generated: int = 0
    per_route: dict[str, Counter[int]] = field(default_factory=dict)
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    def count(self, check: str) -> int:
        return sum(1 for finding in self.findings if finding.check == check)

    @property
    def server_errors(self) -> int:
        return self.count("5xx")

    @property
    def schema_violations(self) -> int:
        return self.count("schema")

    def summary_lines(self) -> list[str]:
        lines = [
            f"requests sent: {self.requests} ({self.generated} generated by schemathesis, "
            f"{self.requests - self.generated} hand-written probes)",
            f"5xx answers: {self.server_errors}",
            f"schema violations: {self.schema_violations}",
            f"undocumented status codes: {self.count('status')}",
            f"undocumented content types: {self.count('content-type')}",
            "statuses: " + _tally(sum(self.per_route.values(), Counter())),
            f"fuzzing took {self.seconds:.1f} s",
        ]
        lines += [
            f"route {route}: {sum(statuses.values())} ({_tally(statuses)})"
            for route, statuses in sorted(self.per_route.items())
        ]
        return lines

    def describe_findings(self, limit: int = 20) -> str:
        unique: dict[tuple[str, str, int, str], Finding] = {}
        for finding in self.findings:
            unique.setdefault(
                (finding.check, finding.route, finding.status, finding.detail[:120]), finding
            )
        shown = list(unique.values())[:limit]
        return "\n\n".join(
            f"[{f.check}] {f.route} -> {f.status}: {f.detail}\n  {f.reproduce}" for f in shown
        )


def load_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(OPENAPI.read_text())
    return document


def prepare_fixtures(
    stack: LocalStack, client: ApiClient, user: str, disposable: int = 3
) -> Fixtures:
    """A ready model with a generation, an accepted face reference with a job, and a few
    models that DELETE may have."""
    model_id = trained_model(client, stack, seed=901)
    started = client.create_generation(model_id, [{"style": "realistic", "count": 2}])
    assert started.status_code == 202, started.text
    generation_id = started.json()["generation_id"]
    image_id = _accepted_reference(client)
    job = client.call("POST", "/face-avatars", json={"image_id": image_id, "batch": 1})
    assert job.status_code == 202, job.text
    collecting = client.create_model("cat", "fuzzing")["model_id"]
    return Fixtures(
        owner=owner_id(user),
        ids={
            "model_id": [model_id, collecting],
            "generation_id": [generation_id],
            "image_id": [image_id],
            "job_id": [job.json()["job_id"]],
            "style": client.call("GET", "/styles").json()["styles"],
        },
        disposable_models=[client.create_model("dog")["model_id"] for _ in range(disposable)],
    )


def _accepted_reference(client: ApiClient) -> str:
    slot = client.call("POST", "/face-avatars/uploads", json={"content_type": "image/jpeg"})
    assert slot.status_code == 201, slot.text
    upload = slot.json()
    sent = ApiClient.upload(upload, photos.selfie_jpeg(902, size=(600, 800)))
    assert sent.status_code in (200, 204), sent.text
    image = wait_until(
        lambda: client.call("GET", f"/face-avatars/uploads/{upload['image_id']}").json(),
        lambda found: found["status"] != "pending",
        timeout=30,
    )
    assert image["status"] == "accepted", image
    return str(image["image_id"])


class Fuzzer:
    def __init__(
        self,
        document: dict[str, Any],
        base_url: str,
        token: str,
        fixtures: Fixtures,
        seed: int = 0,
    ) -> None:
        self.schema = schemathesis.openapi.from_dict(document)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.schema.config.update(
            base_url=base_url, headers=self.headers, request_timeout=REQUEST_TIMEOUT
        )
        self.base_url = base_url.rstrip("/")
        self.fixtures = fixtures
        self.seed = seed
        self.session = requests.Session()
        self.report = FuzzReport()

    def operations(self) -> list[Any]:
        """Every operation but ``DELETE /v1/me``: it closes the fuzzed user's account, after
        which every other route would only answer 409 (tests/integration/test_account_deletion.py
        covers it)."""
        found = [result.ok() for result in self.schema.get_all_operations()]
        found = [op for op in found if (op.method.upper(), op.path) != ("DELETE", "/v1/me")]
        return sorted(found, key=lambda op: (op.path, op.method))

    def run(self, examples_per_operation: int, every_probe_everywhere: bool = True) -> FuzzReport:
        """Generated cases for every operation, then the hand-written probes: each on every
        route that takes it, or each kind once, on the routes with the fewest so far."""
        operations = self.operations()
        for operation in operations:
            self._generated(operation, examples_per_operation)
        planned = [(op, probe) for op in operations for probe in self.probes(op)]
        if not every_probe_everywhere:
            planned = _each_kind_once(planned)
        for operation, probe in planned:
            self._send_probe(operation, probe)
        return self.report

    # -- generated cases ---------------------------------------------------------------------

    def _generated(self, operation: Any, examples: int) -> None:
        """Positive cases on the user's real resources and on generated ids, then negative
        ones. DELETE only ever gets generated ids and the disposable models."""
        names = [p.name for p in operation.path_parameters]
        is_delete = operation.method.upper() == "DELETE"
        positive = schemathesis.GenerationMode.POSITIVE
        plan: list[tuple[Any, int]] = []
        if not is_delete and (names or operation.body):
            choices = max((len(self.fixtures.ids[name]) for name in names), default=1)
            for choice in range(choices):
                pinned = {name: self._fixture(name, choice) for name in names}
                strategy = operation.as_strategy(positive, path_parameters=pinned or None)
                plan.append((strategy.map(self._pin_body_ids), examples // (choice + 1)))
        plan.append((operation.as_strategy(positive), examples // 2 if plan else examples))
        if operation.body or operation.query:  # a path segment is any string: never invalid
            plan.append((operation.as_strategy(schemathesis.GenerationMode.NEGATIVE), examples))
        for strategy, budget in plan:
            self._drive(strategy, budget)
        if is_delete and names == ["model_id"]:
            for model_id in self.fixtures.disposable_models:
                self._send_case(operation.Case(path_parameters={names[0]: model_id}))

    def _fixture(self, name: str, choice: int) -> str:
        ids = self.fixtures.ids[name]
        return ids[min(choice, len(ids) - 1)]

    def _pin_body_ids(self, case: Any) -> Any:
        """Fields that name a resource or a configured value (``image_id``, ``style``) name
        the user's real one, wherever they are in the body."""

        def pin(node: Any) -> None:
            if isinstance(node, dict):
                for name in self.fixtures.ids.keys() & node.keys():
                    node[name] = self._fixture(name, 0)
                children = list(node.values())
            elif isinstance(node, list):
                children = node
            else:
                return
            for child in children:
                pin(child)

        pin(case.body)
        return case

    def _drive(self, strategy: Any, examples: int) -> None:
        @hypothesis_seed(self.seed)
        @settings(
            max_examples=max(examples, 1),
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def send(case: Any) -> None:
            self._send_case(case)

        try:
            send()
        except Unsatisfiable:  # nothing about this operation can be made invalid
            return

    def _send_case(self, case: Any) -> None:
        response = case.call(session=self.session, headers=self.headers)
        self.report.generated += 1
        self._check(case, response, reproduce=case.as_curl_command())

    # -- hand-written probes -------------------------------------------------------------------

    def probes(self, operation: Any) -> list[Probe]:
        names = [p.name for p in operation.path_parameters]
        real = {name: self.fixtures.ids[name][0] for name in names}
        found: list[Probe] = [
            Probe("no token", real, headers={"Authorization": None}),
            Probe("bad token", real, headers={"Authorization": "Bearer not.a.jwt"}),
            # API Gateway refuses request lines and headers over 10 KB before the authorizer.
            Probe("11 KB token", real, headers={"Authorization": "Bearer " + "a" * 11_000}),
            Probe("8 MB header", real, headers={"Authorization": "Bearer " + "a" * (8 << 20)}),
        ]
        if operation.body:
            found += [
                Probe(f"body: {name}", real, body=body, headers={"Content-Type": content_type})
                for name, content_type, body in _RAW_BODIES
            ]
        if names and operation.method.upper() != "DELETE":
            found += [
                Probe(f"id: {odd[:12]!r}", dict.fromkeys(names, odd), body=b"{}")
                for odd in _ODD_IDS
            ]
        if any(p.name == "cursor" for p in operation.query):
            found += [Probe(f"query: {q}"[:40], real, query=q) for q in _ODD_QUERIES]
            found += [
                Probe(f"forged cursor {n} on {operation.label}", real, query={"cursor": c})
                for n, c in enumerate(self._forged_cursors())
            ]
        if any(p.name == "idempotency-key" for p in operation.headers):
            found += [
                Probe(f"key: {key[:12]!r}", real, body=b"{}", headers={"Idempotency-Key": key})
                for key in ["", "k" * 300, "tab\tkey", "\u00e9"]
            ]
        return found

    def _forged_cursors(self) -> list[str]:
        """Cursors a client can forge for its own listings: valid base64 JSON whose key is
        not one its listing handed out."""
        pk = f"OWNER#{self.fixtures.owner}"
        keys: list[dict[str, str]] = [
            {"PK": pk},
            {"PK": pk, "SK": "MODEL#x", "GSI1PK": "x"},
            {"PK": pk, "SK": "zzz"},
            {"PK": pk, "SK": "GEN#x", "GSI1PK": f"MODEL#{self.fixtures.owner}#x"},
        ]
        return [
            base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=") for key in keys
        ]

    def _send_probe(self, operation: Any, probe: Probe) -> None:
        path = operation.path
        for name, value in probe.path_parameters.items():
            path = path.replace("{" + name + "}", requests.utils.quote(value, safe=""))
        headers = {k: v for k, v in {**self.headers, **probe.headers}.items() if v is not None}
        request = requests.Request(
            operation.method.upper(),
            f"{self.base_url}{path}",
            data=probe.body,
            params=probe.query,
            headers=headers,
        ).prepare()
        try:
            response = self.session.send(request, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as error:  # a dropped connection is a server failure
            self._record("5xx", operation.label, 0, repr(error), _curl(request))
            return
        case = operation.Case(path_parameters=probe.path_parameters, query=probe.query)
        self._check(case, response, reproduce=_curl(request))

    # -- checking ----------------------------------------------------------------------------

    def _check(self, case: Any, response: requests.Response, reproduce: str) -> None:
        route = case.operation.label
        self.report.requests += 1
        self.report.per_route.setdefault(route, Counter())[response.status_code] += 1
        for name, check in CHECKS.items():
            try:
                case.validate_response(response, checks=[check], headers=self.headers)
            except FailureGroup as group:
                for failure in group.exceptions:
                    self._record(name, route, response.status_code, _detail(failure), reproduce)
            except Failure as failure:
                self._record(name, route, response.status_code, _detail(failure), reproduce)

    def _record(self, check: str, route: str, status: int, detail: str, reproduce: str) -> None:
        self.report.findings.append(Finding(check, route, status, detail, reproduce))


def _each_kind_once(planned: list[tuple[Any, Probe]]) -> list[tuple[Any, Probe]]:
    by_kind: dict[str, list[tuple[Any, Probe]]] = {}
    for operation, probe in planned:
        by_kind.setdefault(probe.kind, []).append((operation, probe))
    load: Counter[str] = Counter()
    chosen = []
    for options in by_kind.values():
        operation, probe = min(options, key=lambda option: load[option[0].label])
        load[operation.label] += 1
        chosen.append((operation, probe))
    return chosen


def _tally(statuses: Counter[int]) -> str:
    return ", ".join(f"{status}×{count}" for status, count in sorted(statuses.items()))


def _detail(failure: Failure) -> str:
    return f"{failure.title}: {failure.message}".strip()[:600]


def _curl(request: requests.PreparedRequest) -> str:
    body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
    headers = " ".join(
        f"-H '{name}: {value}'"
        for name, value in request.headers.items()
        if name != "Authorization"
    )
    shown = body[:200].decode("utf-8", "backslashreplace")
    return f"curl -X {request.method} '{request.url}' {headers} --data-raw '{shown}'"


def fuzz(
    stack: LocalStack,
    examples_per_operation: int,
    every_probe_everywhere: bool = True,
    seed: int = 0,
) -> FuzzReport:
    """Prepare a user's fixtures on ``stack`` and fuzz every route as that user."""
    user = f"fuzz-{uuid.uuid4().hex[:10]}"
    token = stack.token(user)
    client = ApiClient(stack.api_url, token)
    fixtures = prepare_fixtures(stack, client, user)
    base_url = stack.api_url.removesuffix("/v1")
    fuzzer = Fuzzer(load_document(), base_url, token, fixtures, seed=seed)
    started = time.monotonic()
    report = fuzzer.run(examples_per_operation, every_probe_everywhere)
    report.seconds = time.monotonic() - started
    return report
