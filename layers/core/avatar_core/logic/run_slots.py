"""A cap on the provider jobs running at once, per provider: slots held by leases.

Some provider accounts run only so many jobs at a time (``PicsartConcurrentJobs``,
``QolabaConcurrentJobs``; neither provider documents one, so the default 0 means no cap).
Over the cap a new submission stays queued, in view with its position, and goes in arrival
order as jobs end (``logic/provider_queue.py`` decides who may ask; this module only counts).

Why leases and not a counter
----------------------------
A counter of running jobs goes up at a submit and down at an end; an end that is missed
(a workflow stopped by hand, a record task that never ran, a deploy mid-flight) leaks one
for ever and the cap shrinks until nothing runs. Here each running job holds one of ``cap``
slot items, ``RUNS#<provider>`` / ``SLOT#<n>`` for ``n`` in ``0..cap-1``, with its
``holder`` (``training#<model_id>``, ``job#<job_id>``) and ``lease_until`` (epoch seconds,
in the limiter's clock). A slot is free when it has no holder or its lease has passed. Every
poll of a running job renews its lease; its end (ready, failed, cancelled, reconciled,
deadline) frees it at once. A missed end costs one slot for one lease, never more. So does a
submit whose outcome is unknown (its answer lost, a timeout, a 5xx): the provider may be
running the job, so its slot is not given back but left to its lease (``end_frees_slot``).

- ``acquire(holder)``: ONE Query of the partition; a holder that holds a slot already renews
  it and is answered yes (a retried or redelivered submit takes no second slot); otherwise a
  random free slot is put with the condition ``attribute_not_exists(PK) OR
  attribute_not_exists(holder) OR lease_until <= :now``, so of concurrent callers exactly
  one gets each slot; a caller that lost the race tries another free one (at most
  ``ATTEMPTS``). None free: no.
- ``renew(holder)``: an UpdateItem of ``lease_until`` conditional on the holder. Failing
  that is logged and ignored: the job runs at the provider either way.
- ``release(holder)``: an UpdateItem conditional on the holder that removes the holder and
  sets ``lease_until`` to now, so the item says since when the slot has been free (the
  queue uses it to tell a full cap, which holds nothing back, from a queue held up by
  tickets of jobs that left). Only the holder frees its slot.

The lease is three times the longest a running job of that kind can go between two polls
(``lease_seconds``): the poll schedule's first wait, its longest regular one (``every *
max_factor``) or a busy backoff's (``every * BUSY_BACKOFF_CAP_FACTOR``), whichever is
longest: a training (first 596 s, 1,200 s, 960 s) 60 minutes, a generation or instant job
5 minutes, a face batch 2.5 minutes. A job waiting out an exhausted account (the breaker's
cool-off) can go longer and lose its slot to a waiting one: the cap is then exceeded by
that job until it ends, and its renewal says so in the log.

Clock and store are injected, like the limiter's, so the same decisions run in unit tests,
in ``bench/scale.py`` over a simulated clock and in Lambda.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from avatar_core.errors import UNPAID_SUBMIT_FAILURES
from avatar_core.logic.polling import BUSY_BACKOFF_CAP_FACTOR
from avatar_core.models.workflow import Slot
from avatar_core.observability import logger
from avatar_core.settings import Settings

# a caller that lost the race for a free slot tries this many in all
ATTEMPTS = 3
FULL_METRIC = "ProviderConcurrencyFull"
LEASE_POLL_GAPS = 3
# the first poll of a training is not before its 2nd percentile: 1200 s * exp(-2 * 0.35)
# (providers/picsart.py), longer than the training's first_poll setting
TRAINING_FIRST_WAIT_SECONDS = 596
# PollSchedule.max_factor (providers/transport.py, not imported here: the API functions that
# free slots do not load the provider clients); a unit test keeps the two equal
MAX_FACTOR = 10


class RunSlotStore(Protocol):
    """Where one provider's slots live: the table in Lambda, memory in tests and the bench."""

    def list_slots(self, provider: str) -> list[Slot]:
        """Every slot item of ``provider`` (one Query)."""
        ...

    def take_slot(
        self,
        provider: str,
        index: int,
        holder: str,
        ticket: int | None,
        lease_until: float,
        moment: float,
    ) -> bool:
        """Put the slot for ``holder`` if it is missing or free at ``moment``."""
        ...

    def renew_slot(self, provider: str, index: int, holder: str, lease_until: float) -> bool:
        """Move the lease on if ``holder`` still holds the slot."""
        ...

    def free_slot(self, provider: str, index: int, holder: str, moment: float) -> bool:
        """Free the slot (free since ``moment``) if ``holder`` holds it."""
        ...


