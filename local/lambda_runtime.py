"""Runs Lambda handlers in this process, standing in for moto's Docker-based runtime.

Every invocation path in moto (Invoke API, Step Functions tasks, S3 notifications) ends in
``LambdaFunction._invoke_lambda``; :meth:`InProcessRuntime.install` replaces it so the
function's handler is imported from its CodeUri folder and called here, with the
function's own environment variables applied for the duration of the call.

``os.environ`` is process-global, so invocations are serialised by one lock. A handler
must therefore never invoke another Lambda synchronously (that would deadlock); none does.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from local import aws_calls

log = logging.getLogger("local.lambda")


@dataclass(frozen=True)
class FunctionCode:
    logical_id: str
    code_dir: Path
    handler: str  # "module.function"


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
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class InProcessRuntime:
    def __init__(
        self, base_env: dict[str, str] | None = None, overrides: dict[str, str] | None = None
    ) -> None:
        self._functions: dict[str, FunctionCode] = {}
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.Lock()
        self._base_env = dict(base_env or {})
        self._overrides = dict(overrides or {})
        self._layer_packages: set[str] = set()
        self.invocations: dict[str, int] = {}
        self.failures: list[tuple[str, str, str]] = []

    def register(self, function_name: str, code: FunctionCode) -> None:
        self._functions[function_name] = code

    def add_layer(self, layer_dir: Path) -> None:
        """Make a layer's packages importable, as Lambda does from /opt/python."""
        if str(layer_dir) not in sys.path:
            sys.path.insert(0, str(layer_dir))
        self._layer_packages.update(
            child.name for child in layer_dir.iterdir() if (child / "__init__.py").exists()
        )

    def install(self) -> None:
        from moto.awslambda.models import LambdaFunction

        runtime = self

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
        context = LambdaContext(name, fn.function_arn, int(fn.memory_size), int(fn.timeout))
        with self._lock, _environment(env), aws_calls.invoking(code.logical_id):
            self.invocations[code.logical_id] = self.invocations.get(code.logical_id, 0) + 1
            try:
                result = self._handler(code)(event, context)
                payload, errored = json.dumps(result, default=str), False
            except Exception as exc:  # every failure becomes Lambda's error payload
                payload, errored = _error_payload(exc), True
                self.failures.append((code.logical_id, type(exc).__name__, str(exc)))
                log.warning("%s failed: %s: %s", code.logical_id, type(exc).__name__, exc)
                log.debug("%s traceback:\n%s", code.logical_id, traceback.format_exc())
        return payload, errored, ""

    def _handler(self, code: FunctionCode) -> Callable[[Any, Any], Any]:
        module_name, _, attr = code.handler.rpartition(".")
        module = self._modules.get(code.logical_id)
        if module is None:
            path = code.code_dir / f"{module_name.replace('.', '/')}.py"
            spec = importlib.util.spec_from_file_location(f"lambda_{code.logical_id}", path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load handler module {path}")
            module = importlib.util.module_from_spec(spec)
            with self._own_layer_copy():
                spec.loader.exec_module(module)
            self._modules[code.logical_id] = module
        handler: Callable[[Any, Any], Any] = getattr(module, attr)
        return handler

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


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Apply one function's variables for the length of an invocation.

    Variables that existed before get their old values back. Variables the process did not
    have are left in place rather than deleted: a thread outside the invocation lock (a
    server thread, a test) that checks for a key and then reads it must never see it vanish
    in between (that raced once as a KeyError under load). The next invocation sets every
    variable of its own function, so values never leak; only a key that a function does not
    define at all may be visible to it, with another function's value.
    """
    saved = {key: os.environ[key] for key in values if key in os.environ}
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.update(saved)
