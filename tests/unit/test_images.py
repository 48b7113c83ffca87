"""Promises of ingest: which uploads are refused and why, and what accepted ones become."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO

import pytest
from PIL import (
    ExifTags,
    Image,
    ImageChops,
    ImageCms,
    ImageFile,
    ImageOps,
    ImageStat,
    JpegImagePlugin,
    PngImagePlugin,
)
from pillow_heif import register_heif_opener

from avatar_core.errors import ImageRejected
from avatar_core.logic.images import (
    ImageLimits,
    ProcessedImage,
    fit_reference,
    normalise_selfie,
    sniff_format,
)
from local import photos

register_heif_opener()  # for Pillow to open the HEIC samples the way exif_transpose sees them
LIMITS = ImageLimits()
RED, BLUE, GREY, WHITE = (220, 20, 20), (20, 20, 220), (128, 128, 128), (255, 255, 255)


def by(width: int, height: int) -> str:
    return f"{width}\N{MULTIPLICATION SIGN}{height}"


def decoded(result: ProcessedImage) -> Image.Image:
    image = Image.open(BytesIO(result.data))
    image.load()
    return image


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    difference = ImageChops.difference(first.convert("RGB"), second.convert("RGB"))
    return sum(ImageStat.Stat(difference).mean) / 3


def pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def close_to(value: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(value[:3], colour, strict=True))


def rejection(data: bytes, limits: ImageLimits = LIMITS) -> str:
    with pytest.raises(ImageRejected) as raised:
        normalise_selfie(data, limits=limits)
    return raised.value.message


def marked_upright_photo() -> Image.Image:
    """Grey 600x800 with a red block at the top left and a blue one at the bottom right of
    the centre square that the selfie crop keeps."""
    image = Image.new("RGB", (600, 800), GREY)
    image.paste(RED, (20, 120, 140, 240))
    image.paste(BLUE, (460, 560, 580, 680))
    return image


# --- what is refused, and what the user is told ---------------------------------------------


def test_given_a_text_file_named_jpg_when_ingested_then_it_is_not_a_supported_image() -> None:
    assert rejection(photos.text_file_named_jpg()) == "not a JPEG, PNG, HEIC or WebP image"


def test_given_an_empty_upload_when_ingested_then_the_user_is_told_it_is_empty() -> None:
    assert rejection(b"") == "the file is empty"


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00", "AVIF"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avif", "AVIF"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00", "GIF"),
    ],
)
def test_given_a_common_other_format_when_ingested_then_the_message_names_it(
    head: bytes, named: str
) -> None:
    message = rejection(head + bytes(1000))
    assert (
        message
        == f"not a JPEG, PNG, HEIC or WebP image ({named} is not supported): save it as JPEG"
    )


def test_given_a_file_over_the_size_cap_when_ingested_then_rejected_before_parsing() -> None:
    oversized = b"\xff\xd8\xff" + bytes(16 * 1024 * 1024)
    assert rejection(oversized) == "file too large: 16 MB, at most 15 MB"


def test_given_a_200x180_photo_when_ingested_then_too_small_with_its_size() -> None:
    assert rejection(photos.tiny_jpeg((200, 180))) == (
        f"image too small: {by(200, 180)} pixels, need at least 256 px on the short side"
    )


def test_given_a_sideways_stored_small_photo_when_ingested_then_size_is_reported_upright() -> None:
    upright = photos.selfie_image(21, (250, 300))
    data = photos.exif_oriented_jpeg(upright, 6)
    assert Image.open(BytesIO(data)).size == (300, 250)
    assert rejection(data) == (
        f"image too small: {by(250, 300)} pixels, need at least 256 px on the short side"
    )


def test_given_a_big_jpeg_when_ingested_then_min_side_is_judged_on_its_original_size() -> None:
    limits = ImageLimits(min_side=2900)
    result = normalise_selfie(photos.large_jpeg(12, seed=1), limits=limits)
    assert (result.source_width, result.source_height) == (4000, 3000)


def test_given_a_png_bomb_when_ingested_then_rejected_from_its_header_without_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bomb = photos.decompression_bomb_png(30000)
    assert len(bomb) < 200_000

    def must_not_open(*args: object, **kwargs: object) -> Image.Image:
        raise AssertionError("the bomb was handed to Pillow")

    monkeypatch.setattr(Image, "open", must_not_open)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # even with Pillow's own guard off
    assert rejection(bomb) == f"image too large: {by(30000, 30000)} pixels, at most 40 megapixels"


def test_given_a_jpeg_whose_header_claims_20000x20000_when_ingested_then_too_large() -> None:
    data = photos.huge_header_jpeg(20000, 20000)
    assert rejection(data) == f"image too large: {by(20000, 20000)} pixels, at most 40 megapixels"


def test_given_limits_above_pillows_own_guard_when_a_bomb_arrives_then_still_rejected() -> None:
    generous = ImageLimits(max_pixels=10**10)
    assert rejection(photos.decompression_bomb_png(30000), generous) == (
        f"image too large: {by(30000, 30000)} pixels, at most 10000 megapixels"
    )


def test_given_any_upload_when_ingested_then_pillows_global_bomb_limit_is_untouched() -> None:
    before = Image.MAX_IMAGE_PIXELS
    normalise_selfie(photos.selfie_jpeg(1), limits=ImageLimits(max_pixels=1_000_000_000))
    rejection(photos.decompression_bomb_png(30000))
    assert before == Image.MAX_IMAGE_PIXELS


def test_given_a_truncated_jpeg_when_ingested_then_damaged_or_incomplete() -> None:
    assert rejection(photos.truncated_jpeg()) == "the image file is damaged or incomplete"


def test_given_truncated_files_when_some_code_allows_truncated_loads_then_still_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    whole_png = photos.selfie_png(4, size=(400, 400))
    assert rejection(photos.truncated_jpeg()) == "the image file is damaged or incomplete"
    assert rejection(whole_png[: len(whole_png) // 2]) == "the image file is damaged or incomplete"
    whole_jpeg = photos.selfie_jpeg(4, size=(400, 400))
    assert rejection(whole_jpeg[:-2]) == "the image file is damaged or incomplete"


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xd8\xff" + b"not really a jpeg" * 50,
        b"\x89PNG\r\n\x1a\n" + b"not really a png" * 50,
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"
        + bytes(13)
        + zlib.crc32(b"IHDR" + bytes(13)).to_bytes(4),
    ],
    ids=["jpeg-magic-then-text", "png-magic-then-text", "png-zero-size"],
)
def test_given_the_right_magic_but_garbage_when_ingested_then_damaged(garbage: bytes) -> None:
    assert rejection(garbage) == "the image file is damaged or incomplete"


def test_given_a_png_with_a_damaged_header_when_ingested_then_damaged_not_too_large() -> None:
    data = bytearray(photos.selfie_png(6, size=(300, 300)))
    data[16:20] = (3_000_000_000).to_bytes(4, "big")  # IHDR width, CRC left as it was
    assert rejection(bytes(data)) == "the image file is damaged or incomplete"


def test_given_a_png_with_corrupt_image_data_when_ingested_then_damaged() -> None:
    data = bytearray(photos.selfie_png(6, size=(400, 400)))
    idat = data.index(b"IDAT")
    data[idat + 40 : idat + 4000] = bytes(3960)
    assert rejection(bytes(data)) == "the image file is damaged or incomplete"


def test_given_rejections_when_fitting_a_reference_then_the_same_reasons_apply() -> None:
    for data, reason in [
        (photos.text_file_named_jpg(), "not a JPEG, PNG, HEIC or WebP image"),
        (photos.tiny_jpeg(), f"image too small: {by(200, 180)} pixels"),
        (photos.decompression_bomb_png(), f"image too large: {by(30000, 30000)} pixels"),
        (photos.truncated_jpeg(), "the image file is damaged or incomplete"),
    ]:
        with pytest.raises(ImageRejected, match=reason):
            fit_reference(data, limits=LIMITS)


# --- magic bytes decide --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d", "PNG"),
        (b"GIF89a", None),
        (b"\xff\xd8", None),
        (b"", None),
        (b"<html>", None),
    ],
)
def test_given_leading_bytes_when_sniffed_then_only_magic_decides(
    head: bytes, expected: str | None
) -> None:
    assert sniff_format(head) == expected


def test_given_a_png_declared_as_jpeg_when_ingested_then_it_is_read_as_png() -> None:
    # Whatever name or content type the client declared, the bytes are all the logic sees.
    declared_as_jpeg = photos.selfie_png(2, size=(400, 400))
    result = normalise_selfie(declared_as_jpeg, limits=LIMITS)
    assert result.source_format == "PNG"
    assert result.content_type == "image/jpeg"


def test_given_a_jpeg_declared_as_png_when_ingested_then_it_is_read_as_jpeg() -> None:
    result = normalise_selfie(photos.selfie_jpeg(2), limits=LIMITS)
    assert result.source_format == "JPEG"


# --- what an accepted selfie becomes -------------------------------------------------------


def test_given_a_phone_selfie_when_normalised_then_a_512_square_jpeg_without_metadata() -> None:
    original = photos.selfie_jpeg(1, exif_orientation=1)
    assert Image.open(BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)

    result = normalise_selfie(original, limits=LIMITS)

    image = decoded(result)
    assert (result.content_type, result.width, result.height) == ("image/jpeg", 512, 512)
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (512, 512))
    assert (result.source_format, result.source_width, result.source_height) == (
        "JPEG",
        1200,
        1600,
    )
    assert len(image.getexif()) == 0
    assert "exif" not in image.info and "icc_profile" not in image.info
    assert b"Exif" not in result.data and b"Synthetic" not in result.data


def test_given_a_selfie_when_normalised_then_it_is_the_centre_of_the_photo() -> None:
    upright = photos.selfie_image(8, (900, 1200))
    result = normalise_selfie(photos.exif_oriented_jpeg(upright), limits=LIMITS)
    centre = upright.crop((0, 150, 900, 1050)).resize((512, 512), Image.Resampling.LANCZOS)
    assert mean_difference(decoded(result), centre) < 4


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_given_any_exif_orientation_when_normalised_then_the_result_is_upright(
    orientation: int,
) -> None:
    data = photos.exif_oriented_jpeg(marked_upright_photo(), orientation)

    image = decoded(normalise_selfie(data, limits=LIMITS))

    assert close_to(pixel(image, (60, 60)), RED)
    assert close_to(pixel(image, (450, 450)), BLUE)
    assert close_to(pixel(image, (450, 60)), GREY)
    assert close_to(pixel(image, (60, 450)), GREY)


def test_given_a_png_with_an_exif_orientation_when_normalised_then_upright() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    stored = marked_upright_photo().transpose(Image.Transpose.ROTATE_90)

    image = decoded(normalise_selfie(encoded(stored, "PNG", exif=exif), limits=LIMITS))

    assert close_to(pixel(image, (60, 60)), RED)
    assert close_to(pixel(image, (450, 450)), BLUE)


@pytest.mark.parametrize("orientation", [6, 8])
def test_given_a_selfie_stored_sideways_when_normalised_then_it_matches_the_upright_one(
    orientation: int,
) -> None:
    upright = decoded(normalise_selfie(photos.selfie_jpeg(7), limits=LIMITS))
    sideways = photos.selfie_jpeg(7, exif_orientation=orientation)
    assert Image.open(BytesIO(sideways)).size == (1600, 1200)

    result = normalise_selfie(sideways, limits=LIMITS)

    assert (result.source_width, result.source_height) == (1200, 1600)
    assert mean_difference(decoded(result), upright) < 3
    turned = upright.transpose(Image.Transpose.ROTATE_90)
    assert mean_difference(decoded(result), turned) > 4 * mean_difference(decoded(result), upright)


@pytest.fixture()
def decoded_sizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The size each JPEG is decoded at, recorded as Pillow's draft mode settles it."""
    sizes: list[tuple[int, int]] = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(
        self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None
    ) -> object:
        answer = original_draft(self, mode, size)
        sizes.append(self.size)
        return answer

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    return sizes


