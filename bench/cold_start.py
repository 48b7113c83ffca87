"""Benchmark: every function's cold start, against a bare ``import boto3`` in the same run.

Run from the repository root: ``python bench/cold_start.py`` (about three minutes;
``--rounds N`` for more rounds, at least 7; ``--only ModelsApiFunction,...`` for a few;
``--as-deployed python3.13`` runs the functions as Lambda does: that interpreter, the layer
as layers/core/Makefile builds it, and the boto3 and botocore requirements-dev.txt pins).

For every function in template.yaml, fresh interpreters get the environment a deployed
function has: its CodeUri and the core layer on the path, Globals' and its own variables
(references resolved to the names a stack called ``avatar-local`` would give them), and
Lambda's own variables, tracing included: ``LAMBDA_TASK_ROOT`` and a sampled
``_X_AMZN_TRACE_ID`` are set and ``POWERTOOLS_TRACE_DISABLED`` is not, so the X-Ray SDK is
imported, patches what powertools tells it to and sends its segments over UDP to a stand-in
daemon in this process, which counts them. Metrics are not disabled either (their EMF lines
go to the child's stdout, which is discarded).

Three things are timed, as the wall time of the whole process (start-up to exit):
- ``python -c 'import boto3'``: the yardstick, in the same environment;
- ``python -c 'import app'``: the cold import of the function's handler module;
- import plus the first sample event from events/, served by the handler with a Lambda
  context. AWS calls go to moto, which runs in this process (a ``ThreadedMotoServer``, as
  the local stack does) and is reached through ``AWS_ENDPOINT_URL``: none of moto's import
  or set-up is in the figure, and the child pays real HTTP round trips, as on Lambda. The
  table, buckets, parameters, bus and queues the events need are created before timing;
  a webhook receiver answers 200 in this process.

Rounds are interleaved (every function once per round, in a new order each round) so a busy
machine slows all alike; figures are medians. Targets: the import within 1.5x the bare
boto3 import, import plus first event within 2x. Then the top import costs of each code
folder, from ``-X importtime`` (self time summed per top-level package), and the peak
resident memory (VmHWM) and duration of each first event, which the template's MemorySize
values were chosen from. Targets are reported as PASS or MISS; the exit status is 0 either
way.
"""

from __future__ import annotations

import os
import sys

_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_BENCH_DIR)
# `python bench/cold_start.py` puts bench/ first on sys.path, where bench/copy.py would
# shadow the standard library's `copy` module for everything imported after it.
sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != _BENCH_DIR]
sys.path[:0] = [_REPO]

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from local.template import ACCOUNT_ID, load_template  # noqa: E402

ROOT = Path(_REPO)
LAYER = ROOT / "layers" / "core"
EVENTS = ROOT / "events"
REGION = "us-east-1"
STACK = "avatar-local"
IMPORT_TARGET = 1.5
EVENT_TARGET = 2.0
MIN_ROUNDS = 7
RUNS = ("boto3", "import", "event")
TOP_IMPORTS = 6
# a sampled invocation, as Lambda's runtime sets it before calling the handler
TRACE_HEADER = "Root=1-6750a1b2-5e3c8d1f0a9b4c7d2e6f1a3b;Parent=53995c3f42cd8ad8;Sampled=1"
WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes

# The first sample event each function serves (test_sample_events.py runs them all).
FIRST_EVENT = {
    "ModelsApiFunction": "models_api_health.json",
    "IngestFunction": "ingest_selfie_uploaded.json",
    "TrainingApiFunction": "training_api_start_training.json",
    "TrainSubmitFunction": "train_submit.json",
    "TrainCheckFunction": "train_check.json",
    "TrainRecordFunction": "train_record_ready.json",
    "SelfieCleanupFunction": "selfie_cleanup.json",
    "ReferenceCleanupFunction": "reference_cleanup.json",
    "GenerationsApiFunction": "generations_api_selfie_rules.json",
    "FaceAvatarsApiFunction": "face_avatars_api_list_jobs.json",
    "GenerationSubmitFunction": "generation_submit.json",
    "GenerationCheckFunction": "generation_check.json",
    "FaceSubmitFunction": "face_submit.json",
    "FaceCheckFunction": "face_check.json",
    "ResultCopyFunction": "result_copy.json",
    "JobRecordFunction": "job_record.json",
    "InstantAvatarsApiFunction": "instant_avatars_api_create_job.json",
    "InstantSubmitFunction": "instant_submit.json",
    "InstantCheckFunction": "instant_check.json",
    "ReconcileFunction": "reconcile_execution_ended.json",
    "SweepFunction": "sweep_scheduled.json",
    "EventPublisherFunction": "event_publisher_model_ready.json",
    "EventsApiFunction": "events_api_list_events.json",
    "MeApiFunction": "me_api_usage.json",
    "WebhookDeliveryFunction": "webhook_delivery.json",
    "DeletionApiFunction": "deletion_api_get_deletion.json",
    "DeletePageFunction": "delete_owner_page.json",
    "DeletionRecordFunction": "delete_owner_record_failed.json",
}