@dataclass
class MemoryRunSlotStore:
    """The table's semantics in memory: each write one conditional write."""

    slots: dict[str, dict[int, Slot]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def list_slots(self, provider: str) -> list[Slot]:
        with self.lock:
            return list(self.slots.get(provider, {}).values())

    def take_slot(
        self,
        provider: str,
        index: int,
        holder: str,
        ticket: int | None,
        lease_until: float,
        moment: float,
    ) -> bool:
        with self.lock:
            slots = self.slots.setdefault(provider, {})
            current = slots.get(index)
            if current is not None and not current.free(moment):
                return False
            slots[index] = Slot(index=index, holder=holder, lease_until=lease_until, ticket=ticket)
            return True

    def renew_slot(self, provider: str, index: int, holder: str, lease_until: float) -> bool:
        with self.lock:
            slots = self.slots.setdefault(provider, {})
            current = slots.get(index)
            if current is None or current.holder != holder:
                return False
            slots[index] = Slot(
                index=index, holder=holder, lease_until=lease_until, ticket=current.ticket
            )
            return True

    def free_slot(self, provider: str, index: int, holder: str, moment: float) -> bool:
        with self.lock:
            slots = self.slots.setdefault(provider, {})
            current = slots.get(index)
            if current is None or current.holder != holder:
                return False
            slots[index] = Slot(index=index, lease_until=moment)
            return True


@dataclass(frozen=True)
class SlotView:
    """The slots as one Query saw them, at ``moment``."""

    cap: int
    slots: list[Slot]
    moment: float

    @cached_property
    def _held(self) -> list[Slot]:
        return [s for s in self.slots if not s.free(self.moment)]

    def held_by(self, holder: str) -> Slot | None:
        # its own slot even if the lease ran out, as long as nobody took it: renewing it is
        # right, the job still runs
        return next((s for s in self.slots if s.holder == holder), None)

    def free_indices(self) -> list[int]:
        held = {s.index for s in self._held}
        return [index for index in range(self.cap) if index not in held]

    def running(self) -> int:
        return sum(1 for s in self._held if s.index < self.cap)

    def holding_between(self, low: int, high: int) -> int:
        """Slots held by tickets after ``low`` and before ``high`` (not yet admitted,
        ahead of ``high``): they are ahead of it but no longer wait for a slot."""
        return sum(1 for s in self._held if s.ticket is not None and low < s.ticket < high)

    def free_since(self) -> float | None:
        """Since when the longest-free slot has been free (None: none is free; 0.0: one
        was never taken)."""
        free = self.free_indices()
        if not free:
            return None
        by_index = {s.index: s for s in self.slots}
        return min(by_index[i].lease_until if i in by_index else 0.0 for i in free)


class RunSlots:
    """One provider's running-job cap; ``cap == 0`` caps nothing (and reads nothing)."""

    def __init__(
        self,
        store: RunSlotStore,
        provider: str,
        cap: int,
        lease_seconds: float,
        clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        if cap < 0 or lease_seconds <= 0:
            raise ValueError("the cap must be >= 0 and the lease > 0 s")
        self.store = store
        self.provider = provider
        self.cap = cap
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.rng = rng or random.SystemRandom()

    @property
    def enabled(self) -> bool:
        return self.cap > 0

    def view(self) -> SlotView:
        return SlotView(self.cap, self.store.list_slots(self.provider), self.clock())

    def acquire(self, holder: str, ticket: int | None = None, view: SlotView | None = None) -> bool:
        """A slot for ``holder``: True if it holds one now (it may have held it already)."""
        if not self.enabled:
            return True
        view = view or self.view()
        mine = view.held_by(holder)
        if mine is not None:
            self.store.renew_slot(self.provider, mine.index, holder, self._lease_until())
            return True
        free = view.free_indices()
        self.rng.shuffle(free)
        for index in free[:ATTEMPTS]:
            moment = self.clock()
            if self.store.take_slot(
                self.provider, index, holder, ticket, moment + self.lease_seconds, moment
            ):
                return True
        return False

    def renew(self, holder: str) -> bool:
        """At every poll of a running job: its lease goes on. False (logged) if it holds no
        slot, e.g. its lease ran out and another job took it."""
        if not self.enabled:
            return True
        mine = self.view().held_by(holder)
        if mine is not None and self.store.renew_slot(
            self.provider, mine.index, holder, self._lease_until()
        ):
            return True
        logger.info(
            "a running job holds no run slot (its lease ran out): it keeps running",
            extra={"provider": self.provider, "holder": holder},
        )
        return False

    def release(self, holder: str) -> bool:
        """At the job's end: its slot is free for the next in the queue. Only its holder
        frees a slot; False if it held none."""
        if not self.enabled:
            return False
        mine = self.view().held_by(holder)
        if mine is None:
            return False
        return self.store.free_slot(self.provider, mine.index, holder, self.clock())

    def _lease_until(self) -> float:
        return self.clock() + self.lease_seconds


def lease_seconds(first_seconds: int, every_seconds: int) -> int:
    """Three times the longest a running job can go between polls on its schedule."""
    longest = max(
        first_seconds, every_seconds * MAX_FACTOR, every_seconds * BUSY_BACKOFF_CAP_FACTOR
    )
    return LEASE_POLL_GAPS * longest


def kind_lease_seconds(settings: Settings, kind: str) -> int:
    """The lease of a training, generation, instant or face job."""
    if kind == "training":
        first = max(settings.training_first_poll_seconds, TRAINING_FIRST_WAIT_SECONDS)
        return lease_seconds(first, settings.training_poll_seconds)
    if kind == "generation":
        return lease_seconds(
            settings.generation_first_poll_seconds, settings.generation_poll_seconds
        )
    if kind == "instant":
        return lease_seconds(settings.instant_first_poll_seconds, settings.instant_poll_seconds)
    return lease_seconds(settings.face_first_poll_seconds, settings.face_poll_seconds)


def provider_cap(settings: Settings, provider: str) -> int:
    if provider == "picsart":
        return settings.picsart_concurrent_jobs
    return settings.qolaba_concurrent_jobs


def run_slots(
    store: RunSlotStore,
    settings: Settings,
    provider: str,
    kind: str,
    clock: Callable[[], float] | None = None,
) -> RunSlots:
    """The stack's slots of ``provider`` for jobs of ``kind``, in the limiter's clock
    (emulated seconds locally, as the Wait states count them)."""
    factor = settings.limiter_time_factor
    return RunSlots(
        store,
        provider,
        provider_cap(settings, provider),
        kind_lease_seconds(settings, kind),
        clock or (lambda: time.time() * factor),
    )


def release_slot(store: RunSlotStore, settings: Settings, provider: str, holder: str) -> None:
    """A job's end (ready, failed, cancelled, reconciled): its run slot, if it holds one, is
    free for the next in the queue. Nothing to do (no read) without a cap."""
    slots = run_slots(store, settings, provider, "release")
    if slots.enabled and slots.release(holder):
        logger.info("run slot freed", extra={"provider": provider, "holder": holder})


def end_frees_slot(in_submit: bool, error_type: str | None) -> bool:
    """Whether a job's end gives its run slot back now. Not after a submit that may have
    started work at the provider (its answer lost, a timeout, a 5xx, a crash): the job may
    be running there, so the slot stays held until its lease runs out, about as long as a
    job of its kind runs, and the cap is not exceeded by it. A refusal (a 4xx, an exhausted
    account, a 429) or a submit never sent frees it at once."""
    return not in_submit or error_type in UNPAID_SUBMIT_FAILURES


def renew_slot(
    store: RunSlotStore, settings: Settings, provider: str, kind: str, holder: str
) -> None:
    """A running job's workflow is started again (reconciliation resumes it): its slot's
    lease goes on from now, for the new execution's polls to renew."""
    slots = run_slots(store, settings, provider, kind)
    if slots.enabled:
        slots.renew(holder)


def training_holder(model_id: str, attempt: int) -> str:
    """Per attempt: an earlier attempt's late end cannot free a later one's slot."""
    return f"training#{model_id}#{attempt}"


def job_holder(job_id: str) -> str:
    return f"job#{job_id}"
