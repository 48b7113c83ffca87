"""The app builder's wallet: what each owner may start, and what the whole stack may.

Per owner, every piece of paid work is an entry in a ledger item of its family (trainings,
avatars, face batches), reserved with a compare-and-set on the ledger's version when the
work is accepted, so two concurrent requests can never both take the last unit: one write
wins, the other reads again and is refused. Windows roll: an entry counts for 24 hours
from its acceptance, and the refusal says when the oldest one frees. Concurrent trainings
are entries whose model is still training that attempt; each is checked against its model
when the limit is near, so a training that ended by any path (ready, failed, stopped,
deleted) stops counting without every path having to remember to release it.

Work that fails before the provider was paid (its workflow could not start, its submit was
refused, it was cancelled before submission) is released: its entry goes. Idempotent
retries replay the first answer and reserve nothing (avatar_core.idempotency).

The stack-wide spending guard counts paid submissions per clock hour in one item per hour
(an atomic ADD under a condition); past the cap new paid work answers 503 for everyone.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from avatar_core.errors import UNPAID_SUBMIT_FAILURES, QuotaExceeded, SpendingPaused
from avatar_core.ids import iso, now
from avatar_core.models.api import LimitOut
from avatar_core.models.records import ModelStatus, QuotaEntry, QuotaLedger
from avatar_core.observability import MetricUnit, logger, metrics
from avatar_core.settings import Settings
from avatar_core.store.repository import AvatarRepository

WINDOW = timedelta(hours=24)
Family = Literal["trainings", "avatars", "face"]
# a compare-and-set lost to a concurrent request of the same owner is tried again, this
# often, after a jittered pause (milliseconds: only that owner's own requests contend)
_ATTEMPTS = 30
_PAUSE_SECONDS = 0.02
# what a refused concurrent training is told to wait: a training takes minutes, not seconds
_CONCURRENT_RETRY_SECONDS = 300
# how long a reserved training whose model has not begun it yet still counts as starting
_STARTING_GRACE = timedelta(minutes=5)


@dataclass(frozen=True)
class PaidWork:
    """What an accepted request will pay for: its family, its id in the ledger, its units."""

    family: Family
    key: str
    units: int = 1

    @classmethod
    def training(cls, model_id: str, attempt: int) -> PaidWork:
        return cls("trainings", training_key(model_id, attempt))

    @classmethod
    def avatars(cls, job_id: str, count: int) -> PaidWork:
        return cls("avatars", job_id, count)

    @classmethod
    def face_batch(cls, job_id: str, images: int) -> PaidWork:
        return cls("face", job_id, images)


def training_key(model_id: str, attempt: int) -> str:
    return f"{model_id}#{attempt}"


@dataclass(frozen=True)
class Limit:
    """One limit: ``count`` measures entries (jobs), ``units`` their units (images), and
    ``running`` the trainings still running; 0 is unlimited."""

    name: str
    family: Family
    measure: Literal["count", "units", "running"]
    limit: int
    description: str


def limits(settings: Settings) -> list[Limit]:
    return [
        Limit(
            "concurrent_trainings",
            "trainings",
            "running",
            settings.owner_concurrent_trainings,
            "trainings running at once",
        ),
        Limit(
            "trainings_per_day",
            "trainings",
            "count",
            settings.owner_trainings_per_day,
            "trainings started in the last 24 hours",
        ),
        Limit(
            "avatars_per_day",
            "avatars",
            "units",
            settings.owner_avatars_per_day,
            "avatars requested in the last 24 hours (generations and instant avatars)",
        ),
        Limit(
            "face_batches_per_day",
            "face",
            "count",
            settings.owner_face_batches_per_day,
            "face-avatar batches started in the last 24 hours",
        ),
        Limit(
            "face_images_per_day",
            "face",
            "units",
            settings.owner_face_images_per_day,
            "face avatars requested in the last 24 hours",
        ),
    ]


@dataclass(frozen=True)
class Usage:
    limit: Limit
    used: int
    # when the next unit frees (the oldest counted entry leaves the window); None if nothing
    # is counted, or for concurrent trainings (they free when one ends)
    frees_at: datetime | None


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _in_window(entries: dict[str, QuotaEntry], moment: datetime) -> list[QuotaEntry]:
    """Counted entries, oldest first."""
    live = [e for e in entries.values() if _parse(e.at) > moment - WINDOW]
    return sorted(live, key=lambda e: e.at)


def measure(limit: Limit, ledger: QuotaLedger, moment: datetime) -> Usage:
    """How much of ``limit`` the ledger uses at ``moment`` (running: entries not ended)."""
    if limit.measure == "running":
        running = [e for e in ledger.entries.values() if not e.ended]
        return Usage(limit, len(running), None)
    live = _in_window(ledger.entries, moment)
    used = sum(e.units for e in live) if limit.measure == "units" else len(live)
    return Usage(limit, used, _parse(live[0].at) + WINDOW if live else None)


def _frees_enough(limit: Limit, ledger: QuotaLedger, moment: datetime, needed: int) -> datetime:
    """When enough of the window's entries have left it for ``needed`` more units."""
    live = _in_window(ledger.entries, moment)
    used = sum(e.units for e in live) if limit.measure == "units" else len(live)
    excess = used + needed - limit.limit
    for entry in live:
        excess -= entry.units if limit.measure == "units" else 1
        if excess <= 0:
            return _parse(entry.at) + WINDOW
    return moment + WINDOW  # more than the limit at once: never, but say a day


