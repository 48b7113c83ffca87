"""Whole journeys under provider faults, duplicate S3 events and workflow chaos (operator
stops, StartExecution throttling, Lambda timeouts, a crashing reconcile function), and the
figures that say whether anything was lost, paid twice, left uncopied or left open.

Used by ``bench/chaos.py`` (many journeys) and by the integration tests (a few). Each
journey: create a model, upload five selfies through presigned POSTs, train, generate two
avatars, and run a face-avatar batch — as an app would, through the public API.

The figures are computed afterwards from two ledgers: the provider emulator's list of every
job it created upstream, and our DynamoDB records.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import boto3
import requests

from local import photos
from local.client import ApiClient, wait_until
from local.stack import LocalStack

# Faults that leave no doubt about whether the provider did the work: the state machines
# must absorb every one of them.
CLEAR_FAULTS: dict[str, Any] = {
    "error_rate": 0.12,
    "rate_limit_rate": 0.08,
    "retry_after": 1,
    "early_expiry_rate": 0.3,
    # six hours instead of 48: our copy starts within one poll interval of the job finishing.
    # (Slow answers below sleep in real time, which the emulator's clock scales 600-fold: one
    # 3-second answer is half an emulated hour, so a shorter expiry measures the scaling.)
    "early_expiry_seconds": 6 * 3600,
}
# Faults after which nobody can tell whether a submit started paid work upstream.
AMBIGUOUS_FAULTS: dict[str, Any] = {
    "slow_rate": 0.02,
    "slow_seconds": 3,
    "drop_rate": 0.02,
    "lose_response_rate": 0.02,
}
# What an operator and AWS itself do to workflows: stop executions at random points,
# throttle StartExecution, time Lambda tasks out (after they did their work: the worst
# case), and crash the reconcile function (EventBridge's retries, then the sweep, remain).
WORKFLOW_FAULTS: dict[str, float] = {
    "stop_rate": 0.15,
    "start_throttle_rate": 0.3,
    "lambda_timeout_rate": 0.03,
    "reconcile_crash_rate": 0.5,
}
# Our provider read timeout during chaos runs, below AMBIGUOUS_FAULTS' slow answers; and
# deadlines short enough that the sweep (run every second in chaos runs) finds records
# whose end event was lost within the run. A record is only reconciled once its execution
# is no longer running, so a short deadline never cuts a live workflow short.
CHAOS_FUNCTION_ENV = {
    "PROVIDER_READ_TIMEOUT_SECONDS": "2",
    "TRAINING_DEADLINE_SECONDS": "60",
    "JOB_DEADLINE_SECONDS": "60",
}
# Workflow tasks that may time out under chaos: every Lambda a state machine invokes.
_WORKFLOW_FUNCTIONS = (
    "TrainSubmitFunction",
    "TrainCheckFunction",
    "TrainRecordFunction",
    "GenerationSubmitFunction",
    "GenerationCheckFunction",
    "FaceSubmitFunction",
    "FaceCheckFunction",
    "InstantSubmitFunction",
    "InstantCheckFunction",
    "ResultCopyFunction",
    "JobRecordFunction",
)
_MACHINES = (
    "TrainModelStateMachine",
    "GenerateAvatarsStateMachine",
    "FaceAvatarStateMachine",
    "InstantAvatarStateMachine",
)


class CountingClient(ApiClient):
    """An ApiClient that counts every 5xx our API answers, and retries a 503 that carries
    Retry-After as a well-behaved client does (counted apart: it is the promised answer
    when Step Functions keeps refusing to start a workflow)."""

    server_errors = 0
    unavailable = 0
    _lock = threading.Lock()

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        for _ in range(5):
            response = super().call(method, path, **kwargs)
            if response.status_code != 503 or "Retry-After" not in response.headers:
                break
            with CountingClient._lock:
                CountingClient.unavailable += 1
            time.sleep(min(1.0, float(response.headers["Retry-After"])))
        if response.status_code >= 500:
            with CountingClient._lock:
                CountingClient.server_errors += 1
        return response


@dataclass
class Journey:
    user: str
    model_id: str = ""
    model_status: str = ""
    generation_status: str = ""
    face_status: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        done = self.model_status in ("ready", "failed")
        if self.model_status == "ready":
            done = done and self.generation_status in ("succeeded", "failed")
        return done and self.face_status in ("succeeded", "failed")


@dataclass
class Figures:
    journeys: int
    terminal: int
    models_ready: int
    generations_succeeded: int
    faces_succeeded: int
    lost_jobs: dict[str, int]
    paid_twice: dict[str, int]
    avatars_never_copied: int
    client_5xx: int
    outcome_unknown_failures: int
    faults_injected: int
    duration_seconds: float
    records_open: int = 0
    stored_but_unsettled: int = 0
    client_503_retried: int = 0
    workflow_faults: dict[str, int] = field(default_factory=dict)
    # what each journey that did not reach a terminal state saw: its statuses and errors
    unfinished: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"journeys reaching a terminal state: {self.terminal}/{self.journeys} "
            f"({100 * self.terminal / max(1, self.journeys):.0f}%)",
            f"  models ready {self.models_ready}, generations succeeded "
            f"{self.generations_succeeded}, face batches succeeded {self.faces_succeeded}",
            f"lost provider jobs (created upstream, no record of ours): {self.lost_jobs}",
            f"provider jobs submitted more than once for one request (paid twice): "
            f"{self.paid_twice}",
            f"avatars generated upstream but never copied: {self.avatars_never_copied}",
            f"5xx answers seen by clients: {self.client_5xx} "
            f"(503 with Retry-After, retried: {self.client_503_retried})",
            f"records still open at the end (training, queued, running): {self.records_open}",
            f"provider jobs whose id we stored but whose outcome we never recorded: "
            f"{self.stored_but_unsettled}",
            f"jobs failed as 'provider outcome unknown' (not resubmitted): "
            f"{self.outcome_unknown_failures}",
            f"provider faults injected: {self.faults_injected}; "
            f"workflow faults injected: {self.workflow_faults or 'none'}; "
            f"measured in {self.duration_seconds:.0f}s",
            *(f"  unfinished: {line}" for line in self.unfinished),
        ]


def _settled(client: ApiClient, probe: str, done: tuple[str, ...], timeout: float) -> Any:
    return wait_until(
        lambda: client.call("GET", probe).json(),
        lambda body: body.get("status") in done,
        timeout=timeout,
        interval=0.3,
    )


def journey(stack: LocalStack, index: int, timeout: float) -> Journey:
    user = f"chaos-{index:03d}-{uuid.uuid4().hex[:6]}"
    record = Journey(user)
    client = CountingClient(stack.api_url, stack.token(user))
    try:
        model = client.create_model("woman" if index % 2 else "man")
        record.model_id = model["model_id"]
        slots = client.request_uploads(record.model_id, ["image/jpeg"] * 5)
        for number, slot in enumerate(slots):
            data = photos.selfie_jpeg(1000 + index * 10 + number, size=(600, 800))
            ApiClient.upload(slot, data).raise_for_status()
        wait_until(
            lambda: client.list_selfies(record.model_id),
            lambda items: all(s["status"] != "pending" for s in items),
            timeout=timeout,
        )
        started = client.start_training(record.model_id, idempotency_key=f"train-{user}")
        if started.status_code != 202:
            record.errors.append(f"training: {started.status_code} {started.text}")
        model = _settled(client, f"/models/{record.model_id}", ("ready", "failed"), timeout)
        record.model_status = model["status"]
        if model.get("error"):
            record.errors.append(f"training: {model['error']}")
        if record.model_status == "ready":
            response = client.create_generation(
                record.model_id,
                [{"style": "realistic", "count": 1}, {"style": "anime", "count": 1}],
                idempotency_key=f"gen-{user}",
            )
            generation_id = response.json()["generation_id"]
            generation = _settled(
                client, f"/generations/{generation_id}", ("succeeded", "failed"), timeout
            )
            record.generation_status = generation["status"]
            if generation.get("error"):
                record.errors.append(f"generation: {generation['error']}")
        slot = client.call("POST", "/face-avatars/uploads", json={"content_type": "image/jpeg"})
        upload = slot.json()
        ApiClient.upload(upload, photos.selfie_jpeg(5000 + index, size=(800, 1000)))
        _settled(client, f"/face-avatars/uploads/{upload['image_id']}", ("accepted",), timeout)
        response = client.call(
            "POST",
            "/face-avatars",
            json={"image_id": upload["image_id"], "batch": 2},
            headers={"Idempotency-Key": f"face-{user}"},
        )
        job = _settled(
            client, f"/face-avatars/{response.json()['job_id']}", ("succeeded", "failed"), timeout
        )
        record.face_status = job["status"]
        if job.get("error"):
            record.errors.append(f"face: {job['error']}")
    except Exception as error:  # a journey that breaks is reported, not fatal to the run
        record.errors.append(f"{type(error).__name__}: {error}")
    return record


def _our_records(stack: LocalStack) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(stack.output("TableName"))
    items: list[dict[str, Any]] = []
    scan: dict[str, Any] = {}
    while True:
        page = table.scan(**scan)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def figures(stack: LocalStack, journeys: list[Journey], started: float) -> Figures:
    upstream = requests.get(f"{stack.emulator.base_url}/_emulator/jobs", timeout=10).json()
    stats = requests.get(f"{stack.emulator.base_url}/_emulator/stats", timeout=10).json()
    ours = _our_records(stack)
    recorded = {
        "training": {i.get("provider_model_id") for i in ours if i.get("kind") == "model"},
        "inference": {
            i.get("provider_job_id") for i in ours if i.get("kind") == "GenerationRecord"
        },
        "face": {i.get("provider_job_id") for i in ours if i.get("kind") == "FaceJobRecord"},
    }
    copied = {
        i.get("provider_job_id"): len(i.get("avatars", {}))
        for i in ours
        if i.get("kind") in ("GenerationRecord", "FaceJobRecord")
    }
    lost = Counter(job["kind"] for job in upstream if job["id"] not in recorded[job["kind"]])
    # One request of ours per source in these journeys: one training per model's selfies,
    # one generation per trained model, one face batch per reference image.
    per_request = Counter((job["kind"], job["source"]) for job in upstream)
    paid_twice = Counter(kind for (kind, _), count in per_request.items() if count > 1)
    never_copied = sum(
        job["images"] - copied.get(job["id"], 0)
        for job in upstream
        if job["kind"] in ("inference", "face")
    )
    unknown = sum(1 for i in ours if "it may have started the job" in str(i.get("error") or ""))
    journey_owners = {f"OWNER#{j.user}" for j in journeys}
    mine = [i for i in ours if i.get("PK") in journey_owners]
    open_records = [
        i
        for i in mine
        if (i.get("kind") == "model" and i.get("status") == "training")
        or (i.get("kind") in _JOB_KINDS and i.get("status") in ("queued", "running"))
    ]
    return Figures(
        journeys=len(journeys),
        terminal=sum(j.terminal for j in journeys),
        models_ready=sum(j.model_status == "ready" for j in journeys),
        generations_succeeded=sum(j.generation_status == "succeeded" for j in journeys),
        faces_succeeded=sum(j.face_status == "succeeded" for j in journeys),
        lost_jobs={k: lost.get(k, 0) for k in ("training", "inference", "face")},
        paid_twice={k: paid_twice.get(k, 0) for k in ("training", "inference", "face")},
        avatars_never_copied=never_copied,
        client_5xx=CountingClient.server_errors,
        outcome_unknown_failures=unknown,
        faults_injected=sum(stats.get("faults_injected", {}).values()),
        duration_seconds=time.monotonic() - started,
        records_open=len(open_records),
        stored_but_unsettled=sum(
            1 for i in open_records if i.get("provider_model_id") or i.get("provider_job_id")
        ),
        client_503_retried=CountingClient.unavailable,
        unfinished=[
            f"{j.user}: model {j.model_status or '-'}, generation {j.generation_status or '-'}, "
            f"face {j.face_status or '-'}; {'; '.join(j.errors) or 'no error'}"
            for j in journeys
            if not j.terminal
        ],
    )


_JOB_KINDS = ("GenerationRecord", "FaceJobRecord", "InstantJobRecord")


@contextmanager
def workflow_chaos(
    stack: LocalStack, faults: dict[str, float], seed: int = 11
) -> Iterator[Counter[str]]:
    """Operator stops, StartExecution throttling, Lambda timeouts and reconcile crashes for
    the length of the block, with the sweep running every second as its schedule would.
    Yields the count of each fault injected."""
    from moto.core.exceptions import JsonRESTError
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    rng = random.Random(seed)
    lock = threading.Lock()
    injected: Counter[str] = Counter()

    def draw(rate: float) -> bool:
        with lock:
            return rng.random() < rate

    original_start = StepFunctionsParserBackend.start_execution

    def throttled_start(self: Any, *args: Any, **kwargs: Any) -> Any:
        if draw(faults.get("start_throttle_rate", 0)):
            injected["start_throttled"] += 1
            raise JsonRESTError("ThrottlingException", "Rate exceeded")
        return original_start(self, *args, **kwargs)

    def lambda_fault(logical_id: str) -> str | None:
        if logical_id == "ReconcileFunction" and draw(faults.get("reconcile_crash_rate", 0)):
            injected["reconcile_crashed"] += 1
            return "crash"
        if logical_id in _WORKFLOW_FUNCTIONS and draw(faults.get("lambda_timeout_rate", 0)):
            injected[f"timeout:{logical_id}"] += 1
            return "timeout"
        return None

    stop = threading.Event()
    sfn = boto3.client("stepfunctions")
    lambda_client = boto3.client("lambda")
    assert stack.stack is not None and stack.runtime is not None
    machines = [stack.stack.state_machine_arns[m] for m in _MACHINES]
    sweep_function = stack.stack.function_name("SweepFunction")

    def operator() -> None:
        """Looks at every running execution once, and stops some at a random later point."""
        due: dict[str, float] = {}
        seen: set[str] = set()
        while not stop.wait(0.1):
            now = time.monotonic()
            for machine in machines:
                listed = sfn.list_executions(stateMachineArn=machine, statusFilter="RUNNING")
                for execution in listed["executions"]:
                    arn = execution["executionArn"]
                    if arn not in seen:
                        seen.add(arn)
                        if draw(faults.get("stop_rate", 0)):
                            due[arn] = now + rng.uniform(0, 3)
            for arn, at in list(due.items()):
                if at <= now:
                    del due[arn]
                    sfn.stop_execution(executionArn=arn, cause="chaos: an operator's stop")
                    injected["operator_stops"] += 1

    def sweeper() -> None:
        while not stop.wait(1.0):
            lambda_client.invoke(FunctionName=sweep_function, Payload=b"{}")

    StepFunctionsParserBackend.start_execution = throttled_start  # type: ignore[method-assign]
    stack.runtime.fault = lambda_fault
    threads = [
        threading.Thread(target=operator, name="chaos-operator", daemon=True),
        threading.Thread(target=sweeper, name="chaos-sweep", daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        yield injected
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        stack.runtime.fault = None
        StepFunctionsParserBackend.start_execution = original_start  # type: ignore[method-assign]


def run(
    stack: LocalStack,
    journeys: int,
    concurrency: int,
    chaos: dict[str, Any],
    timeout: float = 300,
    seed: int = 7,
    workflow_faults: dict[str, float] | None = None,
) -> tuple[Figures, list[Journey]]:
    """Run ``journeys`` journeys, ``concurrency`` at a time, with ``chaos`` faults on (and
    ``workflow_faults``, if given, from :data:`WORKFLOW_FAULTS`)."""
    requests.post(f"{stack.emulator.base_url}/_emulator/reset", timeout=10).raise_for_status()
    requests.post(
        f"{stack.emulator.base_url}/_emulator/script",
        json={"chaos": {"seed": seed, **chaos}},
        timeout=10,
    ).raise_for_status()
    stack.duplicate_s3_events(True)
    CountingClient.server_errors = CountingClient.unavailable = 0
    started = time.monotonic()
    injected: Counter[str] = Counter()
    workflow = workflow_chaos(stack, workflow_faults) if workflow_faults else nullcontext(injected)
    try:
        with workflow as injected:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                done = list(pool.map(lambda i: journey(stack, i, timeout), range(journeys)))
            if workflow_faults:
                _settle_open_records(stack, done, timeout)
    finally:
        stack.duplicate_s3_events(False)
        requests.post(
            f"{stack.emulator.base_url}/_emulator/script", json={"chaos": None}, timeout=10
        ).raise_for_status()
    result = figures(stack, done, started)
    result.workflow_faults = dict(sorted(injected.items()))
    return result, done


def _settle_open_records(stack: LocalStack, journeys: list[Journey], timeout: float) -> None:
    """A journey is over when its client saw every answer, yet a resumed workflow of a job it
    no longer waits for may still run: give reconciliation its time before counting."""
    owners = {f"OWNER#{j.user}" for j in journeys}

    def still_open() -> int:
        return sum(
            1
            for i in _our_records(stack)
            if i.get("PK") in owners
            and (
                (i.get("kind") == "model" and i.get("status") == "training")
                or (i.get("kind") in _JOB_KINDS and i.get("status") in ("queued", "running"))
            )
        )

    with contextlib.suppress(TimeoutError):  # what is still open is counted by figures()
        wait_until(still_open, lambda n: n == 0, timeout=timeout)
