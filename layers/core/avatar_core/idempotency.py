"""``Idempotency-Key`` for the POSTs that start paid work, on powertools' idempotency utility.

A retry with the same key and body answers the first response and starts nothing new; the
same key with another body is refused (422); a retry while the first is still running is
told so (409). Records live in the main table and expire after a day.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import cached_property
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_core.errors import IdempotencyKeyReused, InvalidRequest, RequestInProgress
from avatar_core.store import clients

HEADER = "idempotency-key"
_MAX_KEY_LENGTH = 255


class IdempotentRequests:
    def __init__(self, table_name: str, expires_after_seconds: int = 24 * 3600) -> None:
        self.table_name = table_name
        self.config = IdempotencyConfig(
            event_key_jmespath="[owner, scope, key]",
            payload_validation_jmespath="body_hash",
            expires_after_seconds=expires_after_seconds,
            raise_on_no_idempotency_key=True,
        )

    @cached_property
    def persistence(self) -> DynamoDBPersistenceLayer:
        """Made by the first request that carries a key, not at import: a cold start without
        one makes no DynamoDB client for it (and powertools' own would be a second session)."""
        return DynamoDBPersistenceLayer(
            table_name=self.table_name,
            key_attr="PK",
            sort_key_attr="SK",
            static_pk_value="IDEMPOTENCY",
            expiry_attr="expires_at_epoch",
            boto3_client=clients.client("dynamodb"),
        )

    def register(self, context: LambdaContext) -> None:
        self.config.register_lambda_context(context)

    def run(
        self,
        *,
        owner: str,
        scope: str,
        key: str | None,
        body: Any,
        work: Callable[[], dict[str, Any]],
    ) -> dict[str, Any]:
        """Run ``work`` once per (owner, scope, key); replay its answer afterwards."""
        if key is None:
            return work()
        if not key or len(key) > _MAX_KEY_LENGTH or not key.isprintable():
            raise InvalidRequest(
                f"Idempotency-Key must be 1-{_MAX_KEY_LENGTH} printable characters",
                field="Idempotency-Key",
            )
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        request = {
            "owner": owner,
            "scope": scope,
            "key": key,
            "body_hash": hashlib.sha256(canonical.encode()).hexdigest(),
        }

        @idempotent_function(
            data_keyword_argument="request", config=self.config, persistence_store=self.persistence
        )
        def once(request: dict[str, str]) -> dict[str, Any]:
            return work()

        try:
            return once(request=request)
        except IdempotencyValidationError as error:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request"
            ) from error
        except IdempotencyAlreadyInProgressError as error:
            raise RequestInProgress(
                "a request with this Idempotency-Key is still being processed; retry shortly"
            ) from error
