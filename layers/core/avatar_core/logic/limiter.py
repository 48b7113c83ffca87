"""Admission control per provider, shared by every execution: a token before every call.

Each provider allows so many requests a minute for the whole account (Picsart 500), and
every workflow execution polls and submits on its own. So before any provider API call a
task takes a token here; with none left it answers "wait N s" to its state machine (see
``logic/polling.py``): :class:`AdmissionDenied` is one of ``PROVIDER_BUSY``, so it costs
neither a Retry nor the job.

Design: fixed windows, counted by one conditional write
---------------------------------------------------------
Time is cut into fixed windows of ``w`` seconds (window ``k`` is ``[k*w, (k+1)*w)``). An
attempt is ONE DynamoDB UpdateItem on the window's counter, ``ADD n :one`` with the
condition ``attribute_not_exists(n) OR n < :cap``: it either counts the request (admitted)
or fails its condition (refused). No read, no compare-and-swap loop, no lock: DynamoDB
applies conditional writes to one item one after the other, so of any number of concurrent
callers exactly ``cap`` are admitted per window. A token bucket would need the bucket's
level and its last refill time, i.e. a read then a conditional write that loses and loops
under contention; the window needs neither, and its items expire by TTL a few minutes later.

The cap per window, so that ANY sliding 60 s stays within the per-minute rate
---------------------------------------------------------------------------------------
Fixed windows alone do not bound a *sliding* minute: ``cap`` requests at the very end of
one window and ``cap`` more at the start of the next are close together. A half-open span
of 60 s meets at most ``m = ceil(60 / w) + 1`` windows (``60/w + 1`` when ``w`` divides 60,
e.g. 7 windows of 10 s: ``[5, 65)`` meets the windows starting at 0, 10, ... 60), and at
worst every one of them spends its whole cap inside the span. So the cap is

    cap = floor(rate / m)        (= floor(rate * w / (60 + w)) when w divides 60)

and any 60 s then sees at most ``m * cap <= rate`` admissions. Picsart, 500 a minute with
10 s windows: ``m = 7``, ``cap = 71``, at most 497 in any minute; 426 a minute when busy
for long (the price of the guarantee: shorter windows lose less, 5 s windows give 38 per
window and 456 a minute, but write more often). Qolaba, 60 a minute: cap 8 per 10 s.

The guarantee is about when tokens are *taken*, by the callers' clocks (Lambda's are kept
in sync by NTP to well under a second). A request reaches the provider some hundreds of
milliseconds after its token, each a little differently, so the provider's own minute may
see a few more at its edges than any minute of tokens: the tokens the floor leaves unspent
(3 of Picsart's 500) absorb a few; if a provider counts strictly, set its rate a little
under its limit.

Shards: why one key does not have to take every attempt
--------------------------------------------------------
A DynamoDB partition takes at most 1,000 write units a second, and a refused conditional
write costs one too. So the window's cap is split over up to ``S`` shards, items
``LIMIT#<provider>#<shard>`` / ``W#<window>`` (the window's number, its start / ``w``):
shard ``i`` gets ``cap // S``, plus one of the remainder when ``i < cap % S``. An attempt
writes a random shard first and, if that one is full, one other random shard: at most two
writes. The shares add up to ``cap``, so a window never admits more; with many callers
every shard is tried until it is full, so a busy window admits exactly ``cap``.

A caller refused by both of its shards while a third still has a token waits a window for
nothing (it errs on the provider's side). With tiny shares that would happen while the
window is far from full, so no shard holds fewer than ``MIN_SHARD_SHARE`` (4) tokens: a
small cap uses fewer shards (Qolaba's 8 a window: 2 shards of 4, and with 2 shards the two
writes try both, so nobody is refused while a token is left).

What one key takes: every attempt is at most 2 writes of 1 WCU (items are tiny), spread
evenly over ``S`` keys, so a key takes ``2 * A / S`` writes a second for ``A`` attempts a
second, admitted and refused alike. 10,000 executions attempt about 2,300 times a
second at most: an execution waits 4.4 s or more on average between attempts (a refused
one at least ``polling.MIN_BUSY_WAIT_SECONDS``, 5; the fastest poll, a face job's 5 s,
jittered down to 3/4-1 of it; generations 10 s; a queued submission far longer), so
``A <= 10,000 / 4.4``. With the default ``S = 8`` a key takes at most about
``2 * 2,300 / 8 = 570`` writes a second, under DynamoDB's 1,000 per partition key; ``S``
grows with the stack (``S >= A / 400``) through the ``LimiterShards`` parameter.

A refused caller is told to come back after the window ends plus a random spread of up to
one more window, so the refused of one window do not all return at the first instant of
the next (``polling.busy_wait`` then draws the wait between that and twice that).

Time is injected (``clock``), as are the store and the random draws, so the same decisions
run in unit tests, in the bench over a simulated clock, and in Lambda over the wall clock.
Locally the stack runs emulated time ``time_factor`` times faster than the wall (its Wait
states last ``1/time_factor`` of their seconds, the emulator's clock runs that much faster):
``limiter_time_factor`` makes the limiter's clock the wall clock times that factor, so the
windows, the per-minute rate and every ``retry_after`` are in the emulator's seconds, the
same seconds the Wait state that ``retry_after`` becomes is scaled from.

Wiring (:class:`Admission`): a task's provider client calls ``admit`` before every request
it sends (``ProviderHttp``'s ``admit`` hook), so no provider call, submit or poll, can skip
it; result downloads from the providers' result URLs are not API calls and take no token.
A denial counts the metric ``ProviderAdmissionDenied`` (dimension ``provider``).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from avatar_core.errors import AdmissionDenied
from avatar_core.observability import count_per_provider, logger
from avatar_core.settings import Settings

# Windows outlive their end by this long before TTL may remove them (DynamoDB's TTL deletes
# within days, so correctness never depends on it: the window's start is in its key).
WINDOW_TTL_SECONDS = 300
DENIED_METRIC = "ProviderAdmissionDenied"
DEFAULT_WINDOW_SECONDS = 10.0
DEFAULT_SHARDS = 8
# No shard holds fewer tokens a window than this (a small cap uses fewer shards).
MIN_SHARD_SHARE = 4


class WindowStore(Protocol):
    """Where windows are counted: one conditional increment, nothing else."""

    def add_if_below(self, key: str, cap: int, expires_at: int) -> bool:
        """Count one request under ``key`` unless ``cap`` are counted there already; True
        if it was counted. ``expires_at`` (epoch seconds) is when the count may be dropped."""
        ...


@dataclass
class MemoryWindowStore:
    """The store in memory, for tests and the bench: thread-safe, and it counts writes per
    key (admitted and refused) as DynamoDB would bill them."""

    counts: dict[str, int] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_if_below(self, key: str, cap: int, expires_at: int) -> bool:
        with self._lock:
            self.writes[key] = self.writes.get(key, 0) + 1
            count = self.counts.get(key, 0)
            if count >= cap:
                return False
            self.counts[key] = count + 1
            return True


def window_cap(rate_per_minute: int, window_seconds: float) -> int:
    """Admissions per window so that any sliding 60 s sees at most ``rate_per_minute``."""
    windows_in_a_minute = math.ceil(60 / window_seconds - 1e-9) + 1
    return rate_per_minute // windows_in_a_minute


def shard_caps(cap: int, shards: int) -> list[int]:
    """The window's cap split over at most ``shards`` shards of at least ``MIN_SHARD_SHARE``
    tokens each (one shard when the cap is smaller), the remainder one each to the first."""
    shards = max(1, min(shards, cap // MIN_SHARD_SHARE))
    base, extra = divmod(cap, shards)
    caps = [base + (1 if index < extra else 0) for index in range(shards)]
    return caps


def window_key(provider: str, shard: int, window: int) -> str:
    """``<PK>#W#<window>``: the repository splits it into its item's PK and SK. ``window``
    is the window's number, its start divided by ``w``."""
    return f"LIMIT#{provider}#{shard}#W#{window}"


