"""Submissions wait their turn, in arrival order, when a provider is at its limit.

The limiter (``logic/limiter.py``) keeps every call inside the provider's rate, but a token
goes to whoever asks first in a window: with thousands of submissions waiting, a job that
arrived an hour ago is no likelier to be let through than one that arrived a second ago,
and every waiting job keeps waking up to ask. So paid submissions queue in front of the
limiter, as tickets:

- Each provider has one counter item (``QUEUE#<provider>`` / ``QUEUE``): ``issued``, the
  last ticket handed out, and ``admitted``, how many submissions got through, with
  ``admitted_at``. A submission takes a ticket by one ``ADD`` (one write, no read) and keeps
  it in its workflow's state for every later turn; each one that gets through adds one to
  ``admitted`` (one more write).
- Its **position** is ``ticket - admitted``: roughly how many tickets handed out before it
  have not got through yet. Within ``lookahead`` of the front (one limiter window's worth of
  tokens) it makes its call, whose transport takes the limiter's token as every provider
  request does; refused one, it asks again at the next window, the oldest tickets first.
  Further back it does not call at all: it waits ``(position - lookahead)`` submissions'
  worth of the provider's rate (at most ``MAX_QUEUE_WAIT_SECONDS``), so a job far back
  sleeps long and wakes up few times, and a job near the front asks every window.
- So jobs start close to arrival order: only the front competes for tokens, and a later
  ticket can pass an earlier one only within it. The position and the estimated start are
  on the record while it waits (``queue``), for the client. ``bench/scale.py`` measures it.
- Tickets of jobs that left the queue (cancelled, deleted, failed) are never admitted, so
  the front lags the true one by them. If nothing has been admitted for ``STALL_WINDOWS``
  windows while tickets are out, the front moves on by one lookahead anyway, and again
  after as many more windows, so holes cannot hold the queue; nor can polls that take every
  token for a while.

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
from datetime import timedelta
from typing import Protocol, TypeVar

from avatar_core.errors import AdmissionDenied, SubmissionQueued
from avatar_core.ids import iso, now
from avatar_core.logic.limiter import Limiter
from avatar_core.models.records import QueueStanding
from avatar_core.models.workflow import PollState, QueueState

T = TypeVar("T")

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
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.clock = clock or limiter.clock
        self.rng = rng or random.SystemRandom()
        self.provider = limiter.provider
        self.lookahead = max(1, limiter.cap)

    def submit(self, ticket: int | None, call: Callable[[], T]) -> T:
        """Make the paid ``call`` for the submission holding ``ticket`` (None: none yet) once
        its turn has come, and answer what it answers; or raise :class:`SubmissionQueued`:
        wait its ``retry_after`` and come back with its ``ticket``.

        ``call`` reaches the provider through its client, whose transport takes the limiter's
        token (``Admission.gate``): the queue only decides who may ask. A call refused a
        token at the front waits for the next window, oldest tickets first; any other
        outcome (accepted, or the provider's own answer) used the turn."""
        if not self.limiter.enabled:
            return call()
        if ticket is None:
            ticket, state = self.store.take_ticket(self.provider)
        else:
            state = self.store.read(self.provider)
        position = ticket - self._front(state)
        if position > self.lookahead:
            raise self._queued(ticket, position)
        try:
            answer = call()
        except SubmissionQueued:
            raise
        except AdmissionDenied:
            raise self._queued(ticket, position, self._front_wait(position)) from None
        except BaseException:
            self.store.advance(self.provider, self.clock())
            raise
        self.store.advance(self.provider, self.clock())
        return answer

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


def in_turn(queue: SubmitQueue | None, poll: PollState | None, call: Callable[[], T]) -> T:
    """``call`` (a paid submit) through the provider's queue when there is one, with the
    ticket the loop's state kept from an earlier turn."""
    if queue is None:
        return call()
    return queue.submit(poll.ticket if poll is not None else None, call)


def had_its_turn(state: PollState, queue: SubmitQueue | None) -> PollState:
    """A submission the provider itself refused for now (429, 5xx) after the queue let it
    through keeps its place: ticket 0 is always at the front, so it does not queue again."""
    if queue is None or not queue.limiter.enabled:
        return state
    return state.model_copy(update={"ticket": 0, "queue_position": None})


def standing(queued: SubmissionQueued, time_factor: float = 1.0) -> QueueStanding:
    """What the client is shown: the position, and the estimated start in wall-clock time
    (the limiter counts emulated seconds locally, ``time_factor`` times the wall's)."""
    moment = now()
    wall_seconds = queued.estimated_start_seconds / max(time_factor, 1e-9)
    return QueueStanding(
        position=queued.position,
        estimated_start_at=iso(moment + timedelta(seconds=wall_seconds)),
        as_of=iso(moment),
    )
