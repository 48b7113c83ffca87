"""Submissions wait their turn, in arrival order, when a provider is at its limit.

The limiter (``logic/limiter.py``) keeps every call inside the provider's rate, but a token
goes to whoever asks first in a window: with thousands of submissions waiting, a job that
arrived an hour ago is no likelier to be let through than one that arrived a second ago,
and every waiting job keeps waking up to ask. So paid submissions queue in front of the
limiter, as tickets:

- Each provider has one counter item (``QUEUE#<provider>`` / ``QUEUE``): ``issued``, the
  last ticket handed out, and ``admitted``, the highest ticket that got through, with
  ``admitted_at``. A submission takes a ticket by one ``ADD`` (one write, no read); it keeps
  the ticket in its workflow's state for every later turn.
- Its **position** is ``ticket - admitted``: how many tickets were handed out before it that
  have not got through yet. Within ``lookahead`` of the front (one limiter window's worth of
  tokens) it may ask the limiter; a token admits it and moves ``admitted`` up to its ticket
  (``SET admitted = :t`` if higher: one conditional write). Further back it does not ask:
  it waits ``(position - lookahead)`` submissions' worth of the provider's rate, so a job far
  back sleeps long and wakes up few times (each turn is a few state transitions and a
  history of at most 25,000 events), and a job near the front asks every window.
- So jobs start roughly in arrival order: only the ``lookahead`` at the front compete for
  tokens, and a later ticket can pass an earlier one only within that front. The position
  and the estimated start are on the record while it waits (``queue``), for the client.
- Tickets of jobs that left the queue (cancelled, deleted, failed) are holes nobody will
  fill: ``admitted`` steps over them when a later ticket is admitted. If nothing has been
  admitted for ``STALL_WINDOWS`` windows while tickets are out (a run of holes longer than
  the lookahead), the front moves on by one lookahead anyway, and again after as many more
  windows, so holes cannot hold the queue; nor can polls that take every token for a while.

Fairness between owners comes first from the owners' quotas: one owner cannot hold more
queued work than ``OwnerConcurrentTrainings``, ``OwnerAvatarsPerDay`` and
``OwnerFaceBatchesPerDay`` allow, so with the default limits one owner holds at most a few
hundred tickets of the queue, never the whole of it.

Clock, store and random draws are injected, like the limiter's, so the same decisions run
in unit tests, in ``bench/scale.py`` over a simulated clock and in Lambda.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from avatar_core.errors import SubmissionQueued
from avatar_core.logic.limiter import Limiter
from avatar_core.models.workflow import QueueState

STALL_WINDOWS = 30
# the longest a queued submission sleeps before it looks at the queue again
MAX_QUEUE_WAIT_SECONDS = 600


class QueueStore(Protocol):
    """One provider queue's counters: the table in Lambda, memory in tests and the bench."""

    def take_ticket(self, provider: str) -> tuple[int, QueueState]: ...

    def read(self, provider: str) -> QueueState: ...

    def advance(self, provider: str, at: float) -> None: ...


@dataclass
class MemoryQueueStore:
    """The table's semantics in memory: each method one atomic ADD."""

    queues: dict[str, QueueState] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_ticket(self, provider: str) -> tuple[int, QueueState]:
        with self.lock:
            state = self.queues.get(provider, QueueState())
            state = state.model_copy(update={"issued": state.issued + 1})
            self.queues[provider] = state
            return state.issued, state

    def read(self, provider: str) -> QueueState:
        with self.lock:
            return self.queues.get(provider, QueueState())

    def advance(self, provider: str, at: float) -> None:
        with self.lock:
            state = self.queues.get(provider, QueueState())
            self.queues[provider] = state.model_copy(
                update={"admitted": state.admitted + 1, "admitted_at": at}
            )


class SubmitQueue:
    """One provider's queue of paid submissions, in front of its limiter."""

    def __init__(
        self,
        store: QueueStore,
        limiter: Limiter,
        clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self.provider = limiter.provider
        self.lookahead = max(1, limiter.cap)

    def admit(self, ticket: int | None) -> int:
        """Let the submission holding ``ticket`` (None: none yet) through, and answer its
        ticket; or raise :class:`SubmissionQueued` (its turn has not come: wait, keep the
        ticket) or the limiter's ``AdmissionDenied`` (near the front, no token this window)."""
        if not self.limiter.enabled:
            return ticket or 0
        if ticket is None:
            ticket, state = self.store.take_ticket(self.provider)
        else:
            state = self.store.read(self.provider)
        position = ticket - self._front(state)
        if position > self.lookahead:
            raise self._queued(ticket, position)
        if self.limiter.try_admit() is not None:
            # At the front, but this window's tokens are gone: ask again in the next one,
            # the oldest tickets first.
            raise self._queued(ticket, position, self._front_wait(position))
        self.store.advance(self.provider, self.clock())
        return ticket

    def _front_wait(self, position: int) -> float:
        """Until the next window starts, plus a part of it that grows with the position:
        the oldest tickets at the front ask first when the new tokens come."""
        window = self.limiter.window_seconds
        to_next = window - (self.clock() % window)
        share = min(1.0, max(0, position) / self.lookahead)
        return to_next + window * share * self.rng.uniform(0.5, 1.0)

    def _front(self, state: QueueState) -> int:
        """The ticket the queue has reached: ``admitted``, moved on by one lookahead for
        every ``STALL_WINDOWS`` windows in which nothing got through while tickets were
        out, so a run of holes (tickets of jobs that left) cannot hold the queue."""
        if state.issued <= state.admitted or state.admitted_at is None:
            return state.admitted
        idle = self.clock() - state.admitted_at
        stalls = math.floor(idle / (STALL_WINDOWS * self.limiter.window_seconds))
        return state.admitted + stalls * self.lookahead

    def _queued(self, ticket: int, position: int, wait: float | None = None) -> SubmissionQueued:
        """``wait``: the limiter's, at the front; else the time for those ahead to go at the
        provider's rate (an underestimate, since polls share the rate: the job then looks
        again, closer to the front), spread by ±10% so neighbours do not wake together."""
        per_second = max(self.limiter.rate_per_minute / 60, 1e-6)
        estimate = max(0, position - self.lookahead) / per_second
        if wait is None:
            wait = min(MAX_QUEUE_WAIT_SECONDS, max(self.limiter.window_seconds, estimate))
            wait *= self.rng.uniform(0.9, 1.1)
        return SubmissionQueued(
            f"waiting for {self.provider.title()} capacity: {position} submissions ahead",
            provider=self.provider,
            ticket=ticket,
            position=max(0, position),
            retry_after=wait,
            estimated_start_seconds=round(estimate),
        )
