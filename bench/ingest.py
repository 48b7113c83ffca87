"""Benchmark: normalising a 12-megapixel phone JPEG, draft-mode decode against a naive one.

Run from the repository root: ``python bench/ingest.py``.

Pillow allocates pixel memory in C, where tracemalloc cannot see it, so memory is measured as
the peak RSS of fresh processes: each variant runs in its own subprocess, and its peak is
compared with a baseline subprocess that imports the same modules and reads the same bytes
but processes nothing. Rounds are interleaved so that a busy machine slows both
variants alike. Targets are reported as PASS or MISS; the exit status is 0 either way.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT / "layers" / "core", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from PIL import Image, ImageChops, ImageOps, ImageStat  # noqa: E402

from avatar_core.logic.images import ImageLimits, normalise_selfie  # noqa: E402
from local.photos import large_jpeg  # noqa: E402

SIDE = 512
QUALITY = 90
ROUNDS = 3
RUNS_PER_PROCESS = 5
SPEED_TARGET = 3.0  # naive / fast, at least
MEMORY_TARGET = 0.33  # fast / naive peak-RSS growth, at most
VARIANTS = ("baseline", "fast", "naive")


def fast(data: bytes) -> bytes:
    return normalise_selfie(data, limits=ImageLimits(), side=SIDE, quality=QUALITY).data


def naive(data: bytes) -> bytes:
    """What one writes first: decode everything, turn, crop, resize."""
    with Image.open(BytesIO(data)) as image:
        image.load()
        upright = ImageOps.exif_transpose(image)
        width, height = upright.size
        crop = min(width, height)
        left, top = (width - crop) // 2, (height - crop) // 2
        square = upright.crop((left, top, left + crop, top + crop))
        resized = square.resize((SIDE, SIDE), Image.Resampling.LANCZOS).convert("RGB")
        buffer = BytesIO()
        resized.save(buffer, "JPEG", quality=QUALITY)
        return buffer.getvalue()


def peak_rss_bytes() -> int:
    """This process's own peak RSS.

    On Linux ``ru_maxrss`` also counts the parent's peak (it survives fork and exec), which
    would hide everything under the bench's own footprint; VmHWM belongs to this process only.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024  # reported in kB


def child(variant: str, photo: Path) -> None:
    """One fresh process: peak RSS after the first call, then timed further calls."""
    data = photo.read_bytes()
    times: list[float] = []
    peak = peak_rss_bytes()
    if variant != "baseline":
        process = fast if variant == "fast" else naive
        process(data)
        peak = peak_rss_bytes()
        for _ in range(RUNS_PER_PROCESS):
            started = time.perf_counter()
            process(data)
            times.append(time.perf_counter() - started)
    print(json.dumps({"peak": peak, "times": times}))


def measure(variant: str, photo: Path) -> dict[str, object]:
    completed = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(Path(__file__).resolve()), "--child", variant, str(photo)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(completed.stdout)


def main() -> None:
    data = large_jpeg(12)
    with Image.open(BytesIO(data)) as source:
        width, height = source.size
    fast_output, naive_output = Image.open(BytesIO(fast(data))), Image.open(BytesIO(naive(data)))
    difference = ImageStat.Stat(ImageChops.difference(fast_output, naive_output)).mean
    print(
        f"ingest bench: {width}x{height} JPEG ({width * height / 1e6:.0f} MP, "
        f"{len(data) / 1e6:.1f} MB) -> {SIDE}x{SIDE} JPEG; {ROUNDS} rounds of fresh processes, "
        f"{RUNS_PER_PROCESS} timed runs each"
    )
    print(
        f"  outputs: fast {fast_output.size[0]}x{fast_output.size[1]}, naive "
        f"{naive_output.size[0]}x{naive_output.size[1]}, mean abs pixel difference "
        f"{sum(difference) / 3:.2f} (of 255)"
    )

    peaks: dict[str, list[int]] = {variant: [] for variant in VARIANTS}
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as scratch:
        photo = Path(scratch) / "photo.jpg"
        photo.write_bytes(data)
        for _ in range(ROUNDS):
            for variant in VARIANTS:
                result = measure(variant, photo)
                peaks[variant].append(int(result["peak"]))  # type: ignore[call-overload]
                times[variant].extend(result["times"])  # type: ignore[arg-type]

    baseline = statistics.median(peaks["baseline"])
    growth = {v: max(statistics.median(peaks[v]) - baseline, 1) for v in ("fast", "naive")}
    median_time = {v: statistics.median(times[v]) for v in ("fast", "naive")}
    print(f"  baseline process (imports + input bytes): peak RSS {baseline / 2**20:.1f} MiB")
    labels = {"fast": "fast  (normalise_selfie, draft)", "naive": "naive (full decode, no draft)"}
    for variant, label in labels.items():
        print(
            f"  {label}: median {median_time[variant] * 1000:7.1f} ms, "
            f"peak RSS +{growth[variant] / 2**20:6.1f} MiB over baseline"
        )
    speed = median_time["naive"] / median_time["fast"]
    memory = growth["fast"] / growth["naive"]
    print(
        f"speed ratio (naive/fast): {speed:.1f}x (target >= {SPEED_TARGET:g}x) "
        f"{'PASS' if speed >= SPEED_TARGET else 'MISS'}"
    )
    print(
        f"memory ratio (fast/naive): {memory:.2f} (target <= {MEMORY_TARGET:g}) "
        f"{'PASS' if memory <= MEMORY_TARGET else 'MISS'}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "PHOTO"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child[0], Path(arguments.child[1]))
    else:
        main()
