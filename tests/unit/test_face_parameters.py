"""The Face Avatar parameters: the seed's ranges, strict types, and the prompt rule."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from avatar_core.logic.face_avatars import DEFAULT_PROMPT, effective_prompt, resolved_parameters
from avatar_core.models.api import CreateFaceAvatarRequest

BOUNDS = {
    "batch": (1, 8),
    "width": (256, 1536),
    "height": (256, 1536),
    "num_inference_steps": (1, 50),
    "guidance_scale": (1, 30),
}


def request(**fields: Any) -> CreateFaceAvatarRequest:
    return CreateFaceAvatarRequest.model_validate({"image_id": "img_x", **fields})


@pytest.mark.parametrize("field", sorted(BOUNDS))
def test_each_bound_is_accepted_and_one_step_beyond_is_refused(field: str) -> None:
    low, high = BOUNDS[field]
    step = 0.5 if field == "guidance_scale" else 1
    assert getattr(request(**{field: low}), field) == low
    assert getattr(request(**{field: high}), field) == high
    for beyond in (low - step, high + step):
        with pytest.raises(ValidationError) as refused:
            request(**{field: beyond})
        assert refused.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch", "4"),
        ("batch", 2.0),
        ("batch", True),
        ("width", "512"),
        ("guidance_scale", "7.5"),
        ("remove_background", "yes"),
        ("remove_background", 1),
        ("bg_color", "white"),
        ("bg_color", "#FFF"),
        ("bg_color", "#GGGGGG"),
        ("gender", "robot"),
        ("prompt", ""),
        ("prompt", "x" * 1001),
        ("surprise", 1),
    ],
)
def test_wrong_types_and_shapes_are_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        request(**{field: value})
    assert refused.value.errors()[0]["loc"][0] == field


def test_the_defaults_are_the_documented_ones() -> None:
    defaults = request()
    assert (defaults.batch, defaults.width, defaults.height) == (4, 512, 512)
    assert (defaults.num_inference_steps, defaults.guidance_scale) == (30, 7.5)
    assert (defaults.remove_background, defaults.bg_color) == (False, "#000000")
    assert defaults.prompt is None and defaults.gender is None


@pytest.mark.parametrize(
    ("gender", "word"),
    [("male", "man"), ("female", "woman"), ("non_binary", "person"), (None, "person")],
)
def test_no_prompt_means_the_seed_default_with_the_gender_word(
    gender: str | None, word: str
) -> None:
    prompt = effective_prompt(None, gender)
    assert prompt == DEFAULT_PROMPT.replace("{gender_word}", word)
    assert f"pleasurable nice {word}, looking at camera" in prompt
    assert prompt.startswith("SFW Content, black plain background, joyous dating profile")


@pytest.mark.parametrize("gender", ["male", "female", "non_binary", None])
def test_a_custom_prompt_replaces_the_default_and_gets_no_gender(gender: str | None) -> None:
    assert effective_prompt("a knight in shining armour", gender) == "a knight in shining armour"


def test_null_prompt_is_the_same_as_no_prompt() -> None:
    explicit_null = resolved_parameters(request(prompt=None, gender="female"), "app")
    absent = resolved_parameters(request(gender="female"), "app")
    assert explicit_null == absent
    assert "nice woman" in absent["prompt"]


def test_the_resolved_parameters_are_exactly_the_upstream_fields() -> None:
    resolved = resolved_parameters(request(batch=2, gender="male"), "face-avatar")
    assert resolved["app_id"] == "face-avatar"
    assert "image_id" not in resolved
    assert resolved["batch"] == 2 and resolved["gender"] == "male"
