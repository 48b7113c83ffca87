"""Make moto's S3 replace and delete objects atomically under concurrent requests.

moto 5.2.5 keeps each object's bytes in a file buffer on its ``FakeKey`` and closes that
buffer the moment a PutObject replaces the key (or a DeleteObject removes it). A request
that already holds the old key — a GetObject about to read it, or the PutObject that stored
it and is still computing its ETag — then fails with "I/O operation on closed file" (a 500).
And the ETag is computed lazily by seeking and reading the shared buffer without the key's
lock, so it can move the file position under a concurrent read and tear its body. S3 itself
serves every GET one complete version, old or new.

The fix keeps a replaced object's bytes alive until its last holder lets go: replacement and
deletion retire the key (no longer tracked for moto's reset, its buffer left open) and
CPython frees the buffer when the last request holding the key drops it (``FakeKey.__del__``
closes it then). The ETag is computed under the key's lock, like ``value``.

A lock around ``S3Response.key_response`` was the other way, and worse here: moto delivers S3
event notifications synchronously inside the PutObject, so the ingest Lambda's GetObject of
the object it was told about would wait on the lock its own upload holds, for ever; and
presigned POST uploads do not pass through ``key_response`` at all.
"""

from __future__ import annotations

import contextlib
from typing import Any

_installed = False


def _retire(key: Any) -> None:
    """Stop tracking a replaced or deleted key without closing what readers still hold."""
    from moto.s3.models import FakeKey

    if not isinstance(key, FakeKey):
        if hasattr(key, "dispose"):
            key.dispose()
        return
    with key.lock:
        # ``__del__`` disposes quietly once ``disposed`` is set, closing the buffer then
        key.disposed = True
    with contextlib.suppress(ValueError):  # already retired by a racing replacement
        FakeKey.instances_tracked.remove(key)  # type: ignore[attr-defined]


def _setlist(store: Any, name: Any, versions: Any) -> None:
    if isinstance(versions, tuple):
        versions = list(versions)
    elif not isinstance(versions, list):
        versions = [versions]
    for existing in store.getlist(name, []):
        if existing not in versions:
            _retire(existing)
    dict.__setitem__(store, name, versions)


def _pop(store: Any, name: Any) -> None:
    for existing in store.getlist(name, []):
        _retire(existing)
    dict.pop(store, name)


def _etag_under_lock(original: property) -> property:
    def etag(key: Any) -> str:
        with key.lock:
            result: str = original.fget(key)  # type: ignore[misc]
            return result

    return property(etag)


def install() -> None:
    """Patch moto's S3 object store in this process; safe to call again."""
    global _installed
    if _installed:
        return
    from moto.s3.models import FakeKey
    from moto.s3.utils import _VersionedKeyStore

    setattr(_VersionedKeyStore, "setlist", _setlist)  # noqa: B010 (patching a class)
    setattr(_VersionedKeyStore, "pop", _pop)  # noqa: B010
    setattr(FakeKey, "etag", _etag_under_lock(FakeKey.__dict__["etag"]))  # noqa: B010
    _installed = True
