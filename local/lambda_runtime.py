"""Runs Lambda handlers in this process, standing in for moto's Docker-based runtime.

Every invocation path in moto (Invoke API, Step Functions tasks, S3 notifications) ends in
``LambdaFunction._invoke_lambda``; :meth:`InProcessRuntime.install` replaces it so the
function's handler is imported from its CodeUri folder and called here, with the
function's own environment variables applied for the duration of the call.

Invocations run concurrently, as on Lambda: each function has a bounded pool (its
``ReservedConcurrentExecutions``, else ``DEFAULT_CONCURRENCY``); an invocation beyond it
waits for a slot. Each runs on a thread of its own with the function's template ``Timeout``
enforced: a handler still running then is answered ``Sandbox.Timedout``, as Lambda answers
it (Lambda would also freeze the sandbox; here the thread runs on, detached, and its slot is
freed). ``os.environ`` is process-global, so it is replaced by a view that shows each
invocation (a context variable) its own function's variables over the process's.
"""

from __future__ import annotations

import contextvars
import importlib.util
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from local import aws_calls

log = logging.getLogger("local.lambda")

# Lambda's default account quota is 1,000 for all functions; one machine is far smaller.
DEFAULT_CONCURRENCY = 10
# Lambda's Init phase (a cold start) may take this long without counting against the
# function's timeout.
INIT_LIMIT_SECONDS = 10.0
_OVERLAY: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "lambda_environment", default=None
)


class _InvocationEnviron(MutableMapping[str, str]):
    """``os.environ`` as the running invocation sees it: its function's variables over the
    process's. Outside an invocation it is the process's environment, unchanged."""

    def __init__(self, real: MutableMapping[str, str]) -> None:
        self.real = real

    def __getitem__(self, key: str) -> str:
        overlay = _OVERLAY.get()
        if overlay is not None and key in overlay:
            return overlay[key]
        return self.real[key]

    def __setitem__(self, key: str, value: str) -> None:
        overlay = _OVERLAY.get()
        if overlay is not None:
            overlay[key] = value
        else:
            self.real[key] = value

    def __delitem__(self, key: str) -> None:
        overlay = _OVERLAY.get()
        if overlay is not None and key in overlay:
            del overlay[key]
        else:
            del self.real[key]

    def __iter__(self) -> Iterator[str]:
        overlay = _OVERLAY.get() or {}
        yield from overlay
        yield from (key for key in list(self.real) if key not in overlay)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, str]:
        return dict(self)


def _install_environ_view() -> None:
    if not isinstance(os.environ, _InvocationEnviron):
        # a view over the same environment, not a reset of it
        os.environ = _InvocationEnviron(os.environ)  # type: ignore[assignment]  # noqa: B003


@dataclass(frozen=True)
class FunctionCode:
    logical_id: str
    code_dir: Path
    handler: str  # "module.function"
    concurrency: int = 0  # the template's ReservedConcurrentExecutions, 0 when unset


