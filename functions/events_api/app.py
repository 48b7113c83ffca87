"""HTTP API: the caller's recent events, to catch up after being offline. Wiring only."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_core.api import INVALID, answers, caller, create_resolver, json_response
from avatar_core.models.api import EventPage
from avatar_core.observability import observed
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository

settings = Settings.from_env()
repo = AvatarRepository(settings.table_name)
app = create_resolver()


@app.get(
    "/v1/events",
    summary="The caller's events of the last 7 days after `since`, oldest first",
    description=(
        "The same documents the stack's EventBridge bus and webhooks carry. Start without "
        "`since`, then pass each answer's `next_cursor`; while `has_more` is true, ask again "
        "at once, else poll (every few seconds) or wait for a webhook. The newest few seconds "
        "are held back, so no event can ever land behind a cursor already handed out."
    ),
    responses=answers(HTTPStatus.OK, "A page of events", INVALID),
)
def list_events(
    since: Annotated[str | None, Query(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Response[EventPage]:
    events, cursor, more = repo.list_events(
        caller(app), since, limit, settings.events_settle_seconds
    )
    page = EventPage(items=events, next_cursor=cursor, has_more=more)
    return json_response(HTTPStatus.OK, page.model_dump(mode="json", exclude_none=True))


@observed
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
