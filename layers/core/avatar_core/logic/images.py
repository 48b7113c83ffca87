"""Checking and normalising uploaded images: selfies for training, references for face avatars.

JPEG, PNG, WebP and HEIC/HEIF come in; JPEG (or a PNG cut-out reference) goes out.

Pure logic: bytes in, ``ProcessedImage`` out, ``ImageRejected`` with a message the end user can
act on for anything we cannot use. The order of checks is what keeps a hostile upload cheap:
magic bytes, file size, the dimensions declared in the header (read by our own small parsers
of JPEG segments, PNG chunks, WebP's RIFF chunks and HEIF's ISOBMFF boxes, so the
decompression-bomb limit never depends on Pillow's process-global
``Image.MAX_IMAGE_PIXELS``), the file's structure being sane (not millions of tiny segments or
chunks, nor a progressive JPEG whose scans make the decoder walk its blocks thousands of
times) and complete, and only then decoding.

Truncated files are rejected by that structural check as well as by Pillow itself, so the
answer stays the same even if some other code in the process flips the global
``ImageFile.LOAD_TRUNCATED_IMAGES`` (which makes Pillow pad missing data with grey).
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from io import BytesIO

from PIL import ExifTags, Image, ImageCms, ImageFile

from avatar_core.errors import ImageRejected

JPEG = "JPEG"
PNG = "PNG"
WEBP = "WEBP"
HEIF = "HEIF"  # HEIC (HEVC-coded HEIF) included; Pillow's format name via pillow_heif

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_SNIFF_BYTES = 64  # enough for an ftyp box's major and first compatible brands
# HEVC-coded HEIF brands (still images, collections and sequences), and the structural brands
# that HEIF and AVIF share, which need the compatible brands to tell them apart.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_SHARED_BRANDS = frozenset({b"mif1", b"msf1", b"mif2", b"miaf"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

# Formats people do upload instead, named so the message tells them what to change.
_OTHER_FORMATS: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftypavif", "AVIF"),
    (4, b"ftypavis", "AVIF"),
    (0, b"GIF8", "GIF"),
    (0, b"%PDF", "PDF"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
)

# SOFn markers carry the frame size; C4 (DHT), C8 (reserved) and CC (DAC) share the range.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE_MARKERS = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
_JPEG_SOS = 0xDA
_JPEG_EOI = 0xD9
# After a scan's entropy-coded data the next marker is an FF that is neither stuffing (FF 00),
# a restart marker (FF D0-D7) nor a fill byte before another FF.
_JPEG_MARKER_AFTER_SCAN = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")
_JPEG_FILL = re.compile(rb"\xff+")

# Structure a hostile file can multiply to make parsing (ours and Pillow's, which walks the
# JPEG header and PNG chunks in Python) or decoding slow, capped far above real photos'.
_MAX_PARTS = 10_000  # JPEG marker segments; PNG chunks other than image data
_MAX_PNG_DATA_CHUNKS = 50_000  # IDAT/fdAT: encoders split the image data, a few thousand at most
_MAX_JPEG_FILL_BYTES = 65_536  # 0xFF padding and stray bytes between the header's segments
# HEIF: the pixels of every image item (the primary grid and its tiles, thumbnails, depth and
# gain maps), against the primary image's own limit. A grid and its tiles count twice, so a
# phone photo's items add up to about 2-2.5 times the primary's pixels.
_HEIF_ITEM_PIXELS_PER_IMAGE_PIXEL = 3
# A progressive JPEG's decoder visits every 8x8 block of the components in each scan. Real
# progressive photos need about 8-14 such passes over a full-size image; this many passes over
# a maximum-size image is what a decode may cost, however many scans the file has.
_SCAN_PASSES_AT_MAX_PIXELS = 16

# What turns the stored pixels upright, per EXIF orientation (same table as ImageOps).
_UPRIGHT_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIDEWAYS_ORIENTATIONS = frozenset({5, 6, 7, 8})

_SIXTEEN_BIT_GREY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_WHITE = (255, 255, 255)
# A pixel this transparent (alpha below it, of 255) shows nothing of the photo.
TRANSPARENT_ALPHA = 16
_SRGB = ImageCms.createProfile("sRGB")
_ICC_COLOUR_SPACE_FOR_MODE = {"RGB": "RGB", "CMYK": "CMYK", "L": "GRAY"}

_DAMAGED = "the image file is damaged or incomplete"
# Messages say "200×180 pixels"; the sign is escaped because ruff flags it as confusable.
_BY = "\N{MULTIPLICATION SIGN}"

# What Pillow and its codecs raise for data they cannot make sense of.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    EOFError,
    struct.error,
    zlib.error,
)

_PROFILE_ERRORS: tuple[type[BaseException], ...] = (ImageCms.PyCMSError, *_DECODE_ERRORS)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 15 * 1024 * 1024
    max_pixels: int = 40_000_000  # decompression-bomb limit, checked from the header
    min_side: int = 256  # short side, after EXIF orientation

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pixels < 1 or self.min_side < 1:
            raise ValueError(f"image limits must be positive: {self}")


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes
    content_type: str  # "image/jpeg" or "image/png"
    width: int
    height: int
    source_format: str  # "JPEG", "PNG", "WEBP" or "HEIF", from the magic bytes
    source_width: int  # after EXIF orientation
    source_height: int
    frames_in_file: int = 1  # images or frames in the upload; only the primary one is used
    # pixels (of the crop or fit, before any flattening onto white) below TRANSPARENT_ALPHA
    transparent_share: float = 0.0


def sniff_format(head: bytes) -> str | None:
    """``"JPEG"``, ``"PNG"``, ``"WEBP"`` or ``"HEIF"`` from the magic bytes alone, else None.

    File names and declared content types are never consulted: they are whatever the client
    says they are. AVIF shares HEIF's container but not its codec, and stays refused.
    """
    if head.startswith(_JPEG_MAGIC):
        return JPEG
    if head.startswith(_PNG_MAGIC):
        return PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    brands = _ftyp_brands(head)
    if brands and (
        brands[0] in _HEIF_BRANDS
        or (brands[0] in _SHARED_BRANDS and not _AVIF_BRANDS.intersection(brands))
    ):
        return HEIF
    return None


def _ftyp_brands(head: bytes) -> list[bytes]:
    """Major then compatible brands of a leading ftyp box, as far as ``head`` holds them."""
    if head[4:8] != b"ftyp" or len(head) < 12:
        return []
    (size,) = struct.unpack_from(">I", head)
    box = head[8 : max(size, 16)]
    return [box[0:4]] + [box[i : i + 4] for i in range(8, len(box) - 3, 4)]


def normalise_selfie(
    data: bytes, *, limits: ImageLimits, side: int = 512, quality: int = 90
) -> ProcessedImage:
    """An upright, centre-cropped ``side`` x ``side`` RGB JPEG without metadata.

    A large JPEG is decoded at a reduced DCT scale (Pillow's draft mode), never below what the
    crop to ``side`` needs, which is most of the time and memory saved on a phone photo.
    """
    if side < 1:
        raise ValueError("side must be positive")
    with _opened(data, limits) as source:
        short = min(source.raw_width, source.raw_height)
        needed = (
            math.ceil(source.raw_width * side / short),
            math.ceil(source.raw_height * side / short),
        )
        image = _decode(source, needed)
        with _processing_errors():
            width, height = image.size
            crop = min(width, height)
            # A centred square maps onto itself under every EXIF orientation, so cropping and
            # resizing the stored pixels first and turning only the small result is exact.
            box = ((width - crop) / 2, (height - crop) / 2, (width + crop) / 2, (height + crop) / 2)
            square = _resampleable(image).resize((side, side), Image.Resampling.LANCZOS, box=box)
            transparent = _transparent_share(square)
            upright = _orient(_to_srgb(square, source.icc_profile, keep_alpha=False), source)
            return _encode(upright, source, quality=quality, transparent_share=transparent)


def fit_reference(
    data: bytes, *, limits: ImageLimits, max_side: int = 1536, quality: int = 92
) -> ProcessedImage:
    """An upright image that fits inside ``max_side`` x ``max_side``, keeping its aspect ratio.

    Never upscaled. JPEG output, except that a PNG, WebP or HEIF with real transparency
    becomes an RGBA PNG (a face-avatar reference may be a cut-out).
    """
    if max_side < 1:
        raise ValueError("max_side must be positive")
    with _opened(data, limits) as source:
        target = _fit_inside(source.raw_width, source.raw_height, max_side)
        image = _decode(source, target)
        with _processing_errors():
            image = _resampleable(image)
            keep_alpha = source.format != JPEG and _has_transparency(image)
            if image.size != target:
                image = image.resize(target, Image.Resampling.LANCZOS)
            transparent = _transparent_share(image)
            upright = _orient(_to_srgb(image, source.icc_profile, keep_alpha=keep_alpha), source)
            return _encode(upright, source, quality=quality, transparent_share=transparent)


# --- opening: everything that can be decided before decoding ------------------------------


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    complete: bool  # the file's structure runs to its end marker
    scans: int = 0  # JPEG scans
    scan_blocks: int = 0  # JPEG: 8x8 blocks the decoder visits, summed over the scans
    part_sizes: tuple[tuple[int, int], ...] = ()  # WebP frames, HEIF image items: each decoded
    part_pixels: int = 0  # HEIF: summed over its image items
    quarter_turned: bool = False  # HEIF: an irot of 90 or 270 degrees on the primary image

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


@dataclass
class _Source:
    image: Image.Image
    format: str
    raw_width: int  # as stored, before EXIF orientation
    raw_height: int
    limits: ImageLimits
    icc_profile: bytes | None
    frames: int = 1
    orientation: int = 1

    @property
    def upright_size(self) -> tuple[int, int]:
        if self.orientation in _SIDEWAYS_ORIENTATIONS:
            return self.raw_height, self.raw_width
        return self.raw_width, self.raw_height


@contextmanager
def _opened(data: bytes, limits: ImageLimits) -> Iterator[_Source]:
    if not data:
        raise ImageRejected("the file is empty")
    image_format = sniff_format(data[:_SNIFF_BYTES])
    if image_format is None:
        raise ImageRejected(_not_supported(data[:_SNIFF_BYTES]))
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            f"file too large: {_megabytes(len(data))} MB, at most {_megabytes(limits.max_bytes)} MB"
        )
    header = _HEADER_READERS[image_format](data)
    if header is None or header.width < 1 or header.height < 1:
        raise ImageRejected(_DAMAGED)
    _check_pixel_count(header.width, header.height, limits)
    for width, height in header.part_sizes:
        _check_pixel_count(width, height, limits)
    if header.part_pixels > limits.max_pixels * _HEIF_ITEM_PIXELS_PER_IMAGE_PIXEL:
        raise ImageRejected(
            "the image file holds too many pixels in its parts: save it again as a JPEG"
        )
    if header.scan_blocks > limits.max_pixels // 64 * _SCAN_PASSES_AT_MAX_PIXELS:
        raise ImageRejected(
            f"the image has too many progressive scans for its size ({header.scans}): "
            "save it again as a standard (baseline) JPEG"
        )
    if not header.complete:
        raise ImageRejected(_DAMAGED)
    with _decoding_errors(header.width, header.height, limits):
        if image_format == HEIF:
            _register_heif()
        image = Image.open(BytesIO(data), formats=[image_format])
    with image:
        if not _header_matches(image, header, image_format):
            raise ImageRejected(_DAMAGED)
        with _decoding_errors(header.width, header.height, limits):
            frames = max(1, int(getattr(image, "n_frames", 1)))
        yield _Source(
            image=image,
            format=image_format,
            raw_width=image.width,
            raw_height=image.height,
            limits=limits,
            icc_profile=image.info.get("icc_profile") or None,
            frames=frames,
        )


def _header_matches(image: Image.Image, header: _Header, image_format: str) -> bool:
    """libheif reports the size after the file's own rotation and clean-aperture crop."""
    if image_format != HEIF:
        return image.size == (header.width, header.height)
    width, height = (header.height, header.width) if header.quarter_turned else header.size
    return 1 <= image.width <= width and 1 <= image.height <= height


@cache
def _register_heif() -> None:
    """Imported here, not at module level: loading libheif costs every cold start otherwise."""
    from pi_heif import register_heif_opener

    register_heif_opener()


def _decode(source: _Source, needed: tuple[int, int]) -> Image.Image:
    """Decode (a JPEG at the smallest DCT scale that still covers ``needed``), then judge size.

    Turning never changes the short side, so a too-small image is refused without decoding;
    its orientation is still read, to tell the user the size they see.
    """
    image = source.image
    if min(source.raw_width, source.raw_height) >= source.limits.min_side:
        with _decoding_errors(source.raw_width, source.raw_height, source.limits):
            if source.format == JPEG:
                image.draft("RGB", needed)
            if source.format == HEIF:
                with _truncated_images_refused():
                    image.load()
            else:
                image.load()
    source.orientation = _orientation(image, source.format)
    width, height = source.upright_size
    if min(width, height) < source.limits.min_side:
        raise ImageRejected(
            f"image too small: {width}{_BY}{height} pixels, need at least "
            f"{source.limits.min_side} px on the short side"
        )
    return image


@contextmanager
def _truncated_images_refused() -> Iterator[None]:
    """pillow_heif hands back a blank image for data libheif cannot decode when Pillow's global
    LOAD_TRUNCATED_IMAGES is on, and our header walk does not follow the item locations
    (iloc) into the file, so for HEIF the global is held off while it decodes. A Lambda
    sandbox runs one event at a time, so nothing else sees the change."""
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


@contextmanager
def _decoding_errors(width: int, height: int, limits: ImageLimits) -> Iterator[None]:
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise ImageRejected(_too_many_pixels(width, height, limits)) from exc
    except MemoryError as exc:
        raise ImageRejected("the image is too large to process") from exc
    except _DECODE_ERRORS as exc:
        raise ImageRejected(_DAMAGED) from exc


@contextmanager
def _processing_errors() -> Iterator[None]:
    """After decoding, Pillow still reads the file's palette, transparency and profile while
    converting; what it cannot make sense of there is damage too."""
    try:
        yield
    except MemoryError as exc:
        raise ImageRejected("the image is too large to process") from exc
    except _DECODE_ERRORS as exc:
        raise ImageRejected(_DAMAGED) from exc


def _check_pixel_count(width: int, height: int, limits: ImageLimits) -> None:
    if width * height > limits.max_pixels:
        raise ImageRejected(_too_many_pixels(width, height, limits))


def _too_many_pixels(width: int, height: int, limits: ImageLimits) -> str:
    return (
        f"image too large: {width}{_BY}{height} pixels, "
        f"at most {limits.max_pixels / 1_000_000:g} megapixels"
    )


_NOT_SUPPORTED = "not a JPEG, PNG, HEIC or WebP image"


def _not_supported(head: bytes) -> str:
    named = next(
        (name for offset, magic, name in _OTHER_FORMATS if head[offset:].startswith(magic)),
        "AVIF" if _AVIF_BRANDS.intersection(_ftyp_brands(head)) else None,
    )
    if named is None:
        return _NOT_SUPPORTED
    return f"{_NOT_SUPPORTED} ({named} is not supported): save it as JPEG"


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0")


def _read_jpeg_header(data: bytes) -> _Header | None:
    """Frame size from the SOFn segment; complete when the segments and scans run to an EOI.

    Segments are walked by their lengths, so an EXIF thumbnail's own markers are skipped.
    Entropy-coded data cannot contain a marker (FF is always stuffed), so a scan ends at the
    next FF that is not stuffing, a restart marker or fill. Every scan's header is read, to
    count the blocks the decoder will visit.
    """
    size: tuple[int, int] | None = None
    component_blocks: dict[int, int] = {}
    scans = scan_blocks = parts = skipped_bytes = 0
    position, end = 2, len(data)
    while position < end:
        if scans:
            found = _JPEG_MARKER_AFTER_SCAN.search(data, position)
            if found is None:
                break
            position = found.start()
        marker_at = _jpeg_next_marker(data, position, _MAX_JPEG_FILL_BYTES - skipped_bytes)
        if marker_at is None:
            break
        skipped_bytes += marker_at - 1 - position
        marker = data[marker_at]
        position = marker_at + 1
        if marker == _JPEG_EOI:
            if size is None or not scans:
                return None
            return _Header(size[0], size[1], complete=True, scans=scans, scan_blocks=scan_blocks)
        if marker in _JPEG_STANDALONE_MARKERS:
            continue
        parts += 1
        if parts > _MAX_PARTS:
            raise ImageRejected(_too_many_blocks(_MAX_PARTS))
        if position + 2 > end:
            break
        (length,) = struct.unpack_from(">H", data, position)
        if length < 2:
            return None
        if position + length > end:
            break
        segment = data[position + 2 : position + length]
        if marker in _JPEG_SOF_MARKERS:
            frame = _jpeg_frame(segment)
            if frame is None:
                return None
            size, component_blocks = frame
        elif marker == _JPEG_SOS:
            if size is None or not segment or len(segment) < 1 + 2 * segment[0]:
                return None
            scans += 1
            scan_blocks += sum(
                component_blocks.get(c, 0) for c in segment[1 : 1 + 2 * segment[0] : 2]
            )
        position += length
    if size is None:
        return None
    return _Header(size[0], size[1], complete=False, scans=scans, scan_blocks=scan_blocks)


def _jpeg_next_marker(data: bytes, position: int, budget: int) -> int | None:
    """Where the next marker's code byte is, skipping what libjpeg's next_marker() skips.

    Anything up to an FF is stray ("Corrupt JPEG data: N extraneous bytes before marker"),
    then comes FF fill, and an FF 00 there is stray too. At most ``budget`` bytes are skipped:
    None when the file ends first (it is incomplete); refused when there are more.
    """
    end = len(data)
    limit = min(end, position + max(budget, 0) + 2)
    search_from = position
    while True:
        first_ff = data.find(b"\xff", search_from, limit)
        fill = None if first_ff < 0 else _JPEG_FILL.match(data, first_ff, limit)
        if fill is None or fill.end() >= limit:
            if limit == end:
                return None
            raise ImageRejected(
                f"the image file has too much padding (more than {_MAX_JPEG_FILL_BYTES} "
                "bytes): save it again as a JPEG or PNG"
            )
        if data[fill.end()] != 0x00:
            return fill.end()
        search_from = fill.end() + 1


def _jpeg_frame(segment: bytes) -> tuple[tuple[int, int], dict[int, int]] | None:
    """((width, height), 8x8 blocks per component id) from a SOFn segment's body."""
    if len(segment) < 6:
        return None
    height, width, count = struct.unpack_from(">HHB", segment, 1)
    if len(segment) < 6 + 3 * count:
        return None
    sampling = [
        (segment[6 + 3 * i], segment[7 + 3 * i] >> 4, segment[7 + 3 * i] & 15) for i in range(count)
    ]
    widest = max((h for _, h, _ in sampling), default=1) or 1
    tallest = max((v for _, _, v in sampling), default=1) or 1
    blocks = {
        component: math.ceil(math.ceil(width * h / widest) / 8)
        * math.ceil(math.ceil(height * v / tallest) / 8)
        for component, h, v in sampling
    }
    return (width, height), blocks


def _read_png_header(data: bytes) -> _Header | None:
    """Size from IHDR (which must come first, with a good CRC, so that a damaged header is not
    reported as a huge image); complete when the chunks run to IEND."""
    position, end = len(_PNG_MAGIC), len(data)
    if position + 8 + 13 + 4 > end:
        return None
    length, chunk_type = struct.unpack_from(">I4s", data, position)
    if chunk_type != b"IHDR" or length != 13:
        return None
    (crc,) = struct.unpack_from(">I", data, position + 8 + 13)
    if zlib.crc32(data[position + 4 : position + 8 + 13]) != crc:
        return None
    width, height = struct.unpack_from(">II", data, position + 8)
    seen_image_data = False
    parts = data_chunks = 0
    while position + 8 <= end:
        length, chunk_type = struct.unpack_from(">I4s", data, position)
        if length >= 2**31:
            return None
        position += 8 + length + 4
        if position > end:
            break
        if chunk_type in (b"IDAT", b"fdAT"):
            seen_image_data = seen_image_data or chunk_type == b"IDAT"
            data_chunks += 1
            if data_chunks > _MAX_PNG_DATA_CHUNKS:
                raise ImageRejected(
                    f"the image data is split into too many pieces (more than "
                    f"{_MAX_PNG_DATA_CHUNKS}): save it again as a JPEG or PNG"
                )
        elif chunk_type == b"IEND":
            return _Header(width, height, complete=seen_image_data)
        else:
            parts += 1
            if parts > _MAX_PARTS:
                raise ImageRejected(_too_many_blocks(_MAX_PARTS))
    return _Header(width, height, complete=False)


def _read_webp_header(data: bytes) -> _Header | None:
    """Canvas size from VP8X (or the one frame's VP8/VP8L bitstream header), every animation
    frame's size from its ANMF chunk; complete when the chunks run to the RIFF's end."""
    if len(data) < 12:
        return None
    (riff_end,) = struct.unpack_from("<I", data, 4)
    riff_end += 8
    end = min(riff_end, len(data))
    size: tuple[int, int] | None = None
    frames: list[tuple[int, int]] = []
    position = 12
    parts = 0
    while position + 8 <= end:
        kind, length = struct.unpack_from("<4sI", data, position)
        body = data[position + 8 : min(position + 8 + length, position + 8 + 30)]
        parts += 1
        if parts > _MAX_PARTS:
            raise ImageRejected(_too_many_blocks(_MAX_PARTS))
        if kind == b"VP8X" and position == 12 and len(body) >= 10:
            size = (1 + _u24(body, 4), 1 + _u24(body, 7))
        elif kind == b"ANMF" and len(body) >= 12:
            frames.append((1 + _u24(body, 6), 1 + _u24(body, 9)))
        elif kind in (b"VP8 ", b"VP8L"):
            bitstream = _vp8_size(body) if kind == b"VP8 " else _vp8l_size(body)
            if bitstream is None:
                return None
            frames.append(bitstream)
            size = size or bitstream
        position += 8 + length + (length & 1)
    if size is None or not frames:
        return None
    complete = riff_end <= len(data) and position == riff_end
    return _Header(size[0], size[1], complete=complete, part_sizes=tuple(frames))


def _u24(body: bytes, offset: int) -> int:
    return int.from_bytes(body[offset : offset + 3], "little")


def _vp8_size(body: bytes) -> tuple[int, int] | None:
    """A lossy key frame: 3 bytes of frame tag, the start code, 14-bit width and height."""
    if len(body) < 10 or body[3:6] != b"\x9d\x01\x2a":
        return None
    width, height = struct.unpack_from("<HH", body, 6)
    return width & 0x3FFF, height & 0x3FFF


def _vp8l_size(body: bytes) -> tuple[int, int] | None:
    """Lossless: the signature byte, then width - 1 and height - 1 in 14 bits each."""
    if len(body) < 5 or body[0] != 0x2F:
        return None
    (bits,) = struct.unpack_from("<I", body, 1)
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1


def _read_heif_header(data: bytes) -> _Header | None:
    """The primary item's ``ispe`` (and whether an ``irot`` turns it a quarter), from a bounded
    walk of meta → pitm, iinf, iprp → ipco, ipma; complete when the top-level boxes run to the
    file's end. Every image item's size counts against the limits: a grid's tiles, thumbnails
    and auxiliary images are decoded too, or could be."""
    walk = _BoxWalk(data)
    top = walk.children(0, len(data))
    complete = top is not None and not walk.truncated
    meta = _first(top or [], b"meta")
    if meta is None:
        return None
    children = walk.children(meta[0] + 4, meta[1])  # a full box: version and flags first
    if not children:
        return None
    pitm, iinf, iprp = (_first(children, kind) for kind in (b"pitm", b"iinf", b"iprp"))
    if pitm is None or iprp is None:
        return None
    primary = _heif_item_id(data, pitm[0])
    if primary is None:
        return None
    if iinf is not None and iinf[1] - iinf[0] >= 6:
        version = data[iinf[0]]
        (items,) = struct.unpack_from(">H" if version == 0 else ">I", data, iinf[0] + 4)
        if items > _MAX_PARTS:
            raise ImageRejected(_too_many_blocks(_MAX_PARTS))
    iprp_children = walk.children(*iprp) or []
    ipco = _first(iprp_children, b"ipco")
    if ipco is None:
        return None
    properties = walk.children(*ipco) or []
    associations = [
        entry
        for ipma in iprp_children
        if ipma[2] == b"ipma"
        for entry in _heif_associations(data, ipma[0], ipma[1])
    ]
    if walk.too_many or len(associations) > _MAX_PARTS:
        raise ImageRejected(_too_many_blocks(_MAX_PARTS))
    sizes: dict[int, tuple[int, int]] = {}
    for index, (start, stop, kind) in enumerate(properties, start=1):
        if kind == b"ispe" and stop - start >= 12:
            width, height = struct.unpack_from(">II", data, start + 4)
            sizes[index] = (width, height)
    item_sizes = [
        (item, sizes[index])
        for item, indices in associations
        for index in indices
        if index in sizes
    ]
    primary_sizes = [size for item, size in item_sizes if item == primary]
    if not primary_sizes:
        return None
    primary_properties = {
        index for item, indices in associations if item == primary for index in indices
    }
    quarter_turned = any(
        properties[index - 1][2] == b"irot" and data[properties[index - 1][0]] & 1
        for index in primary_properties
        if 0 < index <= len(properties) and properties[index - 1][1] > properties[index - 1][0]
    )
    width, height = primary_sizes[0]
    return _Header(
        width,
        height,
        complete=complete,
        part_sizes=tuple(size for _, size in item_sizes),
        part_pixels=sum(w * h for _, (w, h) in item_sizes),
        quarter_turned=quarter_turned,
    )


class _BoxWalk:
    """ISOBMFF boxes as (body start, body end, type), counting every box it reads."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.boxes = 0
        self.truncated = False
        self.too_many = False

    def children(self, start: int, end: int) -> list[tuple[int, int, bytes]] | None:
        found: list[tuple[int, int, bytes]] = []
        position = start
        while position + 8 <= end:
            self.boxes += 1
            if self.boxes > _MAX_PARTS:
                self.too_many = True
                return found
            size, kind = struct.unpack_from(">I4s", self.data, position)
            header = 8
            if size == 1:
                if position + 16 > end:
                    self.truncated = True
                    return found
                (size,) = struct.unpack_from(">Q", self.data, position + 8)
                header = 16
            elif size == 0:
                size = end - position
            if size < header:
                return None
            if position + size > end:
                self.truncated = True
                found.append((position + header, end, kind))
                return found
            found.append((position + header, position + size, kind))
            position += size
        if position != end:
            self.truncated = True
        return found


def _first(boxes: list[tuple[int, int, bytes]], kind: bytes) -> tuple[int, int] | None:
    return next(((start, stop) for start, stop, found in boxes if found == kind), None)


def _heif_item_id(data: bytes, start: int) -> int | None:
    """``pitm``: version 0 has a 16-bit item id, later versions a 32-bit one."""
    if start + 6 > len(data):
        return None
    if data[start] == 0:
        return int(struct.unpack_from(">H", data, start + 4)[0])
    if start + 8 > len(data):
        return None
    return int(struct.unpack_from(">I", data, start + 4)[0])


def _heif_associations(data: bytes, start: int, end: int) -> Iterator[tuple[int, list[int]]]:
    """``ipma``: each item's 1-based indices into ``ipco`` (essential flag dropped)."""
    if start + 8 > end:
        return
    version, flags = data[start], int.from_bytes(data[start + 1 : start + 4], "big")
    (count,) = struct.unpack_from(">I", data, start + 4)
    position = start + 8
    id_size = 2 if version < 1 else 4
    index_size = 2 if flags & 1 else 1
    for _ in range(min(count, _MAX_PARTS + 1)):
        if position + id_size + 1 > end:
            return
        item = int.from_bytes(data[position : position + id_size], "big")
        associated = data[position + id_size]
        position += id_size + 1
        if position + associated * index_size > end:
            return
        mask = 0x7FFF if index_size == 2 else 0x7F
        indices = [
            int.from_bytes(data[position + i * index_size : position + (i + 1) * index_size], "big")
            & mask
            for i in range(associated)
        ]
        position += associated * index_size
        yield item, indices


_HEADER_READERS = {
    JPEG: _read_jpeg_header,
    PNG: _read_png_header,
    WEBP: _read_webp_header,
    HEIF: _read_heif_header,
}


def _too_many_blocks(limit: int) -> str:
    return (
        f"the image file has too many metadata blocks (more than {limit}): "
        "save it again as a JPEG or PNG"
    )


def _orientation(image: Image.Image, image_format: str) -> int:
    """Orientation 1-8 from EXIF, else XMP's tiff:Orientation (attribute or element), where
    a PNG also keeps it in eXIf, an iTXt XML:com.adobe.xmp or ImageMagick's "Raw profile
    type exif" text; a missing, odd or unreadable tag counts as upright. The same sources, in
    the same order, as ``ImageOps.exif_transpose``.

    HEIF turns its pixels with its own irot/imir boxes, and libheif applies them on decoding
    (pillow_heif then resets the EXIF and XMP tags to 1): its EXIF tag is never applied again.

    Pillow finds PNG chunks after the image data only by decoding the image, so for an image
    refused as too small without decoding, only those before the data are seen (which changes
    nothing but the order of the sides in the message). The base class's ``getexif`` reads
    ``info`` as it stands, where the PNG plugin's would decode to look further.
    """
    if image_format == HEIF:
        return 1
    try:
        value = Image.Image.getexif(image).get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT_TRANSPOSE else 1


# --- pixels ---------------------------------------------------------------------------------


def _fit_inside(width: int, height: int, max_side: int) -> tuple[int, int]:
    if width <= max_side and height <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resampleable(image: Image.Image) -> Image.Image:
    """A mode Pillow resamples properly, alpha kept (resize premultiplies LA and RGBA).

    Palette and bilevel images would silently be resized with NEAREST, and a tRNS colour key
    would be lost on resize, so they are expanded first. 16-bit grey stays 16-bit until after
    the resize (see ``_to_srgb``), CMYK stays CMYK for its ICC profile.
    """
    mode = image.mode
    has_colour_key = "transparency" in image.info
    if mode in ("P", "PA"):
        return image.convert("RGBA" if has_colour_key or mode == "PA" else "RGB")
    if mode == "1":
        return image.convert("L")
    if mode == "L" and has_colour_key:
        return image.convert("LA")
    if mode == "RGB" and has_colour_key:
        return image.convert("RGBA")
    if mode == "La":
        return image.convert("LA")
    if mode == "RGBa":
        return image.convert("RGBA")
    if mode == "YCbCr":
        return image.convert("RGB")
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK") or mode in _SIXTEEN_BIT_GREY_MODES:
        return image
    raise ImageRejected(f"unsupported colour format ({mode}): save the image as an 8-bit RGB JPEG")


def _has_transparency(image: Image.Image) -> bool:
    if image.mode not in ("LA", "RGBA"):
        return False
    lowest, _ = image.getchannel("A").getextrema()
    return isinstance(lowest, int | float) and lowest < 255


def _transparent_share(image: Image.Image) -> float:
    """The share of pixels below TRANSPARENT_ALPHA: what flattening turns into plain white."""
    if image.mode not in ("LA", "RGBA"):
        return 0.0
    histogram = image.getchannel("A").histogram()
    return sum(histogram[:TRANSPARENT_ALPHA]) / (image.width * image.height)


def _to_srgb(image: Image.Image, icc_profile: bytes | None, *, keep_alpha: bool) -> Image.Image:
    """RGB (or RGBA) in sRGB: the output carries no profile, and viewers assume sRGB."""
    alpha = None
    if image.mode in ("LA", "RGBA"):
        alpha = image.getchannel("A")
        image = image.convert("L" if image.mode == "LA" else "RGB")
    if image.mode in _SIXTEEN_BIT_GREY_MODES:
        # Pillow clips 16-bit values to 255 when converting to L; scale them instead.
        image = image.convert("I").point(lambda value: value / 257).convert("L")
    rgb = _convert_with_profile(image, icc_profile)
    if alpha is None:
        return rgb
    if keep_alpha:
        rgb.putalpha(alpha)
        return rgb
    on_white = Image.new("RGB", rgb.size, _WHITE)
    on_white.paste(rgb, mask=alpha)
    return on_white


def _convert_with_profile(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Honour an embedded ICC profile (CMYK print profiles, Display P3 phone photos)."""
    expected_space = _ICC_COLOUR_SPACE_FOR_MODE.get(image.mode)
    if icc_profile and expected_space:
        try:
            profile = ImageCms.ImageCmsProfile(BytesIO(icc_profile))
            if profile.profile.xcolor_space.strip() == expected_space:
                converted = ImageCms.profileToProfile(image, profile, _SRGB, outputMode="RGB")
                if converted is not None:
                    return converted
        except _PROFILE_ERRORS:
            pass  # a broken or unusual profile: fall back to Pillow's plain conversion
    return image.convert("RGB")


def _orient(image: Image.Image, source: _Source) -> Image.Image:
    transpose = _UPRIGHT_TRANSPOSE.get(source.orientation)
    return image if transpose is None else image.transpose(transpose)


def _encode(
    image: Image.Image, source: _Source, *, quality: int, transparent_share: float
) -> ProcessedImage:
    # Pillow copies ``info`` (EXIF, ICC, text, dpi) along every operation and the PNG writer
    # re-emits some of it by default; nothing of the upload may reach the output.
    image.info = {}
    buffer = BytesIO()
    if image.mode == "RGBA":
        image.save(buffer, "PNG", compress_level=3)  # 3x faster than the default, ~15% larger
        content_type = "image/png"
    else:
        image.save(buffer, "JPEG", quality=quality, optimize=True)
        content_type = "image/jpeg"
    width, height = source.upright_size
    return ProcessedImage(
        data=buffer.getvalue(),
        content_type=content_type,
        width=image.width,
        height=image.height,
        source_format=source.format,
        source_width=width,
        source_height=height,
        frames_in_file=source.frames,
        transparent_share=transparent_share,
    )
