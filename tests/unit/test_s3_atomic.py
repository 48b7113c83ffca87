"""The local stack's S3 replaces an object atomically: a GetObject racing a PutObject of the
same key returns one complete version, old or new, as S3 does. Every test talks HTTP to a
real moto server, as the Lambdas and the browser do."""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from local import s3_atomic
from tests.support.moto_server import moto_server, raw_client

WRITERS, READERS = 4, 8
VERSIONS = 30
SIZE = 256 * 1024
MAX_READS_PER_READER = 200


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server(s3_atomic.install) as url:
        # switch threads far more often than CPython's 5 ms, so short races show up in a short run
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        yield url
        sys.setswitchinterval(interval)


@pytest.fixture()
def s3(endpoint: str) -> Any:
    return raw_client("s3", endpoint, pool=WRITERS + READERS)


@pytest.fixture()
def bucket(s3: Any) -> Iterator[str]:
    name = f"atomic-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for entry in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=entry["Key"])
    s3.delete_bucket(Bucket=name)


def version(writer: int, number: int) -> bytes:
    """A body whose every byte says which version it is, so a torn read cannot pass."""
    label = f"<writer {writer} version {number}>".encode()
    return (label * (SIZE // len(label) + 1))[:SIZE]


def race(s3: Any, bucket: str, key: str, writers: int) -> tuple[set[bytes], list[bytes]]:
    """``writers`` threads replace ``key`` while readers GET it; return what was written and
    every body read. Any 500 on either side raises."""
    written = {version(-1, 0)}
    written.update(
        version(writer, number) for writer in range(writers) for number in range(VERSIONS)
    )
    s3.put_object(Bucket=bucket, Key=key, Body=version(-1, 0))
    writing = threading.Event()
    writers_done = threading.Event()

    def write(writer: int) -> None:
        for number in range(VERSIONS):
            writing.set()
            s3.put_object(Bucket=bucket, Key=key, Body=version(writer, number))

    def read(_: int) -> list[bytes]:
        writing.wait(timeout=30)
        bodies = []
        for _read in range(MAX_READS_PER_READER):
            bodies.append(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            if writers_done.is_set():
                break
        return bodies

    with ThreadPoolExecutor(READERS) as readers:
        reads = [readers.submit(read, index) for index in range(READERS)]
        try:
            with ThreadPoolExecutor(writers) as pool:
                list(pool.map(write, range(writers)))
        finally:
            writers_done.set()
        return written, [body for future in reads for body in future.result()]


def test_a_get_racing_a_put_of_the_same_key_returns_one_whole_version(s3: Any, bucket: str) -> None:
    written, bodies = race(s3, bucket, "uploads/photo.jpg", writers=1)

    torn = [body[:40] for body in bodies if body not in written]
    assert not torn, f"{len(torn)} of {len(bodies)} reads were no version that was written"


def test_concurrent_puts_of_one_key_all_succeed_and_one_of_them_stays(s3: Any, bucket: str) -> None:
    written, bodies = race(s3, bucket, "results/avatar.png", writers=WRITERS)

    assert all(body in written for body in bodies)
    final = s3.get_object(Bucket=bucket, Key="results/avatar.png")["Body"].read()
    assert final in {version(writer, VERSIONS - 1) for writer in range(WRITERS)}