def test_given_a_12_megapixel_jpeg_when_normalised_then_it_is_decoded_at_reduced_scale(
    decoded_sizes: list[tuple[int, int]],
) -> None:
    result = normalise_selfie(photos.large_jpeg(12), limits=LIMITS)

    assert (result.width, result.height) == (512, 512)
    assert len(decoded_sizes) == 1
    width, height = decoded_sizes[0]
    assert min(width, height) >= 512  # never below what the crop needs
    assert width * height <= 4000 * 3000 / 16


def test_given_a_small_photo_above_the_minimum_when_normalised_then_it_is_scaled_up() -> None:
    result = normalise_selfie(photos.selfie_jpeg(9, size=(300, 400)), limits=LIMITS)
    assert decoded(result).size == (512, 512)


def test_given_a_png_with_transparency_when_normalised_then_a_jpeg_on_white() -> None:
    result = normalise_selfie(photos.selfie_png(3, alpha=True), limits=LIMITS)

    image = decoded(result)
    assert (result.content_type, image.mode) == ("image/jpeg", "RGB")
    for corner in [(3, 3), (508, 3)]:
        assert close_to(pixel(image, corner), WHITE, tolerance=6)
    face = pixel(image, (256, 200))
    assert not close_to(face, WHITE, tolerance=20)


