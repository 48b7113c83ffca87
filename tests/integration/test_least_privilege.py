"""Least privilege, proven by use: every function's role grants exactly what it calls.

Locally IAM is not enforced, and moto's enforcement cannot stand in (it ignores the
``Resource`` of DynamoDB, Step Functions and SSM statements and checks operation names, not
the IAM actions a call needs; see the README). So one journey through the product (intake
with a bad file, training and the selfie cleanup, a generation, face and instant avatars,
refused idempotent requests, listings, cancels before submission, deleting jobs, a
reference and a model, deleting an account while one of its generations runs) runs with
:class:`local.aws_calls.CallRecorder` on, and each function's recorded IAM actions are
compared, both ways, with the inline policies of the role moto's CloudFormation created
from the template (SAM policy templates such as ``StepFunctionsExecutionPolicy`` arrive
expanded, every ``!Sub`` and ``!GetAtt`` resolved):

- a used action, on its resource, that no statement allows fails (it would be denied);
- a granted action that the journey never used fails, unless ``UNREACHED`` names it with
  the reason the journey cannot reach it;
- DynamoDB index ARNs are granted only for ``Query``, and only to functions that query one.

The managed policies SAM attaches (logs, X-Ray) serve the Lambda runtime, not the code,
and are not compared.
"""

from __future__ import annotations

import ast
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import boto3
import pytest

from local import aws_calls, demo, photos
from local.aws_calls import CallRecorder, Use
from local.client import ApiClient, EventFeed, wait_until
from local.stack import LocalStack
from local.webhook_receiver import WebhookReceiver
from tests.support.journeys import (
    Emulator,
    delete_account,
    deletion_finished,
    generation_stopped_by_an_operator,
    generation_that_never_finishes,
    model_with_selfies,
    submits_held,
    trained_model,
    upload_and_settle,
    wait_for_model,
)

# Granted but unused by the journey, on purpose: each is needed on a path it cannot reach.
UNREACHED: dict[tuple[str, str], str] = {
    # (TrainingApiFunction's Query is used: a cancel frees the run slot the training may hold;
    # the session's stack runs with a cap, tests/conftest.py)
    ("ResultCopyFunction", "s3:AbortMultipartUpload"): (
        "a result too large for one PUT is streamed in parts; a failed copy aborts the upload"
    ),
    ("ResultCopyFunction", "s3:DeleteObject"): (
        "a copied avatar is deleted again when its job was deleted while it was being copied"
    ),
    # Not the code's: SAM grants it for the DeadLetterQueue, and the Lambda service sends
    # there an S3 event whose asynchronous invocation failed all its attempts.
    ("IngestFunction", "sqs:SendMessage"): "the Lambda service's, for the dead-letter queue",
    ("ReconcileFunction", "sqs:SendMessage"): "the Lambda service's, for the dead-letter queue",
    # Not the code's: the stream's event source mapping reads the stream with the function's
    # role (locally local.event_sources does, with no role), and sends a batch that failed
    # for 24 hours to its on-failure destination.
    **{
        ("EventPublisherFunction", f"dynamodb:{action}"): "the event source mapping's poller"
        for action in ("DescribeStream", "GetRecords", "GetShardIterator", "ListStreams")
    },
    **{
        ("WebhookDeliveryFunction", f"sqs:{action}"): "the event source mapping's poller"
        for action in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
    },
    # The sweep reads the Active index on every run (the journey invokes it once); the rest
    # only for a record past its deadline, hours after its execution's timeout, or a failed
    # model a day after it failed (tests/unit/test_sweep.py covers those paths).
    ("SweepFunction", "dynamodb:GetItem"): "only for a record past its deadline",
    ("SweepFunction", "dynamodb:UpdateItem"): "only for a record past its deadline",
    ("SweepFunction", "states:DescribeExecution"): "only for a record past its deadline",
    ("SweepFunction", "states:StartExecution"): "only to resume an overdue paid job",
    ("SweepFunction", "s3:ListBucket"): "only for a failed model past its retry window",
    ("SweepFunction", "s3:DeleteObject"): "only for a failed model past its retry window",
}

FACE_JOB = {"gender": "female", "batch": 2, "width": 512, "height": 640, "bg_color": "#2E86AB"}


