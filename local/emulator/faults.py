"""Scripted upstream misbehaviour, shared by both emulated providers.

Tests and people script faults at runtime through ``POST /_emulator/script``; every provider
route asks this module, before doing its work, whether the next answer should misbehave. A
misbehaviour is one ``Fault``: an error status (optionally with ``Retry-After``), a slow
answer, a dropped connection, or a lost response (the work is done upstream, but the caller
never hears of it). Scripted rules are consumed in order, per route; a later random
("chaos") policy only has to produce the same ``Fault`` values from ``Faults.take``.

Besides per-request faults the script holds job outcomes: how the next trainings, inferences
and face jobs end (``FAILED`` with a message), and whether they ever finish. Outcomes are
captured when a job is submitted, so a job's fate never changes under a poller's feet.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Response, request

from local.emulator.limits import RESET_HEADERS, ROUTE_PROVIDERS

if TYPE_CHECKING:
    from local.emulator.app import EmulatorState

ROUTES = (
    "train_submit",
    "train_status",
    "infer_submit",
    "infer_status",
    "face_submit",
    "face_status",
    "instant_submit",
    "instant_status",
)
JOB_KINDS = ("training", "inference", "face", "instant")
MAX_SLOW_SECONDS = 300.0

ErrorRenderer = Callable[[int, "str | None"], Response]
View = TypeVar("View", bound=Callable[..., Any])


class ScriptError(ValueError):
    """The admin sent a script the emulator cannot follow; the message says why."""


@dataclass(frozen=True)
class Fault:
    """How one answer misbehaves. Several effects combine: slow, then error or drop."""

    status: int | None = None
    message: str | None = None
    retry_after: int | None = None
    slow_seconds: float = 0.0
    drop_connection: bool = False
    lose_response: bool = False


@dataclass(frozen=True)
class Chaos:
    """Random misbehaviour: each provider answer draws one fault (or none) by these rates.

    Rates are fractions of requests, drawn from a seeded generator so a run can be repeated.
    ``lose_response`` does the work upstream and then cuts the connection: the "did it
    start?" case. ``early_expiry`` makes a job's results expire ``early_expiry_seconds``
    (emulated) after it finished instead of 48 hours.
    """

    seed: int = 0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: int = 1
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    drop_rate: float = 0.0
    lose_response_rate: float = 0.0
    early_expiry_rate: float = 0.0
    early_expiry_seconds: float = 600.0

    def draw(self, rng: random.Random) -> Fault | None:
        roll = rng.random()
        for rate, fault in (
            (self.error_rate, Fault(status=rng.choice((500, 502, 503)), message="chaos")),
            (
                self.rate_limit_rate,
                Fault(status=429, message="chaos", retry_after=self.retry_after),
            ),
            (self.slow_rate, Fault(slow_seconds=self.slow_seconds)),
            (self.drop_rate, Fault(drop_connection=True)),
            (self.lose_response_rate, Fault(lose_response=True)),
        ):
            if roll < rate:
                return fault
            roll -= rate
        return None


def _parse_chaos(raw: object) -> Chaos | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ScriptError("'chaos' must be an object of rates, or null to stop it")
    known = set(Chaos.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ScriptError(f"unknown chaos keys: {', '.join(sorted(unknown))}")
    for name, value in raw.items():
        if not _is_number(value) or value < 0:
            raise ScriptError(f"chaos {name} must be a number >= 0")
        if name.endswith("_rate") and value > 1:
            raise ScriptError(f"chaos {name} is a fraction of requests, at most 1")
    if raw.get("slow_seconds", 0) > MAX_SLOW_SECONDS:
        raise ScriptError(f"chaos slow_seconds must be at most {MAX_SLOW_SECONDS:g}")
    per_request = sum(
        raw.get(n, 0) for n in known if n.endswith("_rate") and n != "early_expiry_rate"
    )
    if per_request > 1:
        raise ScriptError("the per-request chaos rates add up to more than 1")
    chaos = Chaos(
        **{k: (int(v) if k in ("seed", "retry_after") else float(v)) for k, v in raw.items()}
    )
    return chaos


@dataclass
class _Rule:
    fault: Fault
    remaining: int


@dataclass(frozen=True)
class Outcome:
    """How a job ends: a provider status word and the message that goes with it."""

    status: str
    message: str | None = None


@dataclass
class _Script:
    rules: dict[str, deque[_Rule]] = field(
        default_factory=lambda: {route: deque() for route in ROUTES}
    )
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    never_finish: set[str] = field(default_factory=set)
    result_ttl_seconds: float | None = None
    result_urls: list[str] | None = None
    chaos: Chaos | None = None
    status_words: dict[str, str] = field(default_factory=dict)


class Faults:
    """The current script. Thread-safe: the emulator serves requests on many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script = _Script()
        self._rng = random.Random(0)

    def reset(self) -> None:
        with self._lock:
            self._script = _Script()

    def apply(self, payload: object, outcome_statuses: dict[str, tuple[str, ...]]) -> None:
        """Merge an admin script into the current one; ``fail_next`` rules are appended.

        ``outcome_statuses`` names, per job kind, the provider status words a job may be
        scripted to end with. The whole payload is checked before anything changes.
        """
        if not isinstance(payload, dict):
            raise ScriptError("the script must be a JSON object")
        unknown = set(payload) - {
            "fail_next",
            "training_outcome",
            "message",
            "inference_outcome",
            "face_outcome",
            "never_finish",
            "result_ttl_seconds",
            "result_urls",
            "chaos",
            "instant_outcome",
            "status_words",
        }
        if unknown:
            raise ScriptError(f"unknown script keys: {', '.join(sorted(unknown))}")
        rules = [_parse_rule(raw) for raw in _as_list(payload.get("fail_next", []), "fail_next")]
        outcomes: dict[str, Outcome | None] = {}
        if "training_outcome" in payload:
            outcomes["training"] = _parse_outcome(
                payload["training_outcome"],
                payload.get("message"),
                "training_outcome",
                outcome_statuses["training"],
            )
        elif "message" in payload:
            raise ScriptError("'message' only goes with 'training_outcome'")
        for kind in ("inference", "face", "instant"):
            key = f"{kind}_outcome"
            if key in payload:
                outcomes[kind] = _parse_outcome(payload[key], None, key, outcome_statuses[kind])
        never_finish = (
            _parse_never_finish(payload["never_finish"]) if "never_finish" in payload else None
        )
        ttl = payload.get("result_ttl_seconds")
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl < 0
        ):
            raise ScriptError("'result_ttl_seconds' must be a number of seconds >= 0, or null")
        urls = payload.get("result_urls")
        if urls is not None and (
            not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls)
        ):
            raise ScriptError("'result_urls' must be a non-empty list of URLs, or null")
        chaos = _parse_chaos(payload["chaos"]) if "chaos" in payload else None
        words = payload.get("status_words")
        if words is not None and not (
            isinstance(words, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in words.items())
        ):
            raise ScriptError(
                "'status_words' must map a status word to the word answered instead, or be null"
            )
        with self._lock:
            if "status_words" in payload:
                self._script.status_words = dict(words or {})
            if "chaos" in payload:
                self._script.chaos = chaos
                self._rng = random.Random(chaos.seed if chaos else 0)
            if "result_urls" in payload:
                self._script.result_urls = urls
            if "result_ttl_seconds" in payload:
                self._script.result_ttl_seconds = None if ttl is None else float(ttl)
            for route, rule in rules:
                self._script.rules[route].append(rule)
            for kind, outcome in outcomes.items():
                if outcome is None:
                    self._script.outcomes.pop(kind, None)
                else:
                    self._script.outcomes[kind] = outcome
            if never_finish is not None:
                self._script.never_finish = never_finish

    def take(self, route: str) -> Fault | None:
        """The fault for this request of ``route``, consuming one use of its rule."""
        with self._lock:
            queue = self._script.rules[route]
            if not queue:
                chaos = self._script.chaos
                return chaos.draw(self._rng) if chaos else None
            rule = queue[0]
            rule.remaining -= 1
            if rule.remaining <= 0:
                queue.popleft()
            return rule.fault

    def outcome_for(self, kind: str) -> Outcome | None:
        """The scripted ending of a job of ``kind`` submitted now (None: it succeeds)."""
        with self._lock:
            return self._script.outcomes.get(kind)

    def result_ttl(self, default: float) -> float:
        """How long results live after their job finished: scripted early expiry, or default."""
        with self._lock:
            scripted = self._script.result_ttl_seconds
            chaos = self._script.chaos
            if scripted is None and chaos and self._rng.random() < chaos.early_expiry_rate:
                scripted = chaos.early_expiry_seconds
        return default if scripted is None else scripted

    def take_result_urls(self) -> list[str] | None:
        """URLs the next finished job answers instead of its own results (once), if scripted.

        Lets tests hand our copier hostile results: a redirect to the metadata address, a
        host off the allow-list, a body that is not an image or is too large.
        """
        with self._lock:
            urls, self._script.result_urls = self._script.result_urls, None
        return urls

    def status_word(self, word: str) -> str:
        """The word to answer for ``word``: a scripted stand-in (e.g. one we never document,
        to test how a client judges an answer it cannot place), or the word itself."""
        with self._lock:
            return self._script.status_words.get(word, word)

    def never_finishes(self, kind: str) -> bool:
        with self._lock:
            return kind in self._script.never_finish

    def describe(self) -> dict[str, Any]:
        """The current script, in the admin endpoint's own vocabulary."""
        with self._lock:
            return {
                "fail_next": [
                    {"route": route, "times": rule.remaining, **_fault_fields(rule.fault)}
                    for route, queue in self._script.rules.items()
                    for rule in queue
                ],
                "outcomes": {
                    kind: {"status": outcome.status, "message": outcome.message}
                    for kind, outcome in self._script.outcomes.items()
                },
                "never_finish": sorted(self._script.never_finish),
                "result_ttl_seconds": self._script.result_ttl_seconds,
                "result_urls": self._script.result_urls,
                "status_words": dict(self._script.status_words),
                "chaos": None if self._script.chaos is None else vars(self._script.chaos),
            }


