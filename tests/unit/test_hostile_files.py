"""Hostile uploads (``tests/support/hostile_files.py``) through both ingest paths, as pure logic.

Every file is accepted or refused with ``ImageRejected`` and a reason a person can act on;
nothing else escapes, and no file costs more than a bounded amount of CPU time and memory.
Then the regressions the corpus found, one test each.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import boto3
import pytest
from PIL import Image, ImageFile

from avatar_core.errors import ImageRejected
from avatar_core.logic import face_avatars, models, photo_checks
from avatar_core.logic.images import ImageLimits, ProcessedImage, fit_reference, normalise_selfie
from avatar_core.logic.ingest import Outcome, ingest_upload, thresholds_from
from avatar_core.models.api import (
    CreateModelRequest,
    FaceUploadRequest,
    RequestUploadsRequest,
    UploadFile,
)
from avatar_core.models.records import SelfieStatus
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository
from avatar_core.store.storage import (
    SelfieKey,
    Storage,
    face_upload_key,
    fitted_face_key,
    selfie_upload_key,
)
from local import photos
from tests.support import hostile_files
from tests.support.hostile_files import PAYLOAD_MARKERS, HostileFile

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # "Corrupt EXIF data" etc.

LIMITS = ImageLimits()
CASES = hostile_files.hostile_files()
CPU_SECONDS_PER_FILE = 2.0
WALL_SECONDS_PER_FILE = 15.0  # only catches hangs: the machine may be shared
# The largest decode in the corpus is a 40-megapixel greyscale PNG (40 MB of pixels, then its
# conversions: ~60 MB); a bomb that got past the header checks would need gigabytes.
PEAK_MEGABYTES_PER_FILE = 160  # 4 bytes per pixel allowed

Ingest = Callable[..., ProcessedImage]
INGESTS: dict[str, Ingest] = {"selfie": normalise_selfie, "reference": fit_reference}
THRESHOLDS = thresholds_from(Settings())

# Every reason ingest may give, each saying what is wrong and, where it is not obvious, what
# to do about it. A Python or Pillow message ("cannot identify image file", "broken data
# stream") matches none of them.
ACTIONABLE_REASONS = [
    re.compile(pattern)
    for pattern in (
        r"the file is empty",
        r"not a JPEG, PNG, HEIC or WebP image( \((AVIF|GIF|PDF|TIFF) is not supported\): "
        r"save it as JPEG)?",
        r"file too large: [\d.]+ MB, at most [\d.]+ MB",
        r"image too large: \d+×\d+ pixels, at most [\d.]+ megapixels",
        r"image too small: \d+×\d+ pixels, need at least \d+ px on the short side",
        r"the image file is damaged or incomplete",
        r"the image is too large to process",
        r"unsupported colour format \(\w+\): save the image as an 8-bit RGB JPEG",
        r"the image has too many progressive scans for its size \(\d+\): "
        r"save it again as a standard \(baseline\) JPEG",
        r"the image file has too many metadata blocks \(more than \d+\): "
        r"save it again as a JPEG or PNG",
        r"the image data is split into too many pieces \(more than \d+\): "
        r"save it again as a JPEG or PNG",
        r"the image file holds too many pixels in its parts: save it again as a JPEG",
        r"the image file has too much padding \(more than \d+ bytes\): "
        r"save it again as a JPEG or PNG",
        # the photo checks on what decoded (a near-duplicate needs a model: test_photo_checks)
        r"the image is mostly transparent: upload a photo",
        r"the image is almost a single colour",
        r"the photo is blurred: take it again in better light",
    )
]


def is_actionable(reason: str) -> bool:
    return any(pattern.fullmatch(reason) for pattern in ACTIONABLE_REASONS)


# --- measuring one ingest: CPU time, wall time, peak memory ----------------------------------

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None)


def _status_kb(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    assert match is not None
    return int(match[1])


def _can_measure_peak_memory() -> bool:
    """Linux resets a process's peak RSS (VmHWM) when "5" is written to clear_refs."""
    try:
        _CLEAR_REFS.write_text("5")
        _status_kb("VmHWM")
    except (OSError, AssertionError):
        return False
    return True


MEASURE_MEMORY = _can_measure_peak_memory()


