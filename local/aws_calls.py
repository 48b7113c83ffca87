"""Records which IAM actions each in-process Lambda function needs, from the AWS calls it
really makes, so the template's policies can be checked against use (least privilege).

Locally nothing enforces IAM: every handler runs in this process with the stack's one set
of moto credentials, and moto's own IAM enforcement cannot stand in (it ignores the
``Resource`` of DynamoDB, Step Functions and SSM statements and checks the operation name,
not the IAM actions a call needs; see the README). So instead of enforcing, we record: the
journeys run with a :class:`CallRecorder` installed, and a test compares what each function
used with what its role grants.

Where the hook sits, and why there:

- Every API call of every botocore client, resource and paginator ends in
  ``botocore.client.BaseClient._make_api_call``. Client classes are made per client, but
  all inherit that method, so patching it on ``BaseClient`` covers clients created before
  the patch too: handler modules make theirs at import time, powertools makes its SSM
  client lazily. Event-system hooks (``before-call``) would not: a client copies its event
  emitter from its session when it is created, so a handler registered later on a session
  never reaches a client that already exists.
- Presigned URLs and POSTs call no API, yet whoever uses one acts with the signer's
  permissions, so the signer needs the action. Every presigned URL goes through
  ``botocore.signers.RequestSigner.generate_presigned_url`` and every presigned POST
  through ``botocore.signers.S3PostPresigner.generate_presigned_post``; both are patched
  on the class for the same reason.

Calls are attributed to the function whose handler is running, held in a
:class:`contextvars.ContextVar` that :func:`invoking` sets around the handler call. A context
variable is per thread (and per asyncio task), so concurrent invocations on different threads
never see each other's name, and calls from threads that run no handler (moto's server, the
front, a test's own boto3 client) are not recorded. A handler that started its own threads
would lose the attribution in them (a new thread starts with an empty context); none does.

A call is recorded before it is made: a call that fails (a condition that does not hold, an
object that is not there) still needed its permission.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from local.template import ACCOUNT_ID

_running: ContextVar[str | None] = ContextVar("aws_calls_running_function", default=None)


@dataclass(frozen=True, order=True)
class Use:
    """One IAM action a function needed, on one resource ARN (``*`` when none is known)."""

    action: str
    resource: str


class CallRecorder:
    """The IAM actions used, per function logical id. Safe to record into from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uses: dict[str, set[Use]] = {}

    def record(self, function: str, uses: Iterable[Use]) -> None:
        with self._lock:
            self._uses.setdefault(function, set()).update(uses)

    def uses(self) -> dict[str, set[Use]]:
        """A copy of everything recorded so far, by function."""
        with self._lock:
            return {function: set(uses) for function, uses in self._uses.items()}

    def actions(self, function: str) -> set[str]:
        with self._lock:
            return {use.action for use in self._uses.get(function, set())}


_recorder: CallRecorder | None = None
_installed = False
_install_lock = threading.Lock()


@contextmanager
def invoking(function: str) -> Iterator[None]:
    """Attribute the AWS calls made inside this block (on this thread) to ``function``."""
    token = _running.set(function)
    try:
        yield
    finally:
        _running.reset(token)


@contextmanager
def recording(recorder: CallRecorder) -> Iterator[CallRecorder]:
    """Record into ``recorder`` for the length of the block."""
    global _recorder
    _install_hooks()
    previous, _recorder = _recorder, recorder
    try:
        yield recorder
    finally:
        _recorder = previous


def _note(region: str | None, service: str, operation: str, params: dict[str, Any]) -> None:
    function, recorder = _running.get(), _recorder
    if function is None or recorder is None:
        return
    recorder.record(function, iam_uses(service, operation, params, region or "us-east-1"))


