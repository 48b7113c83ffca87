"""The providers' per-minute rate limits, in emulated time.

Each provider has one limit: requests per minute, counted over a sliding 60-second window
of the emulator's scaled clock (0: unlimited). Every provider request is counted — submits
and status checks of both providers, whatever they answer — but not the admin routes and
not result downloads (``/results`` stands for a CDN, which no provider rate-limits).

A request over the limit is answered 429 before any work, with the header that says when
to ask again, in emulated seconds (the stack's waits run on the same scaled clock):

- Picsart: ``X-Picsart-RateLimit-Reset-Time`` (docs.picsart.io "Quotas and limits": a 429
  "includes a X-Picsart-RateLimit-Reset-Time response header to let you know how long to
  wait before retrying"), as delta-seconds — the unit is not documented; delta-seconds is
  the reading our client (``avatar_core.providers.picsart``) takes first. The body is
  Picsart's ordinary error shape ``{code, message, detail}``, NOT the ``fault`` body with
  ``QuotaViolation``: that one is the exhausted demo quota, which no wait fixes.
- Qolaba: ``Retry-After`` with FastAPI's ``{"detail": ...}`` — assumed, its docs say
  nothing of rate limits.

Alongside, each window keeps what a test wants to know afterwards: how many 429s it sent
and the most requests that arrived within any 60 emulated seconds (counting the refused
ones too, so "peak <= limit" proves the caller stayed inside the limit, not the emulator).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from local.emulator.core import ScaledClock

WINDOW_SECONDS = 60.0
PROVIDERS = ("picsart", "qolaba")
RESET_HEADERS = {
    "picsart": "X-Picsart-RateLimit-Reset-Time",  # documented header, unit assumed
    "qolaba": "Retry-After",  # assumed: Qolaba documents no rate limit
}
# Which provider each guarded route belongs to (local/emulator/faults.py ROUTES).
ROUTE_PROVIDERS = {
    "train_submit": "picsart",
    "train_status": "picsart",
    "infer_submit": "picsart",
    "infer_status": "picsart",
    "instant_submit": "picsart",
    "instant_status": "picsart",
    "face_submit": "qolaba",
    "face_status": "qolaba",
}


@dataclass(frozen=True)
class Refusal:
    """A request over the limit: answer 429 and tell the caller to wait this long."""

    limit: int
    wait_seconds: float

    @property
    def header_value(self) -> str:
        """Whole emulated seconds, rounded up so a caller that waits them gets in."""
        return str(max(1, math.ceil(self.wait_seconds)))


class SlidingWindow:
    """Requests per minute over the last 60 emulated seconds: a log of moments, bounded by
    the window (at most ``limit`` admitted moments, and the arrivals of one window)."""

    def __init__(self, clock: ScaledClock, limit: int = 0) -> None:
        self.clock = clock
        self.limit = _checked(limit)
        self._lock = threading.Lock()
        self._admitted: deque[float] = deque()
        self._arrivals: deque[float] = deque()
        self.peak = 0
        self.refused = 0
        self.requests = 0

    def take(self) -> Refusal | None:
        """Count one request now; a Refusal if it is over the limit, else None."""
        with self._lock:
            now = self.clock.now()
            start = now - WINDOW_SECONDS
            self.requests += 1
            self._arrivals.append(now)
            while self._arrivals and self._arrivals[0] <= start:
                self._arrivals.popleft()
            self.peak = max(self.peak, len(self._arrivals))
            while self._admitted and self._admitted[0] <= start:
                self._admitted.popleft()
            if self.limit and len(self._admitted) >= self.limit:
                self.refused += 1
                return Refusal(self.limit, self._admitted[0] + WINDOW_SECONDS - now)
            self._admitted.append(now)
            return None

    def set_limit(self, limit: int) -> None:
        with self._lock:
            self.limit = _checked(limit)

    def clear(self) -> None:
        with self._lock:
            self._admitted.clear()
            self._arrivals.clear()
            self.peak = self.refused = self.requests = 0


class RateLimits:
    """One window per provider, starting from the configured limits."""

    def __init__(self, clock: ScaledClock, configured: dict[str, int]) -> None:
        self.configured = {
            provider: _checked(configured.get(provider, 0)) for provider in PROVIDERS
        }
        self.windows = {
            provider: SlidingWindow(clock, self.configured[provider]) for provider in PROVIDERS
        }

    def take(self, route: str) -> tuple[str, Refusal | None]:
        provider = ROUTE_PROVIDERS[route]
        return provider, self.windows[provider].take()

    def set_limits(self, limits: dict[str, int]) -> None:
        for provider, limit in limits.items():
            self.windows[provider].set_limit(limit)

    def limits(self) -> dict[str, int]:
        return {provider: window.limit for provider, window in self.windows.items()}

    def reset(self) -> None:
        """Back to the configured limits, with empty windows and zeroed figures."""
        for provider, window in self.windows.items():
            window.clear()
            window.set_limit(self.configured[provider])

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            "requests_per_minute_limit": self.limits(),
            "provider_requests": {p: w.requests for p, w in self.windows.items()},
            "rate_limited": {p: w.refused for p, w in self.windows.items()},
            "peak_requests_per_minute": {p: w.peak for p, w in self.windows.items()},
        }


def _checked(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError("a requests-per-minute limit is an integer >= 0 (0: unlimited)")
    return limit