@dataclass(frozen=True)
class Run:
    result: ProcessedImage | None
    reason: str | None
    error: BaseException | None
    cpu_seconds: float
    wall_seconds: float
    peak_megabytes: float | None  # growth of the resident set while it ran

    @property
    def outcome(self) -> str:
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        return "accepted" if self.result is not None else f"rejected: {self.reason}"


def run(ingest: Ingest, data: bytes) -> Run:
    result = reason = error = None
    baseline = None
    if MEASURE_MEMORY:
        if hasattr(_LIBC, "malloc_trim"):
            _LIBC.malloc_trim(0)  # give freed memory back, so that reusing it shows as growth
        _CLEAR_REFS.write_text("5")
        baseline = _status_kb("VmRSS")
    cpu, wall = time.thread_time(), time.perf_counter()
    try:
        result = ingest(data, limits=LIMITS)
    except ImageRejected as rejection:
        reason = rejection.message
    except Exception as exc:  # the assertion below names it
        error = exc
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    peak = None if baseline is None else (_status_kb("VmHWM") - baseline) / 1024
    return Run(result, reason, error, cpu, wall, peak)


# --- the corpus -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(INGESTS))
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_hostile_file_is_accepted_or_rejected_with_a_reason_in_bounded_time_and_memory(
    case: HostileFile, path: str
) -> None:
    outcome = run(INGESTS[path], case.data)

    assert outcome.error is None, f"{case.name}: {outcome.outcome}"
    if case.expectation == "accept":
        assert outcome.result is not None, f"{case.name}: {outcome.outcome}"
    if case.expectation == "reject":
        assert outcome.result is None, f"{case.name} was accepted"
    if outcome.reason is not None:
        assert is_actionable(outcome.reason), f"{case.name}: {outcome.reason!r}"
    if outcome.result is not None:
        assert_clean_output(outcome.result, path)
        measures = photo_checks.measure(outcome.result)
        checked = (photo_checks.refusal if path == "selfie" else photo_checks.reference_refusal)(
            measures, THRESHOLDS
        )
        assert checked is None or is_actionable(checked), f"{case.name}: {checked!r}"
    assert outcome.cpu_seconds < CPU_SECONDS_PER_FILE, f"{case.name}: {outcome.cpu_seconds:.2f} s"
    assert outcome.wall_seconds < WALL_SECONDS_PER_FILE, (
        f"{case.name}: {outcome.wall_seconds:.2f} s"
    )
    if outcome.peak_megabytes is not None:
        assert outcome.peak_megabytes < PEAK_MEGABYTES_PER_FILE, (
            f"{case.name}: {outcome.peak_megabytes:.0f} MB"
        )


def assert_clean_output(result: ProcessedImage, path: str) -> None:
    """A fresh JPEG (or RGBA PNG) of the promised size, carrying nothing of the upload."""
    image = Image.open(BytesIO(result.data))
    image.load()
    assert (image.format, result.content_type) in (("JPEG", "image/jpeg"), ("PNG", "image/png"))
    assert image.size == (result.width, result.height)
    if path == "selfie":
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (512, 512))
    else:
        assert max(image.size) <= 1536
        assert image.width <= result.source_width and image.height <= result.source_height
    assert not image.getexif() and "icc_profile" not in image.info
    for marker in PAYLOAD_MARKERS:
        assert marker not in result.data
    if image.format == "JPEG":
        assert result.data.rstrip(b"\x00").endswith(b"\xff\xd9")  # nothing trailing the image


def test_the_corpus_covers_every_kind_the_issue_names() -> None:
    kinds = {case.kind for case in CASES}
    assert kinds >= {
        "empty",
        "tiny",
        "magic",
        "truncated",
        "bitflip",
        "crc",
        "huge",
        "zero",
        "polyglot",
        "exif",
        "colour",
        "animated",
        "format",
        "scans",
        "flood",
    }
    assert {case.expectation for case in CASES} == {"accept", "reject", "either"}
    assert {case.content_type for case in CASES} == {
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/heic",
    }


def test_the_random_damage_is_the_same_every_time() -> None:
    first, second = hostile_files.bit_flipped(), hostile_files.bit_flipped()
    assert [(c.name, c.data) for c in first] == [(c.name, c.data) for c in second]


# --- what the corpus found -----------------------------------------------------------------


