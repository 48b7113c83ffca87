"""Make moto's S3 hold a browser POST upload to its signed policy, as S3 does.

moto 5.2.5 stores whatever a presigned POST form sends: it checks no signature, no
expiration and no policy condition, so locally a client could upload to another key than the
one it was given, an hour after its slot expired, a file of any size or type, or with no
policy at all, and every one of those would still be stored and fire the S3 event that
starts ingest. On AWS each is refused before anything is stored. A bug there (a client that
posts a field the policy does not sign, a presign whose conditions forget the Content-Type)
would only show in production.

``install()`` puts a check in front of moto's POST-object handler
(``S3Response._bucket_response_post``), on the form moto has already parsed, and answers a
violation with S3's XML error, its status and Code, before moto's ``put_object`` runs, so
nothing is stored and no event notification fires. It checks what S3 documents for
"Browser-Based Uploads Using POST (AWS Signature Version 4)" and "Creating a POST Policy":

- no policy: the POST is anonymous and the bucket private → 403 AccessDenied;
- the SigV4 signature (HMAC of the base64 policy with the key derived from the secret, the
  credential's date and region, "s3" and "aws4_request", computed by botocore's own
  ``SigV4Auth.signature``); SigV2 forms (``AWSAccessKeyId``/``signature``) are checked with
  botocore's ``HmacV1Auth.sign_string``. Locally every caller signs with the process's
  credentials (``local.stack._configure_process_env``), so the only access key known is
  ``AWS_ACCESS_KEY_ID`` → 403 InvalidAccessKeyId for any other, 403 SignatureDoesNotMatch
  for a wrong signature;
- ``expiration`` in the past → 403 AccessDenied "Policy expired.";
- every condition: exact match (``{"f": v}``, ``["eq", "$f", v]``), ``["starts-with", "$f",
  prefix]`` (for Content-Type, each of a comma-separated list), and ``content-length-range``
  (400 EntityTooLarge / EntityTooSmall) → 403 AccessDenied "Policy Condition failed";
- every form field but ``policy``, ``x-amz-signature``, ``file`` and ``x-ignore-*`` must be
  named by some condition → 403 AccessDenied "Extra input fields".

Field names match case-insensitively, values exactly. ``${filename}`` in ``key`` is matched
as sent (moto substitutes it when storing), which is what botocore's presign signs: a
``starts-with`` on the part before it.

Not modelled: the rule that S3 ignores fields after the file (moto's parser keeps them), and
session tokens (``x-amz-security-token`` is held to the policy like any field, not checked
against an issuer).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape

_installed = False

SIGV4_ALGORITHM = "AWS4-HMAC-SHA256"
# The form fields S3 does not ask the policy to name (the x-ignore- prefix aside).
UNSIGNED_FIELDS = frozenset({"policy", "x-amz-signature", "file", "awsaccesskeyid", "signature"})
IGNORED_PREFIX = "x-ignore-"
DENIED_BY_POLICY = "Invalid according to Policy: "


@dataclass(eq=False)
class PostRejected(Exception):
    """An S3 error answer for a POST upload: status, Code, Message and extra elements."""

    status: int
    code: str
    message: str
    details: tuple[tuple[str, str], ...] = ()

    def response(self) -> tuple[int, dict[str, str], str]:
        elements = [("Code", self.code), ("Message", self.message), *self.details]
        elements += [("RequestId", uuid.uuid4().hex[:16].upper()), ("HostId", "local")]
        body = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in elements)
        xml = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{body}</Error>'
        return self.status, {"Content-Type": "application/xml"}, xml


@dataclass(frozen=True)
class PostForm:
    """What a POST upload sent: its fields (names lower-cased, first value each) and file."""

    bucket: str
    fields: Mapping[str, str]
    names: tuple[str, ...]  # as sent, for the Extra input fields message
    file_size: int

    def value(self, name: str) -> str | None:
        if name == "bucket":
            return self.bucket
        return self.fields.get(name)


# -- answers ------------------------------------------------------------------------------


def _access_denied(message: str = "Access Denied") -> PostRejected:
    return PostRejected(403, "AccessDenied", message)


def _by_policy(reason: str) -> PostRejected:
    return _access_denied(DENIED_BY_POLICY + reason)


def _invalid_policy(reason: str) -> PostRejected:
    return PostRejected(400, "InvalidPolicyDocument", f"Invalid Policy: {reason}")


def _missing_field(name: str) -> PostRejected:
    message = (
        f"Bucket POST must contain a field named '{name}'. "
        "If it is specified, please check the order of the fields."
    )
    return PostRejected(400, "InvalidArgument", message, (("ArgumentName", name),))


# -- signature ----------------------------------------------------------------------------


def _known_secret(access_key: str) -> str | None:
    """The secret of ``access_key``: locally, only the process's own credentials exist."""
    if access_key and access_key == os.environ.get("AWS_ACCESS_KEY_ID"):
        return os.environ.get("AWS_SECRET_ACCESS_KEY")
    return None


