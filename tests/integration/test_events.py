"""The app is told: every status change of a journey reaches the stack's bus and the owner's
event log, the same documents, in order per model and job, and nobody else's log."""

from __future__ import annotations

import pytest

from local import photos
from local.client import ApiClient, EventFeed, wait_until
from local.stack import LocalStack
from tests.support.events import BusTap, schema_violations
from tests.support.journeys import trained_model, upload_and_settle

pytestmark = pytest.mark.integration


def test_a_training_and_a_generation_tell_every_step_on_the_bus_and_in_the_log(
    stack: LocalStack, client: ApiClient, other_client: ApiClient, bus: BusTap
) -> None:
    feed = EventFeed(client)
    model_id = trained_model(client, stack, seed=70)
    response = client.create_generation(model_id, [{"style": "anime", "count": 2}])
    assert response.status_code == 202, response.text
    generation_id = response.json()["generation_id"]

    done = feed.wait_for("generation.succeeded", generation_id=generation_id)

    types = [e["type"] for e in feed.seen]
    model_steps = [t for t in types if t.startswith("model.")]
    assert model_steps == ["model.created", "model.training", "model.ready"]
    assert types.count("selfie.accepted") == 5
    job_steps = [e["type"] for e in feed.seen if e.get("generation_id") == generation_id]
    assert job_steps == [
        "generation.queued",
        "generation.running",
        "avatar.stored",
        "avatar.stored",
        "generation.succeeded",
    ]
    assert [a["style"] for a in done["avatars"]] == ["anime", "anime"]
    assert all(not schema_violations(e) for e in feed.seen)

    # the bus carried the same documents, typed by detail-type, from the stack's source
    stack.wait_for_events()
    on_bus = {
        envelope["detail"]["event_id"]: envelope
        for envelope in bus.drain() + bus.received
        if envelope["detail"]["owner"] == feed.seen[0]["owner"]
    }
    for event in feed.seen:
        envelope = on_bus[event["event_id"]]
        assert envelope["detail"] == event
        assert envelope["detail-type"] == event["type"]
        assert envelope["source"] == bus.source

    # another owner's log holds none of it
    assert EventFeed(other_client).read() == []


def test_a_rejected_selfie_says_what_to_change(stack: LocalStack, client: ApiClient) -> None:
    feed = EventFeed(client)
    model_id = client.create_model("woman")["model_id"]
    tiny = photos.selfie_jpeg(1, size=(100, 100))

    [selfie] = upload_and_settle(client, model_id, [("image/jpeg", tiny)])

    event = feed.wait_for("selfie.rejected", selfie_id=selfie["selfie_id"])
    assert event["reason"] == selfie["reason"]
    assert event["model_id"] == model_id


def test_a_cursor_from_the_log_is_checked(client: ApiClient) -> None:
    response = client.call("GET", "/events", params={"since": "not-a-cursor"})
    assert response.status_code == 422
    assert response.json()["field"] == "since"


def test_reading_the_log_again_from_its_cursor_gives_nothing_twice(
    stack: LocalStack, client: ApiClient
) -> None:
    feed = EventFeed(client)
    model_id = client.create_model("man")["model_id"]
    feed.wait_for("model.created", model_id=model_id)
    client.delete_model(model_id)
    feed.wait_for("model.deleted", model_id=model_id)

    ids = [e["event_id"] for e in feed.seen]
    assert len(ids) == len(set(ids)) == 2
    assert wait_until(feed.read, lambda new: new == [], timeout=5) == []
