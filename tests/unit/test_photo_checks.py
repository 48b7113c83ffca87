"""Promises of the photo checks: what would waste a training is refused with a reason a
person can act on, and good photos - real portraits among them - are not.

The thresholds are measured, on many more photos, by ``bench/selfie_checks.py``."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from uuid import uuid4

import boto3
import pytest
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from avatar_core.logic import models, photo_checks
from avatar_core.logic.images import ImageLimits, fit_reference, normalise_selfie
from avatar_core.logic.ingest import IngestResult, Outcome, ingest_upload, thresholds_from
from avatar_core.models.api import CreateModelRequest, RequestUploadsRequest, UploadFile
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage, selfie_upload_key
from local import photos

LIMITS = ImageLimits()
SETTINGS = Settings(table_name="avatars", uploads_bucket="uploads", results_bucket="results")
THRESHOLDS = thresholds_from(SETTINGS)
PORTRAITS = Path(__file__).resolve().parent.parent / "fixtures" / "photos"


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def png(image: Image.Image) -> bytes:
    buffer = BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def measured(data: bytes) -> photo_checks.PhotoMeasures:
    return photo_checks.measure(normalise_selfie(data, limits=LIMITS))


def refusal_of(data: bytes) -> str | None:
    return photo_checks.refusal(measured(data), THRESHOLDS)


def portrait(name: str) -> Image.Image:
    with Image.open(PORTRAITS / name) as opened:
        image = opened.convert("RGB")
    if min(image.size) < 320:  # Pillow's Grace Hopper is 128 px
        image = image.resize((320, 320), Image.Resampling.LANCZOS)
    return image


# --- each photo on its own ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut.png", "camera.png", "hopper.jpg"])
@pytest.mark.parametrize(
    "variant",
    [
        lambda image: image,
        ImageOps.mirror,
        lambda image: image.crop((0, 0, round(image.width * 0.85), image.height)),
        lambda image: ImageEnhance.Brightness(image).enhance(0.6),
        lambda image: ImageEnhance.Contrast(image).enhance(0.6),
    ],
    ids=["as-taken", "mirrored", "cropped", "darker", "flatter"],
)
def test_a_real_portrait_and_its_variants_pass_every_check(name: str, variant: object) -> None:
    assert callable(variant)
    assert refusal_of(jpeg(variant(portrait(name)))) is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_selfies_pass_every_check(seed: int) -> None:
    assert refusal_of(photos.selfie_jpeg(seed, size=(600, 800))) is None


def test_a_blurred_photo_is_refused_with_a_reason_a_person_can_act_on() -> None:
    reason = refusal_of(photos.blurred_selfie_jpeg(4, size=(600, 800)))

    assert reason == "the photo is blurred: take it again in better light"


def test_a_real_portrait_out_of_focus_is_refused_as_blurred() -> None:
    soft = portrait("astronaut.png").filter(ImageFilter.GaussianBlur(4))

    assert refusal_of(jpeg(soft)) == photo_checks.BLURRED


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (800, 800), (200, 190, 180)),
        ImageEnhance.Contrast(photos.selfie_image(5, (600, 800))).enhance(0.1),
        Image.merge("RGB", [Image.effect_noise((600, 600), 3)] * 3),
    ],
    ids=["blank", "washed-out", "grey-noise"],
)
def test_an_image_of_almost_one_colour_is_refused(image: Image.Image) -> None:
    assert refusal_of(jpeg(image)) == "the image is almost a single colour"


def test_a_fully_transparent_png_is_refused_not_accepted_as_a_white_selfie() -> None:
    clear = Image.new("RGBA", (600, 600), (0, 0, 0, 0))

    assert refusal_of(png(clear)) == "the image is mostly transparent: upload a photo"


def test_a_photo_mostly_faded_out_is_refused_as_mostly_transparent() -> None:
    faded = photos.selfie_image(6, (600, 600)).convert("RGBA")
    alpha = Image.new("L", faded.size, 10)
    alpha.paste(255, (250, 250, 350, 350))
    faded.putalpha(alpha)

    assert refusal_of(png(faded)) == photo_checks.MOSTLY_TRANSPARENT


def test_a_cut_out_portrait_on_transparency_is_a_good_selfie() -> None:
    result = normalise_selfie(photos.selfie_png(7, alpha=True), limits=LIMITS)

    assert 0 < result.transparent_share < THRESHOLDS.max_transparent_share
    assert photo_checks.refusal(photo_checks.measure(result), THRESHOLDS) is None


def test_a_face_reference_is_refused_when_transparent_or_blank_but_not_for_softness() -> None:
    def reference_refusal(data: bytes) -> str | None:
        fitted = fit_reference(data, limits=LIMITS)
        return photo_checks.reference_refusal(photo_checks.measure(fitted), THRESHOLDS)

    assert reference_refusal(png(Image.new("RGBA", (600, 600)))) == photo_checks.MOSTLY_TRANSPARENT
    assert reference_refusal(jpeg(Image.new("RGB", (600, 600), "white"))) == (
        photo_checks.SINGLE_COLOUR
    )
    assert reference_refusal(photos.blurred_selfie_jpeg(8, size=(600, 800))) is None
    assert reference_refusal(photos.selfie_png(9, alpha=True)) is None


# --- near-duplicates -------------------------------------------------------------------------


def test_a_perceptual_hash_is_sixteen_hex_digits_and_its_distance_counts_bits() -> None:
    hashed = measured(photos.selfie_jpeg(10, size=(600, 800))).perceptual_hash

    assert len(hashed) == 16 and int(hashed, 16) >= 0
    assert photo_checks.hash_distance(hashed, hashed) == 0
    assert photo_checks.hash_distance("0" * 16, "f" * 16) == 64


@pytest.mark.parametrize(
    "copy",
    [
        lambda image: Image.open(BytesIO(jpeg(image, quality=60))),
        lambda image: image.resize((image.width * 2 // 3, image.height * 2 // 3)),
        lambda image: ImageEnhance.Brightness(image).enhance(1.15),
        lambda image: image.crop((12, 16, image.width - 12, image.height - 16)),
    ],
    ids=["re-encoded", "resized", "brightened", "cropped"],
)
def test_a_copy_of_an_accepted_photo_is_refused_naming_it(copy: object) -> None:
    assert callable(copy)
    original = photos.selfie_image(11, (600, 800))
    first = measured(jpeg(original)).perceptual_hash
    other = measured(photos.selfie_jpeg(12, size=(600, 800))).perceptual_hash

    again = measured(jpeg(copy(original))).perceptual_hash
    reason = photo_checks.duplicate_refusal(
        again, [(1, other), (3, first)], THRESHOLDS.max_duplicate_distance
    )

    assert reason == "this photo is almost the same as selfie 3: use different angles"


def test_photos_of_different_people_are_not_duplicates() -> None:
    hashes = [
        measured(jpeg(portrait(name))).perceptual_hash
        for name in ("astronaut.png", "camera.png", "hopper.jpg")
    ] + [measured(photos.selfie_jpeg(seed, size=(600, 800))).perceptual_hash for seed in (1, 2)]

    for index, one in enumerate(hashes):
        others = [(position, h) for position, h in enumerate(hashes, start=1) if h != one]
        assert (
            photo_checks.duplicate_refusal(one, others, THRESHOLDS.max_duplicate_distance) is None
        ), index


# --- through ingest --------------------------------------------------------------------------


@pytest.fixture()
def storage(aws: None) -> Storage:
    boto3.client("s3").create_bucket(Bucket="uploads")
    return Storage("uploads", "results")


def upload_one(
    repo: AvatarRepository, storage: Storage, owner: str, model_id: str, data: bytes
) -> tuple[IngestResult, str]:
    """One slot requested, the file put where its presigned POST would, and ingested."""
    request = RequestUploadsRequest(files=[UploadFile(content_type="image/jpeg")])
    (slot,) = models.request_selfie_uploads(repo, storage, SETTINGS, owner, model_id, request)
    key = selfie_upload_key(owner, model_id, slot.selfie_id)
    boto3.client("s3").put_object(Bucket="uploads", Key=key, Body=data)
    return ingest_upload(key, repo, storage, SETTINGS), slot.selfie_id


def test_the_same_photo_uploaded_again_is_refused_naming_the_first(
    repo: AvatarRepository, storage: Storage
) -> None:
    owner = f"user-{uuid4().hex[:8]}"
    model = models.create_model(repo, SETTINGS, owner, CreateModelRequest(subject="woman"))
    photo = photos.selfie_image(13, (600, 800))

    first, first_id = upload_one(repo, storage, owner, model.model_id, jpeg(photo))
    second, _ = upload_one(
        repo, storage, owner, model.model_id, photos.selfie_jpeg(14, size=(600, 800))
    )
    again, again_id = upload_one(repo, storage, owner, model.model_id, jpeg(photo, quality=70))

    assert (first.outcome, second.outcome) == (Outcome.ACCEPTED, Outcome.ACCEPTED)
    assert again.outcome is Outcome.REJECTED
    assert again.reason == "this photo is almost the same as selfie 1: use different angles"
    accepted = repo.get_selfie(owner, model.model_id, first_id)
    assert accepted is not None and accepted.perceptual_hash is not None
    refused = repo.get_selfie(owner, model.model_id, again_id)
    assert refused is not None and refused.perceptual_hash is None
    assert [
        position for position, _ in repo.list_accepted_selfie_hashes(owner, model.model_id)
    ] == [
        1,
        2,
    ]
