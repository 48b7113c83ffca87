"""HTTP API: start training a model. Wiring only."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_core.api import (
    CONFLICT,
    INVALID,
    NOT_FOUND,
    OVER_QUOTA,
    UNAVAILABLE,
    IdempotencyKey,
    answers,
    caller,
    create_resolver,
    json_response,
)
from avatar_core.idempotency import IdempotentRequests
from avatar_core.logic import training
from avatar_core.models.api import ModelOut
from avatar_core.observability import MetricUnit, metrics, observed
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.workflows import Workflows

settings = Settings.from_env()
repo = AvatarRepository(settings.table_name)
workflows = Workflows()
idempotency = IdempotentRequests(settings.table_name)
app = create_resolver()


@app.post(
    "/v1/models/<model_id>/training",
    summary="Start training the model (5-30 accepted selfies); honours Idempotency-Key",
    responses=answers(
        HTTPStatus.ACCEPTED,
        "Training started: the model, now training",
        NOT_FOUND,
        CONFLICT,
        INVALID,
        UNAVAILABLE,
        OVER_QUOTA,
    ),
)
def start_training(model_id: str, idempotency_key: IdempotencyKey = None) -> Response[ModelOut]:
    owner = caller(app)

    def start() -> dict:
        record = training.start_training(repo, workflows, settings, owner, model_id)
        metrics.add_metric(name="TrainingsStarted", unit=MetricUnit.Count, value=1)
        return ModelOut.of(record).model_dump(mode="json")

    body = idempotency.run(
        owner=owner,
        scope=f"training:{model_id}",
        key=idempotency_key,
        body={"model_id": model_id},
        work=start,
    )
    return json_response(HTTPStatus.ACCEPTED, body)


@app.post(
    "/v1/models/<model_id>/training/cancel",
    summary="Cancel a training not yet sent to the provider, at no cost; the model keeps "
    "its selfies and can be trained again",
    responses=answers(
        HTTPStatus.OK, "Cancelled (or already cancelled): the model", NOT_FOUND, CONFLICT
    ),
)
def cancel_training(model_id: str) -> Response[ModelOut]:
    record = training.cancel_training(repo, workflows, settings, caller(app), model_id)
    return json_response(HTTPStatus.OK, ModelOut.of(record).model_dump(mode="json"))


@observed
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    idempotency.register(context)
    return app.resolve(event, context)
