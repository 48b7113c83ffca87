"""The provider emulator: one loopback HTTP server speaking both providers' contracts.

Picsart AI Avatars lives under ``/picsart/v1`` and Qolaba's Face Avatar under ``/qolaba``,
so the adapters are pointed at it by base URL alone. Results are served at ``/results``.
Test hooks live under ``/_emulator`` and answer loopback callers only.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, abort, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

from local.emulator.core import EmulatorConfig, ResultFiles, ScaledClock
from local.emulator.faults import Faults, ScriptError
from local.emulator.limits import PROVIDERS, RateLimits

MAX_REQUEST_BYTES = 1024 * 1024


def _zeroed_counters() -> dict[str, Any]:
    return {
        "trainings_submitted": 0,
        "inferences_submitted": 0,
        "face_jobs_submitted": 0,
        "instant_jobs_submitted": 0,
        "results_served": 0,
        "trainings_by_source": {},
        "requests_by_route": {},
        "faults_injected": {},
    }


@dataclass
class EmulatorState:
    config: EmulatorConfig
    clock: ScaledClock
    files: ResultFiles
    counters: dict[str, Any] = field(default_factory=_zeroed_counters)
    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: Faults = field(default_factory=Faults)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    limits: RateLimits = field(init=False)

    def __post_init__(self) -> None:
        self.limits = RateLimits(
            self.clock,
            {
                "picsart": self.config.picsart_requests_per_minute,
                "qolaba": self.config.qolaba_requests_per_minute,
            },
        )

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    def record_job(
        self, kind: str, job_id: str, source: str, images: int = 0, ref_id: str | None = None
    ) -> None:
        """Every job created upstream, so benches can match them with our records (and an
        operator a lost answer with its job, by the reference the caller sent)."""
        job = {"kind": kind, "id": job_id, "source": source, "images": images}
        if ref_id is not None:
            job["ref_id"] = ref_id
        with self.lock:
            self.jobs.append(job)

    def count_in(self, name: str, key: str) -> None:
        with self.lock:
            bucket = self.counters.setdefault(name, {})
            bucket[key] = bucket.get(key, 0) + 1

    def reset_counters(self) -> None:
        with self.lock:
            self.jobs.clear()
            self.counters.clear()
            self.counters.update(_zeroed_counters())
        self.limits.reset()

    def stats(self) -> dict[str, Any]:
        """The counters, and per provider its limit, its requests, the 429s it sent and the
        most requests that arrived within 60 emulated seconds."""
        with self.lock:
            counters = {
                name: dict(value) if isinstance(value, dict) else value
                for name, value in self.counters.items()
            }
        return {**counters, **self.limits.stats()}


def create_app(state: EmulatorState) -> Flask:
    from local.emulator import hostile, picsart, qolaba

    app = Flask("provider-emulator")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.register_blueprint(picsart.make_blueprint(state), url_prefix="/picsart/v1")
    app.register_blueprint(qolaba.make_blueprint(state), url_prefix="/qolaba")
    app.register_blueprint(_admin_blueprint(state), url_prefix="/_emulator")
    app.register_blueprint(hostile.make_blueprint(), url_prefix="/hostile")

    @app.get("/results/<token>")
    def result(token: str) -> Response:
        entry = state.files.get(token)
        if entry is None:
            abort(404)
        state.count("results_served")
        return Response(entry.data, mimetype=entry.content_type)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response | HTTPException:
        """Unrouted paths and wrong methods answer in the addressed provider's error shape."""
        status = error.code or 500
        if request.path.startswith("/picsart/"):
            return picsart.error_response(status, error.name, error.description or error.name)
        if request.path.startswith("/qolaba/"):
            return qolaba.error_response(status, error.name)
        return error

    return app


def _admin_blueprint(state: EmulatorState) -> Blueprint:
    from local.emulator import picsart, qolaba

    outcome_statuses = {
        "training": picsart.SCRIPTABLE_TRAINING_OUTCOMES,
        "inference": picsart.SCRIPTABLE_INFERENCE_OUTCOMES,
        "face": qolaba.SCRIPTABLE_FACE_OUTCOMES,
        "instant": picsart.SCRIPTABLE_INSTANT_OUTCOMES,
    }
    admin = Blueprint("emulator_admin", __name__)

    @admin.before_request
    def loopback_only() -> Response | None:
        try:
            loopback = ipaddress.ip_address(request.remote_addr or "").is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return _admin_error("the emulator's admin endpoints answer loopback callers only", 403)
        return None

    @admin.get("/stats")
    def stats() -> Response:
        return jsonify(state.stats())

    @admin.get("/limits")
    def current_limits() -> Response:
        return jsonify(state.limits.limits())

    @admin.post("/limits")
    def set_limits() -> Response:
        """Change the requests-per-minute limits until the next reset: ``{"picsart": 30}``."""
        try:
            limits = _parse_limits(request.get_json(silent=True))
        except ScriptError as error:
            return _admin_error(str(error), 400)
        state.limits.set_limits(limits)
        return jsonify(state.limits.limits())

    @admin.get("/jobs")
    def jobs() -> Response:
        with state.lock:
            return jsonify(list(state.jobs))

    @admin.get("/script")
    def current_script() -> Response:
        return jsonify(state.faults.describe())

    @admin.post("/script")
    def script() -> Response:
        payload = request.get_json(silent=True)
        try:
            state.faults.apply(payload, outcome_statuses)
        except ScriptError as error:
            return _admin_error(str(error), 400)
        return jsonify(state.faults.describe())

    @admin.post("/expire-results")
    def expire_results() -> Response:
        state.files.expire_all()
        return jsonify({"expired": True})

    @admin.post("/advance-clock")
    def advance_clock() -> Response:
        payload = request.get_json(silent=True)
        seconds = payload.get("seconds") if isinstance(payload, dict) else None
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            return _admin_error('body must be {"seconds": <number >= 0>}', 400)
        state.clock.advance(float(seconds))
        return jsonify({"now": state.clock.now()})

    @admin.post("/reset")
    def reset() -> Response:
        state.faults.reset()
        state.reset_counters()
        return jsonify({"reset": True})

    return admin


def _parse_limits(payload: object) -> dict[str, int]:
    if not isinstance(payload, dict) or not payload:
        raise ScriptError(
            'body must be {"picsart": <requests per minute>, "qolaba": ...} (0: unlimited)'
        )
    unknown = set(payload) - set(PROVIDERS)
    if unknown:
        raise ScriptError(
            f"unknown providers: {', '.join(sorted(unknown))}; known: {', '.join(PROVIDERS)}"
        )
    limits: dict[str, int] = {}
    for provider, limit in payload.items():
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ScriptError(
                f"{provider} must be an integer of requests per minute >= 0 (0: unlimited)"
            )
        limits[provider] = limit
    return limits


def _admin_error(message: str, status: int) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


class EmulatorServer:
    """Runs the emulator on ``127.0.0.1`` in a background thread."""

    def __init__(self, config: EmulatorConfig | None = None, port: int = 0) -> None:
        self.config = config or EmulatorConfig()
        clock = ScaledClock(self.config.time_factor)
        self.state = EmulatorState(self.config, clock, ResultFiles(clock))
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", port, create_app(self.state), threaded=True
        )
        self.port = self._server.server_port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.state.files.base_url = self.base_url
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="provider-emulator", daemon=True
        )

    @property
    def picsart_base_url(self) -> str:
        return f"{self.base_url}/picsart/v1"

    @property
    def qolaba_base_url(self) -> str:
        return f"{self.base_url}/qolaba"

    def start(self) -> EmulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
