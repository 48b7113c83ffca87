"""Refusing normalised photos that would waste a training, with a reason a person can act on.

Pure logic on what ``images`` made: the 512×512 JPEG a selfie became (or a fitted face
reference), and the share of the upload's pixels that were transparent before it was
flattened onto white. Pillow only: the layer carries no numpy, and each measure is a few
lines of Pillow's C code on a quarter-megapixel image (about 5 ms together).

The thresholds are Settings, chosen from ``bench/selfie_checks.py``'s measurements on good
photos and on blank, blurred, transparent and duplicated versions of them (README,
Benchmarks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, ImageFilter, ImageStat

from avatar_core.logic.images import ProcessedImage
from avatar_core.logic.selfie_rules import (
    BLURRED,
    MOSTLY_TRANSPARENT,
    SINGLE_COLOUR,
    CheckThresholds,
    duplicate_message,
)

# The discrete Laplacian: 0 on flat areas and even gradients, large across edges and fine
# detail. The offset keeps negative responses inside L's 0-255; only responses beyond ±127,
# which only sharp photos have, are clipped.
_LAPLACIAN = ImageFilter.Kernel((3, 3), (0, 1, 0, 1, -4, 1, 0, 1, 0), scale=1, offset=128)
_HASH_SIDE = 8  # dHash: 8 rows of 9 columns give 8 comparisons per row, 64 bits


@dataclass(frozen=True)
class PhotoMeasures:
    transparent_share: float
    grey_stddev: float
    sharpness: float
    perceptual_hash: str  # dHash, 16 hex digits


def measure(image: ProcessedImage) -> PhotoMeasures:
    """Decode the normalised output (what the provider will see) and measure it."""
    with Image.open(BytesIO(image.data)) as decoded:
        grey = _on_white(decoded).convert("L")
    return PhotoMeasures(
        transparent_share=image.transparent_share,
        grey_stddev=float(ImageStat.Stat(grey).stddev[0]),
        sharpness=laplacian_variance(grey),
        perceptual_hash=difference_hash(grey),
    )


def refusal(measures: PhotoMeasures, thresholds: CheckThresholds) -> str | None:
    """The first reason to refuse a photo on its own, or None. A transparent upload is also
    uniform and blurred once flattened, so it is named for what the user can change."""
    if measures.transparent_share > thresholds.max_transparent_share:
        return MOSTLY_TRANSPARENT
    if measures.grey_stddev < thresholds.min_grey_stddev:
        return SINGLE_COLOUR
    if measures.sharpness < thresholds.min_sharpness:
        return BLURRED
    return None


def reference_refusal(measures: PhotoMeasures, thresholds: CheckThresholds) -> str | None:
    """A face reference may be a soft portrait; only the transparent and blank are refused."""
    if measures.transparent_share > thresholds.max_transparent_share:
        return MOSTLY_TRANSPARENT
    if measures.grey_stddev < thresholds.min_grey_stddev:
        return SINGLE_COLOUR
    return None


def duplicate_refusal(
    perceptual_hash: str, accepted: Iterable[tuple[int, str]], max_distance: int
) -> str | None:
    """Name the nearest accepted selfie within ``max_distance`` bits, or None.

    ``accepted`` holds (position, hash) of the model's accepted selfies, the position 1-based
    in the model's selfies by creation order (as the API lists them).
    """
    near = [(hash_distance(perceptual_hash, other), position) for position, other in accepted]
    close = [found for found in near if found[0] <= max_distance]
    if not close:
        return None
    _, position = min(close)
    return duplicate_message(position)


def laplacian_variance(grey: Image.Image) -> float:
    """How much fine detail a grey image has: a blurred photo has almost none.

    Pillow's kernel filters copy the outermost row and column unfiltered, so they are cut off.
    """
    response = grey.filter(_LAPLACIAN)
    inner = response.crop((1, 1, response.width - 1, response.height - 1))
    return float(ImageStat.Stat(inner).var[0])


def difference_hash(image: Image.Image) -> str:
    """dHash: shrink to 9×8 grey, one bit per pair of horizontal neighbours (left brighter).

    Survives re-encoding, resizing and lighting changes (it keeps only the sign of local
    gradients); a mirror image or another pose flips about half the bits.
    """
    small = image.convert("L").resize((_HASH_SIDE + 1, _HASH_SIDE), Image.Resampling.LANCZOS)
    pixels = small.tobytes()
    bits = 0
    for row in range(_HASH_SIDE):
        start = row * (_HASH_SIDE + 1)
        for column in range(_HASH_SIDE):
            left, right = pixels[start + column], pixels[start + column + 1]
            bits = bits << 1 | (left > right)
    return f"{bits:016x}"


def hash_distance(first: str, second: str) -> int:
    """Differing bits of two 16-hex-digit hashes."""
    return (int(first, 16) ^ int(second, 16)).bit_count()


def _on_white(image: Image.Image) -> Image.Image:
    """A fitted reference may keep its alpha: judge it as it looks on a white page."""
    if image.mode not in ("LA", "RGBA"):
        return image
    flat = Image.new("RGB", image.size, (255, 255, 255))
    flat.paste(image.convert("RGBA"), mask=image.getchannel("A"))
    return flat
