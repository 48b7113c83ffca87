"""Synthetic photos made at run time, for the demo and the tests (no real faces are shipped).

A selfie is a face-like composition - hair, skin-toned head with eyes, brows, nose and mouth,
neck and shirt - on a gradient background with blurred shapes, plus sensor-like noise so that
JPEG sizes are those of real photos. Everything varies with the seed: tilt, position, skin,
hair, shirt and background colours. Phone-like EXIF (camera, time, GPS) is written too, so
tests can prove it is stripped.

The scene is drawn at a working resolution of about a megapixel and scaled up, which keeps a
12-megapixel photo fast to make and gives it a camera's soft edges; the noise is added at full
resolution.
"""

from __future__ import annotations

import math
import random
import struct
import zlib
from functools import lru_cache
from io import BytesIO

from PIL import ExifTags, Image, ImageChops, ImageDraw, ImageFilter, ImageOps

Colour = tuple[int, int, int]

_SKIN_TONES: tuple[Colour, ...] = (
    (255, 224, 196),
    (241, 194, 160),
    (224, 172, 132),
    (198, 134, 96),
    (160, 104, 72),
    (112, 72, 48),
    (84, 54, 38),
)
_HAIR_COLOURS: tuple[Colour, ...] = (
    (20, 16, 14),
    (52, 36, 26),
    (96, 64, 40),
    (170, 130, 80),
    (214, 180, 120),
    (140, 60, 30),
    (150, 150, 150),
)
_EYE_COLOURS: tuple[Colour, ...] = ((70, 45, 25), (60, 100, 140), (80, 110, 70), (40, 30, 20))
_WORKING_PIXELS = 600_000
_NOISE_TILE = 509  # not a multiple of the 8-pixel JPEG block, so the tiling leaves no pattern

# Stored pixels = upright pixels turned by the inverse of what a viewer applies for the tag.
_STORE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def selfie_image(seed: int, size: tuple[int, int] = (1200, 1600)) -> Image.Image:
    """The upright RGB selfie for ``seed``, before encoding."""
    background, person = _scene(seed, size)
    background.alpha_composite(person)
    return _add_sensor_noise(_at_size(background.convert("RGB"), size), seed)


def selfie_jpeg(
    seed: int,
    size: tuple[int, int] = (1200, 1600),
    exif_orientation: int | None = None,
    quality: int = 90,
) -> bytes:
    """A selfie JPEG of ``size`` as seen upright (the stored pixels are turned if oriented)."""
    return exif_oriented_jpeg(selfie_image(seed, size), exif_orientation, quality=quality)


def blurred_selfie_jpeg(seed: int, size: tuple[int, int] = (1200, 1600)) -> bytes:
    """Out of focus: at the 512×512 ingest makes of it, like a Gaussian blur of radius 5."""
    image = selfie_image(seed, size).filter(ImageFilter.GaussianBlur(min(size) / 100))
    return exif_oriented_jpeg(image)


def exif_oriented_jpeg(
    upright: Image.Image, exif_orientation: int | None = None, *, quality: int = 90
) -> bytes:
    """Encode ``upright`` so that it only looks upright once the EXIF orientation is applied.

    That is what a phone writes: it stores the sensor's pixels and tags how to turn them.
    """
    exif = _camera_exif()
    stored = upright
    if exif_orientation is not None:
        if not 1 <= exif_orientation <= 8:
            raise ValueError(f"EXIF orientation must be 1-8, not {exif_orientation}")
        exif[ExifTags.Base.Orientation] = exif_orientation
        if exif_orientation in _STORE_FOR_ORIENTATION:
            stored = upright.transpose(_STORE_FOR_ORIENTATION[exif_orientation])
    buffer = BytesIO()
    stored.convert("RGB").save(buffer, "JPEG", quality=quality, exif=exif)
    return buffer.getvalue()