def _sigv4_signature(secret: str, access_key: str, scope: list[str], policy: str) -> str:
    """botocore's SigV4 POST signature of ``policy`` for a credential scope."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    date, region, service = scope[0], scope[1], scope[2]
    signer = SigV4Auth(Credentials(access_key, secret), service, region)
    request = AWSRequest()
    request.context["timestamp"] = date  # only its first eight characters are read
    signature: str = signer.signature(policy, request)
    return signature


def _sigv2_signature(secret: str, access_key: str, policy: str) -> str:
    from botocore.auth import HmacV1Auth
    from botocore.credentials import Credentials

    signature: str = HmacV1Auth(Credentials(access_key, secret)).sign_string(policy)
    return signature


def _unknown_key(access_key: str) -> PostRejected:
    message = "The AWS Access Key Id you provided does not exist in our records."
    return PostRejected(403, "InvalidAccessKeyId", message, (("AWSAccessKeyId", access_key),))


def _mismatch(access_key: str, policy: str, provided: str) -> PostRejected:
    message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )
    details = (("AWSAccessKeyId", access_key), ("StringToSign", policy))
    return PostRejected(
        403, "SignatureDoesNotMatch", message, (*details, ("SignatureProvided", provided))
    )


def _check_sigv4(form: PostForm, policy: str) -> None:
    for name in ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"):
        if not form.fields.get(name):
            raise _missing_field(name)
    algorithm = form.fields["x-amz-algorithm"]
    if algorithm != SIGV4_ALGORITHM:
        message = f"Unsupported x-amz-algorithm: {algorithm}; only {SIGV4_ALGORITHM} is."
        raise PostRejected(400, "InvalidArgument", message, (("ArgumentName", "x-amz-algorithm"),))
    credential = form.fields["x-amz-credential"]
    access_key, _, rest = credential.partition("/")
    scope = rest.split("/")
    if len(scope) != 4 or scope[3] != "aws4_request":
        message = f"Invalid credential: {credential}; expected key/date/region/s3/aws4_request."
        raise PostRejected(400, "InvalidArgument", message, (("ArgumentName", "x-amz-credential"),))
    secret = _known_secret(access_key)
    if secret is None:
        raise _unknown_key(access_key)
    provided = form.fields["x-amz-signature"]
    # S3 signs for service "s3" only: a scope naming another cannot match what S3 computes.
    expected = _sigv4_signature(secret, access_key, [scope[0], scope[1], "s3"], policy)
    if not hmac.compare_digest(expected, provided):
        raise _mismatch(access_key, policy, provided)


def _check_sigv2(form: PostForm, policy: str) -> None:
    access_key = form.fields["awsaccesskeyid"]
    if not form.fields.get("signature"):
        raise _missing_field("signature")
    secret = _known_secret(access_key)
    if secret is None:
        raise _unknown_key(access_key)
    provided = form.fields["signature"]
    if not hmac.compare_digest(_sigv2_signature(secret, access_key, policy), provided):
        raise _mismatch(access_key, policy, provided)


def check_signature(form: PostForm) -> str:
    """The policy the form carries, once its signature is proven; raise S3's answer if not."""
    policy = form.fields.get("policy")
    if not policy:
        # No policy is an anonymous POST, which S3 refuses on a bucket not publicly writable.
        raise _access_denied()
    if "awsaccesskeyid" in form.fields and "x-amz-credential" not in form.fields:
        _check_sigv2(form, policy)
    else:
        _check_sigv4(form, policy)
    return policy


# -- policy -------------------------------------------------------------------------------


def decode_policy(policy: str) -> dict[str, Any]:
    try:
        document = json.loads(base64.b64decode(policy, validate=True))
    except (binascii.Error, ValueError):
        raise _invalid_policy("Invalid JSON.") from None
    if not isinstance(document, dict):
        raise _invalid_policy("Invalid JSON.")
    if "expiration" not in document:
        raise _invalid_policy("Policy missing expiration.")
    if not isinstance(document.get("conditions"), list):
        raise _invalid_policy("Policy missing conditions.")
    return document


def check_expiration(document: Mapping[str, Any], now: datetime) -> None:
    expiration = document["expiration"]
    try:
        expires = datetime.fromisoformat(str(expiration))
    except ValueError:
        raise _invalid_policy(f"Invalid 'expiration' value: '{expiration}'") from None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    if expires <= now:
        raise _by_policy("Policy expired.")


def _field_name(reference: Any) -> str:
    """``$Content-Type`` → ``content-type``."""
    if not isinstance(reference, str) or not reference.startswith("$"):
        raise _invalid_policy(f"Invalid field reference: {json.dumps(reference)}")
    return reference[1:].lower()


def _failed(condition: list[Any]) -> PostRejected:
    return _by_policy(f"Policy Condition failed: {json.dumps(condition)}")


