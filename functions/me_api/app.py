"""HTTP API: the caller's usage against each limit, and what we hold of them. Wiring only."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_core.api import answers, caller, create_resolver, json_response
from avatar_core.logic.quotas import Quotas, usage_out
from avatar_core.models.api import HoldingsOut, MeOut
from avatar_core.observability import observed
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository

settings = Settings.from_env()
repo = AvatarRepository(settings.table_name)
app = create_resolver()


@app.get(
    "/v1/me",
    summary="Your usage against each limit, when each frees, and what we hold of you",
    responses=answers(HTTPStatus.OK, "Usage and holdings"),
)
def me() -> Response[MeOut]:
    owner = caller(app)
    body = MeOut(
        limits=[usage_out(u) for u in Quotas(repo, settings).usage(owner)],
        holdings=HoldingsOut(**repo.holdings(owner)),
    )
    return json_response(HTTPStatus.OK, body.model_dump(mode="json"))


@observed
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
