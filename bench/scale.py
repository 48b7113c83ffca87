"""A viral day on a simulated clock: 20,000 jobs against the providers' rate limits.

Run from the repository root: ``python bench/scale.py`` (well under 2 minutes; no network).

What is real and what is modelled:

- **Real**: the code that decides when each workflow calls a provider. Every submit and
  status check goes through ``avatar_core.logic.limiter`` (the shared admission control the
  Lambdas use, over its in-memory store instead of DynamoDB: the same conditional "add if
  below" per window and shard), and every wait comes from ``avatar_core.logic.polling``
  (``first_poll``, ``next_poll`` with the providers' ``PollSchedule`` advice, ``busy_poll`` and
  ``busy_submit`` after a 429 or a denied token, all with their jitter). Deadlines and poll
  bounds are the state machines' and ``Settings``' own.
- **Modelled**: the clock (an event queue, so 4 simulated hours take seconds), Step
  Functions (a Wait is an event at ``now + wait_seconds``), and the providers: each counts
  the requests it received in a sliding 60 s window and answers 429 over its limit, with
  the seconds until the window frees as Picsart's ``X-Picsart-RateLimit-Reset-Time``. Job
  durations are drawn from log-normal spreads around the emulator's typical durations
  (training 20 min, generation 60 s, face batch 40 s; ``local/emulator/core.py``), clipped.
  Lambda's own latency (tens of ms) is ignored.

The burst: 10,000 trainings, 5,000 generations (Picsart) and 5,000 face batches (Qolaba)
arriving uniformly within 10 minutes. The same burst runs twice, with the limiter on and
off (off: every call goes straight to the provider, as before the limiter). It prints per
run and provider the peak requests in any 60 s against the limit, the 429s received, jobs
that ended failed because of throttling (their workflow's deadline passed), and the
p50/p95 delay from arrival to the provider accepting the work.

With a cap on running jobs (``--picsart-concurrent N``, ``--qolaba-concurrent N``: the
stacks' ``PicsartConcurrentJobs``/``QolabaConcurrentJobs``), the limiter-on run also holds
each job to ``avatar_core.logic.run_slots`` (over its in-memory store: leases from the kinds'
poll schedules, renewed at every poll, freed at the end) and prints the peak of jobs running
at once (counted from acceptance to end, not from the slots) against the cap. Without a cap
nothing changes.

Owners: every job of the burst has an owner of its own; each owner holds at most
``--share`` tickets of a provider's queue (``avatar_core.logic.owner_share``, the stacks'
``OwnerQueueShare``, over its in-memory store). With ``--flood N`` one more owner sends N
generations at the very start, and a third run, limiter on with no share, shows what the
share changes: the queueing of everyone else's Picsart jobs behind that one owner's burst.
"""

from __future__ import annotations

import os
import sys

_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_BENCH_DIR)
# `python bench/scale.py` puts bench/ first on sys.path, where bench/copy.py would shadow the
# standard library's `copy` module for everything imported after it.
sys.path[:] = [path for path in sys.path if os.path.abspath(path or ".") != _BENCH_DIR]
sys.path[:0] = [os.path.join(_REPO, "layers", "core"), _REPO]

import argparse  # noqa: E402
import heapq  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections import Counter, deque  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from avatar_core.errors import (  # noqa: E402
    AdmissionDenied,
    ProviderError,
    ProviderRateLimited,
    SubmissionQueued,
)
from avatar_core.logic import limiter as limiter_module  # noqa: E402
from avatar_core.logic import owner_share, polling, provider_queue, run_slots  # noqa: E402
from avatar_core.logic.limiter import Limiter  # noqa: E402
from avatar_core.models.workflow import PollState  # noqa: E402
from avatar_core.providers.base import JobState, JobStatus  # noqa: E402
from avatar_core.providers.transport import PollSchedule  # noqa: E402
from avatar_core.settings import Settings  # noqa: E402

# The state machines' TimeoutSeconds (statemachine/*.asl.json): training, avatar jobs.
TRAINING_DEADLINE = 4 * 3600
JOB_DEADLINE = 12 * 3600


@dataclass(frozen=True)
class Kind:
    name: str
    provider: str
    count: int
    median_seconds: float
    sigma: float
    low: float
    high: float
    schedule: PollSchedule
    max_polls: int
    deadline: int


