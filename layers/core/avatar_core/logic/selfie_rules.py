"""What a selfie must be, in words and numbers: the refusals the photo checks give, the
thresholds they apply (from Settings), and the rules ``GET /v1/selfie-rules`` shows a client
before it uploads.

No Pillow here: the API answers the rules without importing the decoder that applies them
(``photo_checks`` and ``images``, which only the ingest function runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from avatar_core.models.api import ImageContentType, SelfieCheck, SelfieRulesOut
from avatar_core.settings import Settings

MOSTLY_TRANSPARENT = "the image is mostly transparent: upload a photo"
SINGLE_COLOUR = "the image is almost a single colour"
BLURRED = "the photo is blurred: take it again in better light"


@dataclass(frozen=True)
class CheckThresholds:
    max_transparent_share: float  # of pixels with alpha below images.TRANSPARENT_ALPHA
    min_grey_stddev: float  # of the normalised image's grey levels
    min_sharpness: float  # variance of the Laplacian of the normalised grey image
    max_duplicate_distance: int  # differing bits of the dHash, out of 64


def duplicate_message(position: int | str) -> str:
    return f"this photo is almost the same as selfie {position}: use different angles"


def thresholds_from(settings: Settings) -> CheckThresholds:
    return CheckThresholds(
        max_transparent_share=settings.selfie_max_transparent_share,
        min_grey_stddev=settings.selfie_min_grey_stddev,
        min_sharpness=settings.selfie_min_sharpness,
        max_duplicate_distance=settings.selfie_duplicate_max_distance,
    )


def selfie_rules(settings: Settings) -> SelfieRulesOut:
    """The rules ingest applies, in the words and numbers a client can show before upload."""
    thresholds = thresholds_from(settings)
    transparent = round(thresholds.max_transparent_share * 100)
    return SelfieRulesOut(
        content_types=list(get_args(ImageContentType)),
        max_bytes=settings.upload_max_bytes,
        min_side=settings.min_image_side,
        max_pixels=settings.max_image_pixels,
        normalised_side=settings.normalised_side,
        min_selfies_for_training=settings.min_selfies_for_training,
        max_selfies_per_model=settings.max_selfies_per_model,
        checks=[
            SelfieCheck(
                name="transparency",
                rule=f"at most {transparent}% of the picture may be transparent",
                refusal=MOSTLY_TRANSPARENT,
            ),
            SelfieCheck(
                name="single_colour",
                rule="the picture must show more than a plain colour or a faint wash",
                refusal=SINGLE_COLOUR,
            ),
            SelfieCheck(
                name="blur",
                rule="the photo must be in focus, with visible detail such as hair and eyes",
                refusal=BLURRED,
            ),
            SelfieCheck(
                name="near_duplicate",
                rule=(
                    "each photo must differ from the model's accepted selfies: another angle, "
                    "expression or light, not the same shot re-saved, resized or cropped"
                ),
                refusal=duplicate_message("N"),
            ),
        ],
    )
