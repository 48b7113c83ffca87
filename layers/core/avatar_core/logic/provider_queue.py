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

With a cap on running jobs (``logic/run_slots.py``, ``PicsartConcurrentJobs``,
``QolabaConcurrentJobs``), a submission at the front also needs a free run slot before it
calls, and takes it only in its turn: a ticket may try for a slot only while the tickets
ahead of it that hold none are fewer than the free slots (the slots' items carry their
tickets, so the one Query that reads them tells). So a slot freed while an earlier ticket
waits goes to that ticket, not to a later one within the lookahead; over the cap the front
waits, in view, and wakes up every ``SLOT_RECHECK_SECONDS`` or so (more for those further
back). A full cap is not a stall: while no slot is free the front does not move on, and the
stall clock runs from when the longest-free slot was freed. Only when a slot has stayed free
for ``STALL_WINDOWS`` windows (tickets of jobs that left hold it) does the front move on by
one lookahead, and the tickets that then fall inside it may take the free slots in any
order among themselves: order can break by at most one lookahead, and only after a stall.
A submission that got its slot keeps it through the provider's "not now" (429, 5xx) and
the limiter's; a submit that fails outright (a 4xx, an exhausted account) gives it back, and
one whose outcome is unknown (the answer lost) leaves it to its lease.

Fairness between owners: one owner holds at most its share of the queue's tickets
(``OwnerQueueShare``, ``logic/owner_share.py``); its further submissions wait without a
ticket and take one as its earlier ones get through, so they join behind whoever came
meanwhile, and nobody waits behind more than the share of another owner's submissions. The
owners' quotas (``OwnerConcurrentTrainings``, ``OwnerAvatarsPerDay``,
``OwnerFaceBatchesPerDay``) bound how much one owner can send at all.

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

from avatar_core.errors import PROVIDER_BUSY, AdmissionDenied, SubmissionQueued
from avatar_core.ids import iso, now
from avatar_core.logic.limiter import Limiter
from avatar_core.logic.owner_share import OwnerShares
from avatar_core.logic.run_slots import FULL_METRIC, RunSlots, SlotView, end_frees_slot
from avatar_core.models.records import QueueStanding
from avatar_core.models.workflow import PollState, QueueState
from avatar_core.observability import count_per_provider, logger

T = TypeVar("T")