def test_given_a_greyscale_png_with_alpha_when_normalised_then_on_white() -> None:
    source = Image.new("LA", (400, 400), (0, 0))
    source.paste((40, 255), (100, 100, 300, 300))
    image = decoded(normalise_selfie(encoded(source, "PNG"), limits=LIMITS))
    assert close_to(pixel(image, (10, 10)), WHITE, tolerance=4)
    assert close_to(pixel(image, (256, 256)), (40, 40, 40), tolerance=6)


def test_given_a_16_bit_rgb_png_when_normalised_then_colours_match_the_8_bit_photo() -> None:
    data = photos.selfie_png16(5)
    bit_depth = data[24]
    assert bit_depth == 16

    image = decoded(normalise_selfie(data, limits=LIMITS))

    eight_bit = Image.open(BytesIO(data)).convert("RGB")  # every sample is v * 257
    assert mean_difference(image, eight_bit.resize((512, 512), Image.Resampling.LANCZOS)) < 3


def test_given_a_16_bit_transparent_png_when_normalised_then_on_white() -> None:
    image = decoded(normalise_selfie(photos.selfie_png16(5, alpha=True), limits=LIMITS))
    assert close_to(pixel(image, (3, 3)), WHITE, tolerance=6)


def test_given_a_16_bit_greyscale_png_when_normalised_then_tones_are_scaled_not_clipped() -> None:
    grey = photos.selfie_image(6, (600, 600)).convert("L")
    sixteen = grey.convert("I").point(lambda value: value * 257).convert("I;16")
    data = encoded(sixteen, "PNG")
    assert Image.open(BytesIO(data)).mode == "I;16"

    image = decoded(normalise_selfie(data, limits=LIMITS))

    expected = grey.resize((512, 512), Image.Resampling.LANCZOS)
    assert mean_difference(image, expected) < 3