@dataclass(frozen=True)
class Grant:
    """One Allow statement of a role, reduced to what this test compares."""

    actions: frozenset[str]
    resources: frozenset[str]

    def allows(self, use: Use) -> bool:
        return any(fnmatchcase(use.action.lower(), a.lower()) for a in self.actions) and any(
            fnmatchcase(use.resource, r) for r in self.resources
        )


# -- the journey ------------------------------------------------------------------------------


def _refused_with_key(response: Any) -> None:
    """An idempotent request refused by its work: powertools deletes its in-progress record."""
    assert response.status_code in (404, 409), response.text


def _intake_training_and_generation(client: ApiClient, out_dir: Path) -> str:
    model_id = client.create_model("woman")["model_id"]
    files = [("image/jpeg", photos.selfie_jpeg(300 + i, size=(600, 800))) for i in range(5)]
    files.append(("image/jpeg", photos.text_file_named_jpg()))
    statuses = [s["status"] for s in upload_and_settle(client, model_id, files)]
    assert statuses == ["accepted"] * 5 + ["rejected"]
    client.list_models()
    _refused_with_key(
        client.create_generation(
            model_id, [{"style": "realistic", "count": 1}], idempotency_key=f"lp-early-{model_id}"
        )
    )
    response = client.start_training(model_id, idempotency_key=f"lp-train-{model_id}")
    assert response.status_code == 202, response.text
    assert wait_for_model(client, model_id, timeout=120)["status"] == "ready"
    wait_until(
        lambda: client.get_model(model_id),
        lambda m: m.get("selfies_deleted_at") is not None,
        timeout=60,
    )
    demo.generate(
        {"client": client, "model": {"model_id": model_id}, "user": "least-privilege"},
        [{"style": "realistic", "count": 1}],
        out_dir,
    )
    listed = client.call("GET", f"/models/{model_id}/generations")
    assert listed.status_code == 200, listed.text
    return model_id


def _refused_job(client: ApiClient, path: str, body: dict[str, Any]) -> None:
    """A job on a reference that is still pending (never uploaded) is refused inside the
    idempotent work."""
    slot = client.call("POST", "/face-avatars/uploads", json={"content_type": "image/jpeg"})
    slot.raise_for_status()
    body = {**body, "image_id": slot.json()["image_id"]}
    headers = {"Idempotency-Key": f"lp-{uuid.uuid4().hex}"}
    _refused_with_key(client.call("POST", path, json=body, headers=headers))


def _operator_stops_a_generation(stack: LocalStack, client: ApiClient, model_id: str) -> None:
    """Stopped in the console once submitted: the reconcile function resumes it."""
    finished = generation_stopped_by_an_operator(stack, client, model_id, count=1)
    assert finished["status"] == "succeeded", finished


def _account_deleted_while_a_job_runs(stack: LocalStack) -> None:
    """Another user deletes everything while a generation of theirs runs: the workflow
    deletes their records and objects and stops it; a second DELETE answers the first."""
    client = ApiClient(stack.api_url, stack.token(f"lp-del-{uuid.uuid4().hex[:10]}"))
    model_id = trained_model(client, stack, seed=720)
    model_with_selfies(client, 1, seed=730)  # objects left to delete
    try:
        generation_that_never_finishes(stack, client, model_id)
        first = delete_account(client)
        assert delete_account(client)["deletion_id"] == first["deletion_id"]
        assert deletion_finished(client)["status"] == "succeeded"
    finally:
        Emulator(stack).reset()


def _accepted_reference(client: ApiClient, seed: int) -> str:
    slot = client.call("POST", "/face-avatars/uploads", json={"content_type": "image/jpeg"})
    slot.raise_for_status()
    upload = slot.json()
    assert ApiClient.upload(upload, photos.selfie_jpeg(seed, size=(600, 800))).ok
    image = wait_until(
        lambda: client.call("GET", f"/face-avatars/uploads/{upload['image_id']}").json(),
        lambda image: image["status"] != "pending",
        timeout=30,
    )
    assert image["status"] == "accepted", image
    return str(image["image_id"])