class Limiter:
    """One provider's admission control; ``rate_per_minute == 0`` admits everything."""

    def __init__(
        self,
        store: WindowStore,
        clock: Callable[[], float],
        rate_per_minute: int,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        shards: int = DEFAULT_SHARDS,
        rng: random.Random | None = None,
        *,
        provider: str = "provider",
    ) -> None:
        if rate_per_minute < 0 or window_seconds <= 0 or shards < 1:
            raise ValueError("rate must be >= 0, the window > 0 s and shards >= 1")
        self.store = store
        self.clock = clock
        self.rate_per_minute = rate_per_minute
        self.window_seconds = window_seconds
        self.provider = provider
        self.rng = rng or random.SystemRandom()
        self.cap = window_cap(rate_per_minute, window_seconds)
        if rate_per_minute and self.cap < 1:
            raise ValueError(
                f"{rate_per_minute} requests a minute is less than one per {window_seconds} s"
                " window: use longer windows"
            )
        self.shard_caps = shard_caps(self.cap, shards)

    @property
    def enabled(self) -> bool:
        return self.rate_per_minute > 0

    def try_admit(self) -> float | None:
        """Take a token: None if admitted, else the seconds to wait before trying again."""
        if not self.enabled:
            return None
        moment = self.clock()
        index = math.floor(moment / self.window_seconds)
        start = index * self.window_seconds
        end = start + self.window_seconds
        expires_at = math.ceil(end) + WINDOW_TTL_SECONDS
        for shard in self._shards_to_try():
            key = window_key(self.provider, shard, index)
            if self.store.add_if_below(key, self.shard_caps[shard], expires_at):
                return None
        return (end - moment) + self.rng.uniform(0, self.window_seconds)

    def admit(self) -> None:
        """Take a token or raise :class:`AdmissionDenied` with its ``retry_after``."""
        wait = self.try_admit()
        if wait is not None:
            raise AdmissionDenied(
                f"{self.provider} is at its limit of {self.rate_per_minute} requests a "
                f"minute; asking again in {math.ceil(wait)} s",
                provider=self.provider,
                retry_after=wait,
            )

    def _shards_to_try(self) -> list[int]:
        count = len(self.shard_caps)
        first = self.rng.randrange(count)
        if count == 1:
            return [first]
        other = (first + 1 + self.rng.randrange(count - 1)) % count
        return [first, other]


class Admission:
    """The stack's limiters, one per provider, from its settings: what a workflow task's
    provider clients call before every request."""

    def __init__(
        self,
        store: WindowStore,
        settings: Settings,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        factor = settings.limiter_time_factor
        self._limiters = {
            provider: Limiter(
                store,
                clock or (lambda: time.time() * factor),
                rate,
                settings.limiter_window_seconds,
                settings.limiter_shards,
                rng,
                provider=provider,
            )
            for provider, rate in (
                ("picsart", settings.picsart_requests_per_minute),
                ("qolaba", settings.qolaba_requests_per_minute),
            )
        }

    def limiter(self, provider: str) -> Limiter:
        return self._limiters[provider]

    def admit(self, provider: str) -> None:
        """Take a token for one request to ``provider``, or raise :class:`AdmissionDenied`."""
        try:
            self._limiters[provider].admit()
        except AdmissionDenied as denied:
            count_per_provider(DENIED_METRIC, provider)
            logger.info(
                "provider call held back by the admission limiter",
                extra={"provider": provider, "retry_after": denied.retry_after},
            )
            raise

    def gate(self, provider: str) -> Callable[[], None]:
        """``admit`` for one provider, as its client's hook."""
        return lambda: self.admit(provider)