def test_given_a_cmyk_jpeg_when_normalised_then_colours_match_the_rgb_photo() -> None:
    rgb = photos.selfie_image(4, (900, 900))
    cmyk = encoded(rgb.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(BytesIO(cmyk)).mode == "CMYK"

    image = decoded(normalise_selfie(cmyk, limits=LIMITS))

    assert image.mode == "RGB"
    assert mean_difference(image, rgb.resize((512, 512), Image.Resampling.LANCZOS)) < 6


@pytest.mark.parametrize("with_transparency", [False, True])
def test_given_a_palette_png_when_normalised_then_accepted_with_its_colours(
    with_transparency: bool,
) -> None:
    source = Image.new("RGB", (400, 400), RED)
    source.paste(BLUE, (150, 150, 250, 250))
    palette = source.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    red_index = palette.getpixel((0, 0))
    options = {"transparency": red_index} if with_transparency else {}

    image = decoded(normalise_selfie(encoded(palette, "PNG", **options), limits=LIMITS))

    assert close_to(pixel(image, (256, 256)), BLUE)
    assert close_to(pixel(image, (10, 10)), WHITE if with_transparency else RED, tolerance=8)


def test_given_a_greyscale_jpeg_when_normalised_then_an_rgb_jpeg() -> None:
    grey = photos.selfie_image(2, (600, 800)).convert("L")
    image = decoded(normalise_selfie(encoded(grey, "JPEG"), limits=LIMITS))
    assert image.mode == "RGB"
    red, green, blue = image.split()
    assert red.tobytes() == green.tobytes() == blue.tobytes()


def test_given_an_animated_png_when_normalised_then_the_first_frame_is_used() -> None:
    frames = [Image.new("RGB", (300, 300), RED), Image.new("RGB", (300, 300), BLUE)]
    data = encoded(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)
    image = decoded(normalise_selfie(data, limits=LIMITS))
    assert close_to(pixel(image, (256, 256)), RED, tolerance=6)


def test_given_an_embedded_srgb_profile_when_normalised_then_colours_kept_profile_gone() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = Image.new("RGB", (400, 400), (200, 120, 60))
    image = decoded(normalise_selfie(encoded(source, "PNG", icc_profile=srgb), limits=LIMITS))
    assert close_to(pixel(image, (256, 256)), (200, 120, 60), tolerance=4)
    assert "icc_profile" not in image.info


def test_given_a_broken_colour_profile_when_normalised_then_the_photo_is_still_accepted() -> None:
    source = Image.new("RGB", (400, 400), (200, 120, 60))
    data = encoded(source, "JPEG", icc_profile=b"not an icc profile at all" * 10)
    image = decoded(normalise_selfie(data, limits=LIMITS))
    assert close_to(pixel(image, (256, 256)), (200, 120, 60), tolerance=6)


def test_given_a_different_seed_when_photos_are_made_then_each_selfie_differs() -> None:
    first = decoded(normalise_selfie(photos.selfie_jpeg(1), limits=LIMITS))
    second = decoded(normalise_selfie(photos.selfie_jpeg(2), limits=LIMITS))
    assert mean_difference(first, second) > 10


# --- face-avatar references ----------------------------------------------------------------


def test_given_a_3000x2000_reference_when_fitted_then_1536x1024_jpeg() -> None:
    result = fit_reference(photos.selfie_jpeg(12, size=(3000, 2000)), limits=LIMITS)

    image = decoded(result)
    assert (result.content_type, image.format, image.size) == ("image/jpeg", "JPEG", (1536, 1024))
    assert (result.width, result.height) == (1536, 1024)
    assert (result.source_width, result.source_height) == (3000, 2000)
    assert len(image.getexif()) == 0


def test_given_an_800x600_reference_when_fitted_then_never_upscaled() -> None:
    data = photos.selfie_jpeg(13, size=(800, 600))
    result = fit_reference(data, limits=LIMITS)
    assert decoded(result).size == (800, 600)
    assert mean_difference(decoded(result), Image.open(BytesIO(data))) < 3


def test_given_a_sideways_stored_reference_when_fitted_then_upright_and_fitted() -> None:
    upright = decoded(fit_reference(photos.selfie_jpeg(14, size=(1200, 1800)), limits=LIMITS))
    data = photos.selfie_jpeg(14, size=(1200, 1800), exif_orientation=6)

    result = fit_reference(data, limits=LIMITS)

    assert decoded(result).size == (1024, 1536)
    assert mean_difference(decoded(result), upright) < 5
    upside_down = upright.transpose(Image.Transpose.ROTATE_180)
    assert mean_difference(decoded(result), upside_down) > 3 * mean_difference(
        decoded(result), upright
    )


def test_given_a_12_megapixel_reference_when_fitted_then_decoded_at_reduced_scale(
    decoded_sizes: list[tuple[int, int]],
) -> None:
    result = fit_reference(photos.large_jpeg(12), limits=LIMITS)

    assert (result.width, result.height) == (1536, 1152)
    assert decoded_sizes == [(2000, 1500)]


def test_given_a_transparent_png_reference_when_fitted_then_it_stays_an_rgba_png() -> None:
    result = fit_reference(photos.selfie_png(15, size=(500, 500), alpha=True), limits=LIMITS)

    image = decoded(result)
    assert (result.content_type, image.format, image.mode) == ("image/png", "PNG", "RGBA")
    assert image.size == (500, 500)
    assert pixel(image, (3, 3))[3] == 0
    assert pixel(image, (250, 200))[3] == 255
    assert not {"exif", "icc_profile", "transparency"} & image.info.keys()


def test_given_an_opaque_rgba_png_reference_when_fitted_then_a_jpeg() -> None:
    opaque = photos.selfie_image(16, (400, 400)).convert("RGBA")
    result = fit_reference(encoded(opaque, "PNG"), limits=LIMITS)
    assert (result.content_type, decoded(result).mode) == ("image/jpeg", "RGB")


def test_given_a_large_transparent_png_reference_when_fitted_then_fitted_and_still_rgba() -> None:
    cut_out = photos.selfie_png(17, size=(2000, 1000), alpha=True)
    result = fit_reference(cut_out, limits=LIMITS)
    image = decoded(result)
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (1536, 768))


