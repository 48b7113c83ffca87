"""S3 ObjectCreated → validate and normalise each uploaded selfie or face reference. Wiring only."""

from __future__ import annotations

from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_core.logic.ingest import Outcome, ingest_upload
from avatar_core.observability import MetricUnit, logger, metrics, observed
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage

settings = Settings.from_env()
repo = AvatarRepository(settings.table_name)
storage = Storage(settings.uploads_bucket, settings.results_bucket)


@observed
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    results = []
    for record in event.records:
        key = unquote_plus(record.s3.get_object.key)
        if record.s3.bucket.name != settings.uploads_bucket:
            logger.warning(
                "event for another bucket ignored", extra={"bucket": record.s3.bucket.name}
            )
            continue
        result = ingest_upload(key, repo, storage, settings)
        if result.outcome is Outcome.UNEXPECTED_KEY:
            logger.warning("upload outside the expected key layout ignored", extra={"key": key})
        else:
            logger.info("upload ingested", extra={"key": key, "outcome": result.outcome.value})
        metrics.add_metric(name=f"Uploads_{result.outcome.value}", unit=MetricUnit.Count, value=1)
        results.append({"key": key, "outcome": result.outcome.value, "reason": result.reason or ""})
    return {"results": results}
