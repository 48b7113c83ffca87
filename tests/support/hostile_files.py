"""Hostile uploads, made at run time from the synthetic photos (nothing binary is checked in).

``hostile_files()`` answers named cases ``(name, data, declared_content_type, expectation)``:
what a careless, unlucky or malicious client might upload as a selfie or a face reference.
A name reads ``kind/detail``; ``expectation`` is ``"accept"`` (ingest must take it),
``"reject"`` (ingest must refuse it with a reason) or ``"either"`` (both are right, as long as
the answer is one of the two). Every case is deterministic: random damage uses fixed seeds.

Kinds: truncated and bit-flipped JPEG/PNG, broken PNG CRCs, huge and zero declared sizes,
polyglots, empty and tiny files, EXIF bombs and odd orientations, unusual colour formats,
animated PNGs, other formats named .jpg, progressive scan bombs and marker/chunk floods.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from io import BytesIO
from typing import Literal, NamedTuple

from PIL import ExifTags, Image, ImageCms

from local import photos

Expectation = Literal["accept", "reject", "either"]

JPEG_TYPE = "image/jpeg"
PNG_TYPE = "image/png"
WEBP_TYPE = "image/webp"
HEIC_TYPE = "image/heic"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
# What an accepted polyglot's payload looks like; none of it may survive normalisation.
PAYLOAD_MARKERS = (b"PK\x03\x04", b"<script", b"%PDF", b"<html", b"hostile-payload")


class HostileFile(NamedTuple):
    name: str  # "kind/detail"
    data: bytes
    content_type: str  # what the client declares; ingest must not believe it
    expectation: Expectation

    @property
    def kind(self) -> str:
        return self.name.split("/", 1)[0]


def hostile_files() -> list[HostileFile]:
    """The whole corpus, in a stable order, with unique names (made once per process)."""
    return list(_corpus())


@lru_cache(maxsize=1)
def _corpus() -> tuple[HostileFile, ...]:
    cases = tuple(case for make in _KINDS for case in make())
    names = [case.name for case in cases]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise AssertionError(f"duplicate hostile case names: {sorted(duplicates)}")
    return cases


# --- the photos everything is made from --------------------------------------------------


@lru_cache(maxsize=1)
def base_jpeg() -> bytes:
    """A plain 600x800 baseline JPEG (with phone EXIF)."""
    return photos.selfie_jpeg(101, size=(600, 800))


@lru_cache(maxsize=1)
def base_progressive_jpeg() -> bytes:
    """A 600x800 progressive JPEG (libjpeg's standard scans)."""
    return encode(photos.selfie_image(102, (600, 800)), "JPEG", progressive=True, quality=88)


@lru_cache(maxsize=1)
def base_png() -> bytes:
    """A 400x400 RGB PNG."""
    return photos.selfie_png(103, size=(400, 400))


@lru_cache(maxsize=1)
def _plain_rgb() -> Image.Image:
    return photos.selfie_image(104, (480, 640))


@lru_cache(maxsize=1)
def _plain_jpeg() -> bytes:
    """A JPEG without any metadata segments but JFIF, for inserting our own."""
    return encode(_plain_rgb(), "JPEG", quality=85)


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    """``image`` saved as ``image_format`` by Pillow, with its save ``options``."""
    buffer = BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


# --- JPEG surgery --------------------------------------------------------------------------


class _Segment(NamedTuple):
    marker: int
    start: int  # offset of the FF of the marker
    end: int  # offset just past the segment (for SOS: past its header only)


def _jpeg_segments(data: bytes) -> list[_Segment]:
    """The marker segments from SOI up to and including the first SOS header."""
    segments, position = [], 2
    while position + 4 <= len(data):
        marker = data[position + 1]
        (length,) = struct.unpack_from(">H", data, position + 2)
        segments.append(_Segment(marker, position, position + 2 + length))
        if marker == 0xDA:
            break
        position += 2 + length
    return segments


def _segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body


def _with_segments(jpeg: bytes, *segments: bytes) -> bytes:
    """``jpeg`` with ``segments`` inserted right after SOI."""
    return _SOI + b"".join(segments) + jpeg[2:]


def _without_markers(jpeg: bytes, markers: Iterable[int]) -> bytes:
    drop = set(markers)
    out, last = bytearray(), 0
    for segment in _jpeg_segments(jpeg):
        if segment.marker in drop:
            out += jpeg[last : segment.start]
            last = segment.end
    return bytes(out + jpeg[last:])


def _first_segment(jpeg: bytes, markers: Iterable[int]) -> _Segment:
    wanted = set(markers)
    return next(s for s in _jpeg_segments(jpeg) if s.marker in wanted)


_SOF_MARKERS = (0xC0, 0xC1, 0xC2)


def _with_frame_size(jpeg: bytes, width: int, height: int) -> bytes:
    data = bytearray(jpeg)
    sof = _first_segment(jpeg, _SOF_MARKERS)
    struct.pack_into(">HH", data, sof.start + 5, height, width)
    return bytes(data)


def jpeg_scans(jpeg: bytes) -> list[tuple[int, int]]:
    """(start, end) of every scan: its SOS header and entropy-coded data."""
    scans: list[tuple[int, int]] = []
    position = _first_segment(jpeg, [0xDA]).start
    while jpeg[position + 1] != 0xD9:
        (length,) = struct.unpack_from(">H", jpeg, position + 2)
        cursor = position + 2 + length
        if jpeg[position + 1] == 0xDA:
            while True:  # to the next marker that is neither stuffing nor a restart
                cursor = jpeg.index(b"\xff", cursor)
                follower = jpeg[cursor + 1]
                if follower == 0x00 or 0xD0 <= follower <= 0xD7 or follower == 0xFF:
                    cursor += 1
                    continue
                break
            scans.append((position, cursor))
        position = cursor
    return scans


def _exif_segment(tiff: bytes) -> bytes:
    return _segment(0xE1, b"Exif\x00\x00" + tiff)


# --- TIFF/EXIF structures --------------------------------------------------------------------

_ASCII, _SHORT, _LONG, _RATIONAL, _SSHORT = 2, 3, 4, 5, 8  # TIFF field types
_ORIENTATION = int(ExifTags.Base.Orientation)
_EXIF_IFD = int(ExifTags.IFD.Exif)


def _entry(tag: int, kind: int, count: int, value: bytes, order: str = "<") -> bytes:
    """One 12-byte IFD entry; ``value`` is the inline 4 bytes (or an offset)."""
    return struct.pack(order + "HHI", tag, kind, count) + value.ljust(4, b"\x00")[:4]


def _tiff(
    entries: list[bytes],
    *,
    declared_count: int | None = None,
    next_ifd: int = 0,
    order: str = "<",
    extra: bytes = b"",
) -> bytes:
    """A TIFF header and IFD0 at offset 8; ``extra`` follows the IFD."""
    header = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8)
    count = len(entries) if declared_count is None else declared_count
    return (
        header
        + struct.pack(order + "H", count)
        + b"".join(entries)
        + struct.pack(order + "I", next_ifd)
        + extra
    )


