"""Status changes become events: derived from the table's own change stream.

Every write to a record puts one record on the table's DynamoDB stream, in the same
operation and in order per item: the stream is our outbox. So a record never changes
without its event, whatever function wrote it and however it ended afterwards. The
publisher reads each change (old and new image) and derives what happened here, purely:

- a model, selfie, face image or job that appears, changes status or disappears;
- an avatar that appears in a job's ``avatars`` map (``avatar.stored``, one per image);
- a queued job removed because its workflow could not start: ``<kind>.failed``, at no cost;
- an owner's deletion receipt that starts, succeeds or fails (``account.deletion_<status>``).

Event ids are derived from the stream record (its ``eventID`` and the event's position),
so a change delivered to the publisher twice yields the same ids: every channel can
deduplicate on ``event_id``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from avatar_core.ids import ULID_ALPHABET as _CROCKFORD
from avatar_core.models.events import AvatarSummary, Event

# The record kinds that have events, by sort-key prefix: (subject, id field).
_JOBS = {"GEN#": "generation", "FACE#": "face_avatar", "INSTANT#": "instant_avatar"}
NOT_STARTED = "the job could not be started; nothing was charged"


@dataclass(frozen=True)
class Change:
    """One stream record: the item before and after (None when absent), and its identity."""

    record_id: str  # the stream record's eventID: unique per change
    sort_key: str
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None
    stamp: str  # when the stream record was written (ISO 8601), if the item says nothing


def derive(change: Change) -> list[Event]:
    """The events one change means, in the order they happened."""
    drafts = _drafts(change)
    return [
        Event(event_id=event_id(change.record_id, index, draft["occurred_at"]), **draft)
        for index, draft in enumerate(drafts)
    ]


def event_id(record_id: str, index: int, occurred_at: str) -> str:
    """``evt_`` + a ULID: the time part from when it happened (so ids sort roughly by time),
    the rest a digest of the change's identity (so a redelivered change has the same id)."""
    millis = int(_parse(occurred_at).timestamp() * 1000)
    digest = int.from_bytes(hashlib.sha256(f"{record_id}#{index}".encode()).digest()[:10], "big")
    value = (millis & ((1 << 48) - 1)) << 80 | digest
    chars = [_CROCKFORD[(value >> (5 * i)) & 31] for i in range(26)]
    return "evt_" + "".join(reversed(chars))


def _parse(moment: str) -> datetime:
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _drafts(change: Change) -> list[dict[str, Any]]:
    sk = change.sort_key
    if sk.startswith("MODEL#"):
        return _status_drafts(change, "model", _model_ids)
    if sk.startswith("SELFIE#"):
        return _settled_drafts(change, "selfie", _selfie_ids)
    if sk.startswith("FACEIMG#"):
        return _settled_drafts(change, "face_image", _image_ids)
    for prefix, subject in _JOBS.items():
        if sk.startswith(prefix):
            return _job_drafts(change, subject)
    if sk == "RECEIPT":
        return _deletion_drafts(change)
    return []


def _model_ids(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"model_id": item["model_id"]}


def _selfie_ids(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"model_id": item["model_id"], "selfie_id": item["selfie_id"]}


def _image_ids(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"image_id": item["image_id"]}


def _job_ids(subject: str, item: Mapping[str, Any]) -> dict[str, Any]:
    if subject == "generation":
        return {"generation_id": item["generation_id"], "model_id": item["model_id"]}
    return {"job_id": item["job_id"], "image_id": item["image_id"]}


def _base(change: Change, item: Mapping[str, Any], event_type: str, at: str | None) -> dict:
    return {
        "type": event_type,
        "occurred_at": at or change.stamp,
        "owner": item["owner"],
    }


def _status_drafts(change: Change, subject: str, ids: Any) -> list[dict[str, Any]]:
    old, new = change.old, change.new
    if new is None:
        if old is None:
            return []
        return [{**_base(change, old, f"{subject}.deleted", None), **ids(old)}]
    status = new.get("status")
    if old is not None and old.get("status") == status:
        return []
    what = "created" if old is None else status
    draft = {**_base(change, new, f"{subject}.{what}", new.get("updated_at")), **ids(new)}
    draft["status"] = status
    if status == "failed" and new.get("error"):
        draft["reason"] = new["error"]
    return [draft]


