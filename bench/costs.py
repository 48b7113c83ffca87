"""What each journey costs on AWS, from figures measured on the local stack.

    python bench/costs.py measure   # run the journeys, write bench/costs-measured.json
    python bench/costs.py           # print docs/costs.md from that file (make costs does both)

Measuring starts a fresh local stack and runs each journey once, as an app would, one after
the other, with meters installed around the stack (nothing in the product changes):

- Lambda: every invocation and the time spent in its handler, timed around the handler the
  in-process runtime resolves (``InProcessRuntime._handler``), so waiting for the runtime's
  lock is not billed; the memory each function is configured with in ``template.yaml``.
- Step Functions: state transitions counted from each new execution's history, as
  ``bench/transitions.py`` counts them.
- AWS requests: every request reaching moto's server (the WSGI application is wrapped), by
  service and action. S3 requests are priced by tier, DynamoDB requests turned into request
  units from the items they carry (1 KB per write unit, 4 KB per read unit, half for an
  eventually consistent read, double in a transaction, one more write per GSI1 entry).
- API requests: every request the journey's client sends to the HTTP API, polls included
  (the client polls as often as ``POLL_SECONDS`` says, in emulated time).
- Stored bytes: the objects in the stack's buckets and the items in its table afterwards.

Rendering is pure arithmetic on the recorded file and the price table below, so a unit test
regenerates docs/costs.md and compares.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/copy.py would shadow the standard library's copy module: keep bench/ off the path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT)]

import base64  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager, suppress  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

MEASUREMENT_FILE = HERE / "costs-measured.json"
REGION = "us-east-1"
PRICES_READ = "2026-12-02"


@dataclass(frozen=True)
class Price:
    usd: float
    per: float  # units the price is for
    unit: str
    source: str


# us-east-1 list prices, no free tier applied, read on PRICES_READ.
PRICES: dict[str, Price] = {
    "lambda_requests": Price(
        0.20, 1e6, "Lambda requests", "https://aws.amazon.com/lambda/pricing/"
    ),
    "lambda_gb_seconds": Price(
        0.0000166667, 1, "Lambda GB-second (x86_64)", "https://aws.amazon.com/lambda/pricing/"
    ),
    "transitions": Price(
        0.025,
        1e3,
        "Step Functions standard state transitions",
        "https://aws.amazon.com/step-functions/pricing/",
    ),
    "api_requests": Price(
        1.00,
        1e6,
        "HTTP API requests (first 300 million)",
        "https://aws.amazon.com/api-gateway/pricing/",
    ),
    "s3_tier1": Price(
        0.005,
        1e3,
        "S3 Standard PUT, COPY, POST, LIST requests",
        "https://aws.amazon.com/s3/pricing/",
    ),
    "s3_tier2": Price(
        0.0004,
        1e3,
        "S3 Standard GET, SELECT and other requests",
        "https://aws.amazon.com/s3/pricing/",
    ),
    "s3_storage_gb_month": Price(
        0.023,
        1,
        "S3 Standard storage, GB-month (first 50 TB)",
        "https://aws.amazon.com/s3/pricing/",
    ),
    "transfer_out_gb": Price(
        0.09,
        1,
        "Data transfer out to the internet, GB (first 10 TB)",
        "https://aws.amazon.com/ec2/pricing/on-demand/#Data_Transfer",
    ),
    "dynamodb_write_units": Price(
        0.625,
        1e6,
        "DynamoDB on-demand write request units",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    "dynamodb_read_units": Price(
        0.125,
        1e6,
        "DynamoDB on-demand read request units",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    "dynamodb_storage_gb_month": Price(
        0.25,
        1,
        "DynamoDB Standard storage, GB-month",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    "events": Price(
        1.00,
        1e6,
        "EventBridge custom events published",
        "https://aws.amazon.com/eventbridge/pricing/",
    ),
    "sqs_requests": Price(
        0.40, 1e6, "SQS standard requests", "https://aws.amazon.com/sqs/pricing/"
    ),
    "alarm_months": Price(
        0.10,
        1,
        "CloudWatch standard alarm, per month",
        "https://aws.amazon.com/cloudwatch/pricing/",
    ),
    "dashboard_months": Price(
        3.00,
        1,
        "CloudWatch dashboard, per month (beyond the free 3)",
        "https://aws.amazon.com/cloudwatch/pricing/",
    ),
}

# Neither provider publishes a per-call price that we could read; say so, with where we looked.
PROVIDER_PRICES = {
    "Picsart AI Avatars (trained models, Instant Avatar)": (
        "not public: access to the AI Avatar service is arranged with Picsart's sales team; "
        "the Creative APIs bill in credits (a free account gets a demo allowance, then 402)",
        "https://docs.picsart.io/docs/genai-ai-avatars-101, "
        "https://docs.picsart.io/docs/creative-apis-quotas-and-limits",
    ),
    "Qolaba Face Avatar": (
        "not public per call: the ML API bills pay-as-you-go, and Qolaba's credits FAQ says "
        "each action costs a fixed number of credits, but no public page we found gives the "
        "Face Avatar call's price",
        "https://app.theneo.io/qolaba/ml-apis/getting-started, "
        "https://docs.qolaba.ai/faqs/billing-and-credits",
    ),
}

# What one journey is, and how a client polls while it runs (emulated seconds).
SELFIES = 10
GENERATION_AVATARS = 8
FACE_BATCH = 4
INSTANT_AVATARS = 4
POLL_SECONDS = {"training": 30, "job": 5, "upload": 2}
TIME_FACTOR = 60.0

# A month of one active user, for the estimate; every journey's result is kept a month.
MONTHLY_USERS = (1_000, 100_000)
PER_USER_PER_MONTH = {"training": 1, "generation": 2, "face_batch": 1, "instant": 1}

JOURNEYS = {
    "training": f"Training: a model from {SELFIES} selfies, uploaded, checked, trained (20 min)",
    "generation": f"Generation: {GENERATION_AVATARS} avatars from a ready model, each viewed once",
    "face_batch": f"Face batch: one reference image, a batch of {FACE_BATCH}, each viewed once",
    "instant": f"Instant avatars: one reference image, {INSTANT_AVATARS} avatars, each viewed once",
}


# -- arithmetic ---------------------------------------------------------------------------


def cost(key: str, quantity: float) -> float:
    price = PRICES[key]
    return quantity * price.usd / price.per


def journey_lines(j: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(what, how much, USD) for one measured journey."""
    gb_seconds = sum(f["memory_mb"] / 1024 * f["billed_ms"] / 1000 for f in j["lambda"])
    invocations = sum(f["invocations"] for f in j["lambda"])
    gb = 1024**3
    lines = [
        ("Lambda requests", f"{invocations}", cost("lambda_requests", invocations)),
        ("Lambda duration", f"{gb_seconds:.3f} GB-s", cost("lambda_gb_seconds", gb_seconds)),
        (
            "Step Functions",
            f"{j['transitions']} transitions",
            cost("transitions", j["transitions"]),
        ),
        ("HTTP API", f"{j['api_requests']} requests", cost("api_requests", j["api_requests"])),
        ("S3 PUT/POST/COPY/LIST", f"{j['s3']['tier1']}", cost("s3_tier1", j["s3"]["tier1"])),
        ("S3 GET/HEAD", f"{j['s3']['tier2']}", cost("s3_tier2", j["s3"]["tier2"])),
        (
            "S3 storage, one month",
            f"{j['s3']['stored_bytes'] / 1e6:.2f} MB",
            cost("s3_storage_gb_month", j["s3"]["stored_bytes"] / gb),
        ),
        (
            "Transfer out (presigned GETs)",
            f"{j['s3']['bytes_out'] / 1e6:.2f} MB",
            cost("transfer_out_gb", j["s3"]["bytes_out"] / gb),
        ),
        (
            "DynamoDB writes",
            f"{j['dynamodb']['write_units']:g} WRU",
            cost("dynamodb_write_units", j["dynamodb"]["write_units"]),
        ),
        (
            "DynamoDB reads",
            f"{j['dynamodb']['read_units']:g} RRU",
            cost("dynamodb_read_units", j["dynamodb"]["read_units"]),
        ),
        (
            "DynamoDB storage, one month",
            f"{j['dynamodb']['stored_bytes'] / 1e3:.1f} KB",
            cost("dynamodb_storage_gb_month", j["dynamodb"]["stored_bytes"] / gb),
        ),
        ("EventBridge events", f"{j['events']}", cost("events", j["events"])),
        ("SQS requests", f"{j['sqs_requests']}", cost("sqs_requests", j["sqs_requests"])),
    ]
    return lines


