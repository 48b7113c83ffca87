"""HTTP API: avatar generations from a ready model, the styles on offer and the selfie rules.
Wiring only."""

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
    OVER_QUOTA,
    UNAVAILABLE,
    IdempotencyKey,
    answers,
    caller,
    create_resolver,
    json_response,
)
from avatar_core.idempotency import IdempotentRequests
from avatar_core.logic import generations
from avatar_core.logic.models import get_model
from avatar_core.logic.selfie_rules import selfie_rules
from avatar_core.models.api import (
    CreateGenerationRequest,
    GenerationOut,
    GenerationPage,
    SelfieRulesOut,
    StylesOut,
)
from avatar_core.observability import MetricUnit, metrics, observed
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage
from avatar_core.store.workflows import Workflows

settings = Settings.from_env()
repo = AvatarRepository(settings.table_name)
storage = Storage(settings.uploads_bucket, settings.results_bucket)
workflows = Workflows()
idempotency = IdempotentRequests(settings.table_name)
app = create_resolver()


@app.get(
    "/v1/styles",
    summary="The styles, subjects and caps on offer (models, generations, instant avatars)",
    responses=answers(HTTPStatus.OK, "The styles"),
)
def styles() -> StylesOut:
    return StylesOut(
        styles=settings.avatar_styles,
        max_avatars_per_generation=settings.max_avatars_per_generation,
        subjects=settings.model_subjects,
        instant_subjects=settings.instant_subjects,
        max_instant_avatars=settings.max_instant_avatars,
    )


@app.get(
    "/v1/selfie-rules",
    summary="What a selfie must be: formats, sizes, counts and the checks that refuse it",
    responses=answers(HTTPStatus.OK, "The selfie rules"),
)
def selfie_rules_on_offer() -> SelfieRulesOut:
    return selfie_rules(settings)


@app.post(
    "/v1/models/<model_id>/generations",
    summary="Generate avatars from a ready model; honours Idempotency-Key",
    responses=answers(
        HTTPStatus.ACCEPTED,
        "Generation started: the generation, queued",
        NOT_FOUND,
        CONFLICT,
        INVALID,
        UNAVAILABLE,
        OVER_QUOTA,
        NOT_JSON,
    ),
)
def create_generation(
    model_id: str, body: CreateGenerationRequest, idempotency_key: IdempotencyKey = None
) -> Response[GenerationOut]:
    owner = caller(app)

    def create() -> dict:
        record = generations.create_generation(repo, workflows, settings, owner, model_id, body)
        total = sum(r.count for r in body.requests)
        metrics.add_metric(name="AvatarsRequested", unit=MetricUnit.Count, value=total)
        return generations.generation_out(record, storage, settings).model_dump(mode="json")

    answer = idempotency.run(
        owner=owner,
        scope=f"generations:{model_id}",
        key=idempotency_key,
        body=body.model_dump(mode="json"),
        work=create,
    )
    return json_response(HTTPStatus.ACCEPTED, answer)


@app.get(
    "/v1/models/<model_id>/generations",
    summary="The model's generations, newest first",
    responses=answers(HTTPStatus.OK, "A page of generations", NOT_FOUND, INVALID),
)
def list_generations(
    model_id: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response[GenerationPage]:
    owner = caller(app)
    get_model(repo, owner, model_id)
    records, next_cursor = repo.list_generations(owner, model_id, limit, cursor)
    page = GenerationPage(
        items=[generations.generation_out(r, storage, settings) for r in records],
        next_cursor=next_cursor,
    )
    return json_response(HTTPStatus.OK, page.model_dump(mode="json"))


@app.get(
    "/v1/generations/<generation_id>",
    summary="One generation, with its avatars",
    responses=answers(HTTPStatus.OK, "The generation", NOT_FOUND),
)
def get_generation(generation_id: str) -> Response[GenerationOut]:
    record = generations.get_generation(repo, caller(app), generation_id)
    body = generations.generation_out(record, storage, settings)
    return json_response(HTTPStatus.OK, body.model_dump(mode="json"))


@app.post(
    "/v1/generations/<generation_id>/cancel",
    summary="Cancel a generation not yet sent to the provider, at no cost",
    responses=answers(
        HTTPStatus.OK,
        "Cancelled (or already cancelled): the generation",
        NOT_FOUND,
        CONFLICT,
    ),
)
def cancel_generation(generation_id: str) -> Response[GenerationOut]:
    record = generations.cancel_generation(repo, workflows, caller(app), generation_id, settings)
    body = generations.generation_out(record, storage, settings)
    return json_response(HTTPStatus.OK, body.model_dump(mode="json"))


@app.delete(
    "/v1/generations/<generation_id>",
    summary="Delete a generation and its avatars (one not yet submitted is cancelled first)",
    responses=answers(HTTPStatus.NO_CONTENT, "Deleted", NOT_FOUND, CONFLICT),
)
def delete_generation(generation_id: str) -> Response[None]:
    generations.delete_generation(repo, storage, workflows, caller(app), generation_id, settings)
    return Response(status_code=HTTPStatus.NO_CONTENT)


@observed
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    idempotency.register(context)
    return app.resolve(event, context)