def _settled_drafts(change: Change, subject: str, ids: Any) -> list[dict[str, Any]]:
    """Uploads tell only how they were settled: accepted or rejected, once."""
    old, new = change.old, change.new
    if new is None or new.get("status") not in {"accepted", "rejected"}:
        return []
    if old is not None and old.get("status") == new["status"]:
        return []
    draft = {
        **_base(change, new, f"{subject}.{new['status']}", new.get("updated_at")),
        **ids(new),
        "status": new["status"],
    }
    if new.get("reason"):
        draft["reason"] = new["reason"]
    elif new["status"] == "rejected":
        draft["reason"] = "the image could not be used"
    return [draft]


def _deletion_drafts(change: Change) -> list[dict[str, Any]]:
    """A deletion that starts (a new receipt, or one replacing a finished one) or ends; a
    receipt's counts moving on, or its expiry, says nothing new."""
    old, new = change.old, change.new
    if new is None:
        return []
    same = old is not None and (old.get("deletion_id"), old.get("status")) == (
        new["deletion_id"],
        new["status"],
    )
    if same:
        return []
    at = new.get("finished_at") if new["status"] != "running" else new.get("started_at")
    draft = {
        **_base(change, new, f"account.deletion_{new['status']}", at),
        "deletion_id": new["deletion_id"],
        "status": new["status"],
    }
    if new["status"] == "failed":
        draft["reason"] = new.get("error") or "the deletion failed"
    return [draft]


def _job_drafts(change: Change, subject: str) -> list[dict[str, Any]]:
    old, new = change.old, change.new
    if new is None:
        if old is None:
            return []
        ids = _job_ids(subject, old)
        if old.get("status") == "queued":
            # removed before anything was started: to the app, a job that failed for free
            base = _base(change, old, f"{subject}.failed", None)
            return [{**base, **ids, "status": "failed", "reason": NOT_STARTED}]
        return [{**_base(change, old, f"{subject}.deleted", None), **ids}]
    ids = _job_ids(subject, new)
    at = new.get("updated_at")
    drafts: list[dict[str, Any]] = []
    before = dict((old or {}).get("avatars") or {})
    for avatar_id, avatar in sorted(
        (new.get("avatars") or {}).items(), key=lambda pair: pair[1].get("index", 0)
    ):
        if avatar_id not in before:
            drafts.append(
                {
                    **_base(change, new, "avatar.stored", at),
                    **ids,
                    "status": new.get("status"),
                    "avatar": _summary(avatar).model_dump(),
                }
            )
    status = new.get("status")
    if old is None or old.get("status") != status:
        draft = {**_base(change, new, f"{subject}.{status}", at), **ids, "status": status}
        if status == "failed":
            draft["reason"] = new.get("error") or "the job failed"
        if status == "succeeded":
            avatars = sorted((new.get("avatars") or {}).values(), key=lambda a: a.get("index", 0))
            draft["avatars"] = [_summary(a).model_dump() for a in avatars]
        drafts.append(draft)
    return drafts


def _summary(avatar: Mapping[str, Any]) -> AvatarSummary:
    return AvatarSummary.model_validate(
        {
            name: avatar.get(name)
            for name in AvatarSummary.model_fields
            if avatar.get(name) is not None
        }
    )


class Sink(Protocol):
    def put(self, events: list[Event]) -> None: ...


@dataclass
class Published:
    """What one batch of changes came to: events sent, and the change to resume from."""

    events: list[Event]
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (sequence, why)
    failed_at: str | None = None  # the stream sequence number of the first change not sent
    error: str | None = None


def publish(changes: list[tuple[str, Change]], sinks: list[Sink]) -> Published:
    """Send each change's events to every sink, change after change, in stream order.

    The first change that cannot be sent stops the batch: it and everything after it are
    delivered again (the event source mapping resumes from its sequence number), so a
    subject's events never overtake one another. Sinks see a redelivered change's events
    again, under the same ids. The event log goes last of the sinks: an event that is in it
    has reached the bus and the webhook queue.
    """
    sent: list[Event] = []
    unreadable: list[tuple[str, str]] = []
    for sequence, change in changes:
        try:
            events = derive(change)
        except (KeyError, TypeError, ValueError) as error:
            # deriving is pure: a change it cannot read now it never will, and retrying it
            # would hold up every later change of its shard for the stream's 24 hours
            unreadable.append((sequence, f"{change.sort_key}: {type(error).__name__}: {error}"))
            continue
        if not events:
            continue
        try:
            for sink in sinks:
                sink.put(events)
        except Exception as error:  # any failure of any sink: the change is redelivered
            error_text = f"{type(error).__name__}: {error}"
            return Published(sent, unreadable, failed_at=sequence, error=error_text)
        sent += events
    return Published(sent, unreadable)