def guarded(
    state: EmulatorState, route: str, render_error: ErrorRenderer
) -> Callable[[View], View]:
    """Wrap a provider view so the script can slow it, fail it, or cut its connection."""
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}")

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            state.count_in("requests_by_route", route)
            _, refusal = state.limits.take(route)
            if refusal is not None:
                # the provider's gateway answers before any work, and before any script
                response = render_error(
                    429, f"Rate limit of {refusal.limit} requests per minute exceeded"
                )
                response.headers[RESET_HEADERS[ROUTE_PROVIDERS[route]]] = refusal.header_value
                return response
            fault = state.faults.take(route)
            if fault is None:
                return view(*args, **kwargs)
            state.count_in("faults_injected", route)
            if fault.slow_seconds:
                # Wall-clock on purpose: slowness targets the caller's socket timeout,
                # which is not scaled by the emulator's clock.
                time.sleep(fault.slow_seconds)
            if fault.drop_connection:
                return _drop_connection()
            if fault.status is not None:
                response = render_error(fault.status, fault.message)
                if fault.retry_after is not None:
                    response.headers["Retry-After"] = str(fault.retry_after)
                return response
            response = view(*args, **kwargs)
            if fault.lose_response:
                return _drop_connection()
            return response

        return wrapper  # type: ignore[return-value]

    return decorate