# --- phone formats: HEIC/HEIF and WebP ----------------------------------------------------------


def test_given_a_heic_selfie_when_normalised_then_a_512_jpeg_of_the_photo() -> None:
    upright = photos.selfie_image(31, (600, 800))
    data = photos.heic(upright, quality=90)
    assert sniff_format(data[:64]) == "HEIF"

    result = normalise_selfie(data, limits=LIMITS)

    assert (result.content_type, result.source_format) == ("image/jpeg", "HEIF")
    assert (result.width, result.height, result.source_width, result.source_height) == (
        512,
        512,
        600,
        800,
    )
    assert result.frames_in_file == 1
    centre = upright.crop((0, 100, 600, 700)).resize((512, 512), Image.Resampling.LANCZOS)
    assert mean_difference(decoded(result), centre) < 4


def test_given_a_webp_selfie_when_normalised_then_a_512_jpeg_without_its_metadata() -> None:
    data = photos.selfie_webp(32, (900, 1200))
    assert sniff_format(data[:64]) == "WEBP"

    result = normalise_selfie(data, limits=LIMITS)

    assert (result.content_type, result.source_format, result.width) == ("image/jpeg", "WEBP", 512)
    assert (result.source_width, result.source_height) == (900, 1200)
    assert b"Exif" not in result.data


