"""HTTP API: health, models, and selfie upload slots. Wiring only."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_core.api import (
    CONFLICT,
    INVALID,
    NOT_FOUND,
    NOT_JSON,
    answers,
    caller,
    create_resolver,
    json_response,
)
from avatar_core.logic import models as logic
from avatar_core.models.api import (
    CreateModelRequest,
    HealthOut,
    ModelOut,
    ModelPage,
    RequestUploadsRequest,
    SelfieList,
    SelfieOut,
    UploadsOut,
)
from avatar_core.observability import MetricUnit, metrics, observed
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage

settings = Settings.from_env()
repo = AvatarRepository(settings.table_name)
storage = Storage(settings.uploads_bucket, settings.results_bucket)
app = create_resolver()


@app.get(
    "/v1/health",
    summary="Liveness (no token needed)",
    responses=answers(HTTPStatus.OK, "The API is up"),
)
def health() -> HealthOut:
    return HealthOut()


@app.post(
    "/v1/models",
    summary="Create a model",
    responses=answers(HTTPStatus.CREATED, "The new model, collecting selfies", INVALID, NOT_JSON),
)
def create_model(body: CreateModelRequest) -> Response[ModelOut]:
    record = logic.create_model(repo, settings, caller(app), body)
    metrics.add_metric(name="ModelsCreated", unit=MetricUnit.Count, value=1)
    return json_response(HTTPStatus.CREATED, ModelOut.of(record).model_dump(mode="json"))


@app.get(
    "/v1/models",
    summary="The caller's models, newest first",
    responses=answers(HTTPStatus.OK, "A page of models", INVALID),
)
def list_models(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response[ModelPage]:
    records, next_cursor = repo.list_models(caller(app), limit, cursor)
    page = ModelPage(items=[ModelOut.of(r) for r in records], next_cursor=next_cursor)
    return json_response(HTTPStatus.OK, page.model_dump(mode="json"))


@app.get(
    "/v1/models/<model_id>",
    summary="One model",
    responses=answers(HTTPStatus.OK, "The model", NOT_FOUND),
)
def get_model(model_id: str) -> Response[ModelOut]:
    record = logic.get_model(repo, caller(app), model_id)
    return json_response(HTTPStatus.OK, ModelOut.of(record).model_dump(mode="json"))


@app.delete(
    "/v1/models/<model_id>",
    summary="Delete a model with its selfies, avatars and records",
    responses=answers(HTTPStatus.NO_CONTENT, "Deleted", NOT_FOUND),
)
def delete_model(model_id: str) -> Response[None]:
    logic.delete_model(repo, storage, caller(app), model_id)
    metrics.add_metric(name="ModelsDeleted", unit=MetricUnit.Count, value=1)
    return Response(status_code=HTTPStatus.NO_CONTENT)


@app.post(
    "/v1/models/<model_id>/selfies",
    summary="Presigned POSTs to upload selfies, one per file",
    responses=answers(
        HTTPStatus.CREATED, "One upload slot per file", NOT_FOUND, CONFLICT, INVALID, NOT_JSON
    ),
)
def request_selfie_uploads(model_id: str, body: RequestUploadsRequest) -> Response[UploadsOut]:
    slots = logic.request_selfie_uploads(repo, storage, settings, caller(app), model_id, body)
    metrics.add_metric(name="SelfieUploadsIssued", unit=MetricUnit.Count, value=len(slots))
    return json_response(HTTPStatus.CREATED, UploadsOut(uploads=slots).model_dump(mode="json"))


@app.get(
    "/v1/models/<model_id>/selfies",
    summary="Each selfie's status and, if rejected, why",
    responses=answers(HTTPStatus.OK, "The model's selfies", NOT_FOUND),
)
def list_selfies(model_id: str) -> Response[SelfieList]:
    records = logic.list_selfies(repo, caller(app), model_id)
    body = SelfieList(items=[SelfieOut.of(r) for r in records])
    return json_response(HTTPStatus.OK, body.model_dump(mode="json"))


@observed
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