def refusal(
    limit: Limit, ledger: QuotaLedger, work: PaidWork, moment: datetime
) -> QuotaExceeded | None:
    """Why ``work`` may not start under ``limit``, or None if it may."""
    if limit.limit == 0 or limit.family != work.family:
        return None
    needed = work.units if limit.measure == "units" else 1
    usage = measure(limit, ledger, moment)
    if usage.used + needed <= limit.limit:
        return None
    if limit.measure == "running":
        return QuotaExceeded(
            f"concurrent training limit reached: {usage.used} of {limit.limit} trainings are "
            "running; start another once one has finished",
            limit.name,
            _CONCURRENT_RETRY_SECONDS,
        )
    if needed > limit.limit:
        return QuotaExceeded(
            f"{limit.name.replace('_', ' ')}: {needed} asked for at once, but the limit is "
            f"{limit.limit} in 24 hours; ask for fewer",
            limit.name,
            int(WINDOW.total_seconds()),
        )
    frees = _frees_enough(limit, ledger, moment, needed)
    what, unit = {
        "trainings_per_day": ("daily training limit reached", "trainings"),
        "avatars_per_day": ("daily avatar limit reached", "avatars"),
        "face_batches_per_day": ("daily face-avatar batch limit reached", "batches"),
        "face_images_per_day": ("daily face-avatar image limit reached", "face avatars"),
    }[limit.name]
    ask = f" ({needed} asked for)" if needed > 1 else ""
    return QuotaExceeded(
        f"{what}: {usage.used} of {limit.limit} {unit} in the last 24 hours{ask}; "
        f"next at {frees:%H:%M} UTC",
        limit.name,
        int((frees - moment).total_seconds()) + 1,
    )


def never_paid(error_type: str | None, provider_id: str | None) -> bool:
    """Whether work that failed in its submit step cost nothing, so its units come back."""
    return provider_id is None and error_type in UNPAID_SUBMIT_FAILURES


def release(repo: AvatarRepository, owner: str, work: PaidWork) -> None:
    """The work was never paid for: it stops counting."""
    repo.drop_quota_entry(owner, work.family, work.key)


def job_work(kind: str, job_id: str) -> PaidWork:
    """The ledger entry of a job of ``kind`` (a JobRef kind), to release it by."""
    return PaidWork("face" if kind == "face" else "avatars", job_id)


def _prune(ledger: QuotaLedger, moment: datetime) -> dict[str, QuotaEntry]:
    """What a ledger keeps: entries in the window, and trainings maybe still running."""
    return {
        key: entry
        for key, entry in ledger.entries.items()
        if _parse(entry.at) > moment - WINDOW or not entry.ended
    }