def journey_total(j: dict[str, Any]) -> float:
    return sum(usd for _, _, usd in journey_lines(j))


def fixed_monthly(m: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [
        ("CloudWatch alarms", f"{m['alarms']}", cost("alarm_months", m["alarms"])),
        ("CloudWatch dashboards", f"{m['dashboards']}", cost("dashboard_months", m["dashboards"])),
    ]


def monthly(m: dict[str, Any], users: int) -> float:
    per_user = sum(
        count * journey_total(m["journeys"][name]) for name, count in PER_USER_PER_MONTH.items()
    )
    return users * per_user + sum(usd for _, _, usd in fixed_monthly(m))


def usd(value: float) -> str:
    if value == 0:
        return "$0"
    if value < 0.01:
        return f"${value:.6f}"
    return f"${value:,.2f}"


def render(m: dict[str, Any]) -> str:
    out: list[str] = [
        "# What it costs",
        "",
        "Generated by `make costs` (`bench/costs.py`) from the figures it measured on the local",
        f"stack on {m['measured_on']} (`bench/costs-measured.json`); do not edit by hand.",
        f"AWS list prices in {REGION}, read {PRICES_READ}, no free tier applied.",
        "",
        "| journey | AWS cost | per 1,000 |",
        "|---|---:|---:|",
    ]
    out += [
        f"| {label.split(':')[0]} | {usd(journey_total(m['journeys'][name]))} "
        f"| {usd(1000 * journey_total(m['journeys'][name]))} |"
        for name, label in JOURNEYS.items()
    ]
    out += [
        "",
        "The providers' own charges come on top and are not public (see below).",
        "",
        "S3 storage is what a journey leaves in the buckets: a training leaves nothing (its",
        "selfies and their normalised copies are deleted once the model is trained, with",
        "`SelfieRetentionSeconds` at 0; the trained model lives at Picsart), and a face or",
        "instant job leaves its avatars only (the reference photo is deleted when its last job",
        "ends, `ReferenceRetentionSeconds` 0). Transfer out counts every presigned GET: the",
        "provider fetching the normalised selfies or the fitted reference, then the user",
        "viewing each avatar.",
        "",
    ]
    for name, label in JOURNEYS.items():
        j = m["journeys"][name]
        out += [f"## {label}", "", "| item | measured | USD |", "|---|---|---:|"]
        out += [f"| {what} | {qty} | {usd(value)} |" for what, qty, value in journey_lines(j)]
        out += [f"| **AWS total** | | **{usd(journey_total(j))}** |", ""]
        by_function = ", ".join(
            f"{f['function']} {f['invocations']}× ({f['memory_mb']} MB, {f['billed_ms']} ms)"
            for f in j["lambda"]
        )
        out += [f"Lambda invocations: {by_function}.", ""]
    out += [
        "## The providers' own price",
        "",
        "| provider | price | where we looked |",
        "|---|---|---|",
    ]
    out += [f"| {who} | {what} | {where} |" for who, (what, where) in PROVIDER_PRICES.items()]
    out += [
        "",
        "The provider's charge for a training or an avatar is likely to dwarf these AWS figures,",
        "which are fractions of a cent; ask your account manager for it and add it to them.",
        "",
        "## A month",
        "",
        "Assumed per active user and month: "
        + ", ".join(
            f"{count} × {name.replace('_', ' ')}" for name, count in PER_USER_PER_MONTH.items()
        )
        + ".",
        "Everything a journey stores is kept for the month (selfies are deleted after training,",
        "so what stays is avatars and records). Fixed each month, whatever the traffic:",
        "",
        "| item | count | USD |",
        "|---|---|---:|",
    ]
    out += [f"| {what} | {qty} | {usd(value)} |" for what, qty, value in fixed_monthly(m)]
    out += ["", "| active users | AWS per month |", "|---:|---:|"]
    out += [f"| {users:,} | {usd(monthly(m, users))} |" for users in MONTHLY_USERS]
    out += [
        "",
        "## How far to trust these figures",
        "",
        "- Lambda durations are measured on the local stack, where S3, DynamoDB and the",
        "  provider emulator answer on loopback in a millisecond or two; on AWS each call takes",
        "  longer (tens of ms to DynamoDB and S3, hundreds to a provider), so real GB-seconds",
        "  are higher. Cold starts (the import before the first invocation, billed since 2025)",
        f"  are left out: this run saw {m['cold_start_ms']} ms of them across every function.",
        "- The emulator's result images are smaller than a provider's (Instant Avatar results",
        "  are 2048×2048), so S3 storage and transfer out grow with the real image sizes.",
        "- DynamoDB units are computed from the items each request carried; an UpdateItem or",
        "  DeleteItem is charged for the item's size as last seen in this run.",
        "- Not counted: CloudWatch Logs ingestion and storage ($0.50/GB ingested), X-Ray",
        "  (tracing is on: $5.00 per million traces recorded beyond the free 100,000),",
        "  KMS and SSM parameter reads (the SSM standard tier is free), S3 server access logs,",
        "  the scheduled sweep's invocations, and the 4,000 free Step Functions transitions a",
        "  month.",
        f"- The client polls every {POLL_SECONDS['training']} s while a model trains and every",
        f"  {POLL_SECONDS['job']} s while a job runs; a client that waits for webhooks instead",
        "  sends fewer API requests.",
        "",
    ]
    return "\n".join(out)


# -- DynamoDB request units ----------------------------------------------------------------


def _value_size(value: dict[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = inner.lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(base64.b64decode(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(_value_size({"N": n}) for n in inner)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in inner)
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + _value_size(v) for k, v in inner.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: attribute names plus values, in bytes."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _key_of(item: dict[str, Any]) -> str:
    return json.dumps({k: item[k] for k in ("PK", "SK") if k in item}, sort_keys=True)


class DynamoUnits:
    """Request units of each DynamoDB request, from what it carried."""

    def __init__(self) -> None:
        self.read_units = 0.0
        self.write_units = 0.0
        self._seen: dict[str, dict[str, Any]] = {}

    def _remember(self, item: dict[str, Any]) -> None:
        self._seen[_key_of(item)] = item

    def _write(self, item: dict[str, Any] | None, factor: int = 1) -> float:
        size = item_size(item) if item else 1
        units = max(1, math.ceil(size / 1024))
        if item and "GSI1PK" in item:
            units *= 2
        return units * factor

    def _read(self, items: list[dict[str, Any]], consistent: bool, factor: float = 1) -> float:
        size = sum(item_size(i) for i in items)
        units = max(1, math.ceil(size / 4096))
        return units * (1.0 if consistent else 0.5) * factor

    def record(self, action: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        consistent = bool(request.get("ConsistentRead"))
        if action == "PutItem":
            self.write_units += self._write(request["Item"])
            self._remember(request["Item"])
        elif action in ("UpdateItem", "DeleteItem"):
            self.write_units += self._write(self._seen.get(_key_of(request["Key"])))
        elif action == "GetItem":
            item = response.get("Item")
            self.read_units += self._read([item] if item else [], consistent)
            if item:
                self._remember(item)
        elif action in ("Query", "Scan"):
            items = response.get("Items", [])
            self.read_units += self._read(items, consistent)
            for item in items:
                self._remember(item)
        elif action == "BatchWriteItem":
            for requests in request["RequestItems"].values():
                for r in requests:
                    item = r.get("PutRequest", {}).get("Item")
                    key = r.get("DeleteRequest", {}).get("Key")
                    self.write_units += self._write(item or self._seen.get(_key_of(key or {})))
        elif action == "BatchGetItem":
            for items in response.get("Responses", {}).values():
                self.read_units += sum(self._read([i], consistent) for i in items)
        elif action == "TransactWriteItems":
            for entry in request["TransactItems"]:
                ((kind, body),) = entry.items()
                item = body.get("Item") or self._seen.get(_key_of(body.get("Key", {})))
                self.write_units += self._write(item, factor=2)
                if kind == "Put":
                    self._remember(body["Item"])
        elif action == "TransactGetItems":
            for entry in response.get("Responses", []):
                item = entry.get("Item")
                self.read_units += self._read([item] if item else [], True, factor=2)


# -- meters around the local stack (measuring only) ------------------------------------------


class AwsMeter:
    """Counts every request reaching moto's server, by service, from the outside: the WSGI
    application's ``__call__`` is wrapped for the length of the measurement."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.paused = False
        # item sizes seen persist across journeys: a later update is charged for its item
        self.dynamo = DynamoUnits()
        self.reset()

    def reset(self) -> None:
        self.requests: dict[str, int] = {}
        self.s3 = {"tier1": 0, "tier2": 0, "bytes_out": 0}
        self.dynamo.read_units = self.dynamo.write_units = 0.0
        self.events = 0

    @contextmanager
    def installed(self) -> Iterator[None]:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication

        original = DomainDispatcherApplication.__call__
        meter = self

        def metered(app: Any, environ: dict[str, Any], start_response: Any) -> Any:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            status: list[str] = []

            def capture(code: str, headers: Any, *args: Any) -> Any:
                status.append(code)
                return start_response(code, headers, *args)

            answer = b"".join(original(app, environ, capture))
            if not meter.paused:
                meter.count(environ, body, answer)
            return [answer]

        DomainDispatcherApplication.__call__ = metered  # type: ignore[method-assign]
        try:
            yield
        finally:
            DomainDispatcherApplication.__call__ = original  # type: ignore[method-assign]

    def count(self, environ: dict[str, Any], body: bytes, answer: bytes) -> None:
        service, action = _service_of(environ)
        with self.lock:
            self.requests[service] = self.requests.get(service, 0) + 1
            if service == "s3":
                method = environ["REQUEST_METHOD"]
                if method in ("PUT", "POST") or (method == "GET" and _is_list(environ)):
                    self.s3["tier1"] += 1
                elif method in ("GET", "HEAD"):
                    self.s3["tier2"] += 1
                    if method == "GET" and _presigned(environ):
                        self.s3["bytes_out"] += len(answer)
            elif service == "dynamodb":
                # an error answer has no item to size
                with suppress(ValueError, KeyError):
                    self.dynamo.record(action, json.loads(body or b"{}"), json.loads(answer))
            elif service == "events" and action == "PutEvents":
                self.events += len(json.loads(body or b"{}").get("Entries", []))


def _service_of(environ: dict[str, Any]) -> tuple[str, str]:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        prefix, _, action = target.partition(".")
        known = {"DynamoDB": "dynamodb", "AWSStepFunctions": "states", "AWSEvents": "events"}
        for start, name in known.items():
            if prefix.startswith(start):
                return name, action
        if prefix.startswith("AmazonSQS"):
            return "sqs", action
        return prefix.lower(), action
    credential = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in credential:
        return credential.split("Credential=")[1].split("/")[3], ""
    query = environ.get("QUERY_STRING", "")
    if "X-Amz-Credential=" in query:
        return query.split("X-Amz-Credential=")[1].split("%2F")[3], ""
    return "s3", ""  # a browser's presigned POST carries its signature in the form


def _is_list(environ: dict[str, Any]) -> bool:
    path = environ.get("PATH_INFO", "/").strip("/")
    return "/" not in path or "list-type" in environ.get("QUERY_STRING", "")


def _presigned(environ: dict[str, Any]) -> bool:
    # a download handed to a client (SigV4's X-Amz-Signature or SigV2's Signature)
    return "Signature=" in environ.get("QUERY_STRING", "")


class LambdaMeter:
    """Times each handler call: the runtime's handler lookup is wrapped, and the clock starts
    when the runtime says the sandbox is ready (its ``started`` callback: after the runtime's
    lock is taken and after a new sandbox imported the function's module, the cold start)."""

    def __init__(self, runtime: Any, memory: dict[str, int]) -> None:
        self.memory = memory
        self.calls: dict[str, list[int]] = {}
        self.cold_start_ms = 0
        original: Callable[..., Any] = runtime._handler
        meter = self

        def timed_lookup(code: Any, started: Callable[[], None] = lambda: None) -> Any:
            ready: list[float] = []

            def sandbox_ready() -> None:
                ready.append(time.perf_counter())
                started()

            handler = original(code, sandbox_ready)

            def timed(event: Any, context: Any) -> Any:
                entered = time.perf_counter()
                try:
                    return handler(event, context)
                finally:
                    begun = ready[0] if ready else entered
                    # a sandbox taken from the idle ones is ready at once; a new one imports
                    meter.cold_start_ms += round((begun - entered) * 1000)
                    meter.calls.setdefault(code.logical_id, []).append(_ms(begun))

            return timed

        runtime._handler = timed_lookup

    def reset(self) -> None:
        self.calls = {}

    def summary(self) -> list[dict[str, Any]]:
        return [
            {
                "function": name,
                "memory_mb": self.memory[name],
                "invocations": len(durations),
                "billed_ms": sum(durations),
            }
            for name, durations in sorted(self.calls.items())
        ]


def _ms(started: float) -> int:
    return max(1, math.ceil((time.perf_counter() - started) * 1000))


def _function_memory() -> dict[str, int]:
    from local.template import load_template

    template = load_template(ROOT / "template.yaml")
    default = int(template["Globals"]["Function"].get("MemorySize", 128))
    return {
        name: int(resource["Properties"].get("MemorySize", default))
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def _count_resources(kind: str) -> int:
    from local.template import load_template

    resources = load_template(ROOT / "template.yaml")["Resources"].values()
    return sum(1 for r in resources if r["Type"] == kind)


def _transitions_counter() -> Callable[[str], int]:
    spec = importlib.util.spec_from_file_location("bench_transitions", HERE / "transitions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    counter: Callable[[str], int] = module.transitions
    return counter


# -- the journeys ----------------------------------------------------------------------------


def measure() -> dict[str, Any]:
    import logging

    import boto3
    import requests

    from local import photos
    from local.client import ApiClient, wait_until
    from local.stack import LocalConfig, LocalStack

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    transitions = _transitions_counter()
    aws = AwsMeter()
    config = LocalConfig(api_port=0, time_factor=TIME_FACTOR)
    journeys: dict[str, Any] = {}
    with aws.installed(), LocalStack(config) as stack:
        assert stack.runtime is not None and stack.stack is not None
        lambdas = LambdaMeter(stack.runtime, _function_memory())
        client = ApiClient(stack.api_url, stack.token("cost-user"))
        api_calls = [0]

        def counted(response: Any, *args: Any, **kwargs: Any) -> None:
            api_calls[0] += 1

        client.session.hooks["response"].append(counted)
        sfn = boto3.client("stepfunctions")
        s3 = boto3.client("s3")
        dynamodb = boto3.client("dynamodb")
        table_name = stack.output("TableName")
        buckets = [stack.output("UploadsBucketName"), stack.output("ResultsBucketName")]

        def poll(probe: Callable[[], Any], done: Callable[[Any], bool], kind: str) -> Any:
            return wait_until(probe, done, timeout=600, interval=POLL_SECONDS[kind] / TIME_FACTOR)

        def executions() -> set[str]:
            arns: set[str] = set()
            for machine in stack.stack.state_machine_arns.values():  # type: ignore[union-attr]
                pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=machine)
                arns |= {e["executionArn"] for page in pages for e in page["executions"]}
            return arns

        def stored() -> tuple[int, int]:
            objects = sum(
                o["Size"]
                for bucket in buckets
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in page.get("Contents", [])
            )
            pages = dynamodb.get_paginator("scan").paginate(TableName=table_name)
            # DynamoDB bills 100 bytes of index overhead per item on top of its size
            records = sum(item_size(i) + 100 for page in pages for i in page["Items"])
            return objects, records

        def upload(slot: dict[str, Any], data: bytes) -> None:
            assert ApiClient.upload(slot, data).status_code in (200, 204)

        def view(avatars: list[dict[str, Any]]) -> None:
            for avatar in avatars:
                requests.get(avatar["url"], timeout=30).raise_for_status()

        def reference() -> str:
            slot = client.call("POST", "/face-avatars/uploads", json={"content_type": "image/jpeg"})
            assert slot.status_code == 201, slot.text
            upload(slot.json(), photos.selfie_jpeg(77, size=(900, 1200)))
            path = f"/face-avatars/uploads/{slot.json()['image_id']}"
            image = poll(
                lambda: client.call("GET", path).json(),
                lambda image: image["status"] != "pending",
                "upload",
            )
            assert image["status"] == "accepted", image
            return str(image["image_id"])

        def job(path: str, body: dict[str, Any]) -> None:
            response = client.call("POST", path, json=body)
            assert response.status_code == 202, response.text
            job_id = response.json()["job_id"]
            final = poll(
                lambda: client.call("GET", f"{path}/{job_id}").json(),
                lambda j: j["status"] in ("succeeded", "failed"),
                "job",
            )
            assert final["status"] == "succeeded", final
            view(final["avatars"])

        state: dict[str, Any] = {}
        last_seen = [-1]

        def settled() -> bool:
            """No Lambda ran since the last look: the journey's tail has finished."""
            invocations = sum(len(calls) for calls in lambdas.calls.values())
            quiet, last_seen[0] = invocations == last_seen[0], invocations
            return quiet

        def training() -> None:
            model_id = client.create_model("woman")["model_id"]
            slots = client.request_uploads(model_id, ["image/jpeg"] * SELFIES)
            for i, slot in enumerate(slots):
                upload(slot, photos.selfie_jpeg(i, size=(1200, 1600)))
            poll(
                lambda: client.list_selfies(model_id),
                lambda items: all(s["status"] == "accepted" for s in items),
                "upload",
            )
            assert client.start_training(model_id).status_code == 202
            model = poll(
                lambda: client.get_model(model_id),
                lambda m: m["status"] in ("ready", "failed"),
                "training",
            )
            assert model["status"] == "ready", model
            state["model_id"] = model_id

        def generation() -> None:
            response = client.create_generation(
                state["model_id"], [{"style": "realistic", "count": GENERATION_AVATARS}]
            )
            assert response.status_code == 202, response.text
            generation_id = response.json()["generation_id"]
            final = poll(
                lambda: client.get_generation(generation_id),
                lambda g: g["status"] in ("succeeded", "failed"),
                "job",
            )
            assert final["status"] == "succeeded", final
            view(final["avatars"])

        def face_batch() -> None:
            job("/face-avatars", {"image_id": reference(), "batch": FACE_BATCH})

        def instant() -> None:
            job(
                "/instant-avatars",
                {"image_id": reference(), "subject": "woman", "count": INSTANT_AVATARS},
            )

        runs = {"training": training, "generation": generation, "face_batch": face_batch}
        runs["instant"] = instant
        for name, run in runs.items():
            aws.paused = True
            seen, (objects_before, records_before) = executions(), stored()
            aws.reset()
            lambdas.reset()
            api_calls[0] = 0
            aws.paused = False
            run()
            aws.paused = True
            new = executions() - seen
            # what the journey started (a selfie cleanup, the last record) ends before counting
            wait_until(
                lambda arns=frozenset(new): {
                    sfn.describe_execution(executionArn=arn)["status"] for arn in arns
                },
                lambda statuses: "RUNNING" not in statuses,
                timeout=120,
            )
            wait_until(settled, bool, timeout=60, interval=0.5)
            objects_after, records_after = stored()
            journeys[name] = {
                "lambda": lambdas.summary(),
                "executions": len(new),
                "transitions": sum(transitions(arn) for arn in new),
                "api_requests": api_calls[0],
                "s3": {**aws.s3, "stored_bytes": max(0, objects_after - objects_before)},
                "dynamodb": {
                    "read_units": aws.dynamo.read_units,
                    "write_units": aws.dynamo.write_units,
                    "stored_bytes": max(0, records_after - records_before),
                },
                "events": aws.events,
                "sqs_requests": aws.requests.get("sqs", 0),
                "aws_requests": dict(sorted(aws.requests.items())),
            }
            print(f"measured {name}: {journeys[name]['aws_requests']}", file=sys.stderr)
    return {
        "measured_on": datetime.now(UTC).date().isoformat(),
        "time_factor": TIME_FACTOR,
        "cold_start_ms": lambdas.cold_start_ms,
        "alarms": _count_resources("AWS::CloudWatch::Alarm"),
        "dashboards": _count_resources("AWS::CloudWatch::Dashboard"),
        "journeys": journeys,
    }


def main(argv: list[str]) -> int:
    if argv[1:] == ["measure"]:
        measurement = measure()
        MEASUREMENT_FILE.write_text(json.dumps(measurement, indent=2) + "\n")
        print(f"wrote {MEASUREMENT_FILE.relative_to(ROOT)}", file=sys.stderr)
        return 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.write(render(json.loads(MEASUREMENT_FILE.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
