"""One owner's share of a provider's queue: nobody waits behind more than ``share`` of
another owner's submissions.

The provider's queue (``logic/provider_queue.py``) goes in arrival order. Alone, that lets
one owner who sends 500 generations at once put 500 tickets ahead of everyone who comes
after: with a cap of ten running jobs, the next owner's one job waits for all of them.
So an owner may hold at most ``share`` tickets of a provider's queue that have not yet got
through its front (``OwnerQueueShare``, default 50). The owner's further submissions wait
before taking a ticket, in view, and take one as the owner's earlier ones get through, so
they join the queue behind whoever arrived meanwhile. A newcomer waits behind at most
``share`` of each other owner's submissions, not behind all of them; one owner alone
still keeps ``share`` in the queue, enough to use the provider's whole rate.

The record: ``OWNER#<owner>`` / ``QUEUESHARE#<provider>``, in the owner's own partition (an
account deletion takes it with the rest), holding ``held``, a map of the submissions that
hold a ticket (holder → when it entered, in the limiter's clock), and ``version``.

- ``enter(owner, holder)``: one consistent GetItem; a holder already in the map is answered
  yes (a retried or redelivered submit enters once); otherwise, with fewer than ``share``
  entries, one PutItem of the map with the holder added, conditional on the version read
  (``attribute_not_exists(PK) OR version = :read``). A lost race reads again, at most
  ``ATTEMPTS`` times in all; then no, and the submission looks again later.
- ``leave(owner, holder)``: one UpdateItem that removes the entry and moves the version on,
  conditional on the entry being there. It runs when the submission gets through the front
  (whatever the provider answers), and at the ends of a submission that never did:
  cancelled, failed or timed out while queued.
- An entry whose leave was missed (a workflow stopped by hand) is dropped by the next enter
  once it is older than the longest a submission can wait (the workflows' deadline): a
  missed leave costs its owner one place for that long, and nobody else anything.

Clock and store are injected, like the limiter's, so the same decisions run in unit tests,
in ``bench/scale.py`` over a simulated clock and in Lambda.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from avatar_core.observability import logger
from avatar_core.settings import Settings

# a caller that lost the race for the owner's record reads it again, this many times in all
ATTEMPTS = 3


class OwnerShareStore(Protocol):
    """The owners' share records: the table in Lambda, memory in tests and the bench."""

    def read_share(self, provider: str, owner: str) -> tuple[dict[str, float], int | None]:
        """The holders in the owner's share and the record's version (None: no record)."""
        ...

    def write_share(
        self, provider: str, owner: str, held: dict[str, float], read: int | None
    ) -> bool:
        """Put the share as ``held`` if its version is still ``read``."""
        ...

    def leave_share(self, provider: str, owner: str, holder: str) -> bool:
        """Remove ``holder`` from the share if it is there."""
        ...


@dataclass
class MemoryOwnerShareStore:
    """The table's semantics in memory: each write one conditional write."""

    shares: dict[tuple[str, str], tuple[dict[str, float], int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def read_share(self, provider: str, owner: str) -> tuple[dict[str, float], int | None]:
        with self.lock:
            held, version = self.shares.get((provider, owner), ({}, None))
            return dict(held), version

    def write_share(
        self, provider: str, owner: str, held: dict[str, float], read: int | None
    ) -> bool:
        with self.lock:
            current = self.shares.get((provider, owner))
            if (current[1] if current else None) != read:
                return False
            self.shares[(provider, owner)] = (dict(held), (read or 0) + 1)
            return True

    def leave_share(self, provider: str, owner: str, holder: str) -> bool:
        with self.lock:
            current = self.shares.get((provider, owner))
            if current is None or holder not in current[0]:
                return False
            held = {h: at for h, at in current[0].items() if h != holder}
            self.shares[(provider, owner)] = (held, current[1] + 1)
            return True


class OwnerShares:
    """One provider's owner shares: at most ``share`` queued submissions per owner."""

    def __init__(
        self,
        store: OwnerShareStore,
        provider: str,
        share: int,
        stale_seconds: float,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.share = share
        self.stale_seconds = stale_seconds
        self.clock = clock or time.time

    @property
    def enabled(self) -> bool:
        return self.share > 0

    def enter(self, owner: str, holder: str) -> bool:
        """Whether ``holder`` may take a ticket: it holds a place in its owner's share now."""
        if not self.enabled:
            return True
        for _ in range(ATTEMPTS):
            held, version = self.store.read_share(self.provider, owner)
            if holder in held:
                return True
            moment = self.clock()
            live = {h: at for h, at in held.items() if at > moment - self.stale_seconds}
            if len(live) < len(held):
                logger.info(
                    "owner share entries dropped: their submissions waited past any deadline",
                    extra={"provider": self.provider, "owner": owner},
                )
            if len(live) >= self.share:
                return False
            if self.store.write_share(self.provider, owner, {**live, holder: moment}, version):
                return True
        return False

    def leave(self, owner: str, holder: str) -> None:
        """``holder`` got through the queue's front, or ended without: its place is free."""
        if self.enabled:
            self.store.leave_share(self.provider, owner, holder)


def owner_shares(
    store: OwnerShareStore,
    settings: Settings,
    provider: str,
    clock: Callable[[], float] | None = None,
) -> OwnerShares:
    """The stack's owner shares of ``provider``'s queue, in the limiter's clock (emulated
    seconds locally, as the Wait states count them). An entry goes stale after the longest
    deadline a submission can have."""
    factor = settings.limiter_time_factor
    return OwnerShares(
        store,
        provider,
        settings.owner_queue_share,
        max(settings.job_deadline_seconds, settings.training_deadline_seconds),
        clock or (lambda: time.time() * factor),
    )


def leave_share(
    store: OwnerShareStore, settings: Settings, provider: str, owner: str, holder: str
) -> None:
    """A submission ended without getting through the queue (cancelled, failed or timed out
    while queued): its owner's place is free. One conditional write; none when off."""
    owner_shares(store, settings, provider).leave(owner, holder)
