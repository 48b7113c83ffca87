"""HTTP API: delete everything of the caller (``DELETE /v1/me``) and follow it. Wiring only;
the order and the guarantees are in ``avatar_core.logic.deletion``.

Least privilege: this function only writes the receipt and starts the workflow; the
deleting is the ``delete-owner`` workflow's.
"""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_core.api import NOT_FOUND, UNAVAILABLE, answers, caller, create_resolver, json_response
from avatar_core.logic import deletion
from avatar_core.models.deletion import DeletionOut
from avatar_core.observability import MetricUnit, metrics, observed
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.workflows import Workflows

settings = Settings.from_env()
repo = AvatarRepository(settings.table_name)
workflows = Workflows()
app = create_resolver()


@app.delete(
    "/v1/me",
    summary="Delete everything we hold of the caller, by a workflow; follow it on /v1/me/deletion",
    description=(
        "Every record and object of the caller, in the table and in both buckets (models, "
        "selfies, generations and avatars, face-avatar references and jobs, instant avatars, "
        "idempotency records, the event log), and running jobs are stopped. From now on the "
        "caller starts and uploads nothing (409). A second request while one runs answers "
        "the running one; after one failed, it starts again and finishes the job."
    ),
    responses=answers(HTTPStatus.ACCEPTED, "The deletion, running", UNAVAILABLE),
)
def delete_me() -> Response[DeletionOut]:
    record = deletion.request_deletion(repo, workflows, settings, caller(app))
    metrics.add_metric(name="OwnerDeletionsRequested", unit=MetricUnit.Count, value=1)
    return json_response(HTTPStatus.ACCEPTED, DeletionOut.of(record).model_dump(mode="json"))


@app.get(
    "/v1/me/deletion",
    summary="The caller's deletion: running, succeeded or failed, with what it deleted",
    description=(
        "The receipt of the last `DELETE /v1/me`, kept 30 days after it finished: no personal "
        "data beyond the caller's key."
    ),
    responses=answers(HTTPStatus.OK, "The deletion", NOT_FOUND),
)
def get_deletion() -> Response[DeletionOut]:
    record = deletion.get_deletion(repo, caller(app))
    return json_response(HTTPStatus.OK, DeletionOut.of(record).model_dump(mode="json"))


@observed
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