def _cancel_and_delete(stack: LocalStack, client: ApiClient, model_id: str) -> None:
    """Each kind cancelled before its submit ran (its API stops its own execution and, for
    face and instant jobs, releases the reference), then what finished is deleted."""
    spare = model_with_selfies(client, 5, seed=720)
    faces, instants = _accepted_reference(client, 721), _accepted_reference(client, 722)
    held = ("TrainSubmitFunction", "GenerationSubmitFunction")
    with submits_held(stack, *held, "FaceSubmitFunction", "InstantSubmitFunction"):
        assert client.start_training(spare).status_code == 202
        generation = client.create_generation(model_id, [{"style": "realistic", "count": 1}])
        face = client.call("POST", "/face-avatars", json={"image_id": faces, "batch": 1})
        instant = client.call(
            "POST", "/instant-avatars", json={"image_id": instants, "subject": "man", "count": 1}
        )
        for path in (
            f"/models/{spare}/training/cancel",
            f"/generations/{generation.json()['generation_id']}/cancel",
            f"/face-avatars/{face.json()['job_id']}/cancel",
            f"/instant-avatars/{instant.json()['job_id']}/cancel",
        ):
            response = client.call("POST", path)
            assert response.status_code == 200, response.text
    generations = client.call("GET", f"/models/{model_id}/generations").json()["items"]
    made = next(g for g in generations if g["status"] == "succeeded")
    assert client.call("DELETE", f"/generations/{made['generation_id']}").status_code == 204
    for path in ("/face-avatars", "/instant-avatars"):
        job = next(j for j in client.call("GET", path).json()["items"] if j["avatars"])
        assert client.call("DELETE", f"{path}/{job['job_id']}").status_code == 204
    unused = _accepted_reference(client, 723)
    assert client.call("DELETE", f"/face-avatars/uploads/{unused}").status_code == 204
    client.delete_model(spare)


def run_journey(stack: LocalStack, webhooks: WebhookReceiver, out_dir: Path) -> None:
    user = f"lp-{uuid.uuid4().hex[:10]}"
    # the app's backend fails one webhook (retried after a backoff) and refuses one (given up)
    webhooks.answer_with([503, 410])
    client = ApiClient(stack.api_url, stack.token(user))
    assert client.call("GET", "/health").status_code == 200
    assert client.call("GET", "/styles").status_code == 200
    untrainable = client.create_model("man")["model_id"]
    _refused_with_key(client.start_training(untrainable, idempotency_key=f"lp-{untrainable}"))
    model_id = _intake_training_and_generation(client, out_dir)
    _operator_stops_a_generation(stack, client, model_id)

    demo.face_avatars(stack, user, out_dir)
    _refused_job(client, "/face-avatars", FACE_JOB)
    assert client.call("GET", "/face-avatars").status_code == 200
    demo.instant_avatars(stack, user, out_dir)
    _refused_job(client, "/instant-avatars", {"subject": "man", "count": 1})
    assert client.call("GET", "/instant-avatars").status_code == 200
    assert client.call("GET", "/me").json()["holdings"]["models"] == 2
    _cancel_and_delete(stack, client, model_id)

    boto3.client("lambda").invoke(
        FunctionName=stack.stack.function_name("SweepFunction"), Payload=b"{}"
    )
    model_with_selfies(client, 1, seed=700)  # a second model whose selfies stay until deletion
    client.delete_model(model_id)
    client.delete_model(untrainable)
    # every change above was published; the app reads its log
    EventFeed(client).wait_for("model.deleted", model_id=untrainable)
    _account_deleted_while_a_job_runs(stack)


def _fresh_parameter_cache(runtime: Any) -> Callable[..., Callable[[Any, Any], Any]]:
    """Each Lambda function has its own process and so its own powertools parameter cache;
    here all share one, and a function would find a key another one fetched and never call
    SSM. Clearing it before every invocation (inside the invocation lock) makes each one
    fetch its key, as each function's first invocation does."""
    from aws_lambda_powertools.utilities import parameters

    original = runtime._handler

    def handler(code: Any, *rest: Any) -> Callable[[Any, Any], Any]:
        run = original(code, *rest)

        def cold(event: Any, context: Any) -> Any:
            parameters.clear_caches()
            return run(event, context)

        return cold

    return handler


