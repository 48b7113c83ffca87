"""Benchmark: ingest's peak memory on the largest uploads it accepts, for its MemorySize.

Run from the repository root: ``python bench/worst_image.py`` (about a minute).

The bomb limits (``ImageLimits``: 40 megapixels, 15 MB) bound what one upload can cost. For
each format ingest decodes, a 40-megapixel file within 15 MB is made (a smooth photo-like
gradient with noise, so it compresses under the cap), then normalised as a selfie and fitted
as a face reference, each in a fresh process that imports the image logic, reads the file
and reports its peak resident set (VmHWM: Python, Pillow's C buffers and libheif alike, as
Lambda's "Max Memory Used" counts them) and the call's duration. A process that only imports
and reads is the baseline. MB here means MiB.
"""

from __future__ import annotations

import os
import sys

_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_BENCH_DIR)
# keep bench/ off sys.path: bench/copy.py would shadow the standard library's `copy`
sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != _BENCH_DIR]
sys.path[:0] = [os.path.join(_REPO, "layers", "core"), _REPO]

import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from io import BytesIO  # noqa: E402
from pathlib import Path  # noqa: E402

from PIL import Image  # noqa: E402

_PYTHONPATH = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
SIZE = (8000, 5000)  # 40 megapixels: ImageLimits.max_pixels
MAX_BYTES = 15 * 1024 * 1024

CHILD = r"""
import json, sys, time
from avatar_core.logic.images import ImageLimits, fit_reference, normalise_selfie
operation, path = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
started = time.perf_counter()
if operation == "selfie":
    normalise_selfie(data, limits=ImageLimits(), side=512)
elif operation == "reference":
    fit_reference(data, limits=ImageLimits(), max_side=1536)
elapsed = time.perf_counter() - started
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"peak_mib": peak / 1024, "ms": elapsed * 1000}))
"""


def photo_like(size: tuple[int, int], alpha: bool, noise_sigma: float) -> Image.Image:
    width, height = size
    small = Image.linear_gradient("L").resize((width // 16, height // 16))
    noise = Image.effect_noise((width // 16, height // 16), noise_sigma)
    bands = [small, noise, Image.eval(small, lambda v: 255 - v)]
    image = Image.merge("RGB", bands).resize(size, Image.Resampling.BILINEAR)
    if alpha:
        image.putalpha(Image.linear_gradient("L").resize(size))
    return image


def encode(fmt: str) -> bytes:
    if fmt == "HEIF":
        from pillow_heif import register_heif_opener

        register_heif_opener()
    # lossless PNG only fits under the cap with little noise
    image = photo_like(SIZE, alpha=fmt in ("PNG", "WEBP"), noise_sigma=2 if fmt == "PNG" else 40)
    options = {"JPEG": {"quality": 90}, "HEIF": {"quality": 80}, "WEBP": {"quality": 80}}
    buffer = BytesIO()
    image.save(buffer, fmt, **options.get(fmt, {}))
    return buffer.getvalue()


def run(operation: str, path: Path) -> dict[str, float]:
    finished = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", CHILD, operation, str(path)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([*sys.path[:2], *_PYTHONPATH])},
    )
    result: dict[str, float] = json.loads(finished.stdout)
    return result


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="worst-image-"))
    print(f"Ingest on 40-megapixel uploads ({SIZE[0]}x{SIZE[1]}), fresh processes:")
    worst = 0.0
    for fmt in ("JPEG", "PNG", "WEBP", "HEIF"):
        started = time.monotonic()
        data = encode(fmt)
        path = scratch / f"worst.{fmt.lower()}"
        path.write_bytes(data)
        accepted = len(data) <= MAX_BYTES
        base = run("none", path)
        made = time.monotonic() - started
        line = f"  {fmt:<5} {len(data) / 2**20:5.1f} MB file (made in {made:3.0f} s)"
        if not accepted:
            print(line + ": over the 15 MB cap, never decoded")
            continue
        for operation in ("selfie", "reference"):
            result = run(operation, path)
            worst = max(worst, result["peak_mib"])
            line += (
                f"  {operation}: peak {result['peak_mib']:4.0f} MiB "
                f"(+{result['peak_mib'] - base['peak_mib']:3.0f}), {result['ms']:5.0f} ms"
            )
        print(line)
    print(f"worst peak: {worst:.0f} MiB (the ingest function's MemorySize is chosen from it)")


if __name__ == "__main__":
    main()