STALL_WINDOWS = 30
# the longest a queued submission sleeps before it looks at the queue again
MAX_QUEUE_WAIT_SECONDS = 600
# how often the front looks for a free run slot while the cap is full (more further back)
SLOT_RECHECK_SECONDS = 15


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
    """One provider's queue of paid submissions, in front of its limiter and its run slots."""

    def __init__(
        self,
        store: QueueStore,
        limiter: Limiter,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        slots: RunSlots | None = None,
        on_full: Callable[[str], None] | None = None,
        shares: OwnerShares | None = None,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.clock = clock or limiter.clock
        self.rng = rng or random.SystemRandom()
        self.provider = limiter.provider
        self.slots = slots if slots is not None and slots.enabled else None
        self.shares = shares if shares is not None and shares.enabled else None
        # a submission waits for a run slot: the metric, or the bench's own count
        self.on_full = on_full or count_full
        if limiter.enabled:
            self.lookahead = max(1, limiter.cap)
        else:
            self.lookahead = max(1, self.slots.cap if self.slots else 1)

    @property
    def enabled(self) -> bool:
        return self.limiter.enabled or self.slots is not None

    def submit(
        self,
        ticket: int | None,
        call: Callable[[], T],
        holder: str | None = None,
        owner: str | None = None,
    ) -> T:
        """Make the paid ``call`` for the submission holding ``ticket`` (None: none yet) once
        its turn has come (and, with a cap, a run slot for ``holder``), and answer what it
        answers; or raise :class:`SubmissionQueued`: wait its ``retry_after`` and come back
        with its ``ticket`` (still None while ``owner`` has its whole share of the queue:
        ``logic/owner_share.py``).

        ``call`` reaches the provider through its client, whose transport takes the limiter's
        token (``Admission.gate``): the queue only decides who may ask. A call refused a
        token at the front waits for the next window, oldest tickets first; any other
        outcome (accepted, or the provider's own answer) used the turn."""
        if not self.enabled:
            return call()
        slots = self.slots if holder is not None else None
        if ticket is None:
            if not self._enters_share(owner, holder):
                raise self._share_queued(self.store.read(self.provider))
            ticket, state = self.store.take_ticket(self.provider)
        else:
            state = self.store.read(self.provider)
        if slots is not None and (early := ticket - self._front(state)) > self.lookahead:
            # far back: the slots' own front can only be further back, so no read of them
            raise self._queued(ticket, early)
        view = slots.view() if slots is not None else None
        front = self._front(state, view)
        position = ticket - front
        if slots is not None and view is not None and holder is not None:
            if view.held_by(holder) is not None:
                # its turn came before and it holds its slot (the provider said "not now")
                slots.acquire(holder, ticket, view)
                return self._call(ticket, min(position, 0), call, holder, owner)
            if position > self.lookahead:
                raise self._queued(ticket, position)
            ahead = max(0, position - 1) - view.holding_between(front, ticket)
            if ahead >= len(view.free_indices()) or not slots.acquire(holder, ticket, view):
                raise self._slot_queued(ticket, position, max(0, ahead))
        elif position > self.lookahead:
            raise self._queued(ticket, position)
        return self._call(ticket, position, call, holder, owner)

    def _call(
        self,
        ticket: int,
        position: int,
        call: Callable[[], T],
        holder: str | None,
        owner: str | None,
    ) -> T:
        try:
            answer = call()
        except SubmissionQueued:
            raise
        except AdmissionDenied:
            raise self._queued(ticket, position, self._front_wait(position)) from None
        except PROVIDER_BUSY:
            # refused for now: it asks again from the front, and keeps its slot for it
            self._through(ticket, holder, owner)
            raise
        except BaseException as error:
            # refused outright: the job ends here and its slot is free again; but after an
            # answer lost (or a crash) the job may run at the provider: its slot keeps its lease
            self._through(ticket, holder, owner)
            frees = end_frees_slot(True, type(error).__name__)
            if self.slots is not None and holder is not None and frees:
                self.slots.release(holder)
            raise
        self._through(ticket, holder, owner)
        return answer

    def _enters_share(self, owner: str | None, holder: str | None) -> bool:
        """Whether the submission may take a ticket: its owner's share has room for it."""
        if self.shares is None or owner is None or holder is None:
            return True
        return self.shares.enter(owner, holder)

    def _through(self, ticket: int, holder: str | None, owner: str | None) -> None:
        """The submission got through the front (whatever the provider answered): one more
        admitted, and its place in its owner's share is free (once: ticket 0 is a submission
        that got through before and asks again)."""
        self.store.advance(self.provider, self.clock())
        if ticket != 0 and self.shares is not None and owner is not None and holder is not None:
            self.shares.leave(owner, holder)

    def _front_wait(self, position: int) -> float:
        """Until the next window starts, plus a part of it that grows with the position:
        the oldest tickets at the front ask first when the new tokens come."""
        window = self.limiter.window_seconds
        to_next = window - (self.clock() % window)
        share = min(1.0, max(0, position) / self.lookahead)
        return to_next + window * share * self.rng.uniform(0.5, 1.0)

    def _front(self, state: QueueState, view: SlotView | None = None) -> int:
        """The ticket the queue has reached: ``admitted``, moved on by one lookahead for
        every ``STALL_WINDOWS`` windows in which nothing got through while tickets were
        out, so a run of holes (tickets of jobs that left) cannot hold the queue. With run
        slots, a full cap holds nothing back: the stall clock runs only while a slot is
        free, from when it was freed."""
        if state.issued <= state.admitted or state.admitted_at is None:
            return state.admitted
        since = state.admitted_at
        if view is not None:
            free_since = view.free_since()
            if free_since is None:
                return state.admitted
            since = max(since, free_since)
        idle = self.clock() - since
        stalls = math.floor(idle / (STALL_WINDOWS * self.limiter.window_seconds))
        return state.admitted + max(0, stalls) * self.lookahead

    def _queued(self, ticket: int, position: int, wait: float | None = None) -> SubmissionQueued:
        """``wait``: the limiter's, at the front; else the time for those ahead to go at the
        provider's rate (an underestimate, since polls share the rate: the job then looks
        again, closer to the front), spread by ±10% so neighbours do not wake together."""
        if not self.limiter.enabled:
            return self._slot_queued(ticket, position, max(0, position - 1))
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

    def _share_queued(self, state: QueueState) -> SubmissionQueued:
        """The owner has its whole share of the queue: look again when those in the queue now
        can have got through (at the provider's rate, and as run slots free under a cap), at
        least a window on. The position is the queue it will join the back of (a lower
        bound)."""
        assert self.shares is not None
        ahead = max(0, state.issued - self._front(state))
        estimate = 0.0
        if self.limiter.enabled:
            estimate = ahead / max(self.limiter.rate_per_minute / 60, 1e-6)
        if self.slots is not None:
            estimate = max(estimate, SLOT_RECHECK_SECONDS * (1 + ahead / self.slots.cap))
        wait = min(MAX_QUEUE_WAIT_SECONDS, max(self.limiter.window_seconds, estimate))
        wait *= self.rng.uniform(0.9, 1.1)
        return SubmissionQueued(
            f"waiting for a place in {self.provider.title()}'s queue: this owner already has "
            f"{self.shares.share} submissions in it ({ahead} queued in all)",
            provider=self.provider,
            ticket=None,
            position=ahead + 1,
            retry_after=wait,
            estimated_start_seconds=round(estimate),
        )

    def _slot_queued(self, ticket: int, position: int, ahead: int) -> SubmissionQueued:
        """The cap of running jobs is full (or its free slots are for those ahead): look
        again in ``SLOT_RECHECK_SECONDS``, longer the more wait ahead for a slot. How long
        running jobs still take is not known, so the estimated start is that next look (a
        lower bound), and the position is what the client should go by."""
        cap = self.slots.cap if self.slots is not None else 1
        self.on_full(self.provider)
        wait = min(MAX_QUEUE_WAIT_SECONDS, SLOT_RECHECK_SECONDS * (1 + ahead / cap))
        wait *= self.rng.uniform(0.9, 1.1)
        return SubmissionQueued(
            f"waiting for a free {self.provider.title()} run slot (at most {cap} jobs run "
            f"at once): {max(0, position)} submissions ahead",
            provider=self.provider,
            ticket=ticket,
            position=max(0, position),
            retry_after=wait,
            estimated_start_seconds=round(wait),
        )


def count_full(provider: str) -> None:
    """``ProviderConcurrencyFull`` (dimension ``provider``): a paid submission waits for a
    free run slot."""
    count_per_provider(FULL_METRIC, provider)
    logger.info("paid submission waits for a free run slot", extra={"provider": provider})


def in_turn(
    queue: SubmitQueue | None,
    poll: PollState | None,
    call: Callable[[], T],
    holder: str | None = None,
    owner: str | None = None,
) -> T:
    """``call`` (a paid submit) through the provider's queue when there is one, with the
    ticket the loop's state kept from an earlier turn; ``holder`` names the job for the
    queue's run slots and its ``owner``'s share of the queue."""
    if queue is None:
        return call()
    return queue.submit(poll.ticket if poll is not None else None, call, holder, owner)


def had_its_turn(state: PollState, queue: SubmitQueue | None) -> PollState:
    """A submission the provider itself refused for now (429, 5xx) after the queue let it
    through keeps its place: ticket 0 is always at the front, so it does not queue again."""
    if queue is None or not queue.enabled:
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
