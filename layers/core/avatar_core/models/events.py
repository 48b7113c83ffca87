"""What we tell the app: one event per status change, the same document on every channel.

An event's ``detail`` (EventBridge), ``data`` (a webhook's body, per Standard Webhooks) and
an item of ``GET /v1/events`` are one :class:`Event`. Ids, never URLs: a presigned URL
would expire in whatever log keeps the event, so a client asks the API for fresh ones.

``version`` changes only for a change a consumer could trip on (a field removed or its
meaning changed); new optional fields keep it. Each type's JSON Schema is generated from
these models into ``docs/events/`` (``make schemas``), and a test keeps the two in step.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EVENT_VERSION: Literal["1"] = "1"


class Subject(StrEnum):
    """What an event is about: the part of its type before the dot."""

    MODEL = "model"
    SELFIE = "selfie"
    FACE_IMAGE = "face_image"
    GENERATION = "generation"
    FACE_AVATAR = "face_avatar"
    INSTANT_AVATAR = "instant_avatar"
    AVATAR = "avatar"
    ACCOUNT = "account"


# Every event type, with what it means to an app builder (in the schemas and the README).
EVENT_TYPES: dict[str, str] = {
    "model.created": "A model was created; it collects selfies.",
    "model.training": "Training started: the selfies were handed to the provider's training.",
    "model.ready": "Training finished: the model can generate avatars.",
    "model.failed": "Training failed; `reason` says why and whether it can be trained again.",
    "model.collecting": "A training could not be started and the model is as before, "
    "collecting selfies; nothing was charged.",
    "model.cancelled": "Its owner cancelled the training before the selfies were sent to the "
    "provider; nothing was charged, and it can be trained again until `retry_until`.",
    "model.deleted": "The model and its selfies, generations and avatars were deleted.",
    "selfie.accepted": "An uploaded selfie passed the checks and was normalised.",
    "selfie.rejected": "An uploaded selfie was refused; `reason` says what to change.",
    "face_image.accepted": "An uploaded face reference passed the checks.",
    "face_image.rejected": "An uploaded face reference was refused; `reason` says why.",
    **{
        f"{subject}.{status}": text.format(job=job)
        for subject, job in (
            ("generation", "generation"),
            ("face_avatar", "face-avatar batch"),
            ("instant_avatar", "instant-avatar job"),
        )
        for status, text in (
            ("queued", "A {job} was accepted and waits for its workflow."),
            ("running", "The provider accepted the {job}: it is paid work from now on."),
            ("succeeded", "The {job} finished; `avatars` lists every stored image."),
            ("failed", "The {job} failed; `reason` says why and whether it was charged."),
            (
                "cancelled",
                "Its owner cancelled the {job} before it was sent to the provider; "
                "nothing was charged.",
            ),
            ("deleted", "The {job} and its avatars were deleted."),
        )
    },
    "avatar.stored": "One avatar was copied into our storage (one event per image).",
    "account.deletion_running": "DELETE /v1/me: deleting everything of the owner started; "
    "from now on the owner's new work is refused. No event-log entry (GET /v1/events) is "
    "written for this owner any more: the bus and webhooks carry the rest.",
    "account.deletion_succeeded": "Everything of the owner was deleted, in the table and in "
    "both buckets; only the deletion's receipt is kept (30 days).",
    "account.deletion_failed": "The deletion failed part-way; `reason` says why. Sending "
    "DELETE /v1/me again finishes it.",
}


def _absent(value: object) -> bool:
    return value is None


class _Document(BaseModel):
    # validators built on first use, not at import (see models/api.py)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class AvatarSummary(_Document):
    """An avatar as events tell it: where to find it through the API, never a URL."""

    avatar_id: str
    index: int = Field(ge=0)
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    size: int = Field(ge=0, description="bytes")
    content_type: str
    style: str | None = Field(default=None, exclude_if=_absent)


class Event(_Document):
    version: Literal["1"] = EVENT_VERSION
    event_id: str = Field(
        pattern=r"^evt_[0-9A-HJKMNP-TV-Z]{26}$",
        description="Stable across retries and channels: deduplicate on it",
    )
    type: str = Field(description="`<subject>.<what happened>`, e.g. `model.ready`")
    occurred_at: str = Field(description="When the record changed (ISO 8601, UTC)")
    owner: str = Field(description="The owner's id, as in the API's keys")
    status: str | None = Field(
        default=None,
        exclude_if=_absent,
        description="The record's status after the change; absent once deleted",
    )
    reason: str | None = Field(
        default=None, exclude_if=_absent, description="Why it failed or was refused"
    )
    model_id: str | None = Field(default=None, exclude_if=_absent)
    selfie_id: str | None = Field(default=None, exclude_if=_absent)
    image_id: str | None = Field(default=None, exclude_if=_absent)
    generation_id: str | None = Field(default=None, exclude_if=_absent)
    job_id: str | None = Field(
        default=None, exclude_if=_absent, description="A face-avatar or instant-avatar job"
    )
    deletion_id: str | None = Field(
        default=None, exclude_if=_absent, description="The owner's deletion (DELETE /v1/me)"
    )
    avatars: list[AvatarSummary] | None = Field(
        default=None, exclude_if=_absent, description="A finished job's stored avatars, in order"
    )
    avatar: AvatarSummary | None = Field(
        default=None, exclude_if=_absent, description="`avatar.stored` only"
    )

    @property
    def subject(self) -> Subject:
        return Subject(self.type.split(".", 1)[0])

    def document(self) -> dict[str, Any]:
        """The JSON every channel carries: absent fields left out, not null."""
        return self.model_dump(mode="json")

    def group(self) -> str:
        """What orders it: events of one model (and its selfies), job or image stay in order."""
        for key in ("generation_id", "job_id", "image_id", "model_id"):
            value = getattr(self, key)
            if value:
                return f"{self.owner}/{value}"
        return self.owner


# The ids each subject's events always carry; the schemas require them.
_REQUIRED_IDS: dict[Subject, tuple[str, ...]] = {
    Subject.MODEL: ("model_id",),
    Subject.SELFIE: ("model_id", "selfie_id"),
    Subject.FACE_IMAGE: ("image_id",),
    Subject.GENERATION: ("generation_id", "model_id"),
    Subject.FACE_AVATAR: ("job_id", "image_id"),
    Subject.INSTANT_AVATAR: ("job_id", "image_id"),
    Subject.ACCOUNT: ("deletion_id",),
}


def event_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema (2020-12) of one event type's document."""
    subject = Subject(event_type.split(".", 1)[0])
    what = event_type.split(".", 1)[1]
    schema = Event.model_json_schema(mode="validation")
    properties = schema["properties"]
    # absent, never null: the documents leave out what they do not carry
    for prop in properties.values():
        options = prop.pop("anyOf", None)
        if options:
            kept = [o for o in options if o.get("type") != "null"]
            prop.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
        prop.pop("default", None)
    properties["type"] = {"const": event_type, "description": properties["type"]["description"]}
    required = ["version", "event_id", "type", "occurred_at", "owner"]
    if subject is Subject.AVATAR:
        required += ["avatar", "status"]
        allowed_ids = {"generation_id", "job_id", "model_id", "image_id"}
    else:
        required += list(_REQUIRED_IDS[subject])
        allowed_ids = set(_REQUIRED_IDS[subject])
        if what != "deleted":
            required.append("status")
            properties["status"] = {**properties["status"], "const": _status_of(event_type)}
    for name in ("model_id", "selfie_id", "image_id", "generation_id", "job_id", "deletion_id"):
        if name not in allowed_ids:
            del properties[name]
    if what != "succeeded":
        del properties["avatars"]
    else:
        required.append("avatars")
    if subject is not Subject.AVATAR:
        del properties["avatar"]
    if _status_of(event_type) in {"failed", "rejected"}:
        required.append("reason")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://github.com/avatar-pipeline/avatar-pipeline/docs/events/{event_type}.json",
        "title": event_type,
        "description": EVENT_TYPES[event_type],
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
        "$defs": schema.get("$defs", {}),
    }


def _status_of(event_type: str) -> str:
    """The record status an event type reports (``model.training`` → ``training``)."""
    subject, what = event_type.split(".", 1)
    if subject == "model" and what == "created":
        return "collecting"
    return what.removeprefix("deletion_")
