"""``Idempotency-Key`` for the POSTs that start paid work, on powertools' idempotency utility.

A retry with the same key and body answers the first response and starts nothing new; the
same key with another body is refused (422); a retry while the first is still running is
told so (409). Records live in the main table, in the owner's own partition
(``OWNER#<owner>`` / ``IDEM#<key>``) so that deleting an owner finds them, and expire after
a day.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
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


class OwnerScopedPersistence(DynamoDBPersistenceLayer):
    """Powertools' DynamoDB persistence, with each record under its owner's partition:
    ``OWNER#<owner>`` / ``IDEM#<powertools' key>`` (the function and a digest of owner,
    scope and key). One per request, since the owner is part of the table key."""

    def __init__(self, table_name: str, owner: str, client: Any = None) -> None:
        super().__init__(
            table_name=table_name,
            key_attr="PK",
            sort_key_attr="SK",
            static_pk_value=f"OWNER#{owner}",
            expiry_attr="expires_at_epoch",
            boto3_client=client,
        )

    def _get_key(self, idempotency_key: str) -> dict[str, Any]:
        return {"PK": {"S": self.static_pk_value}, "SK": {"S": f"IDEM#{idempotency_key}"}}


class IdempotentRequests:
    def __init__(self, table_name: str, expires_after_seconds: int = 24 * 3600) -> None:
        self.table_name = table_name
        self.config = IdempotencyConfig(
            event_key_jmespath="[owner, scope, key]",
            payload_validation_jmespath="body_hash",
            expires_after_seconds=expires_after_seconds,
            raise_on_no_idempotency_key=True,
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

        # the stack's one DynamoDB client, made on first use (avatar_core.store.clients)
        persistence = OwnerScopedPersistence(self.table_name, owner, clients.client("dynamodb"))

        @idempotent_function(
            data_keyword_argument="request", config=self.config, persistence_store=persistence
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