def _orientation_tiff(kind: int, count: int, value: bytes, order: str = "<") -> bytes:
    return _tiff([_entry(_ORIENTATION, kind, count, value, order)], order=order)


def _short(value: int, order: str = "<") -> bytes:
    return struct.pack(order + "H", value)


def _long(value: int, order: str = "<") -> bytes:
    return struct.pack(order + "I", value)


# --- PNG surgery ---------------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    checksum = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", checksum)


def _png_chunks(png: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of every chunk."""
    chunks, position = [], len(PNG_SIGNATURE)
    while position + 8 <= len(png):
        length, kind = struct.unpack_from(">I4s", png, position)
        end = position + 12 + length
        chunks.append((kind, position, end))
        position = end
    return chunks


def _png_insert(png: bytes, chunks: bytes, before: bytes = b"IDAT") -> bytes:
    start = next(s for kind, s, _ in _png_chunks(png) if kind == before)
    return png[:start] + chunks + png[start:]


def _png_with_crc(png: bytes, kind: bytes, crc_xor: int = 0xDEADBEEF) -> bytes:
    data = bytearray(png)
    _, _, end = next(c for c in _png_chunks(png) if c[0] == kind)
    (crc,) = struct.unpack_from(">I", data, end - 4)
    struct.pack_into(">I", data, end - 4, crc ^ crc_xor)
    return bytes(data)


def _ihdr(width: int, height: int, depth: int, colour: int, interlace: int = 0) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def _raw_png(
    width: int,
    height: int,
    depth: int,
    colour: int,
    rows: bytes,
    *,
    interlace: int = 0,
) -> bytes:
    """A PNG around already-filtered scanlines ``rows``."""
    return (
        PNG_SIGNATURE
        + _ihdr(width, height, depth, colour, interlace)
        + _chunk(b"IDAT", zlib.compress(rows, 6))
        + _chunk(b"IEND", b"")
    )


def _ihdr_claiming(width: int, height: int, *, crc_ok: bool = True) -> bytes:
    """A small real PNG whose IHDR is rewritten to declare ``width`` x ``height``."""
    png = base_png()
    body = struct.pack(">II", width, height) + png[24:29]
    crc = None if crc_ok else zlib.crc32(b"IHDR" + png[16:29])
    return png[:8] + _chunk(b"IHDR", body, crc) + png[33:]


_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def _adam7_rows(image: Image.Image) -> bytes:
    """Adam7-interlaced, unfiltered scanlines of an 8-bit L/LA/RGB/RGBA image."""
    bands = [band.tobytes() for band in image.split()]
    width, height = image.size
    out = bytearray()
    for x0, y0, dx, dy in _ADAM7:
        pass_width, pass_height = len(range(x0, width, dx)), len(range(y0, height, dy))
        if pass_width == 0 or pass_height == 0:
            continue
        picked = [
            Image.frombytes(
                "L",
                (pass_width, pass_height),
                b"".join(
                    band[y * width + x0 : (y + 1) * width : dx] for y in range(y0, height, dy)
                ),
            )
            for band in bands
        ]
        out += _filtered_rows(Image.merge(image.mode, picked))
    return bytes(out)


def _filtered_rows(image: Image.Image, sample_bytes: int = 1) -> bytes:
    """The image's scanlines, each behind a filter byte 0 ("none"); with ``sample_bytes`` 2,
    every 8-bit sample v becomes the big-endian 16-bit v * 257."""
    width, height = image.size
    row = width * len(image.getbands())
    samples = Image.frombytes("L", (row, height), image.tobytes())
    if sample_bytes == 2:
        samples = samples.resize((row * 2, height), Image.Resampling.NEAREST)
    rows = Image.new("L", (samples.width + 1, height), 0)
    rows.paste(samples, (1, 0))
    return rows.tobytes()


# --- the kinds -----------------------------------------------------------------------------


def _empty_and_tiny() -> Iterator[HostileFile]:
    yield HostileFile("empty/zero-bytes", b"", JPEG_TYPE, "reject")
    for byte in (b"\xff", b"\x89", b"\x00", b"P"):
        yield HostileFile(f"tiny/one-byte-{byte.hex()}", byte, JPEG_TYPE, "reject")
    yield HostileFile("magic/jpeg-soi", _SOI, JPEG_TYPE, "reject")
    yield HostileFile("magic/jpeg-soi-ff", b"\xff\xd8\xff", JPEG_TYPE, "reject")
    yield HostileFile("magic/jpeg-soi-eoi", _SOI + _EOI, JPEG_TYPE, "reject")
    yield HostileFile("magic/jpeg-soi-app0", _plain_jpeg()[:20], JPEG_TYPE, "reject")
    yield HostileFile("magic/png-signature", PNG_SIGNATURE, PNG_TYPE, "reject")
    png = base_png()
    yield HostileFile("magic/png-ihdr-only", png[:33], PNG_TYPE, "reject")
    iend = _chunk(b"IEND", b"")
    yield HostileFile("magic/png-ihdr-iend", png[:33] + iend, PNG_TYPE, "reject")


def _truncated() -> Iterator[HostileFile]:
    for label, jpeg in (("jpeg", base_jpeg()), ("progressive", base_progressive_jpeg())):
        segments = _jpeg_segments(jpeg)
        sof = next(s for s in segments if s.marker in _SOF_MARKERS)
        sos = segments[-1]
        cuts = {
            "3": 3,
            "4": 4,
            "7": 7,
            "in-sof": sof.start + 6,
            "after-sof": sof.end,
            "in-sos-header": sos.start + 5,
            "after-sos-header": sos.end,
            **{f"{p}pct": len(jpeg) * p // 100 for p in (10, 25, 50, 75, 90, 99)},
            "minus-3": len(jpeg) - 3,
            "minus-2": len(jpeg) - 2,
            "minus-1": len(jpeg) - 1,
        }
        for where, cut in cuts.items():
            yield HostileFile(f"truncated/{label}-at-{where}", jpeg[:cut], JPEG_TYPE, "reject")
    png = base_png()
    idat = next(c for c in _png_chunks(png) if c[0] == b"IDAT")
    iend_start = len(png) - 12
    png_cuts = {
        "9": 9,
        "16": 16,
        "in-ihdr": 25,
        "after-ihdr": 33,
        "in-idat-header": idat[1] + 6,
        **{f"idat-{p}pct": idat[1] + (idat[2] - idat[1]) * p // 100 for p in (10, 50, 90)},
        "before-idat-crc": idat[2] - 4,
        "before-iend": iend_start,
        "in-iend": iend_start + 6,
        "minus-1": len(png) - 1,
    }
    for where, cut in png_cuts.items():
        yield HostileFile(f"truncated/png-at-{where}", png[:cut], PNG_TYPE, "reject")


def _flipped(data: bytes, rng: random.Random, flips: int, region: int) -> bytes:
    damaged = bytearray(data)
    for _ in range(flips):
        position = rng.randrange(3, min(region, len(data)))
        damaged[position] ^= 1 << rng.randrange(8)
    return bytes(damaged)


def bit_flipped() -> Iterator[HostileFile]:
    """Photos with bits flipped at random (seeded): first in their headers, then anywhere."""
    for label, data, declared in (
        ("jpeg", base_jpeg(), JPEG_TYPE),
        ("progressive", base_progressive_jpeg(), JPEG_TYPE),
        ("png", base_png(), PNG_TYPE),
    ):
        rng = random.Random(f"hostile-{label}")  # fixed seed: the same damage every run
        for index in range(8):
            flips = (1, 3, 10, 40)[index % 4]
            region = 700 if index < 4 else len(data)  # headers first, then anywhere
            damaged = _flipped(data, rng, flips, region)
            where = "head" if index < 4 else "any"
            name = f"bitflip/{label}-{where}-{flips}x-{index}"
            yield HostileFile(name, damaged, declared, "either")


def _broken_crcs() -> Iterator[HostileFile]:
    png = base_png()
    text = _png_insert(png, _chunk(b"tEXt", b"Comment\x00hello"))
    yield HostileFile("crc/png-ihdr", _png_with_crc(png, b"IHDR"), PNG_TYPE, "reject")
    yield HostileFile("crc/png-idat", _png_with_crc(png, b"IDAT"), PNG_TYPE, "either")
    yield HostileFile("crc/png-iend", _png_with_crc(png, b"IEND"), PNG_TYPE, "either")
    yield HostileFile("crc/png-text", _png_with_crc(text, b"tEXt"), PNG_TYPE, "either")
    palette = encode(_plain_rgb().quantize(16, method=Image.Quantize.FASTOCTREE), "PNG")
    yield HostileFile("crc/png-plte", _png_with_crc(palette, b"PLTE"), PNG_TYPE, "either")


def _huge_and_zero_sizes() -> Iterator[HostileFile]:
    jpeg = base_jpeg()
    sizes: tuple[tuple[int, int, Expectation], ...] = (
        (65500, 65500, "reject"),
        (65535, 65535, "reject"),
        (8000, 5001, "reject"),  # 40.008 megapixels: just over the limit
        (65535, 1, "reject"),  # few pixels, far too thin
        (8000, 5000, "either"),  # exactly the limit, but the data is for 600x800
    )
    for width, height, expected in sizes:
        name = f"huge/jpeg-sof-{width}x{height}"
        yield HostileFile(name, _with_frame_size(jpeg, width, height), JPEG_TYPE, expected)
    for width, height in ((100_000, 100_000), (2**31 - 1, 2**31 - 1), (2**32 - 1, 1), (1, 2**31)):
        name = f"huge/png-ihdr-{width}x{height}"
        yield HostileFile(name, _ihdr_claiming(width, height), PNG_TYPE, "reject")
    yield HostileFile("huge/png-ihdr-1x40000000", _ihdr_claiming(1, 40_000_000), PNG_TYPE, "reject")
    yield HostileFile(
        "huge/png-ihdr-huge-bad-crc",
        _ihdr_claiming(100_000, 100_000, crc_ok=False),
        PNG_TYPE,
        "reject",
    )
    yield HostileFile(
        "huge/png-bomb-30000", photos.decompression_bomb_png(30000), PNG_TYPE, "reject"
    )
    yield HostileFile("huge/png-bomb-at-limit", _bomb_at_limit(), PNG_TYPE, "accept")
    yield HostileFile("huge/png-255x156800-rgba16-too-thin", _thin_bomb(), PNG_TYPE, "reject")
    yield HostileFile("huge/jpeg-sof-8000x5000-real", _jpeg_at_limit(), JPEG_TYPE, "accept")
    for width, height in ((0, 800), (600, 0), (0, 0)):
        name = f"zero/jpeg-sof-{width}x{height}"
        yield HostileFile(name, _with_frame_size(jpeg, width, height), JPEG_TYPE, "reject")
        name = f"zero/png-ihdr-{width}x{height}"
        yield HostileFile(name, _ihdr_claiming(width, height), PNG_TYPE, "reject")


@lru_cache(maxsize=1)
def _bomb_at_limit() -> bytes:
    """A real 6320x6320 (39.9 megapixels) 8-bit greyscale PNG of zeros, ~40 KB on disk."""
    side = 6320
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return photos._png_file(header, photos._zlib_of_zeros((side + 1) * side))


@lru_cache(maxsize=1)
def _thin_bomb() -> bytes:
    """A real 255x156800 16-bit RGBA PNG (40 megapixels, 320 MB of samples): too thin."""
    width, height = 255, 156_800
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return photos._png_file(header, photos._zlib_of_zeros((1 + width * 8) * height))


@lru_cache(maxsize=1)
def _jpeg_at_limit() -> bytes:
    """A real, flat 7680x5200 JPEG (39.9 megapixels): few bytes, the most pixels allowed."""
    return encode(Image.new("L", (7680, 5200), 90).convert("RGB"), "JPEG", quality=50)


def _polyglots() -> Iterator[HostileFile]:
    jpeg, png = base_jpeg(), base_png()
    zip_file = _zip_with(b"hostile-payload.txt", b"hostile-payload: unzip me")
    html = b"<html><body><script>alert('hostile-payload')</script></body></html>"
    pdf = b"%PDF-1.4\n1 0 obj <</Type /Catalog>> endobj\n% hostile-payload\n%%EOF\n"
    yield HostileFile("polyglot/jpeg-then-zip", jpeg + zip_file, JPEG_TYPE, "accept")
    yield HostileFile("polyglot/jpeg-then-html", jpeg + html, JPEG_TYPE, "accept")
    yield HostileFile("polyglot/jpeg-then-pdf", jpeg + pdf, JPEG_TYPE, "accept")
    comment = _with_segments(jpeg, _segment(0xFE, html))
    yield HostileFile("polyglot/jpeg-html-in-comment", comment, JPEG_TYPE, "accept")
    in_app = _with_segments(jpeg, _segment(0xEB, zip_file))
    yield HostileFile("polyglot/jpeg-zip-in-app11", in_app, JPEG_TYPE, "accept")
    yield HostileFile("polyglot/jpeg-then-jpeg", jpeg + _plain_jpeg(), JPEG_TYPE, "accept")
    yield HostileFile("polyglot/png-then-zip", png + zip_file, PNG_TYPE, "accept")
    with_text = _png_insert(png, _chunk(b"tEXt", b"Comment\x00" + html))
    yield HostileFile("polyglot/png-html-in-text", with_text, PNG_TYPE, "accept")
    private = _png_insert(png, _chunk(b"zipX", zip_file), before=b"IEND")
    yield HostileFile("polyglot/png-zip-in-private-chunk", private, PNG_TYPE, "accept")
    yield HostileFile("polyglot/png-magic-then-jpeg", PNG_SIGNATURE + jpeg, PNG_TYPE, "reject")
    yield HostileFile("polyglot/jpeg-magic-then-png", b"\xff\xd8\xff" + png, JPEG_TYPE, "reject")
    yield HostileFile("polyglot/pdf-with-jpeg", pdf + jpeg, JPEG_TYPE, "reject")
    yield HostileFile("polyglot/zip-with-jpeg", _zip_with(b"a.jpg", jpeg), JPEG_TYPE, "reject")
    gif = encode(Image.new("P", (300, 300)), "GIF")
    yield HostileFile("polyglot/gif-then-zip", gif + zip_file, JPEG_TYPE, "reject")
    yield HostileFile("polyglot/html-then-jpeg", html + jpeg, JPEG_TYPE, "reject")


def _zip_with(name: bytes, body: bytes) -> bytes:
    """A stored (uncompressed) single-file ZIP, by hand to stay byte-stable."""
    crc = zlib.crc32(body)
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, len(body), len(body), len(name), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50, 20, 20, 0, 0, 0, 0, crc, len(body), len(body), len(name), 0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    directory_offset = len(local) + len(name) + len(body)
    directory_size = len(central) + len(name)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, directory_size, directory_offset, 0)
    return local + name + body + central + name + end


def _exif_bombs() -> Iterator[HostileFile]:
    jpeg = _plain_jpeg()

    def with_exif(name: str, tiff: bytes, expected: Expectation = "accept") -> HostileFile:
        return HostileFile(
            f"exif/{name}", _with_segments(jpeg, _exif_segment(tiff)), JPEG_TYPE, expected
        )

    yield with_exif("empty-payload", b"")
    yield with_exif("bad-byte-order", b"XX\x00\x2a\x00\x00\x00\x08" + bytes(64))
    yield with_exif("ifd-offset-past-end", b"II*\x00" + _long(0xFFFFFFF0))
    yield with_exif("max-size-junk", b"II*\x00" + _long(8) + bytes(range(256)) * 255)
    # IFD0 declaring 65535 entries, holding a few
    yield with_exif(
        "ifd-count-65535", _tiff([_entry(_ORIENTATION, _SHORT, 1, _short(6))], declared_count=65535)
    )
    # as many real entries as fit in one segment, orientation last
    filler = [_entry(0x9000 + i % 4000, _SHORT, 1, _short(i)) for i in range(5400)]
    many = [*filler, _entry(_ORIENTATION, _SHORT, 1, _short(6))]
    yield with_exif("ifd-5400-entries", _tiff(many))
    # loops: IFD0 -> next IFD0, and an Exif IFD pointing at IFD0
    yield with_exif(
        "ifd-cycle",
        _tiff(
            [_entry(_EXIF_IFD, _LONG, 1, _long(8)), _entry(_ORIENTATION, _SHORT, 1, _short(3))],
            next_ifd=8,
        ),
    )
    yield with_exif("deeply-nested-exif-ifds", _nested_ifds(2000))
    # one entry whose value claims to be gigabytes long
    yield with_exif("entry-count-4g", _tiff([_entry(0x010E, _ASCII, 0xFFFFFFFF, _long(26))]))
    for value in (0, 9, 255, 65535):
        yield with_exif(f"orientation-{value}", _orientation_tiff(_SHORT, 1, _short(value)))
    yield with_exif("orientation-long-4294967295", _orientation_tiff(_LONG, 1, _long(0xFFFFFFFF)))
    yield with_exif("orientation-ascii-6", _orientation_tiff(_ASCII, 2, b"6\x00"))
    yield with_exif("orientation-signed-minus-1", _orientation_tiff(_SSHORT, 1, _short(0xFFFF)))
    yield with_exif("orientation-two-values", _orientation_tiff(_SHORT, 2, _short(6) + _short(8)))
    yield with_exif(
        "orientation-rational",
        _tiff([_entry(_ORIENTATION, _RATIONAL, 1, _long(26))], extra=_long(6) + _long(1)),
    )
    yield with_exif("orientation-huge-count", _orientation_tiff(_SHORT, 0x40000000, _long(26)))
    yield with_exif("orientation-big-endian-6", _orientation_tiff(_SHORT, 1, _short(6, ">"), ">"))
    # many APP1 segments: ~5 MB of EXIF before the frame
    junk = _exif_segment(b"II*\x00" + _long(8) + bytes(65000))
    yield HostileFile(
        "exif/eighty-app1-segments", _with_segments(jpeg, *[junk] * 80), JPEG_TYPE, "accept"
    )
    # ...and in a PNG's eXIf chunk
    png = base_png()
    for name, tiff, where in (
        ("png-exif-orientation-6", _orientation_tiff(_SHORT, 1, _short(6)), b"IDAT"),
        ("png-exif-orientation-9", _orientation_tiff(_SHORT, 1, _short(9)), b"IDAT"),
        ("png-exif-after-idat-orientation-8", _orientation_tiff(_SHORT, 1, _short(8)), b"IEND"),
        ("png-exif-junk", b"hostile-payload" * 10, b"IDAT"),
        (
            "png-exif-ifd-count-65535",
            _tiff([], declared_count=65535, extra=bytes(786_420)),
            b"IDAT",
        ),
    ):
        yield HostileFile(
            f"exif/{name}", _png_insert(png, _chunk(b"eXIf", tiff), where), PNG_TYPE, "accept"
        )
    twice = _png_insert(png, _chunk(b"eXIf", _orientation_tiff(_SHORT, 1, _short(3))) * 2)
    yield HostileFile("exif/png-two-exif-chunks", twice, PNG_TYPE, "accept")


def _nested_ifds(depth: int) -> bytes:
    """IFD0 whose Exif IFD pointer leads to another IFD with one, ``depth`` levels down."""
    ifd_size = 2 + 12 + 4
    body = bytearray()
    for level in range(depth):
        target = 8 + (level + 1) * ifd_size
        body += _short(1) + _entry(_EXIF_IFD, _LONG, 1, _long(target)) + _long(0)
    body += _short(0) + _long(0)
    return b"II*\x00" + _long(8) + bytes(body)


def _colour_formats() -> Iterator[HostileFile]:
    rgb = _plain_rgb()
    cmyk = encode(rgb.convert("CMYK"), "JPEG", quality=90)
    yield HostileFile("colour/cmyk-jpeg-adobe", cmyk, JPEG_TYPE, "accept")
    yield HostileFile(
        "colour/cmyk-jpeg-no-adobe", _without_markers(cmyk, [0xEE]), JPEG_TYPE, "accept"
    )
    yield HostileFile("colour/cmyk-jpeg-ycck-flag", _adobe_transform(cmyk, 2), JPEG_TYPE, "accept")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with_rgb_profile = encode(rgb.convert("CMYK"), "JPEG", icc_profile=srgb)
    yield HostileFile("colour/cmyk-jpeg-rgb-profile", with_rgb_profile, JPEG_TYPE, "accept")
    yield HostileFile(
        "colour/greyscale-jpeg", encode(rgb.convert("L"), "JPEG"), JPEG_TYPE, "accept"
    )
    yield HostileFile("colour/progressive-jpeg", base_progressive_jpeg(), JPEG_TYPE, "accept")
    yield HostileFile(
        "colour/jpeg-444-restart-markers",
        encode(rgb, "JPEG", subsampling=0, restart_marker_blocks=1),
        JPEG_TYPE,
        "accept",
    )
    yield HostileFile(
        "colour/icc-garbage-profile",
        encode(rgb, "JPEG", icc_profile=b"\x00" * 600),
        JPEG_TYPE,
        "accept",
    )
    big_junk_profile = srgb[:128] + bytes(3_000_000)
    yield HostileFile(
        "colour/icc-3mb-junk-profile",
        encode(rgb, "JPEG", icc_profile=big_junk_profile),
        JPEG_TYPE,
        "accept",
    )
    inconsistent = _with_segments(
        _plain_jpeg(), _segment(0xE2, b"ICC_PROFILE\x00\x05\x02" + srgb[:400])
    )
    yield HostileFile("colour/icc-chunk-5-of-2", inconsistent, JPEG_TYPE, "accept")

    small = rgb.resize((300, 400))
    grey = small.convert("L")
    width, height = small.size
    grey16 = _raw_png(width, height, 16, 0, _filtered_rows(grey, 2))
    yield HostileFile("colour/png-16-bit-grey", grey16, PNG_TYPE, "accept")
    grey_alpha = Image.merge("LA", (grey, _alpha_ramp(small.size)))
    la16 = _raw_png(width, height, 16, 4, _filtered_rows(grey_alpha, 2))
    yield HostileFile("colour/png-16-bit-grey-alpha", la16, PNG_TYPE, "accept")
    yield HostileFile(
        "colour/png-16-bit-rgb", photos.selfie_png16(105, (300, 300)), PNG_TYPE, "accept"
    )
    yield HostileFile(
        "colour/png-16-bit-rgba",
        photos.selfie_png16(106, (300, 300), alpha=True),
        PNG_TYPE,
        "accept",
    )
    palette = small.quantize(64, method=Image.Quantize.FASTOCTREE)
    yield HostileFile("colour/png-palette", encode(palette, "PNG"), PNG_TYPE, "accept")
    yield HostileFile(
        "colour/png-palette-trns-key", encode(palette, "PNG", transparency=0), PNG_TYPE, "accept"
    )
    alphas = bytes(range(0, 256, 4))
    yield HostileFile(
        "colour/png-palette-trns-alphas",
        encode(palette, "PNG", transparency=alphas),
        PNG_TYPE,
        "accept",
    )
    long_trns = _png_insert(encode(palette, "PNG"), _chunk(b"tRNS", bytes(300)))
    yield HostileFile("colour/png-palette-trns-too-long", long_trns, PNG_TYPE, "either")
    yield HostileFile(
        "colour/png-grey-trns", encode(grey, "PNG", transparency=128), PNG_TYPE, "accept"
    )
    yield HostileFile(
        "colour/png-rgb-trns",
        encode(small, "PNG", transparency=(255, 255, 255)),
        PNG_TYPE,
        "accept",
    )
    for depth in (1, 2, 4):
        levels = (1 << depth) - 1
        reduced = grey.point(lambda value, top=levels: round(value * top / 255))
        yield HostileFile(
            f"colour/png-{depth}-bit-grey", _low_depth_grey(reduced, depth), PNG_TYPE, "accept"
        )
    yield HostileFile(
        "colour/png-1-bit-palette",
        encode(small.convert("1").convert("P"), "PNG", bits=1),
        PNG_TYPE,
        "accept",
    )
    yield HostileFile(
        "colour/png-interlaced-rgb",
        _raw_png(width, height, 8, 2, _adam7_rows(small), interlace=1),
        PNG_TYPE,
        "accept",
    )
    rgba = small.convert("RGBA")
    rgba.putalpha(_alpha_ramp(small.size))
    yield HostileFile(
        "colour/png-interlaced-rgba",
        _raw_png(width, height, 8, 6, _adam7_rows(rgba), interlace=1),
        PNG_TYPE,
        "accept",
    )
    # header combinations the PNG spec forbids
    yield HostileFile(
        "colour/png-rgb-4-bit",
        _raw_png(width, height, 4, 2, bytes(height * (1 + width * 3 // 2))),
        PNG_TYPE,
        "either",
    )
    yield HostileFile(
        "colour/png-colour-type-7",
        _raw_png(width, height, 8, 7, bytes(height * (1 + width))),
        PNG_TYPE,
        "either",
    )
    yield HostileFile(
        "colour/png-interlace-method-2",
        _raw_png(width, height, 8, 0, bytes(height * (1 + width)), interlace=2),
        PNG_TYPE,
        "either",
    )
    yield HostileFile(
        "colour/png-palette-without-plte",
        _raw_png(width, height, 8, 3, bytes(height * (1 + width))),
        PNG_TYPE,
        "either",
    )
    yield HostileFile("colour/jpeg-two-components", _two_component_jpeg(), JPEG_TYPE, "either")


def _alpha_ramp(size: tuple[int, int]) -> Image.Image:
    return Image.linear_gradient("L").resize(size)


def _low_depth_grey(levels: Image.Image, depth: int) -> bytes:
    """A 1/2/4-bit greyscale PNG of ``levels`` (values 0 to 2**depth - 1): saved by Pillow as a
    palette image of that depth, whose packed indices are then declared grey levels."""
    indexed = Image.frombytes("P", levels.size, levels.tobytes())
    indexed.putpalette(bytes(range(256)) * 3)
    png = encode(indexed, "PNG", bits=depth)
    out = bytearray(PNG_SIGNATURE)
    for kind, start, end in _png_chunks(png):
        if kind == b"IHDR":
            width, height = struct.unpack_from(">II", png, start + 8)
            out += _ihdr(width, height, depth, 0)
        elif kind != b"PLTE":
            out += png[start:end]
    return bytes(out)


def _adobe_transform(jpeg: bytes, transform: int) -> bytes:
    data = bytearray(jpeg)
    adobe = _first_segment(jpeg, [0xEE])
    data[adobe.start + 4 + 11] = transform  # "Adobe", version, flags0, flags1, transform
    return bytes(data)


def _two_component_jpeg() -> bytes:
    """A colour JPEG whose frame header is rewritten to claim two components."""
    jpeg = _plain_jpeg()
    data = bytearray(jpeg)
    sof = _first_segment(jpeg, _SOF_MARKERS)
    data[sof.start + 9] = 2
    return bytes(data)


def _animated() -> Iterator[HostileFile]:
    colours = [(40 * i % 256, 90, 255 - 40 * i % 256) for i in range(40)]
    frames = [Image.new("RGB", (256, 256), colour) for colour in colours]
    apng = encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=20)
    yield HostileFile("animated/apng-40-frames", apng, PNG_TYPE, "accept")
    flat = encode(frames[1], "PNG")
    yield HostileFile("animated/apng-3000-frames", _apng_of(flat, 3000), PNG_TYPE, "accept")
    actl = next(c for c in _png_chunks(apng) if c[0] == b"acTL")
    for label, count in (("2147483647", 0x7FFFFFFF), ("4294967295", 0xFFFFFFFF), ("0", 0)):
        body = struct.pack(">II", count, 0)
        patched = apng[: actl[1]] + _chunk(b"acTL", body) + apng[actl[2] :]
        yield HostileFile(f"animated/apng-actl-{label}-frames", patched, PNG_TYPE, "accept")
    claims = _png_insert(base_png(), _chunk(b"acTL", struct.pack(">II", 0x7FFFFFFF, 0)))
    yield HostileFile("animated/png-actl-claims-2147483647-frames", claims, PNG_TYPE, "accept")
    fctl = next(c for c in _png_chunks(apng) if c[0] == b"fcTL")
    huge_frame = struct.pack(">IIIIIHHBB", 0, 100_000, 100_000, 0, 0, 1, 10, 0, 0)
    patched = apng[: fctl[1]] + _chunk(b"fcTL", huge_frame) + apng[fctl[2] :]
    yield HostileFile("animated/apng-first-frame-100000x100000", patched, PNG_TYPE, "either")


def _apng_of(png: bytes, frames: int) -> bytes:
    """An APNG whose every frame is ``png``'s image again (the default image is frame 0)."""
    chunks = _png_chunks(png)
    width, height = struct.unpack_from(">II", png, 16)
    stream = b"".join(png[s + 8 : e - 4] for kind, s, e in chunks if kind == b"IDAT")

    def control(sequence: int) -> bytes:
        return _chunk(
            b"fcTL", struct.pack(">IIIIIHHBB", sequence, width, height, 0, 0, 1, 25, 0, 0)
        )

    head = b"".join(png[s:e] for kind, s, e in chunks if kind not in (b"IDAT", b"IEND"))
    out = [PNG_SIGNATURE, head, _chunk(b"acTL", struct.pack(">II", frames, 0))]
    out += [control(0), _chunk(b"IDAT", stream)]
    for frame in range(1, frames):
        sequence = 2 * frame - 1
        out += [control(sequence), _chunk(b"fdAT", struct.pack(">I", sequence + 1) + stream)]
    return b"".join([*out, _chunk(b"IEND", b"")])


def _other_formats() -> Iterator[HostileFile]:
    image = _plain_rgb().resize((64, 48))
    yield HostileFile(
        "format/gif-named-jpg", encode(image.convert("P"), "GIF"), JPEG_TYPE, "reject"
    )
    yield HostileFile("format/webp-named-jpg", encode(image, "WEBP"), JPEG_TYPE, "reject")
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00mif1heic" + bytes(2000)
    yield HostileFile("format/heic-named-jpg", heic, JPEG_TYPE, "reject")
    avif = struct.pack(">I", 28) + b"ftypavif" + b"\x00\x00\x00\x00avifmif1miaf" + bytes(2000)
    yield HostileFile("format/avif-named-jpg", avif, JPEG_TYPE, "reject")
    yield HostileFile("format/tiff-named-jpg", encode(image, "TIFF"), JPEG_TYPE, "reject")
    yield HostileFile("format/bmp-named-png", encode(image, "BMP"), PNG_TYPE, "reject")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>hostile-payload</script></svg>'
    yield HostileFile("format/svg-named-png", svg, PNG_TYPE, "reject")
    yield HostileFile("format/jpeg-declared-png", base_jpeg(), PNG_TYPE, "accept")
    yield HostileFile("format/png-declared-jpeg", base_png(), JPEG_TYPE, "accept")


def _scan_bombs() -> Iterator[HostileFile]:
    """Progressive JPEGs with many scans: each scan walks every block of the image again."""
    yield HostileFile("scans/progressive-60-scans", _many_scans(60, side=1024), JPEG_TYPE, "accept")
    yield HostileFile(
        "scans/progressive-5000-scans", _many_scans(5000, side=2048), JPEG_TYPE, "reject"
    )
    yield HostileFile(
        "scans/progressive-100000-scans", _many_scans(100_000, side=4096), JPEG_TYPE, "reject"
    )


@lru_cache(maxsize=4)
def _many_scans(total: int, side: int) -> bytes:
    """A flat greyscale progressive JPEG whose last (tiny, all end-of-band) AC scan is
    repeated until there are ``total`` scans."""
    jpeg = encode(Image.new("L", (side, side), 128), "JPEG", progressive=True, quality=90)
    scans = jpeg_scans(jpeg)
    start, end = scans[-1]
    repeats = max(0, total - len(scans))
    return jpeg[:end] + jpeg[start:end] * repeats + jpeg[end:]


def _floods() -> Iterator[HostileFile]:
    """Millions of tiny markers or chunks: cheap to send, each one costs the parser a step."""
    jpeg = _plain_jpeg()
    yield HostileFile(
        "flood/jpeg-1m-empty-comments",
        _with_segments(jpeg, b"\xff\xfe\x00\x02" * 1_000_000),
        JPEG_TYPE,
        "reject",
    )
    yield HostileFile(
        "flood/jpeg-4mb-fill-bytes", _SOI + b"\xff" * 4_000_000 + jpeg[2:], JPEG_TYPE, "reject"
    )
    sof = _first_segment(jpeg, _SOF_MARKERS)
    filled = jpeg[: sof.start] + b"\xff" * 200 + jpeg[sof.start :]
    yield HostileFile("flood/jpeg-200-fill-bytes", filled, JPEG_TYPE, "accept")
    png = base_png()
    empty_chunks = _chunk(b"prIv", b"") * 1_000_000
    yield HostileFile(
        "flood/png-1m-chunks-before-idat", _png_insert(png, empty_chunks), PNG_TYPE, "reject"
    )
    yield HostileFile(
        "flood/png-1m-chunks-after-idat",
        _png_insert(png, empty_chunks, before=b"IEND"),
        PNG_TYPE,
        "reject",
    )
    idat = next(c for c in _png_chunks(png) if c[0] == b"IDAT")
    stream = png[idat[1] + 8 : idat[2] - 4]
    pieces = b"".join(_chunk(b"IDAT", stream[i : i + 256]) for i in range(0, len(stream), 256))
    split = png[: idat[1]] + pieces + png[idat[2] :]
    yield HostileFile("flood/png-idat-every-256-bytes", split, PNG_TYPE, "accept")
    empty_idats = png[: idat[2]] + _chunk(b"IDAT", b"") * 60_000 + png[idat[2] :]
    yield HostileFile("flood/png-60000-empty-idats", empty_idats, PNG_TYPE, "reject")
    text_bomb = _chunk(b"zTXt", b"Comment\x00\x00" + photos._zlib_of_zeros(50_000_000))
    yield HostileFile("flood/png-ztxt-bomb", _png_insert(png, text_bomb), PNG_TYPE, "either")
    iccp_bomb = _chunk(b"iCCP", b"icc\x00\x00" + photos._zlib_of_zeros(50_000_000))
    yield HostileFile("flood/png-iccp-bomb", _png_insert(png, iccp_bomb), PNG_TYPE, "either")
    many_texts = _chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(bytes(1_000_000), 9)) * 200
    yield HostileFile("flood/png-200-ztxt-of-1mb", _png_insert(png, many_texts), PNG_TYPE, "either")