def must_not_open(*args: object, **kwargs: object) -> Image.Image:
    raise AssertionError("the file was handed to Pillow")


def rejection(data: bytes, limits: ImageLimits = LIMITS) -> str:
    with pytest.raises(ImageRejected) as raised:
        normalise_selfie(data, limits=limits)
    with pytest.raises(ImageRejected) as raised_too:
        fit_reference(data, limits=limits)
    assert raised_too.value.message == raised.value.message
    return raised.value.message


def case(name: str) -> bytes:
    return next(c.data for c in CASES if c.name == name)


def test_given_a_palette_png_whose_trns_is_longer_than_its_palette_then_damaged_not_a_crash() -> (
    None
):
    # Pillow raised ValueError("palette index out of range") while converting, after decoding.
    assert rejection(case("colour/png-palette-trns-too-long")) == (
        "the image file is damaged or incomplete"
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "scans/progressive-5000-scans",
            "the image has too many progressive scans for its size (5000): "
            "save it again as a standard (baseline) JPEG",
        ),
        (
            "scans/progressive-100000-scans",
            "the image file has too many metadata blocks (more than 10000): "
            "save it again as a JPEG or PNG",
        ),
        (
            "flood/jpeg-1m-empty-comments",
            "the image file has too many metadata blocks (more than 10000): "
            "save it again as a JPEG or PNG",
        ),
        (
            "flood/jpeg-4mb-fill-bytes",
            "the image file has too much padding (more than 65536 bytes): "
            "save it again as a JPEG or PNG",
        ),
        (
            "flood/png-1m-chunks-before-idat",
            "the image file has too many metadata blocks (more than 10000): "
            "save it again as a JPEG or PNG",
        ),
        (
            "flood/png-1m-chunks-after-idat",
            "the image file has too many metadata blocks (more than 10000): "
            "save it again as a JPEG or PNG",
        ),
        (
            "flood/png-60000-empty-idats",
            "the image data is split into too many pieces (more than 50000): "
            "save it again as a JPEG or PNG",
        ),
    ],
)
def test_given_a_file_that_is_slow_by_its_structure_then_rejected_before_pillow_sees_it(
    monkeypatch: pytest.MonkeyPatch, name: str, reason: str
) -> None:
    # Before: a 2048x2048 JPEG with 5000 tiny scans took about a minute to decode (each scan
    # visits every block again), the floods 3-14 s each in Python (Pillow's header walk).
    data = case(name)
    monkeypatch.setattr(Image, "open", must_not_open)
    assert rejection(data) == reason


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("huge/webp-vp8-16383x16383", "16383×16383"),
        ("huge/webp-vp8l-16384x16384", "16384×16384"),
        ("huge/webp-vp8x-canvas-16384x16384", "16384×16384"),
        ("huge/heic-ispe-30000x30000", "30000×30000"),
        ("huge/heic-ispe-4294967295x4294967295", "4294967295×4294967295"),
    ],
)
def test_given_a_webp_or_heic_declaring_huge_dimensions_then_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch, name: str, size: str
) -> None:
    data = case(name)
    monkeypatch.setattr(Image, "open", must_not_open)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # the limit is ours, not Pillow's
    assert rejection(data) == f"image too large: {size} pixels, at most 40 megapixels"


def test_given_an_animated_webp_with_one_huge_frame_then_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = case("huge/webp-anmf-frame-16384x16384")
    monkeypatch.setattr(Image, "open", must_not_open)
    assert rejection(data).startswith("image too large: 16384×16384 pixels")


def test_given_a_standard_progressive_photo_at_the_pixel_limit_then_its_scans_fit() -> None:
    # The scan budget is 16 passes over a maximum-size image; libjpeg's standard progression
    # for a full-resolution (4:4:4) colour photo needs 14.
    photo = photos.selfie_image(31, (600, 800))
    data = hostile_files.encode(photo, "JPEG", progressive=True, subsampling=0, quality=90)
    at_its_size = ImageLimits(max_pixels=600 * 800)
    assert normalise_selfie(data, limits=at_its_size).width == 512