def test_given_a_heic_or_webp_reference_when_fitted_then_a_jpeg_inside_the_box() -> None:
    for data in (photos.selfie_heic(33, (600, 800)), photos.selfie_webp(33, (600, 800))):
        result = fit_reference(data, limits=LIMITS, max_side=400)
        assert (result.content_type, result.width, result.height) == ("image/jpeg", 300, 400)


def test_given_a_transparent_webp_reference_when_fitted_then_a_png_cut_out() -> None:
    cut_out = Image.new("RGBA", (600, 800), (0, 0, 0, 0))
    cut_out.paste((200, 120, 90, 255), (100, 100, 500, 700))

    result = fit_reference(encoded(cut_out, "WEBP", lossless=True), limits=LIMITS)

    assert result.content_type == "image/png"
    assert decoded(result).getpixel((10, 10)) == (0, 0, 0, 0)


def test_given_an_animated_webp_when_normalised_then_its_first_frame_and_the_frame_count() -> None:
    data = photos.animated_webp((34, 35, 36), (600, 800))

    result = normalise_selfie(data, limits=LIMITS)

    first = photos.selfie_image(34, (600, 800)).crop((0, 100, 600, 700)).resize((512, 512))
    assert result.frames_in_file == 3
    assert mean_difference(decoded(result), first) < 8


def test_given_a_heic_collection_when_normalised_then_its_primary_image_and_the_count() -> None:
    images = [photos.selfie_image(seed, (600, 800)) for seed in (37, 38)]
    data = photos.heic(images[0], save_all=True, append_images=images[1:])

    result = normalise_selfie(data, limits=LIMITS)

    assert result.frames_in_file == 2
    first = images[0].crop((0, 100, 600, 700)).resize((512, 512))
    assert mean_difference(decoded(result), first) < 8


def test_given_an_iphone_like_heic_grid_turned_by_irot_then_upright_at_its_full_size() -> None:
    # iPhones store 512x512 tiles of a grid item, turned by the container's irot.
    upright = photos.selfie_image(44, (768, 1024))
    stored = photos.stored_for_orientation(upright, 6)
    data = photos.heic(stored, tile_size=512, exif=photos.orientation_exif(6).tobytes())
    assert b"grid" in data and b"irot" in data

    result = normalise_selfie(data, limits=LIMITS)

    assert (result.source_width, result.source_height) == (768, 1024)
    centre = upright.crop((0, 128, 768, 896)).resize((512, 512), Image.Resampling.LANCZOS)
    assert mean_difference(decoded(result), centre) < 4


def test_given_an_mpo_or_an_animated_png_then_the_first_image_and_the_count() -> None:
    images = [photos.selfie_image(seed, (600, 800)) for seed in (45, 46, 47)]
    mpo = encoded(images[0], "MPO", save_all=True, append_images=images[1:2])
    apng = encoded(images[0], "PNG", save_all=True, append_images=images[1:])

    assert normalise_selfie(mpo, limits=LIMITS).frames_in_file == 2
    assert normalise_selfie(apng, limits=LIMITS).frames_in_file == 3
    first = images[0].crop((0, 100, 600, 700)).resize((512, 512))
    assert mean_difference(decoded(normalise_selfie(apng, limits=LIMITS)), first) < 4