class Quotas:
    """Reserve, release and report an owner's quotas, and the stack's spending guard."""

    def __init__(self, repo: AvatarRepository, settings: Settings) -> None:
        self.repo = repo
        self.settings = settings

    @contextmanager
    def reserved(self, owner: str, work: PaidWork) -> Iterator[None]:
        """Hold ``work``'s reservation while the block starts it; if the block fails (a 503,
        a conflict), nothing was started and the reservation goes again."""
        added = self.reserve(owner, work)
        try:
            self.guard_spending()
            yield
        except BaseException:
            if added:
                self.release(owner, work)
            raise

    def reserve(self, owner: str, work: PaidWork) -> bool:
        """Count ``work`` against the owner's limits, or raise QuotaExceeded. False when it
        was already counted (a concurrent duplicate of the same work): the caller that
        counted it owns its release."""
        own = [limit for limit in limits(self.settings) if limit.family == work.family]
        for attempt in range(_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, _PAUSE_SECONDS * min(attempt, 10)))  # noqa: S311
            moment = now()
            ledger = self.repo.get_quota_ledger(owner, work.family)
            if work.key in ledger.entries:
                return False
            ledger = self._settle_running(owner, ledger, own)
            for limit in own:
                refused = refusal(limit, ledger, work, moment)
                if refused is not None:
                    logger.info("quota refused", extra={"limit": refused.limit, "owner": owner})
                    metrics.add_metric(name="QuotaRefusals", unit=MetricUnit.Count, value=1)
                    raise refused
            entries = _prune(ledger, moment)
            entries[work.key] = QuotaEntry(at=iso(moment), units=work.units)
            if self.repo.put_quota_ledger(owner, ledger, entries):
                return True
        raise QuotaExceeded(
            "too many requests of yours at once are taking the same limit; retry shortly",
            "concurrent_requests",
            1,
        )

    def release(self, owner: str, work: PaidWork) -> None:
        release(self.repo, owner, work)

    def _settle_running(self, owner: str, ledger: QuotaLedger, own: list[Limit]) -> QuotaLedger:
        """Mark trainings that are no longer running as ended, if the concurrency limit is
        near enough for it to matter; one model read per entry still marked running."""
        if not any(limit.measure == "running" for limit in own):
            return ledger
        entries = dict(ledger.entries)
        for key, entry in ledger.entries.items():
            if entry.ended:
                continue
            model_id, _, attempt = key.rpartition("#")
            model = self.repo.get_model(owner, model_id)
            # reserved moments ago by a request that has not begun the training yet: it is
            # starting, not ended (unless its request died, which the grace period covers)
            starting = (
                model is not None
                and model.training_attempt < int(attempt or 0)
                and _parse(entry.at) > now() - _STARTING_GRACE
            )
            still = starting or (
                model is not None
                and model.status is ModelStatus.TRAINING
                and str(model.training_attempt) == attempt
            )
            if not still:
                entries[key] = entry.model_copy(update={"ended": True})
        return ledger.model_copy(update={"entries": entries})

    def guard_spending(self) -> None:
        cap = self.settings.paid_submissions_per_hour
        if cap == 0:
            return
        moment = now()
        hour = moment.replace(minute=0, second=0, microsecond=0)
        if self.repo.count_paid_submission(hour, cap):
            return
        turns = hour + timedelta(hours=1)
        logger.warning("spending guard tripped", extra={"cap": cap, "hour": iso(hour)})
        metrics.add_metric(name="SpendingGuardTripped", unit=MetricUnit.Count, value=1)
        raise SpendingPaused(
            f"new paid work is paused: this service's limit of {cap} paid submissions per "
            f"hour is reached; it resumes at {turns:%H:%M} UTC",
            int((turns - moment).total_seconds()) + 1,
        )

    def usage(self, owner: str) -> list[Usage]:
        """Each limit, how much of it the owner uses now and when it next frees."""
        moment = now()
        every = limits(self.settings)
        ledgers = {
            f: self.repo.get_quota_ledger(owner, f) for f in ("trainings", "avatars", "face")
        }
        ledgers["trainings"] = self._settle_running(owner, ledgers["trainings"], every)
        return [measure(limit, ledgers[limit.family], moment) for limit in every]


def usage_out(usage: Usage) -> LimitOut:
    limit = usage.limit
    return LimitOut(
        name=limit.name,
        description=limit.description,
        limit=limit.limit or None,
        used=usage.used,
        remaining=max(0, limit.limit - usage.used) if limit.limit else None,
        window_hours=None if limit.measure == "running" else int(WINDOW.total_seconds() // 3600),
        frees_at=iso(usage.frees_at) if usage.frees_at else None,
    )
