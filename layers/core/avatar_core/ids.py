"""Identifiers and timestamps.

IDs are ULIDs behind a short kind prefix (``mdl_01J…``): they sort by creation time, which
gives newest-first listings for free (within one process even inside a millisecond, so the
selfie slots of one request list in the order they were asked for), and an operator can
tell a model from a selfie at a glance in the console. The owner's key segment is derived
from the JWT ``sub`` so that every DynamoDB key and S3 key is scoped by it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from datetime import UTC, datetime

ULID_ALPHABET = _CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SAFE_SUB = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")

MODEL = "mdl"
SELFIE = "sf"
GENERATION = "gen"
AVATAR = "av"
FACE_IMAGE = "img"
FACE_JOB = "face"
INSTANT_JOB = "inst"

OWNER_PATTERN = r"(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})"


def id_pattern(kind: str) -> str:
    return rf"{kind}_[0-9A-HJKMNP-TV-Z]{{26}}"


_last_ulid = 0
_ulid_lock = threading.Lock()


def _ulid() -> str:
    global _last_ulid
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    with _ulid_lock:
        # monotonic, as the ULID spec allows: a later id never sorts before an earlier one
        value = max(value, _last_ulid + 1)
        _last_ulid = value
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(kind: str) -> str:
    return f"{kind}_{_ulid()}"


def is_id(kind: str, value: str) -> bool:
    return re.fullmatch(id_pattern(kind), value) is not None


def owner_id(sub: str) -> str:
    """The owner's key segment: the ``sub`` itself when it is key-safe, else a digest of it.

    A ``sub`` that merely looks like a digest (``h-…``) is digested too, so no identity can
    be made to collide with another's digest.
    """
    if _SAFE_SUB.fullmatch(sub) and ".." not in sub and not sub.startswith("h-"):
        return sub
    return "h-" + hashlib.sha256(sub.encode("utf-8")).hexdigest()[:32]


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso(now())