def test_given_an_ordinary_file_then_it_holds_one_frame() -> None:
    assert normalise_selfie(photos.selfie_jpeg(39, (600, 800)), limits=LIMITS).frames_in_file == 1


def test_given_an_avif_when_ingested_then_refused_by_name() -> None:
    avif = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(1000)
    assert "(AVIF is not supported)" in rejection(avif)


def test_importing_the_image_logic_does_not_load_libheif() -> None:
    import subprocess
    import sys

    code = (
        "import sys, avatar_core.logic.images; "
        "assert not {'pi_heif', 'pillow_heif'} & set(sys.modules)"
    )
    subprocess.run(  # noqa: S603 - fixed argv of our own module
        [sys.executable, "-c", code], check=True, env={"PYTHONPATH": "layers/core"}
    )


# --- orientation wherever the file keeps it, as ImageOps.exif_transpose reads it -------------

_XMP_ATTRIBUTE = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
    'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="{}"/></rdf:RDF></x:xmpmeta>'
)
_XMP_ELEMENT = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
    'xmlns:tiff="http://ns.adobe.com/tiff/1.0/"><tiff:Orientation>{}</tiff:Orientation>'
    "</rdf:Description></rdf:RDF></x:xmpmeta>"
)


def _png_with_text(stored: Image.Image, key: str, value: str, *, itxt: bool) -> bytes:
    info = PngImagePlugin.PngInfo()
    if itxt:
        info.add_itxt(key, value)
    else:
        info.add_text(key, value, zip=True)  # zTXt, as ImageMagick writes it
    return encoded(stored, "PNG", pnginfo=info)


def _imagemagick_raw_exif(orientation: int) -> str:
    payload = b"Exif\x00\x00" + photos.orientation_exif(orientation).tobytes()
    hexed = payload.hex()
    lines = "\n".join(hexed[i : i + 72] for i in range(0, len(hexed), 72))
    return f"\nexif\n{len(payload):8d}\n{lines}\n"


def _oriented(container: str, orientation: int) -> bytes:
    stored = photos.stored_for_orientation(marked_upright_photo(), orientation)
    exif = photos.orientation_exif(orientation)
    if container == "jpeg-exif":
        return encoded(stored, "JPEG", quality=95, exif=exif)
    if container == "jpeg-xmp":
        return encoded(stored, "JPEG", quality=95, xmp=_XMP_ELEMENT.format(orientation).encode())
    if container == "png-exif":
        return encoded(stored, "PNG", exif=exif)
    if container in ("png-xmp-attribute", "png-xmp-element"):
        xmp = _XMP_ATTRIBUTE if container == "png-xmp-attribute" else _XMP_ELEMENT
        return _png_with_text(stored, "XML:com.adobe.xmp", xmp.format(orientation), itxt=True)
    if container == "png-imagemagick-raw-exif":
        raw = _imagemagick_raw_exif(orientation)
        return _png_with_text(stored, "Raw profile type exif", raw, itxt=False)
    if container == "webp-exif":
        return encoded(stored, "WEBP", quality=95, exif=exif)
    if container == "webp-xmp":
        return encoded(stored, "WEBP", quality=95, xmp=_XMP_ATTRIBUTE.format(orientation).encode())
    if container == "heic-exif":
        return photos.heic(stored, quality=95, exif=exif.tobytes())
    raise AssertionError(container)


CONTAINERS = [
    "jpeg-exif",
    "jpeg-xmp",
    "png-exif",
    "png-xmp-attribute",
    "png-xmp-element",
    "png-imagemagick-raw-exif",
    "webp-exif",
    "webp-xmp",
    "heic-exif",
]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("container", CONTAINERS)
def test_given_an_orientation_in_any_container_then_upright_as_exif_transpose_has_it(
    container: str, orientation: int
) -> None:
    data = _oriented(container, orientation)

    image = decoded(normalise_selfie(data, limits=LIMITS))

    assert close_to(pixel(image, (60, 60)), RED)
    assert close_to(pixel(image, (450, 450)), BLUE)
    assert close_to(pixel(image, (450, 60)), GREY)
    assert close_to(pixel(image, (60, 450)), GREY)
    reference = ImageOps.exif_transpose(Image.open(BytesIO(data))).convert("RGB")
    assert reference.size == (600, 800)
    centre = reference.crop((0, 100, 600, 700)).resize((512, 512), Image.Resampling.LANCZOS)
    assert mean_difference(image, centre) < 3