def _drop_connection() -> Response:
    """Close the client's socket; writing the (empty) answer then fails quietly."""
    connection = request.environ.get("werkzeug.socket")
    if connection is None:
        raise RuntimeError("dropping a connection needs werkzeug's development server")
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    return Response(b"", status=500)


def _as_list(value: object, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise ScriptError(f"'{name}' must be a list")
    return value


def _parse_rule(raw: object) -> tuple[str, _Rule]:
    if not isinstance(raw, dict):
        raise ScriptError("each fail_next entry must be an object")
    known = {
        "route",
        "times",
        "status",
        "message",
        "retry_after",
        "slow_seconds",
        "drop_connection",
        "lose_response",
    }
    unknown = set(raw) - known
    if unknown:
        raise ScriptError(f"unknown fail_next keys: {', '.join(sorted(unknown))}")
    route = raw.get("route")
    if route not in ROUTES:
        raise ScriptError(f"route must be one of {', '.join(ROUTES)}; got {route!r}")
    times = raw.get("times", 1)
    if not _is_int(times) or times < 1:
        raise ScriptError("times must be an integer >= 1")
    status = raw.get("status")
    if status is not None and (not _is_int(status) or not 400 <= status <= 599):
        raise ScriptError("status must be an integer between 400 and 599")
    message = raw.get("message")
    if message is not None and not isinstance(message, str):
        raise ScriptError("message must be a string")
    retry_after = raw.get("retry_after")
    if retry_after is not None:
        if not _is_number(retry_after) or retry_after < 0:
            raise ScriptError("retry_after must be a number of seconds >= 0")
        if status is None:
            raise ScriptError("retry_after needs a status")
        retry_after = math.ceil(retry_after)
    slow = raw.get("slow_seconds", 0)
    if not _is_number(slow) or not 0 <= slow <= MAX_SLOW_SECONDS:
        raise ScriptError(f"slow_seconds must be a number between 0 and {MAX_SLOW_SECONDS:g}")
    drop = raw.get("drop_connection", False)
    lose = raw.get("lose_response", False)
    if not isinstance(drop, bool) or not isinstance(lose, bool):
        raise ScriptError("drop_connection and lose_response must be booleans")
    effects = [status is not None, drop, lose]
    if sum(effects) > 1:
        raise ScriptError("choose one of status, drop_connection, lose_response per entry")
    if sum(effects) == 0 and not slow:
        raise ScriptError(
            "a fail_next entry needs status, slow_seconds, drop_connection or lose_response"
        )
    fault = Fault(
        status=status,
        message=message,
        retry_after=retry_after,
        slow_seconds=float(slow),
        drop_connection=drop,
        lose_response=lose,
    )
    return route, _Rule(fault, times)


def _parse_outcome(
    raw: object, message: object, key: str, allowed: tuple[str, ...]
) -> Outcome | None:
    if raw is None:
        return None
    if isinstance(raw, dict):
        unknown = set(raw) - {"status", "message"}
        if unknown:
            raise ScriptError(f"unknown {key} keys: {', '.join(sorted(unknown))}")
        message = raw.get("message", message)
        raw = raw.get("status")
    if raw not in allowed:
        raise ScriptError(f"{key} must be one of {', '.join(allowed)}, or null to clear it")
    if message is not None and not isinstance(message, str):
        raise ScriptError(f"the message of {key} must be a string")
    return Outcome(status=raw, message=message)


def _parse_never_finish(raw: object) -> set[str]:
    if raw is True:
        return set(JOB_KINDS)
    if raw is False or raw is None:
        return set()
    if isinstance(raw, list) and raw and all(kind in JOB_KINDS for kind in raw):
        return set(raw)
    raise ScriptError(f"never_finish must be true, false or a list of {', '.join(JOB_KINDS)}")


def _fault_fields(fault: Fault) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if fault.status is not None:
        fields["status"] = fault.status
    if fault.message is not None:
        fields["message"] = fault.message
    if fault.retry_after is not None:
        fields["retry_after"] = fault.retry_after
    if fault.slow_seconds:
        fields["slow_seconds"] = fault.slow_seconds
    if fault.drop_connection:
        fields["drop_connection"] = True
    if fault.lose_response:
        fields["lose_response"] = True
    return fields


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