def kinds(settings: Settings, scale: float) -> list[Kind]:
    s = settings
    return [
        Kind(
            "training",
            "picsart",
            round(10_000 * scale),
            20 * 60,
            0.35,
            8 * 60,
            60 * 60,
            PollSchedule(s.training_first_poll_seconds, s.training_poll_seconds),
            s.training_max_polls,
            TRAINING_DEADLINE,
        ),
        Kind(
            "generation",
            "picsart",
            round(5_000 * scale),
            60,
            0.4,
            20,
            5 * 60,
            PollSchedule(s.generation_first_poll_seconds, s.generation_poll_seconds),
            s.generation_max_polls,
            JOB_DEADLINE,
        ),
        Kind(
            "face",
            "qolaba",
            round(5_000 * scale),
            40,
            0.4,
            10,
            3 * 60,
            PollSchedule(s.face_first_poll_seconds, s.face_poll_seconds),
            s.face_max_polls,
            JOB_DEADLINE,
        ),
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SimulatedProvider:
    """Counts every request it receives in a sliding 60 s; over ``limit`` it answers 429."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self._window: deque[float] = deque()
        self.peak = 0
        self.requests = 0
        self.rate_limited = 0

    def call(self, now: float) -> None:
        window = self._window
        while window and window[0] <= now - 60:
            window.popleft()
        self.requests += 1
        if len(window) >= self.limit:
            self.rate_limited += 1
            window.append(now)
            self.peak = max(self.peak, len(window))
            reset = max(1.0, window[-self.limit] + 60 - now)
            raise ProviderRateLimited(
                f"{self.name} answered with HTTP 429",
                provider=self.name,
                status_code=429,
                retry_after=reset,
            )
        window.append(now)
        self.peak = max(self.peak, len(window))


@dataclass
class Job:
    kind: Kind
    arrived: float
    duration: float
    poll: PollState | None = None
    accepted_at: float | None = None
    outcome: str | None = None
    throttled: int = 0
    denied: int = 0
    ident: int = 0
    owner: str = ""

    @property
    def holder(self) -> str:
        return f"job#{self.ident}"


@dataclass
class Run:
    limiter: bool
    jobs: list[Job] = field(default_factory=list)
    providers: dict[str, SimulatedProvider] = field(default_factory=dict)
    denied: Counter[str] = field(default_factory=Counter)
    queued_turns: Counter[str] = field(default_factory=Counter)
    slot_waits: Counter[str] = field(default_factory=Counter)
    running: Counter[str] = field(default_factory=Counter)
    peak_running: Counter[str] = field(default_factory=Counter)
    caps: dict[str, int] = field(default_factory=dict)
    share: int = 0
    events: int = 0
    seconds: float = 0.0
    ended: float = 0.0


def _status(job: Job, now: float) -> JobStatus:
    assert job.accepted_at is not None
    elapsed = now - job.accepted_at
    if elapsed >= job.duration:
        return JobStatus(state=JobState.SUCCEEDED, provider_status="DONE")
    progress = min(99, int(100 * elapsed / job.duration))
    return JobStatus(state=JobState.RUNNING, provider_status="IN_PROGRESS", progress=progress)


def simulate(
    *,
    limiter_on: bool,
    scale: float,
    seed: int,
    limits: dict[str, int],
    shards: int,
    caps: dict[str, int] | None = None,
    share: int = 0,
    flood: int = 0,
) -> Run:

    caps = caps or {}
    settings = Settings(
        picsart_concurrent_jobs=caps.get("picsart", 0) if limiter_on else 0,
        qolaba_concurrent_jobs=caps.get("qolaba", 0) if limiter_on else 0,
    )
    rng = random.Random(seed)
    polling.RNG = random.Random(seed + 1)  # the workflows' jitter, seeded for a repeatable run
    clock = Clock()
    run = Run(limiter=limiter_on, share=share if limiter_on else 0)
    run.providers = {name: SimulatedProvider(name, limit) for name, limit in limits.items()}
    run.caps = {name: run_slots.provider_cap(settings, name) for name in limits}
    store = limiter_module.MemoryWindowStore()
    limiters = {
        name: limiter_module.Limiter(
            store=store,
            clock=clock,
            rate_per_minute=limit,
            shards=shards,
            rng=random.Random(seed + 2),
            provider=name,
        )
        for name, limit in limits.items()
    }
    queue_stores = {name: provider_queue.MemoryQueueStore() for name in limiters}
    queue_rngs = {name: random.Random(seed + 3) for name in limiters}
    slot_store = run_slots.MemoryRunSlotStore()
    slots = {
        kind.name: run_slots.run_slots(slot_store, settings, kind.provider, kind.name, clock)
        for kind in kinds(settings, scale)
    }
    share_store = owner_share.MemoryOwnerShareStore()
    stale = max(TRAINING_DEADLINE, JOB_DEADLINE)
    shares = {
        name: owner_share.OwnerShares(share_store, name, share if limiter_on else 0, stale, clock)
        for name in limiters
    }
    # one queue per provider (its store), seen by each kind with that kind's slot lease
    # and the provider's owner shares
    queues = {
        kind.name: provider_queue.SubmitQueue(
            queue_stores[kind.provider],
            limiters[kind.provider],
            clock,
            queue_rngs[kind.provider],
            slots=slots[kind.name],
            on_full=lambda provider: run.slot_waits.update([provider]),
            shares=shares[kind.provider],
        )
        for kind in kinds(settings, scale)
    }

    def ended(job: Job, outcome: str) -> None:
        job.outcome = outcome
        slots[job.kind.name].release(job.holder)
        if job.accepted_at is not None:
            run.running[job.kind.provider] -= 1
        else:
            shares[job.kind.provider].leave(job.owner, job.holder)

    queue: list[tuple[float, int, Job]] = []
    sequence = 0
    for kind in kinds(settings, scale):
        for _ in range(kind.count):
            duration = rng.lognormvariate(math.log(kind.median_seconds), kind.sigma)
            job = Job(kind, rng.uniform(0, 600), min(kind.high, max(kind.low, duration)))
            run.jobs.append(job)
            sequence += 1
            job.ident = sequence
            job.owner = f"owner-{sequence}"
            heapq.heappush(queue, (job.arrived, sequence, job))
    generation = next(k for k in kinds(settings, scale) if k.name == "generation")
    for _ in range(flood):  # one owner's burst, all at the start
        duration = rng.lognormvariate(math.log(generation.median_seconds), generation.sigma)
        job = Job(
            generation, rng.uniform(0, 1), min(generation.high, max(generation.low, duration))
        )
        run.jobs.append(job)
        sequence += 1
        job.ident, job.owner = sequence, "flood"
        heapq.heappush(queue, (job.arrived, sequence, job))

    started = time.perf_counter()
    while queue:
        now, _, job = heapq.heappop(queue)
        clock.now = now
        run.events += 1
        kind = job.kind
        if now - job.arrived > kind.deadline:
            # The workflow's TimeoutSeconds: reconciliation resumes paid work, and fails
            # the rest as "nothing was charged". Either way the job did not finish in time.
            ended(job, "deadline")
            continue
        submitting = job.poll is None or not job.poll.submitted
        try:
            provider = run.providers[kind.provider]
            limiter = limiters[kind.provider]

            def call(provider: SimulatedProvider = provider, limiter: Limiter = limiter) -> None:
                # what the provider clients' transport does: a token, then the request
                if limiter_on:
                    limiter.admit()
                provider.call(clock.now)

            if limiter_on and submitting:
                provider_queue.in_turn(queues[kind.name], job.poll, call, job.holder, job.owner)
            else:
                if not submitting:
                    slots[kind.name].renew(job.holder)
                call()
        except ProviderError as busy:
            if isinstance(busy, SubmissionQueued):
                job.denied += 1
                run.queued_turns[kind.provider] += 1
            elif isinstance(busy, AdmissionDenied):
                job.denied += 1
                run.denied[kind.provider] += 1
            else:
                job.throttled += 1
            every = kind.schedule.every_seconds
            if submitting and isinstance(busy, SubmissionQueued):
                job.poll = polling.busy_submit(job.poll, busy, every)
            elif submitting:
                job.poll = provider_queue.had_its_turn(
                    polling.busy_submit(job.poll, busy, every),
                    queues[kind.name] if limiter_on else None,
                )
            else:
                assert job.poll is not None
                job.poll = polling.busy_poll(job.poll, busy, every)
            sequence += 1
            heapq.heappush(queue, (now + job.poll.wait_seconds, sequence, job))
            continue
        if submitting:
            job.accepted_at = now
            run.running[kind.provider] += 1
            run.peak_running[kind.provider] = max(
                run.peak_running[kind.provider], run.running[kind.provider]
            )
            job.poll = polling.first_poll(f"sim-{sequence}", kind.schedule.advice(0).wait_seconds)
        else:
            assert job.poll is not None
            status = _status(job, now)
            if status.state is JobState.SUCCEEDED:
                ended(job, "succeeded")
                continue
            job.poll = polling.next_poll(
                job.poll,
                status,
                lambda polls, last, waited, schedule=kind.schedule: schedule.advice(
                    polls, last, waited
                ),
                kind.max_polls,
            )
            if job.poll.exhausted:
                ended(job, "polls exhausted")
                continue
        sequence += 1
        heapq.heappush(queue, (now + job.poll.wait_seconds, sequence, job))
    run.seconds = time.perf_counter() - started
    run.ended = clock.now
    return run


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def out_of_order(jobs: list[Job], rng: random.Random, pairs: int = 20_000) -> float:
    """Of random pairs of accepted jobs that arrived over a minute apart, the fraction where
    the later arrival was accepted first: 0 in strict arrival order, about 0.5 at random."""
    accepted = [j for j in jobs if j.accepted_at is not None]
    if len(accepted) < 2:
        return 0.0
    considered = inverted = 0
    for _ in range(pairs):
        a, b = rng.sample(accepted, 2)
        if abs(a.arrived - b.arrived) <= 60:
            continue
        first, second = (a, b) if a.arrived < b.arrived else (b, a)
        considered += 1
        assert first.accepted_at is not None and second.accepted_at is not None
        inverted += second.accepted_at < first.accepted_at
    return inverted / considered if considered else 0.0


def summary(run: Run) -> dict[str, object]:
    by_provider: dict[str, object] = {}
    for name, provider in run.providers.items():
        jobs = [j for j in run.jobs if j.kind.provider == name]
        delays = [j.accepted_at - j.arrived for j in jobs if j.accepted_at is not None]
        by_provider[name] = {
            "limit_per_minute": provider.limit,
            "peak_per_minute": provider.peak,
            "requests": provider.requests,
            "429s": provider.rate_limited,
            "tokens_denied": run.denied[name],
            "queued_turns": run.queued_turns[name],
            "queueing_p50_s": round(_percentile(delays, 0.50), 1),
            "queueing_p95_s": round(_percentile(delays, 0.95), 1),
            "accepted": len(delays),
            "jobs": len(jobs),
            # (the flooding owner's burst is let through behind others on purpose)
            "out_of_order": round(
                out_of_order([j for j in jobs if j.owner != "flood"], random.Random(0)), 3
            ),
            "concurrent_cap": run.caps.get(name, 0),
            "peak_running": run.peak_running[name],
            "slot_waits": run.slot_waits[name],
        }
        flooded = [j for j in jobs if j.owner == "flood"]
        if flooded:
            others = [
                j.accepted_at - j.arrived
                for j in jobs
                if j.owner != "flood" and j.accepted_at is not None
            ]
            burst = [j.accepted_at - j.arrived for j in flooded if j.accepted_at is not None]
            by_provider[name].update(  # type: ignore[attr-defined]
                flood_jobs=len(flooded),
                flood_queueing_p50_s=round(_percentile(burst, 0.50), 1),
                flood_queueing_p95_s=round(_percentile(burst, 0.95), 1),
                others_queueing_p50_s=round(_percentile(others, 0.50), 1),
                others_queueing_p95_s=round(_percentile(others, 0.95), 1),
            )
    outcomes = Counter(j.outcome for j in run.jobs)
    throttled_failures = sum(
        1 for j in run.jobs if j.outcome != "succeeded" and (j.throttled or j.denied)
    )
    return {
        "limiter": run.limiter,
        "share": run.share,
        "providers": by_provider,
        "outcomes": dict(outcomes),
        "failed_for_throttling": throttled_failures,
        "simulated_hours": round(run.ended / 3600, 2),
        "events": run.events,
        "wall_seconds": round(run.seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the burst")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--picsart-rpm", type=int, default=None)
    parser.add_argument("--qolaba-rpm", type=int, default=None)
    parser.add_argument("--shards", type=int, default=None)
    parser.add_argument(
        "--picsart-concurrent", type=int, default=0, help="cap on running Picsart jobs (0: none)"
    )
    parser.add_argument(
        "--qolaba-concurrent", type=int, default=0, help="cap on running Qolaba jobs (0: none)"
    )
    settings = Settings()
    parser.add_argument(
        "--share",
        type=int,
        default=settings.owner_queue_share,
        help="tickets one owner may hold in a provider's queue (0: any)",
    )
    parser.add_argument(
        "--flood", type=int, default=0, help="one owner's generations, all at the start"
    )
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    parser.add_argument("--only", choices=("on", "off", "noshare"), help="one run, in this process")
    args = parser.parse_args()
    limits = {
        "picsart": args.picsart_rpm or settings.picsart_requests_per_minute,
        "qolaba": args.qolaba_rpm or settings.qolaba_requests_per_minute,
    }
    shards = args.shards or settings.limiter_shards
    if args.only:
        figures = summary(
            simulate(
                limiter_on=args.only != "off",
                scale=args.scale,
                seed=args.seed,
                limits=limits,
                shards=shards,
                caps={"picsart": args.picsart_concurrent, "qolaba": args.qolaba_concurrent},
                share=0 if args.only == "noshare" else args.share,
                flood=args.flood,
            )
        )
        print(json.dumps(figures))
        return 0
    # Each run in a fresh process of its own, both at once (they share nothing).
    passed = [a for a in sys.argv[1:] if a != "--json"]
    children = [
        subprocess.Popen(  # noqa: S603 (this very script)
            [sys.executable, os.path.abspath(__file__), *passed, "--only", only],
            stdout=subprocess.PIPE,
            text=True,
        )
        for only in ("on", "off", *(("noshare",) if args.flood else ()))
    ]
    runs = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode != 0:
            return child.returncode
        runs.append(json.loads(out.strip().splitlines()[-1]))
    if args.json:
        for figures in runs:
            print(json.dumps(figures))
        return 0
    for figures in runs:
        share = f", owner share {figures['share'] or 'none'}" if figures["limiter"] else ""
        print(f"limiter {'on' if figures['limiter'] else 'off'}{share}:")
        for name, p in figures["providers"].items():  # type: ignore[attr-defined]
            print(
                f"  {name:8} peak {p['peak_per_minute']:>6}/min (limit {p['limit_per_minute']}),"
                f" {p['requests']:>7} requests, {p['429s']:>6} 429s,"
                f" {p['tokens_denied']:>7} polls denied a token,"
                f" {p['queued_turns']:>7} turns waiting in the queue,"
                f" queueing p50 {p['queueing_p50_s']:.0f} s p95 {p['queueing_p95_s']:.0f} s"
                f" ({p['accepted']} of {p['jobs']} accepted, {p['out_of_order']:.1%} of pairs"
                " out of arrival order)"
            )
            if "flood_jobs" in p:
                print(
                    f"  {name:8} one owner's {p['flood_jobs']} generations at the start: queueing"
                    f" p50 {p['flood_queueing_p50_s']:.0f} s p95 {p['flood_queueing_p95_s']:.0f} s;"
                    f" everyone else's: p50 {p['others_queueing_p50_s']:.0f} s"
                    f" p95 {p['others_queueing_p95_s']:.0f} s"
                )
            if figures["limiter"] and p["concurrent_cap"]:
                print(
                    f"  {name:8} running at once: peak {p['peak_running']} (cap"
                    f" {p['concurrent_cap']}), {p['slot_waits']} turns waiting for a run slot"
                )
        print(
            f"  outcomes {figures['outcomes']}, failed for throttling"
            f" {figures['failed_for_throttling']}; {figures['simulated_hours']} simulated hours,"
            f" {figures['events']} events in {figures['wall_seconds']} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