def _check_eq(form: PostForm, condition: list[Any]) -> None:
    if form.value(_field_name(condition[1])) != condition[2]:
        raise _failed(condition)


def _check_starts_with(form: PostForm, condition: list[Any]) -> None:
    name, prefix = _field_name(condition[1]), condition[2]
    value = form.value(name) or ""
    # S3 lets a Content-Type be a comma-separated list, each of which must match.
    values = [v.strip() for v in value.split(",")] if name == "content-type" else [value]
    if not isinstance(prefix, str) or not all(v.startswith(prefix) for v in values):
        raise _failed(condition)


def _check_length(form: PostForm, condition: list[Any]) -> None:
    try:
        low, high = int(condition[1]), int(condition[2])
    except (TypeError, ValueError):
        raise _invalid_policy("Invalid content-length-range.") from None
    size = str(form.file_size)
    if form.file_size > high:
        details = (("ProposedSize", size), ("MaxSizeAllowed", str(high)))
        message = "Your proposed upload exceeds the maximum allowed size"
        raise PostRejected(400, "EntityTooLarge", message, details)
    if form.file_size < low:
        details = (("ProposedSize", size), ("MinSizeAllowed", str(low)))
        message = "Your proposed upload is smaller than the minimum allowed size"
        raise PostRejected(400, "EntityTooSmall", message, details)


_OPERATORS: dict[str, Callable[[PostForm, list[Any]], None]] = {
    "eq": _check_eq,
    "starts-with": _check_starts_with,
}


def _as_list(condition: Any) -> list[Any]:
    """A condition in its array form: ``{"f": v}`` is ``["eq", "$f", v]``."""
    if isinstance(condition, dict) and len(condition) == 1:
        ((name, value),) = condition.items()
        return ["eq", f"${name}", value]
    if isinstance(condition, list) and len(condition) == 3:
        return condition
    raise _invalid_policy(f"Invalid condition: {json.dumps(condition)}")


def check_conditions(form: PostForm, conditions: list[Any]) -> set[str]:
    """Hold the form to every condition; return the field names the policy names."""
    named: set[str] = set()
    for raw in conditions:
        condition = _as_list(raw)
        operator = str(condition[0]).lower()
        if operator == "content-length-range":
            _check_length(form, condition)
            continue
        check = _OPERATORS.get(operator)
        if check is None:
            raise _invalid_policy(f"Invalid condition operator: {json.dumps(condition[0])}")
        check(form, condition)
        named.add(_field_name(condition[1]))
    return named


def check_extra_fields(form: PostForm, named: set[str]) -> None:
    for name in form.names:
        lowered = name.lower()
        if lowered in UNSIGNED_FIELDS or lowered.startswith(IGNORED_PREFIX):
            continue
        if lowered not in named:
            raise _by_policy(f"Extra input fields: {name}")


def verify(form: PostForm, now: datetime | None = None) -> None:
    """Raise ``PostRejected`` with S3's answer unless S3 would store this POST upload."""
    document = decode_policy(check_signature(form))
    check_expiration(document, now or datetime.now(UTC))
    named = check_conditions(form, document["conditions"])
    check_extra_fields(form, named)


# -- moto ---------------------------------------------------------------------------------


def _file_size(body: Any) -> int:
    if isinstance(body, str):
        return len(body.encode("utf-8"))
    return len(body or b"")


def form_of(handler: Any, request: Any, bucket_name: str) -> PostForm:
    """The form moto parsed for this request (fields, the file's bytes already read)."""
    fields: dict[str, str] = {}
    names: list[str] = []
    for name, value in request.form.items(multi=True):
        if name.lower() not in fields:
            fields[name.lower()] = value
            names.append(name)
    for name in request.files:
        names.append(name)
    return PostForm(bucket_name, fields, tuple(names), _file_size(handler.body))


def _is_upload(handler: Any, request: Any) -> bool:
    """A POST to a bucket is a form upload unless it is DeleteObjects (``?delete``)."""
    if not request.headers.get("Content-Length"):
        return False  # moto answers 411 itself
    query = parse_qs(urlparse(handler._get_path(request)).query, keep_blank_values=True)
    return "delete" not in query


def _verifying(original: Callable[..., Any]) -> Callable[..., Any]:
    def _bucket_response_post(handler: Any, request: Any, bucket_name: str) -> Any:
        if _is_upload(handler, request):
            try:
                verify(form_of(handler, request, bucket_name))
            except PostRejected as rejected:
                return rejected.response()
        return original(handler, request, bucket_name)

    _bucket_response_post.__wrapped__ = original  # type: ignore[attr-defined]
    return _bucket_response_post


def install() -> None:
    """Verify every POST upload to moto's S3 in this process; safe to call again."""
    global _installed
    if _installed:
        return
    from moto.s3.responses import S3Response

    original = S3Response.__dict__["_bucket_response_post"]
    setattr(S3Response, "_bucket_response_post", _verifying(original))  # noqa: B010
    _installed = True