def test_given_many_scans_then_the_budget_scales_with_the_pixel_limit() -> None:
    sixty = case("scans/progressive-60-scans")  # 1024x1024, greyscale
    assert normalise_selfie(sixty, limits=LIMITS).width == 512
    assert rejection(sixty, ImageLimits(max_pixels=1024 * 1024)) == (
        "the image has too many progressive scans for its size (60): "
        "save it again as a standard (baseline) JPEG"
    )


def test_given_thousands_of_metadata_segments_below_the_cap_then_accepted() -> None:
    jpeg = photos.selfie_jpeg(32, size=(400, 400))
    padded = jpeg[:2] + b"\xff\xfe\x00\x02" * 9000 + jpeg[2:]
    assert normalise_selfie(padded, limits=LIMITS).width == 512


def test_given_a_too_thin_png_then_it_is_refused_without_decoding_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: reading the EXIF orientation of a PNG made Pillow decode the whole image (here
    # 255x156800 16-bit RGBA, 320 MB of samples) just to word the "too small" message.
    def must_not_load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", must_not_load)
    assert rejection(case("huge/png-255x156800-rgba16-too-thin")) == (
        "image too small: 255×156800 pixels, need at least 256 px on the short side"
    )


def test_given_a_png_orientation_before_its_image_data_then_a_too_small_message_is_upright() -> (
    None
):
    stored = Image.new("RGB", (300, 200), (10, 20, 30))  # shown as 200x300 once turned
    exif = Image.Exif()
    exif[0x0112] = 6
    data = hostile_files.encode(stored, "PNG", exif=exif)
    assert rejection(data) == (
        "image too small: 200×300 pixels, need at least 256 px on the short side"
    )


def test_given_a_cut_jpeg_with_an_end_marker_inside_a_segment_then_still_incomplete(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Completeness used to be "an FF D9 anywhere after the first scan header", so a progressive
    # JPEG cut after a few scans, with those two bytes inside a later segment, passed as whole;
    # with Pillow's global LOAD_TRUNCATED_IMAGES on, it was then accepted half-grey.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    progressive = hostile_files.base_progressive_jpeg()
    third_scan_end = hostile_files.jpeg_scans(progressive)[2][1]
    hiding_an_eoi = progressive[:third_scan_end] + b"\xff\xfe\x00\x04\xff\xd9"
    assert rejection(hiding_an_eoi) == "the image file is damaged or incomplete"
    assert normalise_selfie(hiding_an_eoi + b"\xff\xd9", limits=LIMITS).width == 512


# --- ingest: nothing half-written, whatever arrives when ----------------------------------

OWNER = "alice"
SETTINGS = Settings(table_name="avatars", uploads_bucket="uploads", results_bucket="results")
HOSTILE = b"\xff\xd8\xff" + b"<html>hostile-payload</html>" * 20


@pytest.fixture()
def storage(aws: None) -> Storage:
    boto3.client("s3").create_bucket(Bucket="uploads")
    return Storage("uploads", "results")


def uploaded(key: str, data: bytes) -> None:
    boto3.client("s3").put_object(Bucket="uploads", Key=key, Body=data)


def stored_keys() -> set[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket="uploads")
    return {item["Key"] for item in listed.get("Contents", [])}


def selfie_slot(repo: AvatarRepository, storage: Storage) -> SelfieKey:
    model = models.create_model(repo, Settings(), OWNER, CreateModelRequest(subject="woman"))
    request = RequestUploadsRequest(files=[UploadFile(content_type="image/jpeg")])
    (slot,) = models.request_selfie_uploads(repo, storage, SETTINGS, OWNER, model.model_id, request)
    return SelfieKey(OWNER, model.model_id, slot.selfie_id)


def selfie_status(repo: AvatarRepository, ref: SelfieKey) -> SelfieStatus:
    record = repo.get_selfie(ref.owner, ref.model_id, ref.selfie_id)
    assert record is not None
    return record.status


def test_given_a_file_uploaded_again_to_a_rejected_selfie_slot_then_it_is_not_kept(
    repo: AvatarRepository, storage: Storage
) -> None:
    # A presigned POST stays valid for minutes: a client may upload to it again.
    ref = selfie_slot(repo, storage)
    key = selfie_upload_key(ref.owner, ref.model_id, ref.selfie_id)
    uploaded(key, HOSTILE)
    assert ingest_upload(key, repo, storage, SETTINGS).outcome is Outcome.REJECTED

    uploaded(key, photos.selfie_jpeg(40, size=(400, 400)))
    again = ingest_upload(key, repo, storage, SETTINGS)

    assert again.outcome is Outcome.DUPLICATE
    assert selfie_status(repo, ref) is SelfieStatus.REJECTED
    assert stored_keys() == set()


def test_given_the_delete_of_a_rejected_selfie_fails_then_the_retried_event_finishes_it(
    repo: AvatarRepository, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = selfie_slot(repo, storage)
    key = selfie_upload_key(ref.owner, ref.model_id, ref.selfie_id)
    uploaded(key, HOSTILE)
    real_delete = storage.delete_upload
    monkeypatch.setattr(storage, "delete_upload", fail_with(ConnectionError("S3 blinked")))

    with pytest.raises(ConnectionError):
        ingest_upload(key, repo, storage, SETTINGS)
    # the user already sees why: the rejection was recorded before the delete
    assert selfie_status(repo, ref) is SelfieStatus.REJECTED

    monkeypatch.setattr(storage, "delete_upload", real_delete)
    assert ingest_upload(key, repo, storage, SETTINGS).outcome is Outcome.DUPLICATE
    assert stored_keys() == set()


def test_given_a_selfie_refused_while_its_normalised_copy_was_written_then_the_copy_goes(
    repo: AvatarRepository, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two uploads to one slot race: the good one is normalised while the hostile one is
    # refused and settled first.
    ref = selfie_slot(repo, storage)
    key = selfie_upload_key(ref.owner, ref.model_id, ref.selfie_id)
    uploaded(key, photos.selfie_jpeg(41, size=(400, 400)))
    real_put = storage.put_upload_derivative

    def put_while_refused(target: str, data: bytes, content_type: str) -> None:
        real_put(target, data, content_type)
        record = repo.get_selfie(ref.owner, ref.model_id, ref.selfie_id)
        assert record is not None
        repo.settle_selfie(record, SelfieStatus.REJECTED, reason="the image file is damaged")

    monkeypatch.setattr(storage, "put_upload_derivative", put_while_refused)
    assert ingest_upload(key, repo, storage, SETTINGS).outcome is Outcome.DUPLICATE
    assert not any(k.startswith("normalised/") for k in stored_keys())


def face_slot(repo: AvatarRepository, storage: Storage) -> str:
    request = FaceUploadRequest(content_type="image/jpeg")
    return face_avatars.request_face_upload(repo, storage, SETTINGS, OWNER, request).image_id


@pytest.mark.parametrize("first", ["accepted", "rejected"])
def test_given_a_file_uploaded_again_to_a_settled_reference_slot_then_it_is_not_kept(
    repo: AvatarRepository, storage: Storage, first: str
) -> None:
    image_id = face_slot(repo, storage)
    key = face_upload_key(OWNER, image_id)
    uploaded(key, photos.selfie_jpeg(42, size=(400, 400)) if first == "accepted" else HOSTILE)
    assert ingest_upload(key, repo, storage, SETTINGS).outcome.value == first

    uploaded(key, HOSTILE if first == "accepted" else photos.selfie_jpeg(43, size=(400, 400)))
    assert ingest_upload(key, repo, storage, SETTINGS).outcome is Outcome.DUPLICATE

    fitted = {fitted_face_key(OWNER, image_id)} if first == "accepted" else set()
    assert stored_keys() == fitted


def test_given_a_reference_refused_while_its_fitted_copy_was_written_then_the_copy_goes(
    repo: AvatarRepository, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    image_id = face_slot(repo, storage)
    key = face_upload_key(OWNER, image_id)
    uploaded(key, photos.selfie_jpeg(44, size=(400, 400)))
    real_put = storage.put_upload_derivative

    def put_while_refused(target: str, data: bytes, content_type: str) -> None:
        real_put(target, data, content_type)
        record = repo.get_face_image(OWNER, image_id)
        assert record is not None
        repo.settle_face_image(record, SelfieStatus.REJECTED, reason="the image file is damaged")

    monkeypatch.setattr(storage, "put_upload_derivative", put_while_refused)
    assert ingest_upload(key, repo, storage, SETTINGS).outcome is Outcome.DUPLICATE
    assert stored_keys() == set()


def fail_with(error: Exception) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    return fail
