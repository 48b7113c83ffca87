"""Turning an uploaded object into an accepted or rejected selfie.

Called once per S3 ObjectCreated record. Safe under duplicate and out-of-order delivery:
only a pending selfie can be settled, and settling is a conditional write, so a repeated
event changes nothing. Nothing half-written is left behind: a rejected original is deleted,
and a normalised copy whose record could not be written is deleted again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from avatar_core.errors import ImageRejected
from avatar_core.logic.images import ImageLimits, normalise_selfie
from avatar_core.models.records import SelfieStatus
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import Storage, normalised_selfie_key, parse_selfie_key


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
        return IngestResult(key, Outcome.DUPLICATE)

    try:
        data = storage.read_upload(key, settings.upload_max_bytes)
        if data is None:
            return IngestResult(key, Outcome.GONE)
        image = normalise_selfie(data, limits=limits_from(settings), side=settings.normalised_side)
    except ImageRejected as rejection:
        storage.delete_upload(key)
        settled = repo.settle_selfie(selfie, SelfieStatus.REJECTED, reason=rejection.message)
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
    )
    if not settled:
        current = repo.get_selfie(ref.owner, ref.model_id, ref.selfie_id)
        if current is None:
            storage.delete_upload(target)
            return IngestResult(key, Outcome.NO_SLOT)
        return IngestResult(key, Outcome.DUPLICATE)
    return IngestResult(key, Outcome.ACCEPTED)
