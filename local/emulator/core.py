"""What both emulated providers share: a scaled clock, expiring result files, the stamp.

The emulator is a development tool. Every image it returns carries a visible EMULATED
band, so nobody mistakes its output for a provider's.
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import requests
from PIL import Image, ImageDraw, ImageOps

MAX_FETCH_BYTES = 20 * 1024 * 1024
ACCEPTED_IMAGE_FORMATS = ("JPEG", "PNG")


@dataclass(frozen=True)
class EmulatorConfig:
    """Knobs of the emulator. ``time_factor`` must equal the state machine's wait scale."""

    time_factor: float = 1.0
    result_ttl_seconds: float = 48 * 3600
    picsart_api_key: str = "local-picsart-key"
    qolaba_token: str = "local-qolaba-token"  # noqa: S105 - only ever valid against the emulator
    training_seconds: float = 20 * 60
    inference_seconds: float = 60
    face_seconds: float = 40
    instant_seconds: float = 40
    fetch_timeout_seconds: float = 10.0
    # the providers' rate limits per minute of EMULATED time (0: unlimited): limits.py
    picsart_requests_per_minute: int = 0
    qolaba_requests_per_minute: int = 0


class ScaledClock:
    """Emulated seconds: real time multiplied by ``factor`` since the clock started."""

    def __init__(self, factor: float = 1.0) -> None:
        if factor <= 0:
            raise ValueError("time factor must be positive")
        self.factor = factor
        self._real_start = time.time()
        self._mono_start = time.monotonic()
        self._skipped = 0.0

    def now(self) -> float:
        elapsed = (time.monotonic() - self._mono_start) * self.factor
        return self._real_start + elapsed + self._skipped

    def advance(self, seconds: float) -> None:
        """Jump ahead, so a test can reach a job's next phase without waiting for it."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._skipped += seconds


@dataclass
class _ResultFile:
    data: bytes
    content_type: str
    expires_at: float


@dataclass
class ResultFiles:
    """Result images the emulator serves at ``/results/<token>`` until they expire."""

    clock: ScaledClock
    base_url: str = ""
    _files: dict[str, _ResultFile] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, data: bytes, content_type: str, ttl_seconds: float) -> str:
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._files[token] = _ResultFile(data, content_type, self.clock.now() + ttl_seconds)
        return f"{self.base_url}/results/{token}"

    def get(self, token: str) -> _ResultFile | None:
        with self._lock:
            entry = self._files.get(token)
        if entry is None or entry.expires_at <= self.clock.now():
            return None
        return entry

    def expire_all(self) -> None:
        with self._lock:
            for entry in self._files.values():
                entry.expires_at = 0.0


def stamp_emulated(image: Image.Image, label: str = "EMULATED") -> Image.Image:
    """Draw a band across the bottom that says the image was made by the emulator."""
    stamped = image.copy()
    draw = ImageDraw.Draw(stamped)
    width, height = stamped.size
    band = max(14, height // 12)
    fill = (200, 0, 0, 255) if stamped.mode == "RGBA" else (200, 0, 0)
    draw.rectangle([0, height - band, width, height], fill=fill)
    text = f"{label} - not a provider result"
    draw.text((6, height - band + max(1, (band - 11) // 2)), text, fill="white")
    return stamped


class FetchFailed(Exception):
    """An input URL could not be downloaded: unreachable, expired, non-2xx or too big."""


class ImageInvalid(Exception):
    """Downloaded bytes are not a decodable JPEG or PNG image."""


def without_query(url: str) -> str:
    """The URL without its query string: what may be shown of a presigned URL."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def fetch(url: str, timeout: float, max_bytes: int = MAX_FETCH_BYTES) -> bytes:
    """Download ``url`` the way a provider's worker would, refusing oversized bodies."""
    try:
        with requests.get(url, timeout=timeout, stream=True) as response:
            if not 200 <= response.status_code < 300:
                raise FetchFailed(f"HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_content(64 * 1024):
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise FetchFailed(f"larger than {max_bytes} bytes")
            return bytes(body)
    except requests.RequestException as error:
        raise FetchFailed(type(error).__name__) from error


def decode_image(data: bytes, max_side: int) -> Image.Image:
    """Decode a JPEG or PNG, upright, as RGB no larger than ``max_side`` on either side."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in ACCEPTED_IMAGE_FORMATS:
            raise ImageInvalid(f"{image.format or 'unknown'} is not JPEG or PNG")
        image.draft("RGB", (max_side, max_side))
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "P"):
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, (255, 255, 255))
            image.paste(rgba, mask=rgba.getchannel("A"))
        else:
            image = image.convert("RGB")
        image.thumbnail((max_side, max_side))
        return image
    except ImageInvalid:
        raise
    except Exception as error:  # Pillow raises many types for bad or hostile input
        raise ImageInvalid(str(error) or type(error).__name__) from error