def selfie_png(seed: int, size: tuple[int, int] = (800, 800), alpha: bool = False) -> bytes:
    """A selfie PNG; with ``alpha`` the background is transparent (a cut-out portrait)."""
    background, person = _scene(seed, size)
    if alpha:
        image = _add_sensor_noise(_at_size(person.convert("RGB"), size), seed)
        image.putalpha(_at_size(person.getchannel("A"), size))
    else:
        background.alpha_composite(person)
        image = _add_sensor_noise(_at_size(background.convert("RGB"), size), seed)
    buffer = BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def selfie_png16(seed: int, size: tuple[int, int] = (600, 600), alpha: bool = False) -> bytes:
    """A 16-bit-per-channel PNG (RGB or RGBA), which Pillow cannot write itself."""
    background, person = _scene(seed, size)
    if alpha:
        image = _at_size(person, size)
    else:
        background.alpha_composite(person)
        image = _at_size(background.convert("RGB"), size)
    width, height = image.size
    channels = len(image.getbands())
    # Doubling every byte turns 8-bit v into big-endian 16-bit v*257; a zero column in front
    # becomes each row's filter byte ("none").
    samples = Image.frombytes("L", (width * channels, height), image.tobytes())
    doubled = samples.resize((width * channels * 2, height), Image.Resampling.NEAREST)
    rows = Image.new("L", (width * channels * 2 + 1, height), 0)
    rows.paste(doubled, (1, 0))
    colour_type = 6 if alpha else 2
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return _png_file(header, zlib.compress(rows.tobytes(), 6))