class LambdaContext:
    """The attributes of the Lambda context object that our handlers and powertools read."""

    def __init__(self, function_name: str, arn: str, memory_mb: int, timeout_s: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = arn
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self._timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s

    def start_clock(self) -> None:
        """The invocation begins (the sandbox's Init is done): its timeout runs from now."""
        self._deadline = time.monotonic() + self._timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _ImportGate:
    """Keeps other threads' imports of the layer's packages out while a cold start swaps
    ``sys.modules`` (``InProcessRuntime._own_layer_copy``).

    A handler may import at call time (``from avatar_core.providers.picsart import ...``
    inside a method); without the gate, a sandbox starting meanwhile deletes and restores
    those very entries under it, and the running job fails with a ``KeyError`` or a
    half-initialised module. Imports of anything else pass untouched; a thread that holds
    the gate (either way) re-enters it freely.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._swapping: int | None = None  # the thread swapping sys.modules
        self._importing = 0  # threads importing a gated package now
        self._held = threading.local()
        self.packages: set[str] = set()
        # seconds each thread spent held at the gate by a cold start
        self.waited: dict[int, float] = {}

    def install(self) -> None:
        import builtins

        if getattr(builtins.__import__, "_lambda_import_gate", None) is not None:
            return
        original = builtins.__import__
        gate = self

        def gated_import(
            name: str,
            globals: Any = None,
            locals: Any = None,
            fromlist: Any = (),
            level: int = 0,
        ) -> Any:
            if level and globals:  # a relative import names its package in its globals
                package = str(globals.get("__package__") or "").partition(".")[0]
            else:
                package = name.partition(".")[0]
            if package not in gate.packages:
                return original(name, globals, locals, fromlist, level)
            with gate.importing():
                return original(name, globals, locals, fromlist, level)

        gated_import._lambda_import_gate = self  # type: ignore[attr-defined]
        builtins.__import__ = gated_import

    @contextmanager
    def importing(self) -> Iterator[None]:
        if getattr(self._held, "holding", False):
            yield  # an import inside an import or inside this thread's own swap
            return
        with self._changed:
            if self._swapping is not None:
                # Waiting for another sandbox's cold start: an artifact of one process, which
                # Lambda's separate sandboxes never pay; the invocation is not charged for it.
                began = time.monotonic()
                self._changed.wait_for(lambda: self._swapping is None)
                ident = threading.get_ident()
                self.waited[ident] = self.waited.get(ident, 0.0) + time.monotonic() - began
            self._importing += 1
        try:
            with self._holding():
                yield
        finally:
            with self._changed:
                self._importing -= 1
                self._changed.notify_all()

    @contextmanager
    def swapping(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._swapping is None and self._importing == 0)
            self._swapping = threading.get_ident()
        try:
            with self._holding():
                yield
        finally:
            with self._changed:
                self._swapping = None
                self._changed.notify_all()

    @contextmanager
    def _holding(self) -> Iterator[None]:
        """This thread holds the gate until the block ends, however it ends."""
        was_holding = getattr(self._held, "holding", False)
        self._held.holding = True
        try:
            yield
        finally:
            self._held.holding = was_holding


_IMPORT_GATE = _ImportGate()


class InProcessRuntime:
    def __init__(
        self, base_env: dict[str, str] | None = None, overrides: dict[str, str] | None = None
    ) -> None:
        self._functions: dict[str, FunctionCode] = {}
        self._idle: dict[str, list[ModuleType]] = {}  # sandboxes free for an invocation
        self._sandboxes: dict[str, int] = {}  # how many each function has had
        self._lock = threading.Lock()  # counters and the handler cache only
        self._import_lock = threading.RLock()
        self._pools: dict[str, threading.BoundedSemaphore] = {}
        self._concurrency: dict[str, int] = {}
        self._base_env = dict(base_env or {})
        self._overrides = dict(overrides or {})
        self._layer_packages: set[str] = set()
        self.invocations: dict[str, int] = {}
        self.failures: list[tuple[str, str, str]] = []
        # chaos only: given a function's logical id, "crash" (fail before running it) or
        # "timeout" (run it, then answer Sandbox.Timedout as if it overran), or None
        self.fault: Callable[[str], str | None] | None = None

    def register(self, function_name: str, code: FunctionCode) -> None:
        self._functions[function_name] = code
        limit = code.concurrency or DEFAULT_CONCURRENCY
        self._concurrency[function_name] = limit
        self._pools[function_name] = threading.BoundedSemaphore(limit)

    def add_layer(self, layer_dir: Path) -> None:
        """Make a layer's packages importable, as Lambda does from /opt/python."""
        if str(layer_dir) not in sys.path:
            sys.path.insert(0, str(layer_dir))
        self._layer_packages.update(
            child.name for child in layer_dir.iterdir() if (child / "__init__.py").exists()
        )
        _IMPORT_GATE.packages.update(self._layer_packages)
        _IMPORT_GATE.install()

    def install(self) -> None:
        from moto.awslambda.models import LambdaFunction

        runtime = self
        _install_environ_view()

        def _invoke_lambda(fn: Any, event: Any = None) -> tuple[str, bool, str]:
            return runtime.invoke(fn, event)

        LambdaFunction._invoke_lambda = _invoke_lambda  # type: ignore[method-assign]

    def invoke(self, fn: Any, event: Any) -> tuple[str, bool, str]:
        name = fn.function_name
        code = self._functions.get(name)
        if code is None:
            message = f"no local code registered for Lambda function {name}"
            return json.dumps({"errorType": "LocalRuntimeError", "errorMessage": message}), True, ""
        if isinstance(event, str | bytes):
            event = json.loads(event or "{}")
        env = {
            **self._base_env,
            **{k: str(v) for k, v in fn.environment_vars.items()},
            **self._overrides,
        }
        env.update(
            AWS_LAMBDA_FUNCTION_NAME=name,
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(fn.memory_size),
            AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{name}",
        )
        timeout = int(fn.timeout)
        context = LambdaContext(name, fn.function_arn, int(fn.memory_size), timeout)
        with self._lock:
            self.invocations[code.logical_id] = self.invocations.get(code.logical_id, 0) + 1
        outcome: dict[str, Any] = {}

        ready = threading.Event()

        def started() -> None:
            context.start_clock()
            ready.set()

        def run() -> None:
            _OVERLAY.set(dict(env))
            with aws_calls.invoking(code.logical_id):
                try:
                    result = self._handler(code, started)(event, context)
                    outcome["answer"] = (json.dumps(result, default=str), False)
                except Exception as exc:  # every failure becomes Lambda's error payload
                    outcome["answer"] = (_error_payload(exc), True)
                    self._failed(code.logical_id, type(exc).__name__, str(exc))
                    log.debug("%s traceback:\n%s", code.logical_id, traceback.format_exc())
                finally:
                    ready.set()

        fault = self.fault(code.logical_id) if self.fault is not None else None
        if fault == "crash":
            self._failed(code.logical_id, "LocalChaosCrash", "crashed by the chaos bench")
            crash = {"errorType": "LocalChaosCrash", "errorMessage": "crashed by the chaos bench"}
            return json.dumps(crash), True, ""
        pool = self._pools.get(name) or threading.BoundedSemaphore(DEFAULT_CONCURRENCY)
        with pool:
            worker = threading.Thread(
                target=contextvars.copy_context().run, args=(run,), name=name, daemon=True
            )
            worker.start()
            # As on Lambda, a cold start's Init (importing the handler module) is not charged
            # to the function's timeout, up to Lambda's Init limit; past it the clock runs.
            ready.wait(INIT_LIMIT_SECONDS)
            deadline = time.monotonic() + timeout
            while worker.is_alive():
                held = _IMPORT_GATE.waited.get(worker.ident or 0, 0.0)
                left = deadline + held - time.monotonic()
                if left <= 0:
                    break
                worker.join(min(left, 0.25))
            _IMPORT_GATE.waited.pop(worker.ident or 0, None)
        if worker.is_alive() or fault == "timeout":
            message = (
                f"RequestId: {context.aws_request_id} Error: "
                f"Task timed out after {timeout:.2f} seconds"
            )
            self._failed(code.logical_id, "Sandbox.Timedout", message)
            return json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message}), True, ""
        payload, errored = outcome["answer"]
        return payload, errored, ""

    def _failed(self, logical_id: str, error_type: str, message: str) -> None:
        with self._lock:
            self.failures.append((logical_id, error_type, message))
        log.warning("%s failed: %s: %s", logical_id, error_type, message)

    def _handler(
        self, code: FunctionCode, started: Callable[[], None] = lambda: None
    ) -> Callable[[Any, Any], Any]:
        """The function's handler, run in a sandbox of its own for the invocation.

        Like Lambda, one sandbox (here: one import of the function's module, with its own
        copy of the layer) serves one invocation at a time, and a new one is made (a cold
        start) when every existing one is busy. Module-level state (the resolver's current
        event, the logger's keys) is therefore never shared by two invocations in flight.
        """
        module_name, _, attr = code.handler.rpartition(".")

        def run(event: Any, context: Any) -> Any:
            module = self._checkout(code, module_name)
            started()
            try:
                return getattr(module, attr)(event, context)
            finally:
                with self._lock:  # a timed-out invocation's sandbox returns once it is done
                    self._idle.setdefault(code.logical_id, []).append(module)

        return run

    def _checkout(self, code: FunctionCode, module_name: str) -> ModuleType:
        with self._lock:
            idle = self._idle.setdefault(code.logical_id, [])
            if idle:
                return idle.pop()
            self._sandboxes[code.logical_id] = self._sandboxes.get(code.logical_id, 0) + 1
            number = self._sandboxes[code.logical_id]
        path = code.code_dir / f"{module_name.replace('.', '/')}.py"
        spec = importlib.util.spec_from_file_location(f"lambda_{code.logical_id}_{number}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load handler module {path}")
        module = importlib.util.module_from_spec(spec)
        with self._import_lock, _IMPORT_GATE.swapping(), self._own_layer_copy():
            spec.loader.exec_module(module)
        return module

    @contextmanager
    def _own_layer_copy(self) -> Iterator[None]:
        """Import a function with fresh copies of the layer's packages, as its own Lambda
        process would: module-level state (settings, logger, metrics) is never shared with
        another function or with the process that runs the stack."""

        def layer_modules() -> dict[str, ModuleType]:
            return {
                name: module
                for name, module in sys.modules.items()
                if name.split(".", 1)[0] in self._layer_packages
            }

        shared = layer_modules()
        for name in shared:
            del sys.modules[name]
        try:
            yield
        finally:
            for name in layer_modules():
                del sys.modules[name]
            sys.modules.update(shared)


def _error_payload(exc: BaseException) -> str:
    return json.dumps(
        {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "stackTrace": traceback.format_tb(exc.__traceback__)[-5:],
        }
    )