def test_given_a_heic_whose_exif_says_turned_then_libheif_turns_it_once_only() -> None:
    # pillow_heif writes the EXIF orientation as the file's irot/imir and keeps the EXIF tag:
    # the file holds both, and only the container's transform may be applied.
    data = _oriented("heic-exif", 6)
    assert b"irot" in data
    with Image.open(BytesIO(data)) as opened:
        assert opened.info["original_orientation"] == 6

    result = normalise_selfie(data, limits=LIMITS)

    assert (result.source_width, result.source_height) == (600, 800)
    assert close_to(pixel(decoded(result), (60, 60)), RED)


def test_given_a_small_png_with_its_orientation_in_xmp_then_the_size_is_reported_upright() -> None:
    stored = photos.stored_for_orientation(photos.selfie_image(40, (250, 300)), 6)
    data = _png_with_text(stored, "XML:com.adobe.xmp", _XMP_ATTRIBUTE.format(6), itxt=True)
    assert rejection(data) == (
        f"image too small: {by(250, 300)} pixels, need at least 256 px on the short side"
    )


# --- as tolerant as libjpeg ------------------------------------------------------------------


def _with_stray_bytes_after_first_segment(jpeg: bytes, stray: bytes) -> bytes:
    length = int.from_bytes(jpeg[4:6], "big")
    return jpeg[: 4 + length] + stray + jpeg[4 + length :]


@pytest.mark.parametrize(
    "stray", [b"junk", b"\x00", b"\xff\x00\x17", b"\x00" * 1000], ids=["text", "nul", "ff00", "1k"]
)
def test_given_stray_bytes_between_jpeg_segments_then_accepted_as_libjpeg_does(
    stray: bytes,
) -> None:
    data = _with_stray_bytes_after_first_segment(photos.selfie_jpeg(41, (600, 800)), stray)
    with Image.open(BytesIO(data)) as image:
        image.load()  # Pillow and libjpeg decode it, with a warning at most

    assert normalise_selfie(data, limits=LIMITS).width == 512


def test_given_stray_bytes_and_a_truncated_jpeg_then_still_damaged() -> None:
    data = _with_stray_bytes_after_first_segment(photos.selfie_jpeg(42, (600, 800)), b"junk")
    for cut in (len(data) // 2, len(data) - 1, 30):
        assert rejection(data[:cut]) == "the image file is damaged or incomplete"


def test_given_more_stray_bytes_than_the_padding_budget_then_refused_with_a_reason() -> None:
    data = _with_stray_bytes_after_first_segment(photos.selfie_jpeg(43, (600, 800)), bytes(70_000))
    assert rejection(data) == (
        "the image file has too much padding (more than 65536 bytes): "
        "save it again as a JPEG or PNG"
    )


def test_given_a_heic_whose_items_point_past_its_end_then_damaged_even_when_pillow_pads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every box fits in the file, but the image data it locates was cut off.
    whole = photos.heic(photos.selfie_image(48, (600, 800)), quality=60)
    mdat = whole.index(b"mdat") - 4
    cut = len(whole) - (len(whole) - mdat) // 2
    data = bytearray(whole[:cut])
    data[mdat : mdat + 4] = (cut - mdat).to_bytes(4, "big")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)

    assert rejection(bytes(data)) == "the image file is damaged or incomplete"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_given_a_heic_grid_whose_tiles_add_up_to_far_more_than_the_image_then_refused() -> None:
    # Each tile is decoded in full before the grid is cropped: 4 tiles claiming 1000x700
    # behind a 768x1024 image would be 3.6 megapixels of work for 0.8 of image.
    data = photos.heic(photos.selfie_image(49, (768, 1024)), tile_size=512)
    tile_size = struct.pack(">II", 512, 512)
    assert data.count(tile_size) == 1
    claimed = data.replace(tile_size, struct.pack(">II", 1000, 700))
    limits = ImageLimits(max_pixels=800_000)
    assert normalise_selfie(data, limits=limits).width == 512

    assert rejection(claimed, limits) == (
        "the image file holds too many pixels in its parts: save it again as a JPEG"
    )