@lru_cache(maxsize=1)
def base_webp() -> bytes:
    return encode(_plain_rgb(), "WEBP", quality=80)


@lru_cache(maxsize=1)
def base_lossless_webp() -> bytes:
    return encode(_plain_rgb(), "WEBP", lossless=True)


@lru_cache(maxsize=1)
def base_animated_webp() -> bytes:
    frames = [_plain_rgb(), _plain_rgb().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50)


@lru_cache(maxsize=1)
def base_heic() -> bytes:
    return photos.heic(_plain_rgb(), quality=60)


def _webp_chunk_at(data: bytes, kind: bytes) -> int:
    """Where the body of the first ``kind`` chunk starts (top level, or inside an ANMF)."""
    return data.index(kind, 12) + 8


def _webp_patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _heic_claiming(width: int, height: int) -> bytes:
    """The base HEIC with its (only) ispe property saying ``width`` x ``height``."""
    heic = base_heic()
    body = heic.index(b"ispe") + 4 + 4  # past the type and the full box's version and flags
    return heic[:body] + struct.pack(">II", width, height) + heic[body + 8 :]


def _phone_formats() -> Iterator[HostileFile]:
    """WebP and HEIC sized from their headers, before anything decodes them."""
    webp, lossless, animated, heic = (
        base_webp(),
        base_lossless_webp(),
        base_animated_webp(),
        base_heic(),
    )
    yield HostileFile("format/webp", webp, WEBP_TYPE, "accept")
    yield HostileFile("format/webp-lossless", lossless, WEBP_TYPE, "accept")
    yield HostileFile("format/heic", heic, HEIC_TYPE, "accept")
    yield HostileFile("animated/webp-2-frames", animated, WEBP_TYPE, "accept")
    vp8 = _webp_chunk_at(webp, b"VP8 ") + 6
    huge_vp8 = _webp_patched(webp, vp8, struct.pack("<HH", 16383, 16383))
    yield HostileFile("huge/webp-vp8-16383x16383", huge_vp8, WEBP_TYPE, "reject")
    vp8l = _webp_chunk_at(lossless, b"VP8L") + 1
    bits = (16383 & 0x3FFF) | ((16383 & 0x3FFF) << 14)
    huge_vp8l = _webp_patched(lossless, vp8l, struct.pack("<I", bits))
    yield HostileFile("huge/webp-vp8l-16384x16384", huge_vp8l, WEBP_TYPE, "reject")
    canvas = _webp_chunk_at(animated, b"VP8X") + 4
    huge_canvas = _webp_patched(animated, canvas, (16383).to_bytes(3, "little") * 2)
    yield HostileFile("huge/webp-vp8x-canvas-16384x16384", huge_canvas, WEBP_TYPE, "reject")
    frame = _webp_chunk_at(animated, b"ANMF") + 6
    huge_frame = _webp_patched(animated, frame, (16383).to_bytes(3, "little") * 2)
    yield HostileFile("huge/webp-anmf-frame-16384x16384", huge_frame, WEBP_TYPE, "reject")
    for width, height in ((30000, 30000), (2**32 - 1, 2**32 - 1), (100_000, 1)):
        claim = _heic_claiming(width, height)
        yield HostileFile(f"huge/heic-ispe-{width}x{height}", claim, HEIC_TYPE, "reject")
    yield HostileFile("zero/heic-ispe-0x0", _heic_claiming(0, 0), HEIC_TYPE, "reject")
    for label, data, content_type in (
        ("webp", webp, WEBP_TYPE),
        ("animated-webp", animated, WEBP_TYPE),
        ("heic", heic, HEIC_TYPE),
    ):
        for percent in (10, 50, 90):
            cut = data[: len(data) * percent // 100]
            yield HostileFile(f"truncated/{label}-at-{percent}pct", cut, content_type, "reject")
        yield HostileFile(f"truncated/{label}-minus-1", data[:-1], content_type, "reject")


_KINDS: tuple[Callable[[], Iterator[HostileFile]], ...] = (
    _empty_and_tiny,
    _truncated,
    bit_flipped,
    _broken_crcs,
    _huge_and_zero_sizes,
    _polyglots,
    _exif_bombs,
    _colour_formats,
    _animated,
    _other_formats,
    _scan_bombs,
    _floods,
    _phone_formats,
)