# What any function built on these libraries pays before a line of ours: boto3, pydantic,
# powertools' logger, metrics and tracer (botocore patched, as ours) and an HTTP resolver
# with validation, as every API function has.
FLOOR = (
    "import boto3, pydantic; from aws_lambda_powertools import Logger, Metrics, Tracer; "
    "Logger(); Metrics(); Tracer(patch_modules=['botocore']); "
    "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver; "
    "APIGatewayHttpResolver(enable_validation=True)"
)

# Runs in the child: import the handler's module, serve one event, report. Kept to what
# the interpreter has loaded anyway (json aside), so the child measures the handler.
CHILD = r"""
import importlib, json, os, time
started = time.perf_counter()
module_name, handler_name = os.environ["BENCH_HANDLER"].rsplit(".", 1)
module = importlib.import_module(module_name)
imported = time.perf_counter()
with open(os.environ["BENCH_EVENT"]) as file:
    event = json.load(file)


class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = "$LATEST"
    memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "2026/12/03/[$LATEST]bench"

    def get_remaining_time_in_millis(self):
        return 60_000


try:
    answer = getattr(module, handler_name)(event, Context())
    if isinstance(answer, dict) and "statusCode" in answer:
        outcome, expected = str(answer["statusCode"]), answer["statusCode"] < 500
    else:
        outcome, expected = "answered", True
except Exception as error:
    outcome, expected = type(error).__name__, type(error).__module__.startswith("avatar_core")
served = time.perf_counter()
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
with open(os.environ["BENCH_RESULT"], "w") as file:
    json.dump(
        {
            "import_ms": (imported - started) * 1000,
            "event_ms": (served - imported) * 1000,
            "outcome": outcome,
            "expected": expected,
            "peak_rss_mib": peak_kb / 1024,
        },
        file,
    )
"""


@dataclass
class Runtime:
    """The interpreter the functions run in, and what is on its path besides their code."""

    python: str
    path: list[str]


# The venv's interpreter and the layer's source by default; --as-deployed replaces both.
RUNTIME = Runtime(sys.executable, [str(LAYER)])


def as_deployed(python: str, folder: Path) -> None:
    """Run the children as Lambda would: ``python`` (3.13), the layer as layers/core/Makefile
    builds it for Lambda, and the runtime's SDK at the versions requirements-dev.txt pins."""
    pins = [
        line.strip()
        for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.startswith(("boto3==", "botocore=="))
    ]
    make = shutil.which("make") or "make"
    pip = f"{sys.executable} -m pip"
    build = [make, "-s", "-C", str(LAYER), "build-CoreLayer", f"ARTIFACTS_DIR={folder}"]
    subprocess.run([*build, f"PIP={pip}"], check=True)  # noqa: S603 - the layer's own Makefile
    sdk = ["--platform", "manylinux2014_x86_64", "--python-version", "3.13", "--only-binary=:all:"]
    install = [sys.executable, "-m", "pip", "install", "--quiet", *sdk]
    subprocess.run([*install, "--target", str(folder / "sdk"), *pins], check=True)  # noqa: S603
    RUNTIME.python = python
    RUNTIME.path = [str(folder / "python"), str(folder / "sdk")]


@dataclass
class Function:
    logical_id: str
    code_uri: Path
    handler: str
    memory_mb: int
    env: dict[str, str]
    event: Path | None
    boto3_ms: list[float] = field(default_factory=list)
    import_ms: list[float] = field(default_factory=list)
    event_ms: list[float] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)


# -- the template's values, resolved as a stack named avatar-local would ----------------------


