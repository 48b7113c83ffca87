"""S3 storage: where uploads land, where normalised copies and results live, and the
presigned URLs that let clients and providers reach them without our credentials.

Key layout (every key scoped by the owner):
- uploads bucket  ``selfies/<owner>/<model_id>/<selfie_id>``          original selfie
                  ``normalised/<owner>/<model_id>/<selfie_id>.jpg``   512×512 copy for training
                  ``faces/<owner>/<image_id>``                        face-avatar reference
                  ``faces-fitted/<owner>/<image_id>``                 reference fitted in 1536²
- results bucket  ``avatars/<owner>/<model_id>/<generation_id>/<avatar_id>``
                  ``face-avatars/<owner>/<job_id>/<avatar_id>``
                  ``instant-avatars/<owner>/<job_id>/<avatar_id>``
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

from botocore.exceptions import ClientError

from avatar_core.errors import ImageRejected
from avatar_core.ids import FACE_IMAGE, OWNER_PATTERN, SELFIE, id_pattern, iso, now
from avatar_core.ids import MODEL as MODEL_KIND
from avatar_core.store import clients

SELFIE_KEY = re.compile(
    rf"selfies/(?P<owner>{OWNER_PATTERN})/(?P<model_id>{id_pattern(MODEL_KIND)})"
    rf"/(?P<selfie_id>{id_pattern(SELFIE)})"
)
FACE_KEY = re.compile(rf"faces/(?P<owner>{OWNER_PATTERN})/(?P<image_id>{id_pattern(FACE_IMAGE)})")


def selfie_upload_key(owner: str, model_id: str, selfie_id: str) -> str:
    return f"selfies/{owner}/{model_id}/{selfie_id}"


def normalised_selfie_key(owner: str, model_id: str, selfie_id: str) -> str:
    return f"normalised/{owner}/{model_id}/{selfie_id}.jpg"


def face_upload_key(owner: str, image_id: str) -> str:
    return f"faces/{owner}/{image_id}"


def fitted_face_key(owner: str, image_id: str) -> str:
    return f"faces-fitted/{owner}/{image_id}"


def generation_avatar_key(owner: str, model_id: str, generation_id: str, avatar_id: str) -> str:
    return f"avatars/{owner}/{model_id}/{generation_id}/{avatar_id}"


def face_avatar_key(owner: str, job_id: str, avatar_id: str) -> str:
    return f"face-avatars/{owner}/{job_id}/{avatar_id}"


def instant_avatar_key(owner: str, job_id: str, avatar_id: str) -> str:
    return f"instant-avatars/{owner}/{job_id}/{avatar_id}"


def generation_prefix(owner: str, model_id: str, generation_id: str) -> str:
    """The results prefix that holds one generation's avatars."""
    return f"avatars/{owner}/{model_id}/{generation_id}/"


def face_job_prefix(owner: str, job_id: str) -> str:
    return f"face-avatars/{owner}/{job_id}/"


def instant_job_prefix(owner: str, job_id: str) -> str:
    return f"instant-avatars/{owner}/{job_id}/"


def parse_face_key(key: str) -> tuple[str, str] | None:
    """(owner, image_id) of a face-avatar reference upload, or None."""
    match = FACE_KEY.fullmatch(key)
    return (match["owner"], match["image_id"]) if match else None


def model_prefixes(owner: str, model_id: str) -> tuple[str, str, str]:
    """Upload, normalised and result prefixes that hold one model's objects."""
    return (
        f"selfies/{owner}/{model_id}/",
        f"normalised/{owner}/{model_id}/",
        f"avatars/{owner}/{model_id}/",
    )


def owner_prefixes(owner: str) -> list[tuple[str, str]]:
    """Every prefix that holds an owner's objects, as (bucket kind, prefix): what
    ``DELETE /v1/me`` empties. The trailing slash keeps owner ``ann`` off ``anna``'s keys."""
    return [
        ("uploads", f"selfies/{owner}/"),
        ("uploads", f"normalised/{owner}/"),
        ("uploads", f"faces/{owner}/"),
        ("uploads", f"faces-fitted/{owner}/"),
        ("results", f"avatars/{owner}/"),
        ("results", f"face-avatars/{owner}/"),
        ("results", f"instant-avatars/{owner}/"),
    ]


