"""Listing cursors only ever continue the caller's own listing; anything else is the
client's mistake (422), never a query DynamoDB refuses (500)."""

from __future__ import annotations

import base64
import json

import pytest

from avatar_core import ids
from avatar_core.errors import InvalidRequest
from avatar_core.models.records import GenerationRecord, ModelRecord
from avatar_core.store.repository import AvatarRepository

OWNER = "cursor-owner"


def cursor(key: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def a_model(repo: AvatarRepository) -> str:
    stamp = ids.now_iso()
    model_id = ids.new_id(ids.MODEL)
    repo.create_model(
        ModelRecord(
            owner=OWNER, model_id=model_id, subject="cat", created_at=stamp, updated_at=stamp
        )
    )
    return model_id


def a_generation(repo: AvatarRepository, model_id: str) -> str:
    stamp = ids.now_iso()
    generation_id = ids.new_id(ids.GENERATION)
    repo.create_job(
        GenerationRecord(
            owner=OWNER,
            generation_id=generation_id,
            model_id=model_id,
            created_at=stamp,
            updated_at=stamp,
        )
    )
    return generation_id


def test_a_cursor_the_listing_handed_out_continues_it(repo: AvatarRepository) -> None:
    models = sorted(a_model(repo) for _ in range(3))
    generations = sorted(a_generation(repo, models[0]) for _ in range(3))

    first, more = repo.list_models(OWNER, 2, None)
    rest, end = repo.list_models(OWNER, 2, more)
    assert [m.model_id for m in first + rest] == models[::-1]
    assert end is None

    first_jobs, more_jobs = repo.list_generations(OWNER, models[0], 2, None)
    rest_jobs, _ = repo.list_generations(OWNER, models[0], 2, more_jobs)
    assert [g.generation_id for g in first_jobs + rest_jobs] == generations[::-1]


@pytest.mark.parametrize(
    "key",
    [
        {"PK": f"OWNER#{OWNER}"},
        {"PK": f"OWNER#{OWNER}", "SK": "MODEL#x", "extra": "y"},
        {"PK": f"OWNER#{OWNER}", "SK": "FACE#x"},
        {"PK": "OWNER#someone-else", "SK": "MODEL#x"},
        {"PK": f"OWNER#{OWNER}", "SK": 1},
        {"PK": f"OWNER#{OWNER}", "GSI1PK": "x"},
        ["PK", "SK"],
    ],
)
def test_a_crafted_model_cursor_is_refused(repo: AvatarRepository, key: object) -> None:
    with pytest.raises(InvalidRequest) as refused:
        repo.list_models(OWNER, 10, cursor(key))
    assert refused.value.field == "cursor"


def test_a_generation_cursor_must_be_of_that_model(repo: AvatarRepository) -> None:
    model_id, other_model = a_model(repo), a_model(repo)
    for _ in range(2):
        a_generation(repo, other_model)
    _, other_cursor = repo.list_generations(OWNER, other_model, 1, None)
    incomplete = {"PK": f"OWNER#{OWNER}", "GSI1PK": f"MODEL#{OWNER}#{model_id}"}
    for crafted in (other_cursor, cursor(incomplete)):
        with pytest.raises(InvalidRequest):
            repo.list_generations(OWNER, model_id, 10, crafted)