class Resolver:
    def __init__(self, template: dict[str, Any], physical: dict[str, str]) -> None:
        self.resources = template["Resources"]
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()
        }
        self.conditions = template.get("Conditions", {})
        self.physical = physical
        self.pseudo = {
            "AWS::StackName": STACK,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }

    def resolve(self, value: Any) -> str:
        if isinstance(value, (str, int, float)):
            return str(value)
        (function, argument), *_ = value.items()
        if function == "Ref":
            return self.ref(argument)
        if function == "Fn::GetAtt":
            logical, attribute = argument if isinstance(argument, list) else argument.split(".")
            return self.get_att(logical, attribute)
        if function == "Fn::Sub":
            return self.sub(argument)
        if function == "Fn::If":
            name, when_true, when_false = argument
            return self.resolve(when_true if self.condition(name) else when_false)
        raise ValueError(f"cannot resolve {value!r}")

    def condition(self, name: str) -> bool:
        return self.holds(self.conditions[name])

    def holds(self, expression: dict[str, Any]) -> bool:
        (function, argument), *_ = expression.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Equals":
            return self.resolve(argument[0]) == self.resolve(argument[1])
        if function == "Fn::Not":
            return not self.holds(argument[0])
        raise ValueError(f"cannot evaluate {expression!r}")

    def ref(self, name: str) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical:
            return self.physical[name]
        resource = self.resources[name]
        kind, properties = resource["Type"], resource.get("Properties", {})
        if kind in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            machine = self.resolve(properties.get("Name", f"{STACK}-{name}"))
            return f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{machine}"
        if "BucketName" in properties:
            return self.resolve(properties["BucketName"])
        if "Name" in properties:
            return self.resolve(properties["Name"])
        return f"{STACK}-{name}".lower()

    def get_att(self, logical: str, attribute: str) -> str:
        if attribute == "Name":
            return self.ref(logical)
        raise ValueError(f"cannot resolve {logical}.{attribute}")

    def sub(self, argument: Any) -> str:
        text = argument if isinstance(argument, str) else argument[0]
        out, rest = "", text
        while "${" in rest:
            before, _, after = rest.partition("${")
            name, _, rest = after.partition("}")
            out += before + (self.ref(name) if "." not in name else self.get_att(*name.split(".")))
        return out + rest


# -- what the events need, in moto and on loopback --------------------------------------------


class StandInDaemon:
    """Counts the UDP datagrams the X-Ray SDK sends (one per streamed (sub)segment)."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.socket.getsockname()[1]}"
        self.received = 0
        threading.Thread(target=self._count, daemon=True).start()

    def _count(self) -> None:
        while True:
            self.socket.recv(65536)
            self.received += 1


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_aws(template: dict[str, Any]) -> tuple[Any, str, dict[str, str]]:
    """moto's server with the resources the sample events touch; the physical names."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = {
        "endpoint_url": endpoint,
        "region_name": REGION,
        "aws_access_key_id": "bench",
        "aws_secret_access_key": "bench",
    }
    resolver = Resolver(template, {})
    resources = template["Resources"]
    table = resources["AvatarTable"]["Properties"]
    boto3.client("dynamodb", **options).create_table(
        TableName=resolver.ref("AvatarTable"),
        **{
            key: table[key]
            for key in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")
        },
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, **table["StreamSpecification"]},
    )
    s3 = boto3.client("s3", **options)
    for bucket in ("UploadsBucket", "ResultsBucket"):
        s3.create_bucket(Bucket=resolver.ref(bucket))
    ssm = boto3.client("ssm", **options)
    secrets = {
        "PicsartApiKeyParameterName": "bench-picsart-key",
        "QolabaApiTokenParameterName": "bench-qolaba-token",
        "WebhookSecretParameterName": WEBHOOK_SECRET,
    }
    for parameter, value in secrets.items():
        ssm.put_parameter(Name=resolver.ref(parameter), Value=value, Type="SecureString")
    boto3.client("events", **options).create_event_bus(Name=resolver.ref("EventBus"))
    sqs = boto3.client("sqs", **options)
    physical = {}
    for queue in ("WebhookQueue", "WebhookDeadLetters"):
        name = resolver.ref(queue)
        physical[queue] = sqs.create_queue(
            QueueName=name, Attributes={"FifoQueue": "true"} if name.endswith(".fifo") else {}
        )["QueueUrl"]
    return server, endpoint, physical


