"""Turning an uploaded object into an accepted or rejected selfie.

A selfie that decodes is still refused when it would waste a training (``photo_checks``):
mostly transparent, almost a single colour, blurred, or a near-duplicate of a selfie of the
same model already accepted. The duplicate check reads the accepted selfies' hashes and has
no lock: near-duplicates of each other settled at the same moment (in practice, sent in one
batch) can all pass. That costs redundant photos in a training of 5-30, not a failed
training, and is cheaper than serialising every model's uploads behind a lock; a copy
uploaded after one was accepted is refused.

Called once per S3 ObjectCreated record. Safe under duplicate and out-of-order delivery:
only a pending selfie can be settled, and settling is a conditional write, so a repeated
event changes nothing. Nothing half-written is left behind: a rejected original is deleted
(after the rejection is recorded, so that a retry after a failed delete finds it rejected and
deletes again), so is a file uploaded again to a slot already rejected, and a normalised copy
whose record could not be written as accepted is deleted again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from avatar_core.errors import ImageRejected
from avatar_core.logic import photo_checks
from avatar_core.logic.images import ImageLimits, fit_reference, normalise_selfie
from avatar_core.logic.selfie_rules import thresholds_from
from avatar_core.models.records import SelfieStatus
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import (
    Storage,
    fitted_face_key,
    normalised_selfie_key,
    parse_face_key,
    parse_selfie_key,
)


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    UNEXPECTED_KEY = "unexpected_key"
    NO_SLOT = "no_slot"
    GONE = "gone"


@dataclass(frozen=True)
class IngestResult:
    key: str
    outcome: Outcome
    reason: str | None = None


def limits_from(settings: Settings) -> ImageLimits:
    return ImageLimits(
        max_bytes=settings.upload_max_bytes,
        max_pixels=settings.max_image_pixels,
        min_side=settings.min_image_side,
    )


def ingest_selfie(
    key: str, repo: AvatarRepository, storage: Storage, settings: Settings
) -> IngestResult:
    ref = parse_selfie_key(key)
    if ref is None:
        return IngestResult(key, Outcome.UNEXPECTED_KEY)
    selfie = repo.get_selfie(ref.owner, ref.model_id, ref.selfie_id)
    if selfie is None:
        # An upload for a slot that does not exist (its model was deleted): biometric data
        # we have no use for, so it goes.
        storage.delete_upload(key)
        return IngestResult(key, Outcome.NO_SLOT)
    if selfie.status is not SelfieStatus.PENDING:
        if selfie.status is SelfieStatus.REJECTED:
            # Uploaded again to a refused slot, or a retry after the delete below failed:
            # nothing will ever use it.
            storage.delete_upload(key)
        return IngestResult(key, Outcome.DUPLICATE)

    try:
        data = storage.read_upload(key, settings.upload_max_bytes)
        if data is None:
            return IngestResult(key, Outcome.GONE)
        image = normalise_selfie(data, limits=limits_from(settings), side=settings.normalised_side)
        measures = photo_checks.measure(image)
        _refuse_wasted_training(measures, repo, ref.owner, ref.model_id, settings)
    except ImageRejected as rejection:
        settled = repo.settle_selfie(selfie, SelfieStatus.REJECTED, reason=rejection.message)
        storage.delete_upload(key)
        outcome = Outcome.REJECTED if settled else Outcome.DUPLICATE
        return IngestResult(key, outcome, rejection.message)

    target = normalised_selfie_key(ref.owner, ref.model_id, ref.selfie_id)
    storage.put_upload_derivative(target, image.data, image.content_type)
    settled = repo.settle_selfie(
        selfie,
        SelfieStatus.ACCEPTED,
        normalised_key=target,
        width=image.source_width,
        height=image.source_height,
        frames_in_file=image.frames_in_file,
        perceptual_hash=measures.perceptual_hash,
    )
    if not settled:
        current = repo.get_selfie(ref.owner, ref.model_id, ref.selfie_id)
        if current is None or current.status is not SelfieStatus.ACCEPTED:
            # The slot went, or another upload to it was refused meanwhile: the copy just
            # written belongs to no accepted selfie. (If it was accepted meanwhile, the copy
            # at this key is that selfie's.)
            storage.delete_upload(target)
        if current is None:
            return IngestResult(key, Outcome.NO_SLOT)
        return IngestResult(key, Outcome.DUPLICATE)
    return IngestResult(key, Outcome.ACCEPTED)


def _refuse_wasted_training(
    measures: photo_checks.PhotoMeasures,
    repo: AvatarRepository,
    owner: str,
    model_id: str,
    settings: Settings,
) -> None:
    """The photo's own faults first; only a photo worth keeping is compared with the rest."""
    thresholds = thresholds_from(settings)
    reason = photo_checks.refusal(measures, thresholds) or photo_checks.duplicate_refusal(
        measures.perceptual_hash,
        repo.list_accepted_selfie_hashes(owner, model_id),
        thresholds.max_duplicate_distance,
    )
    if reason is not None:
        raise ImageRejected(reason)


def ingest_face_reference(
    key: str, repo: AvatarRepository, storage: Storage, settings: Settings
) -> IngestResult:
    """A face-avatar reference: fitted inside 1536×1536 (never upscaled); the original goes."""
    parsed = parse_face_key(key)
    if parsed is None:
        return IngestResult(key, Outcome.UNEXPECTED_KEY)
    owner, image_id = parsed
    image = repo.get_face_image(owner, image_id)
    if image is None:
        storage.delete_upload(key)
        return IngestResult(key, Outcome.NO_SLOT)
    if image.status is not SelfieStatus.PENDING:
        # The original goes whatever happened to it: this is a file uploaded again to a
        # settled slot, or a retry after the delete below failed.
        storage.delete_upload(key)
        return IngestResult(key, Outcome.DUPLICATE)
    try:
        data = storage.read_upload(key, settings.upload_max_bytes)
        if data is None:
            return IngestResult(key, Outcome.GONE)
        fitted = fit_reference(
            data, limits=limits_from(settings), max_side=settings.face_reference_max_side
        )
        reason = photo_checks.reference_refusal(
            photo_checks.measure(fitted), thresholds_from(settings)
        )
        if reason is not None:
            raise ImageRejected(reason)
    except ImageRejected as rejection:
        settled = repo.settle_face_image(image, SelfieStatus.REJECTED, reason=rejection.message)
        storage.delete_upload(key)
        return IngestResult(
            key, Outcome.REJECTED if settled else Outcome.DUPLICATE, rejection.message
        )
    target = fitted_face_key(owner, image_id)
    storage.put_upload_derivative(target, fitted.data, fitted.content_type)
    settled = repo.settle_face_image(
        image, SelfieStatus.ACCEPTED, fitted_key=target, width=fitted.width, height=fitted.height
    )
    if not settled:
        current = repo.get_face_image(owner, image_id)
        if current is None or current.status is not SelfieStatus.ACCEPTED:
            storage.delete_upload(target)  # the fitted copy belongs to no accepted reference
    storage.delete_upload(key)
    return IngestResult(key, Outcome.ACCEPTED if settled else Outcome.DUPLICATE)


def ingest_upload(
    key: str, repo: AvatarRepository, storage: Storage, settings: Settings
) -> IngestResult:
    """Route an uploaded object by the prefix it landed under."""
    if key.startswith("faces/"):
        return ingest_face_reference(key, repo, storage, settings)
    return ingest_selfie(key, repo, storage, settings)