def stored_for_orientation(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera stores for ``upright`` when it tags them with ``orientation``."""
    if not 1 <= orientation <= 8:
        raise ValueError(f"EXIF orientation must be 1-8, not {orientation}")
    transpose = _STORE_FOR_ORIENTATION.get(orientation)
    return upright if transpose is None else upright.transpose(transpose)


def orientation_exif(orientation: int) -> Image.Exif:
    """A phone's EXIF (camera, time, GPS) tagged with ``orientation``."""
    exif = _camera_exif()
    exif[ExifTags.Base.Orientation] = orientation
    return exif


def heic(image: Image.Image, **options: object) -> bytes:
    """``image`` encoded as HEIC, as an iPhone saves it (pillow_heif's x265 encoder).

    An EXIF orientation in ``options`` becomes the file's own irot/imir transform: pillow_heif
    stores the pixels as given and tags the turn, keeping the EXIF tag as well.
    """
    from pillow_heif import register_heif_opener

    register_heif_opener()
    buffer = BytesIO()
    image.save(buffer, "HEIF", **{"quality": 85, **options})
    return buffer.getvalue()


def selfie_heic(seed: int, size: tuple[int, int] = (1200, 1600), quality: int = 85) -> bytes:
    """A selfie HEIC of ``size`` with a phone's EXIF, like an iPhone's camera roll."""
    exif = _camera_exif()
    return heic(selfie_image(seed, size), quality=quality, exif=exif.tobytes())


def selfie_webp(seed: int, size: tuple[int, int] = (1200, 1600), quality: int = 85) -> bytes:
    """A lossy selfie WebP with a phone's EXIF, as Android cameras and browsers save it."""
    buffer = BytesIO()
    selfie_image(seed, size).save(buffer, "WEBP", quality=quality, exif=_camera_exif())
    return buffer.getvalue()


def animated_webp(seeds: tuple[int, ...] = (1, 2, 3), size: tuple[int, int] = (600, 800)) -> bytes:
    """An animated WebP, one selfie per frame (a "motion photo" shared from a phone)."""
    frames = [selfie_image(seed, size) for seed in seeds]
    buffer = BytesIO()
    frames[0].save(
        buffer, "WEBP", save_all=True, append_images=frames[1:], duration=200, quality=80
    )
    return buffer.getvalue()


@lru_cache(maxsize=4)
def large_jpeg(megapixels: float = 12, seed: int = 0) -> bytes:
    """A landscape 4:3 phone-sized photo: 4000x3000 for 12 megapixels."""
    width = round(math.sqrt(megapixels * 1_000_000 * 4 / 3))
    return selfie_jpeg(seed, size=(width, round(width * 3 / 4)), quality=90)


def tiny_jpeg(size: tuple[int, int] = (200, 180)) -> bytes:
    return selfie_jpeg(3, size=size)


def truncated_jpeg() -> bytes:
    """A selfie JPEG cut off part-way through its image data, like an interrupted upload."""
    whole = selfie_jpeg(5, size=(900, 1200))
    return whole[: len(whole) * 55 // 100]


def huge_header_jpeg(width: int = 20000, height: int = 20000) -> bytes:
    """A small, valid JPEG whose frame header (SOF) claims ``width`` x ``height``."""
    data = bytearray(selfie_jpeg(11, size=(320, 320)))
    position = 2
    while data[position + 1] not in (0xC0, 0xC1, 0xC2):
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    struct.pack_into(">HH", data, position + 5, height, width)
    return bytes(data)


@lru_cache(maxsize=4)
def decompression_bomb_png(side: int = 30000) -> bytes:
    """A genuine bomb: a ~100 KB PNG of a black ``side`` x ``side`` image (900 MB decoded)."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return _png_file(header, _zlib_of_zeros((1 + (side + 7) // 8) * side))


def text_file_named_jpg() -> bytes:
    """What a user sends when they rename a note to ``selfie.jpg``."""
    return b"My selfie for the avatar app\nTaken on holiday, please make me look good!\n"


# --- the scene ---------------------------------------------------------------------------------


def _scene(seed: int, size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """(background RGBA, person RGBA on transparent) at the working resolution for ``size``."""
    rng = random.Random(seed)
    width, height = size
    scale = min(1.0, math.sqrt(_WORKING_PIXELS / (width * height)))
    work = (max(16, round(width * scale)), max(16, round(height * scale)))
    return _background(rng, work), _person(rng, work)


def _at_size(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)


def _background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    width, height = size
    top = _random_colour(rng, 90, 235)
    bottom = _random_colour(rng, 30, 160)
    # Cropping the middle of a rotated, twice-as-large gradient leaves no empty corners.
    gradient = Image.linear_gradient("L").resize((512, 512))
    gradient = gradient.rotate(rng.uniform(-35, 35), Image.Resampling.BILINEAR)
    gradient = gradient.crop((128, 128, 384, 384)).resize(size, Image.Resampling.BILINEAR)
    image = ImageOps.colorize(gradient, top, bottom).convert("RGBA")
    # Out-of-focus room: shapes drawn and blurred at a quarter of the size, then scaled up.
    small = (max(4, width // 4), max(4, height // 4))
    shapes = Image.new("RGBA", small, (0, 0, 0, 0))
    draw = ImageDraw.Draw(shapes)
    for _ in range(rng.randint(6, 14)):
        x, y = rng.uniform(-0.1, 1.1) * small[0], rng.uniform(-0.1, 1.1) * small[1]
        w, h = rng.uniform(0.05, 0.45) * small[0], rng.uniform(0.05, 0.45) * small[1]
        fill = (*_random_colour(rng, 20, 250), rng.randint(60, 170))
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + w, y + h), fill=fill)
        else:
            draw.rectangle((x, y, x + w, y + h), fill=fill)
    shapes = shapes.filter(ImageFilter.GaussianBlur(max(small) / 60))
    image.alpha_composite(shapes.resize(size, Image.Resampling.BILINEAR))
    return image


def _person(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    width, height = size
    unit = min(width, height)
    skin = rng.choice(_SKIN_TONES)
    hair = rng.choice(_HAIR_COLOURS)
    shirt = _random_colour(rng, 20, 230)
    # Drawn with a margin, so that turning the layer leaves no gaps at the frame's edges.
    margin = round(unit * 0.3)
    cx = margin + width / 2 + rng.uniform(-0.07, 0.07) * width
    cy = margin + height * rng.uniform(0.38, 0.46)
    head_w = unit * rng.uniform(0.32, 0.42)
    head_h = head_w * rng.uniform(1.22, 1.36)

    layer = Image.new("RGBA", (width + 2 * margin, height + 2 * margin), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    shoulders_top = cy + head_h * 0.62
    draw.ellipse(
        (cx - unit * 0.62, shoulders_top, cx + unit * 0.62, shoulders_top + unit * 1.6),
        fill=(*shirt, 255),
    )
    neck_w = head_w * 0.42
    draw.rectangle(
        (cx - neck_w / 2, cy + head_h * 0.3, cx + neck_w / 2, shoulders_top + unit * 0.05),
        fill=(*_shade(skin, 0.82), 255),
    )
    draw.ellipse(  # hair behind the head
        (cx - head_w * 0.62, cy - head_h * 0.62, cx + head_w * 0.62, cy + head_h * 0.25),
        fill=(*hair, 255),
    )
    for side in (-1, 1):  # ears
        ex = cx + side * head_w * 0.5
        draw.ellipse(
            (ex - head_w * 0.08, cy - head_h * 0.05, ex + head_w * 0.08, cy + head_h * 0.12),
            fill=(*_shade(skin, 0.9), 255),
        )
    for step in range(8):  # face, lit from the front: lighter towards the middle
        shrink = step / 8
        rx, ry = head_w / 2 * (1 - shrink * 0.55), head_h / 2 * (1 - shrink * 0.5)
        draw.ellipse(
            (cx - rx, cy - ry + shrink * head_h * 0.06, cx + rx, cy + ry),
            fill=(*_shade(skin, 0.86 + shrink * 0.2), 255),
        )
    draw.chord(  # fringe
        (cx - head_w * 0.56, cy - head_h * 0.6, cx + head_w * 0.56, cy - head_h * 0.02),
        start=180 + rng.uniform(-8, 0),
        end=360 + rng.uniform(0, 8),
        fill=(*hair, 255),
    )
    eye_y = cy + head_h * 0.02
    eye_dx, eye_r = head_w * 0.2, head_w * 0.075
    iris = rng.choice(_EYE_COLOURS)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        draw.ellipse(
            (ex - eye_r, eye_y - eye_r * 0.55, ex + eye_r, eye_y + eye_r * 0.55),
            fill=(245, 245, 240, 255),
        )
        draw.ellipse(
            (ex - eye_r * 0.5, eye_y - eye_r * 0.5, ex + eye_r * 0.5, eye_y + eye_r * 0.5),
            fill=(*iris, 255),
        )
        draw.ellipse(
            (ex - eye_r * 0.22, eye_y - eye_r * 0.22, ex + eye_r * 0.22, eye_y + eye_r * 0.22),
            fill=(10, 10, 10, 255),
        )
        brow_y = eye_y - eye_r * 1.4
        draw.line(  # outer end up, inner end down
            (ex + side * eye_r * 1.1, brow_y, ex - side * eye_r, brow_y + eye_r * 0.25),
            fill=(*_shade(hair, 0.8), 255),
            width=max(1, round(eye_r * 0.35)),
        )
    nose_top, nose_bottom = eye_y + head_h * 0.05, eye_y + head_h * 0.2
    draw.line(
        (cx, nose_top, cx + head_w * 0.03, nose_bottom),
        fill=(*_shade(skin, 0.72), 255),
        width=max(1, round(head_w * 0.02)),
    )
    mouth_y = cy + head_h * 0.3
    mouth_w = head_w * rng.uniform(0.28, 0.38)
    draw.chord(
        (cx - mouth_w / 2, mouth_y - head_h * 0.05, cx + mouth_w / 2, mouth_y + head_h * 0.06),
        start=0,
        end=180,
        fill=(*_shade((190, 80, 80), rng.uniform(0.75, 1.05)), 255),
    )
    layer = layer.rotate(rng.uniform(-9, 9), Image.Resampling.BICUBIC, center=(cx, cy))
    return layer.crop((margin, margin, margin + width, margin + height))


def _add_sensor_noise(image: Image.Image, seed: int) -> Image.Image:
    rng = random.Random(seed)
    tile = Image.effect_noise((_NOISE_TILE, _NOISE_TILE), rng.uniform(5, 9))
    channels = (
        tile,
        tile.transpose(Image.Transpose.ROTATE_90),
        tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    )
    noise = Image.merge("RGB", channels)
    tiled = Image.new("RGB", image.size)
    for y in range(0, image.height, _NOISE_TILE):
        for x in range(0, image.width, _NOISE_TILE):
            tiled.paste(noise, (x, y))
    return ImageChops.add(image, tiled, scale=1.0, offset=-128)


def _random_colour(rng: random.Random, low: int, high: int) -> Colour:
    return rng.randint(low, high), rng.randint(low, high), rng.randint(low, high)


def _shade(colour: Colour, factor: float) -> Colour:
    r, g, b = (min(255, max(0, round(channel * factor))) for channel in colour)
    return r, g, b


def _camera_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Synthetic"
    exif[ExifTags.Base.Model] = "avatar-pipeline test camera"
    exif[ExifTags.Base.DateTime] = "2025:06:01 12:00:00"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (13.0, 24.0, 36.0)
    return exif


def _png_file(header: bytes, compressed: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        checksum = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", checksum)

    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", compressed) + chunk(b"IEND", b"")


def _zlib_of_zeros(count: int) -> bytes:
    """A valid zlib stream of ``count`` zero bytes, without compressing them all.

    After a full flush the compressor starts afresh, so one compressed block of zeros can be
    repeated; the stream is closed by an empty final block and the Adler-32 of all the data.
    """
    block_size = 1 << 20
    blocks, rest = divmod(count, block_size)
    compressor = zlib.compressobj(9)
    first = compressor.compress(bytes(block_size)) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(bytes(block_size)) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.compress(bytes(rest)) + compressor.flush(zlib.Z_FULL_FLUSH) if rest else b""
    body = first + repeated * (blocks - 1) if blocks else first[:2]
    checksum = 1
    zeros = bytes(block_size)
    for _ in range(blocks):
        checksum = zlib.adler32(zeros, checksum)
    checksum = zlib.adler32(bytes(rest), checksum)
    final_empty_block = b"\x03\x00"
    return body + tail + final_empty_block + struct.pack(">I", checksum)