@dataclass(frozen=True)
class SelfieKey:
    owner: str
    model_id: str
    selfie_id: str


def parse_selfie_key(key: str) -> SelfieKey | None:
    match = SELFIE_KEY.fullmatch(key)
    if match is None:
        return None
    return SelfieKey(match["owner"], match["model_id"], match["selfie_id"])


@dataclass(frozen=True)
class PresignedPost:
    url: str
    fields: dict[str, str]
    expires_at: str


class Storage:
    def __init__(self, uploads_bucket: str, results_bucket: str, client: Any = None) -> None:
        self.uploads_bucket = uploads_bucket
        self.results_bucket = results_bucket
        self._given = client

    @cached_property
    def _s3(self) -> Any:
        """Made on first use, not at import (``avatar_core.store.clients``)."""
        return self._given or clients.client("s3")

    def presign_upload(
        self, key: str, content_type: str, max_bytes: int, ttl_seconds: int
    ) -> PresignedPost:
        """A browser-ready POST whose policy pins the key, the type and the size range."""
        post = self._s3.generate_presigned_post(
            Bucket=self.uploads_bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", 1, max_bytes],
            ],
            ExpiresIn=ttl_seconds,
        )
        expires_at = iso(now() + timedelta(seconds=ttl_seconds))
        return PresignedPost(url=post["url"], fields=dict(post["fields"]), expires_at=expires_at)

    def read_upload(self, key: str, max_bytes: int) -> bytes | None:
        """The uploaded object, or None when it is gone. Refuses anything over the cap."""
        try:
            response = self._s3.get_object(Bucket=self.uploads_bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        size = int(response.get("ContentLength", 0))
        body = response["Body"]
        try:
            if size > max_bytes:
                raise ImageRejected(_too_big(size, max_bytes))
            data: bytes = body.read(max_bytes + 1)
        finally:
            body.close()
        if len(data) > max_bytes:
            raise ImageRejected(_too_big(len(data), max_bytes))
        return data

    def put_upload_derivative(self, key: str, data: bytes, content_type: str) -> None:
        self._s3.put_object(
            Bucket=self.uploads_bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            ServerSideEncryption="AES256",
        )

    def delete_upload(self, key: str) -> None:
        self._s3.delete_object(Bucket=self.uploads_bucket, Key=key)

    def delete_result(self, key: str) -> None:
        self._s3.delete_object(Bucket=self.results_bucket, Key=key)

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        deleted = 0
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:
                self._s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
                deleted += len(objects)
        return deleted

    def bucket(self, kind: str) -> str:
        """The uploads or the results bucket, by the kind ``owner_prefixes`` names."""
        return self.uploads_bucket if kind == "uploads" else self.results_bucket

    def delete_first_page(self, bucket: str, prefix: str) -> int:
        """Delete the first page (up to 1,000) of the objects under ``prefix``; answers how
        many went, 0 once none is left. Called again, it finds the next page."""
        page = self._s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1000)
        objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if not objects:
            return 0
        answer = self._s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise ObjectsNotDeleted(
                f"{len(answer['Errors'])} objects under {prefix} were not deleted: "
                f"{first.get('Code')} {first.get('Message')}"
            )
        return len(objects)

    def presign_get(self, bucket: str, key: str, ttl_seconds: int) -> tuple[str, str]:
        url = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_seconds
        )
        return url, iso(now() + timedelta(seconds=ttl_seconds))


class ObjectsNotDeleted(Exception):
    """S3 refused to delete some objects of a page (the deletion's task retries)."""


def _too_big(size: int, max_bytes: int) -> str:
    return f"file too large: {size / 1_000_000:.1f} MB, at most {max_bytes / 1_000_000:.0f} MB"