def _install_hooks() -> None:
    """Patch botocore once per process; the patches are no-ops while nothing records."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from botocore import client, signers

        client.BaseClient._make_api_call = _wrap_api_call(client.BaseClient._make_api_call)
        signers.RequestSigner.generate_presigned_url = _wrap_presigned_url(
            signers.RequestSigner.generate_presigned_url
        )
        signers.S3PostPresigner.generate_presigned_post = _wrap_presigned_post(
            signers.S3PostPresigner.generate_presigned_post
        )
        _installed = True


def _wrap_api_call(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        _note(
            self.meta.region_name, _iam_prefix(self.meta.service_model), operation_name, api_params
        )
        return original(self, operation_name, api_params)

    return _make_api_call


def _wrap_presigned_url(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def generate_presigned_url(
        self: Any, request_dict: dict[str, Any], operation_name: str, *args: Any, **kwargs: Any
    ) -> Any:
        params = request_dict.get("context", {}).get("input_params", {})
        _note(self._region_name, self._signing_name, operation_name, params)
        return original(self, request_dict, operation_name, *args, **kwargs)

    return generate_presigned_url


def _wrap_presigned_post(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def generate_presigned_post(
        self: Any,
        request_dict: dict[str, Any],
        fields: dict[str, Any] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        bucket = urlparse(request_dict.get("url", "")).path.strip("/").split("/", 1)[0]
        key = (fields or {}).get("key", "")
        # a presigned POST is an upload: whoever posts it needs s3:PutObject from the signer
        _note(None, "s3", "PutObject", {"Bucket": unquote(bucket), "Key": key})
        return original(self, request_dict, fields, *args, **kwargs)

    return generate_presigned_post


def _iam_prefix(service_model: Any) -> str:
    """IAM's service prefix: the signing name (``states`` for Step Functions), not the
    endpoint prefix or the boto3 name."""
    return str(service_model.signing_name)


# -- operations to IAM actions ----------------------------------------------------------------

# S3 operations whose IAM action has another name (the service authorization reference,
# "Actions defined by Amazon S3"); every other S3 operation's action is its own name.
_S3_ACTIONS = {
    "HeadObject": "GetObject",
    "ListObjectsV2": "ListBucket",
    "ListObjects": "ListBucket",
    "HeadBucket": "ListBucket",
    "DeleteObjects": "DeleteObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "ListParts": "ListMultipartUploadParts",
    "GetObjectAttributes": "GetObject",
}
# a DynamoDB transaction is authorised per item, by the action that item performs
_TRANSACT_WRITE_ACTIONS = {
    "ConditionCheck": "ConditionCheckItem",
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
}


def iam_uses(service: str, operation: str, params: dict[str, Any], region: str) -> set[Use]:
    """The IAM actions (with resources) one API call needs."""
    if service == "dynamodb":
        return _dynamodb_uses(operation, params, region)
    if service == "s3":
        return _s3_uses(operation, params)
    if service == "ssm" and "Name" in params:
        return {Use(f"ssm:{operation}", _ssm_parameter_arn(params["Name"], region))}
    if service == "states":
        arn = params.get("stateMachineArn") or params.get("executionArn") or "*"
        return {Use(f"states:{operation}", arn)}
    if service == "secretsmanager":
        return {Use(f"secretsmanager:{operation}", str(params.get("SecretId", "*")))}
    if service == "events" and operation == "PutEvents":
        return {
            Use("events:PutEvents", _event_bus_arn(entry.get("EventBusName", "default"), region))
            for entry in params.get("Entries", [])
        }
    if service == "sqs" and "QueueUrl" in params:
        # the batch calls are authorised as their single forms
        action = _SQS_BATCH_ACTIONS.get(operation, operation)
        name = urlparse(params["QueueUrl"]).path.rstrip("/").rsplit("/", 1)[-1]
        return {Use(f"sqs:{action}", f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{name}")}
    return {Use(f"{service}:{operation}", "*")}


_SQS_BATCH_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _event_bus_arn(name_or_arn: str, region: str) -> str:
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    return f"arn:aws:events:{region}:{ACCOUNT_ID}:event-bus/{name_or_arn}"


def _table_arn(region: str, table: str, index: str | None = None) -> str:
    arn = f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{table}"
    return f"{arn}/index/{index}" if index else arn


def _dynamodb_uses(operation: str, params: dict[str, Any], region: str) -> set[Use]:
    if operation == "TransactWriteItems":
        return {
            Use(f"dynamodb:{_TRANSACT_WRITE_ACTIONS[kind]}", _table_arn(region, op["TableName"]))
            for item in params.get("TransactItems", [])
            for kind, op in item.items()
        }
    if operation == "TransactGetItems":
        return {
            Use("dynamodb:GetItem", _table_arn(region, item["Get"]["TableName"]))
            for item in params.get("TransactItems", [])
        }
    if operation in ("BatchWriteItem", "BatchGetItem"):
        return {
            Use(f"dynamodb:{operation}", _table_arn(region, table))
            for table in params.get("RequestItems", {})
        }
    table = params.get("TableName")
    if table is None:
        return {Use(f"dynamodb:{operation}", "*")}
    return {Use(f"dynamodb:{operation}", _table_arn(region, table, params.get("IndexName")))}


def _s3_uses(operation: str, params: dict[str, Any]) -> set[Use]:
    bucket = params.get("Bucket", "*")
    if operation == "CopyObject":
        source = params["CopySource"]
        source_path = (
            f"{source['Bucket']}/{source['Key']}" if isinstance(source, dict) else str(source)
        )
        return {
            Use("s3:GetObject", f"arn:aws:s3:::{unquote(source_path.lstrip('/'))}"),
            Use("s3:PutObject", f"arn:aws:s3:::{bucket}/{params['Key']}"),
        }
    action = f"s3:{_S3_ACTIONS.get(operation, operation)}"
    if operation == "DeleteObjects":
        return {
            Use(action, f"arn:aws:s3:::{bucket}/{item['Key']}")
            for item in params.get("Delete", {}).get("Objects", [])
        }
    if "Key" in params:
        return {Use(action, f"arn:aws:s3:::{bucket}/{params['Key']}")}
    return {Use(action, f"arn:aws:s3:::{bucket}")}


def _ssm_parameter_arn(name: str, region: str) -> str:
    path = name if name.startswith("/") else f"/{name}"
    return f"arn:aws:ssm:{region}:{ACCOUNT_ID}:parameter{path}"
