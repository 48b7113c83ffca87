"""Peak memory of copying a large result: the streamed ResultCopier against reading it whole.

Run from the repository root: ``python bench/copy.py`` (about half a minute; loopback only).

A result server in its own process serves a JPEG header followed by zero padding, generated
as it is sent; moto's S3 server in another process stores the copies. Neither the served
bytes nor moto's copy of the object is in the measured process. Each measurement runs in a
fresh process, which imports everything, builds its clients and copies a 1 MB result once
(lazy imports and connection set-up are paid before measuring), takes its current resident
set size as the baseline, copies the large result, and reports ru_maxrss (the peak resident
set of the process, whatever allocated it: Python, C libraries, threads) minus the
baseline. Starting from the current size rather than from the earlier peak can only
overstate the growth. MB here means MiB.
"""

from __future__ import annotations

import os
import sys

_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_BENCH_DIR)
# `python bench/copy.py` puts bench/ first on sys.path, where this file would shadow the
# standard library's `copy` module for everything imported after it.
sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != _BENCH_DIR]
sys.path[:0] = [os.path.join(_REPO, "layers", "core"), _REPO]

import gc  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

MB = 1024 * 1024
BUCKET = "bench-results"
SIZES_MB = (50, 200)
TARGET_GROWTH_MB = 32.0
SIZE_INDEPENDENCE_MB = 8.0
"""The streamed growth for the largest size may exceed the smallest's by at most this."""

_CHILD_ENV = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


# --- the result server (its own process) -----------------------------------------------------


def serve_results() -> None:
    """Serves /result-<bytes>.jpg: a real JPEG header, then zeros, never held whole."""
    from PIL import Image

    header = io.BytesIO()
    Image.new("RGB", (1024, 1024), (90, 140, 200)).save(header, "JPEG")
    jpeg = header.getvalue()
    padding = bytes(MB)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            size = int(self.path.removeprefix("/result-").removesuffix(".jpg"))
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(jpeg)
            remaining = size - len(jpeg)
            while remaining > 0:
                block = padding[: min(remaining, len(padding))]
                self.wfile.write(block)
                remaining -= len(block)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# --- one measurement (a fresh process) --------------------------------------------------------


def _current_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(variant: str, size_mb: int, results_port: int, s3_port: int, bucket: str) -> None:
    import boto3
    import requests

    from avatar_core.store.result_copy import CopyPolicy, ResultCopier

    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}")

    def naive(url: str, key: str) -> None:
        body = requests.get(url, timeout=(5, 60)).content
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="image/jpeg",
            ServerSideEncryption="AES256",
        )

    policy = CopyPolicy(
        allowed_hosts=("127.0.0.1",),
        allow_loopback=True,
        allow_http=True,
        max_bytes=max(SIZES_MB) * MB,
        read_timeout=60,
    )
    copier = ResultCopier(s3, bucket, policy)
    copy: Callable[[str, str], object] = copier.copy if variant == "streamed" else naive

    def url(size: int) -> str:
        return f"http://127.0.0.1:{results_port}/result-{size}.jpg"

    copy(url(MB), f"{variant}-warm-up")
    s3.delete_object(Bucket=bucket, Key=f"{variant}-warm-up")
    gc.collect()
    baseline = _current_rss()
    started = time.perf_counter()
    key = f"{variant}-{size_mb}"
    copy(url(size_mb * MB), key)
    seconds = time.perf_counter() - started
    growth = _peak_rss() - baseline
    stored = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    s3.delete_object(Bucket=bucket, Key=key)
    if stored != size_mb * MB:
        raise SystemExit(f"{variant} stored {stored} bytes instead of {size_mb * MB}")
    print(json.dumps({"growth_mb": growth / MB, "baseline_mb": baseline / MB, "seconds": seconds}))


# --- the run ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_moto(s3_port: int, process: subprocess.Popen) -> None:
    import requests

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("moto server exited while starting")
        try:
            requests.get(f"http://127.0.0.1:{s3_port}/moto-api/", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise SystemExit("moto server did not start within 30 s")


def _run_measurement(variant: str, size_mb: int, results_port: int, s3_port: int) -> dict:
    arguments = ["measure", variant, str(size_mb), str(results_port), str(s3_port), BUCKET]
    finished = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, os.path.abspath(__file__), *arguments],
        env=_CHILD_ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if finished.returncode != 0:
        raise SystemExit(f"{variant} {size_mb} MB failed:\n{finished.stderr}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> int:
    import boto3

    os.environ.update(_CHILD_ENV)

    s3_port = _free_port()
    moto = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
        env=_CHILD_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, os.path.abspath(__file__), "serve-results"],
        env=_CHILD_ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        results_port = int(results.stdout.readline())  # type: ignore[union-attr]
        _wait_for_moto(s3_port, moto)
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}")
        s3.create_bucket(Bucket=BUCKET)
        streamed: dict[int, float] = {}
        for size_mb in SIZES_MB:
            for variant, label in (("streamed", "streamed copy"), ("naive", "naive read-whole")):
                outcome = _run_measurement(variant, size_mb, results_port, s3_port)
                print(
                    f"{label} {size_mb} MB: peak growth {outcome['growth_mb']:.1f} MB"
                    f" (baseline {outcome['baseline_mb']:.1f} MB, {outcome['seconds']:.1f} s)",
                    flush=True,
                )
                if variant == "streamed":
                    streamed[size_mb] = outcome["growth_mb"]
    finally:
        for process in (results, moto):
            process.terminate()
            process.wait(timeout=10)
    below_target = all(growth < TARGET_GROWTH_MB for growth in streamed.values())
    independent = max(streamed.values()) - min(streamed.values()) < SIZE_INDEPENDENCE_MB
    verdict = "PASS" if below_target and independent else "FAIL"
    print(f"target: growth < {TARGET_GROWTH_MB:.0f} MB and independent of size: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve-results"]:
        serve_results()
    elif sys.argv[1:2] == ["measure"]:
        variant, size_mb, results_port, s3_port, bucket = sys.argv[2:7]
        measure(variant, int(size_mb), int(results_port), int(s3_port), bucket)
    else:
        sys.exit(main())