def load_functions(
    template: dict[str, Any], physical: dict[str, str], webhook_url: str
) -> list[Function]:
    template["Parameters"]["WebhookUrl"]["Default"] = webhook_url
    resolver = Resolver(template, physical)
    globals_ = template["Globals"]["Function"]
    functions = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        variables = {
            **globals_["Environment"]["Variables"],
            **properties.get("Environment", {}).get("Variables", {}),
        }
        event = FIRST_EVENT.get(logical_id)
        functions.append(
            Function(
                logical_id=logical_id,
                code_uri=ROOT / properties["CodeUri"],
                handler=properties["Handler"],
                memory_mb=int(properties.get("MemorySize", globals_["MemorySize"])),
                env={name: resolver.resolve(value) for name, value in variables.items()},
                event=EVENTS / event if event and (EVENTS / event).exists() else None,
            )
        )
    return functions


def child_env(function: Function, endpoint: str, daemon: StandInDaemon) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join([str(function.code_uri), *RUNTIME.path]),
        # what Lambda sets
        "LAMBDA_TASK_ROOT": str(function.code_uri),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": function.logical_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "AWS_XRAY_DAEMON_ADDRESS": daemon.address,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "_X_AMZN_TRACE_ID": TRACE_HEADER,
        # no shared config or credentials files, no metadata service: as on Lambda
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint,
        **function.env,
        # loopback and plain http only reach the bench's own webhook receiver
        "WEBHOOK_ALLOW_LOOPBACK": "true",
        "WEBHOOK_ALLOW_HTTP": "true",
    }


