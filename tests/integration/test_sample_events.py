"""Every sample event in events/ (the ones `sam local invoke -e` takes) runs against its
deployed function on the local stack and gets the answer its shape deserves."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from avatar_core.ids import MODEL, is_id
from local.stack import LocalStack

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).resolve().parents[2] / "events"

# event file -> (function, what a correct answer looks like)
EXPECTED: dict[str, tuple[str, Any]] = {
    "models_api_health.json": ("ModelsApiFunction", {"statusCode": 200}),
    "models_api_create_model.json": ("ModelsApiFunction", {"statusCode": 201}),
    # the sample user owns no such model: 404, exactly like another owner's model
    "models_api_request_selfie_uploads.json": ("ModelsApiFunction", {"statusCode": 404}),
    "training_api_start_training.json": ("TrainingApiFunction", {"statusCode": 404}),
    # the sample user has no such reference image
    "instant_avatars_api_create_job.json": ("InstantAvatarsApiFunction", {"statusCode": 404}),
    "ingest_selfie_uploaded.json": ("IngestFunction", {"outcome": "no_slot"}),
    "train_submit.json": ("TrainSubmitFunction", {"errorType": "ModelGone"}),
    "train_check.json": ("TrainCheckFunction", {"errorType": "ModelGone"}),
    "train_record_ready.json": ("TrainRecordFunction", {"errorType": "ModelGone"}),
    "train_record_failed.json": ("TrainRecordFunction", {"reason": "Not enough credits"}),
    "selfie_cleanup.json": ("SelfieCleanupFunction", {"deleted": 0}),
    # the sample user has no such face-avatar job: nothing to release
    "reference_cleanup.json": ("ReferenceCleanupFunction", {"deleted": False}),
    # an operator stopped the training of a model the sample user does not have
    "reconcile_execution_ended.json": (
        "ReconcileFunction",
        {"action": "unchanged", "detail": "the model was deleted", "execution_arn": None},
    ),
    # a model's training finished: its event goes to the bus and the log, nothing fails
    "event_publisher_model_ready.json": ("EventPublisherFunction", {"batchItemFailures": []}),
    "events_api_list_events.json": ("EventsApiFunction", {"statusCode": 200}),
    "me_api_usage.json": ("MeApiFunction", {"statusCode": 200}),
    "generations_api_selfie_rules.json": ("GenerationsApiFunction", {"statusCode": 200}),
    # one signed delivery to the session's receiver, which answers 200
    "webhook_delivery.json": ("WebhookDeliveryFunction", {"batchItemFailures": []}),
    # the sample user asked for no deletion of their data
    "deletion_api_get_deletion.json": ("DeletionApiFunction", {"statusCode": 404}),
    # the last phase of a deletion: the sample user has no objects, so it is done
    "delete_owner_page.json": (
        "DeletePageFunction",
        {
            "owner": "sample-user",
            "deletion_id": "del_01JDZ3C7K9M2V5X8Q4T6W0RB1E",
            "sweep": 1,
            "phase": "objects",
            "prefix_index": 7,
            "done": True,
            "pages": 4,
            "wait_seconds": 600,
        },
    ),
    "delete_owner_record_failed.json": (
        "DeletionRecordFunction",
        {"reason": "send DELETE /v1/me again"},
    ),
    # the avatar-job workflow's tasks, each on a job the sample user does not have
    "face_avatars_api_list_jobs.json": ("FaceAvatarsApiFunction", {"statusCode": 200}),
    "generation_submit.json": ("GenerationSubmitFunction", {"errorType": "JobGone"}),
    "generation_check.json": ("GenerationCheckFunction", {"errorType": "JobGone"}),
    "face_submit.json": ("FaceSubmitFunction", {"errorType": "JobGone"}),
    "face_check.json": ("FaceCheckFunction", {"errorType": "JobGone"}),
    "instant_submit.json": ("InstantSubmitFunction", {"errorType": "JobGone"}),
    "instant_check.json": ("InstantCheckFunction", {"errorType": "JobGone"}),
    "result_copy.json": ("ResultCopyFunction", {"errorType": "JobGone"}),
    "job_record.json": ("JobRecordFunction", {"reason": "could not find a face"}),
    # the sweep answers what it looked at; on a fresh stack nothing is overdue
    "sweep_scheduled.json": ("SweepFunction", {"keys": {"examined", "running", "reconciled"}}),
}


def test_every_sample_event_is_covered() -> None:
    assert {p.name for p in EVENTS.glob("*.json")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_event_runs_against_its_function(stack: LocalStack, name: str) -> None:
    function, expected = EXPECTED[name]
    event = json.loads((EVENTS / name).read_text())
    if name == "ingest_selfie_uploaded.json":
        event["Records"][0]["s3"]["bucket"]["name"] = stack.output("UploadsBucketName")
    if name == "webhook_delivery.json":  # sent just now, not days ago (past 24 h: given up)
        event["Records"][0]["attributes"]["SentTimestamp"] = str(int(time.time() * 1000))
    response = boto3.client("lambda").invoke(
        FunctionName=stack.stack.function_name(function), Payload=json.dumps(event).encode()
    )
    payload = json.loads(response["Payload"].read())
    if "statusCode" in expected:
        assert payload["statusCode"] == expected["statusCode"], payload
        if expected["statusCode"] == 201:
            assert is_id(MODEL, json.loads(payload["body"])["model_id"])
    elif "outcome" in expected:
        assert payload["results"][0]["outcome"] == expected["outcome"]
    elif "errorType" in expected:
        assert response.get("FunctionError")
        assert payload["errorType"] == expected["errorType"]
    elif "keys" in expected:
        assert expected["keys"] <= set(payload), payload
    elif "reason" in expected:
        assert expected["reason"] in payload["reason"]
    else:
        assert payload == expected
