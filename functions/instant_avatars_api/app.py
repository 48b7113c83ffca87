"""HTTP API: Picsart Instant Avatars from one reference image. Wiring only."""

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
from avatar_core.logic import instant_avatars
from avatar_core.models.api import CreateInstantAvatarRequest, InstantJobOut, InstantJobPage
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


@app.post(
    "/v1/instant-avatars",
    summary="Make instant avatars from an accepted reference image; honours Idempotency-Key",
    responses=answers(
        HTTPStatus.ACCEPTED,
        "Job started: the job, queued",
        NOT_FOUND,
        CONFLICT,
        INVALID,
        NOT_JSON,
        UNAVAILABLE,
        OVER_QUOTA,
    ),
)
def create_job(
    body: CreateInstantAvatarRequest, idempotency_key: IdempotencyKey = None
) -> Response[InstantJobOut]:
    owner = caller(app)

    def create() -> dict:
        record = instant_avatars.create_instant_job(repo, workflows, settings, owner, body)
        metrics.add_metric(name="InstantAvatarsRequested", unit=MetricUnit.Count, value=body.count)
        return instant_avatars.instant_job_out(record, storage, settings).model_dump(mode="json")

    answer = idempotency.run(
        owner=owner,
        scope="instant-avatars",
        key=idempotency_key,
        body=body.model_dump(mode="json"),
        work=create,
    )
    return json_response(HTTPStatus.ACCEPTED, answer)


@app.get(
    "/v1/instant-avatars",
    summary="The caller's instant-avatar jobs, newest first",
    responses=answers(HTTPStatus.OK, "A page of jobs", INVALID),
)
def list_jobs(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response[InstantJobPage]:
    records, next_cursor = repo.list_instant_jobs(caller(app), limit, cursor)
    page = InstantJobPage(
        items=[instant_avatars.instant_job_out(r, storage, settings) for r in records],
        next_cursor=next_cursor,
    )
    return json_response(HTTPStatus.OK, page.model_dump(mode="json"))


@app.get(
    "/v1/instant-avatars/<job_id>",
    summary="One instant-avatar job, with its avatars",
    responses=answers(HTTPStatus.OK, "The job", NOT_FOUND),
)
def get_job(job_id: str) -> Response[InstantJobOut]:
    record = instant_avatars.get_instant_job(repo, caller(app), job_id)
    body = instant_avatars.instant_job_out(record, storage, settings)
    return json_response(HTTPStatus.OK, body.model_dump(mode="json"))


@app.post(
    "/v1/instant-avatars/<job_id>/cancel",
    summary="Cancel an instant-avatar job not yet sent to the provider, at no cost",
    responses=answers(
        HTTPStatus.OK, "Cancelled (or already cancelled): the job", NOT_FOUND, CONFLICT
    ),
)
def cancel_job(job_id: str) -> Response[InstantJobOut]:
    record = instant_avatars.cancel_instant_job(
        repo, storage, workflows, caller(app), job_id, settings
    )
    body = instant_avatars.instant_job_out(record, storage, settings)
    return json_response(HTTPStatus.OK, body.model_dump(mode="json"))


@app.delete(
    "/v1/instant-avatars/<job_id>",
    summary="Delete an instant-avatar job, its avatars and its reference image (unless "
    "another open job needs it); one not yet submitted is cancelled first",
    responses=answers(HTTPStatus.NO_CONTENT, "Deleted", NOT_FOUND, CONFLICT),
)
def delete_job(job_id: str) -> Response[None]:
    instant_avatars.delete_instant_job(repo, storage, workflows, caller(app), job_id, settings)
    return Response(status_code=HTTPStatus.NO_CONTENT)


@observed
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    idempotency.register(context)
    return app.resolve(event, context)