def event_file(function: Function, scratch: Path, uploads_bucket: str) -> Path:
    """The sample event as the function would get it now (a fresh SentTimestamp, our bucket)."""
    assert function.event is not None
    event = json.loads(function.event.read_text())
    if function.event.name == "ingest_selfie_uploaded.json":
        event["Records"][0]["s3"]["bucket"]["name"] = uploads_bucket
    if function.event.name == "webhook_delivery.json":
        event["Records"][0]["attributes"]["SentTimestamp"] = str(int(time.time() * 1000))
    path = scratch / f"{function.logical_id}.json"
    path.write_text(json.dumps(event))
    return path


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(  # noqa: S603 - our own interpreter
        args, env=env, cwd=tempfile.gettempdir(), check=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return (time.perf_counter() - started) * 1000


def import_costs(function: Function, env: dict[str, str]) -> list[tuple[str, float]]:
    """Self time of the handler's import, summed per top-level package, biggest first."""
    run = subprocess.run(  # noqa: S603 - the functions' interpreter
        [RUNTIME.python, "-X", "importtime", "-c", "import app"],
        env=env, cwd=tempfile.gettempdir(), check=True, capture_output=True, text=True,
    )  # fmt: skip
    costs: Counter[str] = Counter()
    for line in run.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        costs[name.strip().split(".")[0]] += int(self_us)
    return [(name, us / 1000) for name, us in costs.most_common()]


def serve_first_event(
    function: Function, env: dict[str, str], scratch: Path, daemon: StandInDaemon
) -> None:
    result = scratch / "result.json"
    event = event_file(function, scratch, env["UPLOADS_BUCKET"])
    env = {
        **env,
        "BENCH_HANDLER": function.handler,
        "BENCH_EVENT": str(event),
        "BENCH_RESULT": str(result),
    }
    before = daemon.received
    function.event_ms.append(timed([RUNTIME.python, "-c", CHILD], env))
    time.sleep(0.05)  # the last datagrams in flight
    function.segments.append(daemon.received - before)
    function.children.append(json.loads(result.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--only", default="", help="comma-separated logical ids")
    parser.add_argument(
        "--as-deployed",
        metavar="PYTHON",
        default="",
        help="a CPython 3.13 to run the functions with the layer as built and the pinned SDK",
    )
    options = parser.parse_args()
    rounds = max(options.rounds, MIN_ROUNDS)

    template = load_template(ROOT / "template.yaml")
    server, endpoint, physical = start_aws(template)
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    daemon = StandInDaemon()
    functions = load_functions(
        template, physical, f"http://127.0.0.1:{receiver.server_address[1]}/webhooks"
    )
    if options.only:
        wanted = set(options.only.split(","))
        functions = [f for f in functions if f.logical_id in wanted]
    scratch = Path(tempfile.mkdtemp(prefix="cold-start-"))
    if options.as_deployed:
        as_deployed(options.as_deployed, Path(tempfile.mkdtemp(prefix="cold-start-layer-")))
    python = RUNTIME.python
    started = time.monotonic()
    floor_ms: list[float] = []
    try:
        for _ in range(rounds):
            floor_ms.append(timed([python, "-c", FLOOR], child_env(functions[0], endpoint, daemon)))
            for function in random.sample(functions, len(functions)):
                env = child_env(function, endpoint, daemon)
                for run in random.sample(RUNS, len(RUNS)):
                    if run == "boto3":
                        function.boto3_ms.append(timed([python, "-c", "import boto3"], env))
                    elif run == "import":
                        function.import_ms.append(timed([python, "-c", "import app"], env))
                    elif function.event is not None:
                        serve_first_event(function, env, scratch, daemon)
        report(functions, floor_ms, rounds, time.monotonic() - started, endpoint, daemon)
    finally:
        receiver.shutdown()
        server.stop()


def report(
    functions: list[Function],
    floor_ms: list[float],
    rounds: int,
    seconds: float,
    endpoint: str,
    daemon: StandInDaemon,
) -> None:
    boto3_ms = statistics.median(ms for f in functions for ms in f.boto3_ms)
    print(
        f"Cold starts ({RUNTIME.python}), median of {rounds} interleaved rounds of fresh processes "
        f"({seconds:.0f} s); python -c 'import boto3': {boto3_ms:.0f} ms (yardstick)."
    )
    floor = statistics.median(floor_ms)
    print(
        f"Floor: boto3, pydantic, powertools' logger, metrics, tracer and a validating HTTP "
        f"resolver, nothing of ours: {floor:.0f} ms ({floor / boto3_ms:.2f}x)."
    )
    print(
        f"Targets: import <= {IMPORT_TARGET}x, import + first event <= {EVENT_TARGET}x the "
        "yardstick; tracing on (X-Ray segments counted per first event).\n"
    )
    header = (
        f"{'function':<27} {'import':>7} {'ratio':>6}      {'+event':>7} {'ratio':>6}      "
        f"{'answer':<17} {'in-process':>15} {'xray':>4} {'peak':>8} {'mem':>5}"
    )
    print(header)
    print("-" * len(header))
    misses = 0
    for function in functions:
        imp = statistics.median(function.import_ms)
        imp_ratio = imp / boto3_ms
        imp_ok = imp_ratio <= IMPORT_TARGET
        misses += not imp_ok
        line = f"{function.logical_id:<27} {imp:6.0f}ms {imp_ratio:5.2f}x {_verdict(imp_ok)}"
        if function.event_ms:
            ev = statistics.median(function.event_ms)
            ev_ratio = ev / boto3_ms
            ev_ok = ev_ratio <= EVENT_TARGET
            misses += not ev_ok
            first = function.children[-1]
            inner = (
                f"{statistics.median(c['import_ms'] for c in function.children):.0f}"
                f"+{statistics.median(c['event_ms'] for c in function.children):.0f}ms"
            )
            answer = first["outcome"] + ("" if first["expected"] else " (!)")
            peak = max(c["peak_rss_mib"] for c in function.children)
            line += (
                f" {ev:6.0f}ms {ev_ratio:5.2f}x {_verdict(ev_ok)} {answer:<17} {inner:>15} "
                f"{statistics.median(function.segments):4.0f} {peak:6.0f}MiB {function.memory_mb:5}"
            )
        else:
            line += "  (no sample event)"
            misses += 1
        print(line)
    print(
        "\nimport / +event: process wall time; in-process: the child's own import + event "
        "time; xray: datagrams the SDK sent; peak: VmHWM after the first event; mem: the "
        "template's MemorySize (MB)."
    )
    print(f"{'all within target' if not misses else f'{misses} figure(s) outside target'}\n")

    print("Top import costs (self time per top-level package, -X importtime, ms):")
    seen: set[Path] = set()
    for function in functions:
        if function.code_uri in seen:
            continue
        seen.add(function.code_uri)
        costs = import_costs(function, child_env(function, endpoint, daemon))
        total = sum(ms for _, ms in costs)
        top = ", ".join(f"{name} {ms:.0f}" for name, ms in costs[:TOP_IMPORTS])
        print(f"  {function.code_uri.name:<20} {total:4.0f} total: {top}")


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


if __name__ == "__main__":
    main()
