"""Benchmark: the selfie checks' thresholds against good photos and bad versions of them.

Run from the repository root: ``python bench/selfie_checks.py`` (``make bench-checks``).

Good photos: generated selfies (several seeds: people, poses, backgrounds) and the
public-domain portraits in ``tests/fixtures/photos/``, each also cropped, mirrored, turned a
few degrees, darker, brighter, flatter and punchier, and re-saved. Every one of them must be
accepted. Bad versions of each: blank or almost uniform, blurred (Gaussian radius 4 and 6 on
the 512×512), mostly or fully transparent PNGs, and near-duplicates (re-encoded at another
JPEG quality, resized, brightened, slightly cropped). Every one must be refused. Duplicate
negatives are pairs of *different* photos: the nearest of them is the margin the duplicate
threshold keeps. Each file goes through ``normalise_selfie`` and ``photo_checks.measure``
exactly as ingest runs them, at the thresholds in ``Settings``' defaults.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Iterator
from io import BytesIO
from itertools import combinations
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# `python bench/selfie_checks.py` puts bench/ first on sys.path, where bench/copy.py would
# shadow the standard library's copy module.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT)]

from PIL import Image, ImageEnhance, ImageFilter, ImageOps, ImageStat  # noqa: E402

from avatar_core.logic import photo_checks  # noqa: E402
from avatar_core.logic.images import ImageLimits, normalise_selfie  # noqa: E402
from avatar_core.logic.ingest import thresholds_from  # noqa: E402
from avatar_core.settings import Settings  # noqa: E402
from local.photos import selfie_image  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "photos"
LIMITS = ImageLimits()
SMALLEST = round(LIMITS.min_side * 1.25)  # an 80% crop of it is still large enough
Variant = Callable[[Image.Image], Image.Image]


def good_photos(seeds: int) -> Iterator[tuple[str, Image.Image]]:
    for seed in range(1, seeds + 1):
        yield f"generated-{seed}", selfie_image(seed, (900, 1200))
    for path in sorted(FIXTURES.glob("*.*")):
        if path.suffix.lower() not in (".jpg", ".png"):
            continue
        with Image.open(path) as opened:
            photo = opened.convert("RGB")
        if min(photo.size) < SMALLEST:
            # Pillow's Grace Hopper is 128 px: enlarged to a size whose crops ingest takes.
            scale = SMALLEST / min(photo.size)
            size = (round(photo.width * scale), round(photo.height * scale))
            photo = photo.resize(size, Image.Resampling.LANCZOS)
        yield path.stem, photo


def _crop(left: float, top: float, right: float, bottom: float) -> Variant:
    def crop(image: Image.Image) -> Image.Image:
        w, h = image.size
        return image.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))

    return crop


def _turned(degrees: float) -> Variant:
    def turn(image: Image.Image) -> Image.Image:
        turned = image.rotate(degrees, Image.Resampling.BICUBIC)
        return _crop(0.08, 0.08, 0.92, 0.92)(turned)  # no empty corners

    return turn


def _enhanced(
    kind: type[ImageEnhance.Brightness | ImageEnhance.Contrast], factor: float
) -> Variant:
    return lambda image: kind(image).enhance(factor)


GOOD_VARIANTS: dict[str, Variant] = {
    "as taken": lambda image: image,
    "crop 80% centre": _crop(0.1, 0.1, 0.9, 0.9),
    "crop 85% left": _crop(0.0, 0.05, 0.85, 0.95),
    "mirrored": ImageOps.mirror,
    "turned +5deg": _turned(5),
    "turned -5deg": _turned(-5),
    "darker x0.6": _enhanced(ImageEnhance.Brightness, 0.6),
    "brighter x1.4": _enhanced(ImageEnhance.Brightness, 1.4),
    "contrast x0.6": _enhanced(ImageEnhance.Contrast, 0.6),
    "contrast x1.4": _enhanced(ImageEnhance.Contrast, 1.4),
}

DUPLICATES: dict[str, Variant] = {
    "re-encoded q60": lambda image: Image.open(BytesIO(_jpeg(image, 60))),
    "resized to 60%": lambda image: _shrunk(image, 0.6),
    "brightened x1.15": _enhanced(ImageEnhance.Brightness, 1.15),
    "cropped 4%": _crop(0.02, 0.02, 0.98, 0.98),
}


def _shrunk(image: Image.Image, factor: float) -> Image.Image:
    """Smaller by ``factor``, but never below what ingest takes."""
    factor = max(factor, LIMITS.min_side / min(image.size))
    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.BILINEAR)


def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def measured(data: bytes) -> photo_checks.PhotoMeasures:
    return photo_checks.measure(normalise_selfie(data, limits=LIMITS))


def normalised(photo: Image.Image) -> Image.Image:
    """The 512×512 a photo becomes, as an image, for the bad versions made from it."""
    return Image.open(BytesIO(normalise_selfie(_jpeg(photo), limits=LIMITS).data)).convert("RGB")


def uniform_versions(photo: Image.Image) -> Iterator[tuple[str, bytes]]:
    flat = normalised(photo)
    mean = [round(v) for v in ImageStat.Stat(flat).mean]
    yield "blank", _jpeg(Image.new("RGB", flat.size, tuple(mean)))
    for sigma in (2, 4):
        channels = [
            Image.effect_noise(flat.size, sigma).point(lambda v, c=c: v - 128 + c) for c in mean
        ]
        yield f"blank + noise sigma {sigma}", _jpeg(Image.merge("RGB", channels))
    yield "contrast x0.1", _jpeg(ImageEnhance.Contrast(flat).enhance(0.1))


def blurred_versions(photo: Image.Image) -> Iterator[tuple[str, bytes]]:
    flat = normalised(photo)
    for radius in (4, 6):
        yield f"blur r{radius}", _jpeg(flat.filter(ImageFilter.GaussianBlur(radius)))


def transparent_versions(photo: Image.Image) -> Iterator[tuple[str, bytes]]:
    flat = normalised(photo).convert("RGBA")
    clear = flat.copy()
    clear.putalpha(0)
    yield "fully transparent", _png(clear)
    mostly = flat.copy()
    alpha = Image.new("L", flat.size, 8)  # faint, below TRANSPARENT_ALPHA
    alpha.paste(255, (200, 200, 300, 300))  # a 4% opaque patch
    mostly.putalpha(alpha)
    yield "92% invisible", _png(mostly)


def describe(values: list[float]) -> str:
    ordered = sorted(values)
    fifth = ordered[max(0, round(len(ordered) * 0.05) - 1)]
    return (
        f"min {ordered[0]:8.2f}  p5 {fifth:8.2f}  median {statistics.median(ordered):8.2f}  "
        f"max {ordered[-1]:8.2f}  (n={len(ordered)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=24, help="generated people")
    args = parser.parse_args()
    thresholds = thresholds_from(Settings())

    photos = list(good_photos(args.seeds))
    good: list[tuple[str, photo_checks.PhotoMeasures]] = []
    originals: dict[str, photo_checks.PhotoMeasures] = {}
    for name, photo in photos:
        for variant, make in GOOD_VARIANTS.items():
            measures = measured(_jpeg(make(photo)))
            good.append((f"{name} {variant}", measures))
            if variant == "as taken":
                originals[name] = measures

    bad: dict[str, list[tuple[str, photo_checks.PhotoMeasures]]] = {
        "uniform": [],
        "blurred": [],
        "transparent": [],
    }
    duplicates: list[tuple[str, int]] = []
    for name, photo in photos:
        for kind, versions in (
            ("uniform", uniform_versions(photo)),
            ("blurred", blurred_versions(photo)),
            ("transparent", transparent_versions(photo)),
        ):
            bad[kind].extend((f"{name} {label}", measured(data)) for label, data in versions)
        for label, make in DUPLICATES.items():
            copy = measured(_jpeg(make(photo)))
            distance = photo_checks.hash_distance(
                copy.perceptual_hash, originals[name].perceptual_hash
            )
            duplicates.append((f"{name} {label}", distance))

    print(f"{len(photos)} good photos x {len(GOOD_VARIANTS)} variants = {len(good)} good files")
    print("thresholds (Settings defaults):", thresholds)
    print()
    measures_of: dict[str, Callable[[photo_checks.PhotoMeasures], float]] = {
        "transparent share": lambda m: m.transparent_share,
        "grey stddev": lambda m: m.grey_stddev,
        "sharpness (Laplacian variance)": lambda m: m.sharpness,
    }
    for label, get in measures_of.items():
        print(f"{label}")
        print(f"  good            {describe([get(m) for _, m in good])}")
        for kind, found in bad.items():
            print(f"  bad {kind:<12}{describe([get(m) for _, m in found])}")
    print()

    refused_good = [
        (name, reason)
        for name, m in good
        if (reason := photo_checks.refusal(m, thresholds)) is not None
    ]
    print(f"false refusals of good files: {len(refused_good)} of {len(good)}")
    for name, reason in refused_good:
        print(f"  {name}: {reason}")
    expected = {
        "uniform": photo_checks.SINGLE_COLOUR,
        "blurred": photo_checks.BLURRED,
        "transparent": photo_checks.MOSTLY_TRANSPARENT,
    }
    for kind, found in bad.items():
        missed = [name for name, m in found if photo_checks.refusal(m, thresholds) is None]
        wrong = [
            name
            for name, m in found
            if photo_checks.refusal(m, thresholds) not in (None, expected[kind])
        ]
        print(
            f"{kind} missed: {len(missed)} of {len(found)}"
            f" (refused for another reason: {len(wrong)})"
        )
        for name in missed:
            print(f"  missed {name}")

    print()
    limit = thresholds.max_duplicate_distance
    copies = [distance for _, distance in duplicates]
    print(f"dHash distance, duplicate to its original: {describe([float(d) for d in copies])}")
    missed_copies = [name for name, distance in duplicates if distance > limit]
    print(f"duplicates missed at <= {limit} bits: {len(missed_copies)} of {len(duplicates)}")
    for name in missed_copies:
        print(f"  missed {name}")
    pairs = [
        (photo_checks.hash_distance(a.perceptual_hash, b.perceptual_hash), first, second)
        for (first, a), (second, b) in combinations(originals.items(), 2)
    ]
    print(f"dHash distance, different photos: {describe([float(p[0]) for p in pairs])}")
    nearest = min(pairs)
    print(f"  nearest pair: {nearest[1]} and {nearest[2]} at {nearest[0]} bits")
    wrongly = [pair for pair in pairs if pair[0] <= limit]
    print(f"different photos taken for duplicates: {len(wrongly)} of {len(pairs)} pairs")
    variants_to_original = [
        photo_checks.hash_distance(
            m.perceptual_hash, originals[name.split(" ", 1)[0]].perceptual_hash
        )
        for name, m in good
        if not name.endswith("as taken")
    ]
    near_variants = sum(1 for d in variants_to_original if d <= limit)
    print(
        f"good variants within {limit} bits of their own original (would be refused as a "
        f"second upload of the same shot): {near_variants} of {len(variants_to_original)}"
    )


if __name__ == "__main__":
    main()