@pytest.fixture(scope="module")
def used(
    stack: LocalStack, webhooks: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, set[Use]]:
    recorder = CallRecorder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stack.runtime, "_handler", _fresh_parameter_cache(stack.runtime))
        with aws_calls.recording(recorder):
            run_journey(stack, webhooks, tmp_path_factory.mktemp("least-privilege"))
            stack.wait_for_events()
    return recorder.uses()


# -- what the roles grant -----------------------------------------------------------------------


def _document(raw: Any) -> dict[str, Any]:
    """moto's CloudFormation stores inline role policies as Python reprs, not JSON."""
    if isinstance(raw, dict):
        return raw
    try:
        document: dict[str, Any] = json.loads(raw)
    except json.JSONDecodeError:
        document = ast.literal_eval(raw)
    return document


def _as_set(value: str | list[str]) -> frozenset[str]:
    return frozenset([value] if isinstance(value, str) else value)


def _role_grants(iam: Any, role_name: str) -> list[Grant]:
    grants = []
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        raw = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        statements = _document(raw)["Statement"]
        for statement in [statements] if isinstance(statements, dict) else statements:
            assert statement["Effect"] == "Allow", statement
            grants.append(Grant(_as_set(statement["Action"]), _as_set(statement["Resource"])))
    return grants


@pytest.fixture(scope="module")
def granted(stack: LocalStack) -> dict[str, list[Grant]]:
    assert stack.stack is not None
    lambda_client, iam = boto3.client("lambda"), boto3.client("iam")
    grants = {}
    for logical_id, name in stack.stack.function_names.items():
        role_arn = lambda_client.get_function(FunctionName=name)["Configuration"]["Role"]
        grants[logical_id] = _role_grants(iam, role_arn.rsplit("/", 1)[-1])
    return grants


def _functions() -> list[str]:
    from local.template import load_template

    template = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
    return sorted(
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    )


FUNCTIONS = _functions()


# -- the checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_journey_reaches_the_function(function: str, used: dict[str, set[Use]]) -> None:
    assert used.get(function), f"the journey never ran {function}: nothing proves its policy"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_call_is_granted(
    function: str, used: dict[str, set[Use]], granted: dict[str, list[Grant]]
) -> None:
    denied = sorted(
        use
        for use in used.get(function, set())
        if not any(g.allows(use) for g in granted[function])
    )
    assert not denied, f"{function} would be denied: " + "; ".join(
        f"{use.action} on {use.resource}" for use in denied
    )


@pytest.mark.parametrize("function", FUNCTIONS)
def test_nothing_granted_goes_unused(
    function: str, used: dict[str, set[Use]], granted: dict[str, list[Grant]]
) -> None:
    actions = {use.action.lower() for use in used.get(function, set())}
    unused = sorted(
        action
        for grant in granted[function]
        for action in grant.actions
        if action.lower() not in actions and (function, action) not in UNREACHED
    )
    assert not unused, f"{function} is granted what it never uses: {', '.join(unused)}"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_unreached_entries_are_still_granted_and_unused(
    function: str, used: dict[str, set[Use]], granted: dict[str, list[Grant]]
) -> None:
    """An UNREACHED entry the journey now reaches, or that is no longer granted, must go."""
    actions = {use.action for use in used.get(function, set())}
    grants = {action for grant in granted[function] for action in grant.actions}
    stale = [
        action
        for (name, action) in UNREACHED
        if name == function and (action in actions or action not in grants)
    ]
    assert not stale, f"stale UNREACHED entries for {function}: {stale}"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_index_arns_only_for_queries_on_an_index(
    function: str, used: dict[str, set[Use]], granted: dict[str, list[Grant]]
) -> None:
    queries_an_index = any("/index/" in use.resource for use in used.get(function, set()))
    for grant in granted[function]:
        if not any("/index/" in resource for resource in grant.resources):
            continue
        assert queries_an_index, f"{function} is granted an index it never queries: {grant}"
        assert grant.actions == {"dynamodb:Query"}, (
            f"{function}: only Query needs an index ARN, and item actions need only the "
            f"table's: {sorted(grant.actions)}"
        )
