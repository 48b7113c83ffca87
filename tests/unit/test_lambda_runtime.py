"""The local Lambda runtime is as strict as Lambda where our promises depend on it:
invocations run at the same time (so race tests prove conditional writes, not a lock),
each sees only its own function's variables, and a handler that overruns its Timeout
ends as ``Sandbox.Timedout``."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from local import lambda_runtime
from local.lambda_runtime import FunctionCode, InProcessRuntime

HANDLER = """
import os
import sys
import threading
import time

# shared by every sandbox (each imports this module anew): kept on a module they all share
BARRIER = sys.__dict__.setdefault("_runtime_test_barrier", threading.Barrier(2, timeout=5))


def meet(event, context):
    # both invocations must be inside the handler at once to pass the barrier
    BARRIER.wait()
    return {"name": os.environ["WHO"]}


def slow(event, context):
    time.sleep(event["seconds"])
    return {"slept": event["seconds"]}


CURRENT = None


def remember(event, context):
    # module-level state, like a resolver's current event: one sandbox, one request
    global CURRENT
    CURRENT = event["me"]
    time.sleep(0.3)
    return {"me": CURRENT}


def who(event, context):
    time.sleep(0.2)
    return {"who": os.environ["WHO"], "seen": os.environ.get("ONLY_B")}
"""


@dataclass
class FakeFunction:
    """The attributes of moto's LambdaFunction that the runtime reads."""

    function_name: str
    environment_vars: dict[str, str] = field(default_factory=dict)
    memory_size: int = 128
    timeout: int = 3

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"


@pytest.fixture()
def runtime(tmp_path: Path) -> Iterator[InProcessRuntime]:
    (tmp_path / "app.py").write_text(HANDLER)
    runtime = InProcessRuntime()
    for handler in ("meet", "slow", "who", "remember"):
        runtime.register(handler, FunctionCode(handler, tmp_path, f"app.{handler}"))
    real = os.environ
    lambda_runtime._install_environ_view()
    yield runtime
    os.environ = getattr(os.environ, "real", real)  # type: ignore[assignment]  # noqa: B003


def answer(result: tuple[str, bool, str]) -> dict[str, object]:
    payload, _, _ = result
    decoded: dict[str, object] = json.loads(payload)
    return decoded


def test_invocations_of_one_function_run_at_the_same_time(runtime: InProcessRuntime) -> None:
    fn = FakeFunction("meet", {"WHO": "a"})
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: runtime.invoke(fn, {}), range(2)))

    assert [errored for _, errored, _ in results] == [False, False], results


def test_each_invocation_sees_only_its_own_functions_variables(runtime: InProcessRuntime) -> None:
    a = FakeFunction("who", {"WHO": "a"})
    b = FakeFunction("who", {"WHO": "b", "ONLY_B": "yes"})
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda fn: answer(runtime.invoke(fn, {})), [a, b])

    assert first == {"who": "a", "seen": None}
    assert second == {"who": "b", "seen": "yes"}
    assert "WHO" not in os.environ, "a function's variables never leak into the process"


def test_a_handler_that_overruns_its_timeout_ends_as_sandbox_timedout(
    runtime: InProcessRuntime,
) -> None:
    started = time.monotonic()
    payload, errored, _ = runtime.invoke(FakeFunction("slow", timeout=1), {"seconds": 3})

    assert errored
    assert json.loads(payload)["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in json.loads(payload)["errorMessage"]
    assert time.monotonic() - started < 2.5, "the caller is answered at the timeout"


def test_a_handler_inside_its_timeout_answers_normally(runtime: InProcessRuntime) -> None:
    assert answer(runtime.invoke(FakeFunction("slow", timeout=2), {"seconds": 0.1})) == {
        "slept": 0.1
    }


def test_a_function_runs_at_most_its_concurrency_at_once(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(HANDLER)
    runtime = InProcessRuntime()
    runtime.register("slow", FunctionCode("slow", tmp_path, "app.slow", concurrency=1))
    fn = FakeFunction("slow", timeout=5)
    started = time.monotonic()
    threads = [
        threading.Thread(target=runtime.invoke, args=(fn, {"seconds": 0.5})) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert time.monotonic() - started >= 1.0, "the second waited for the only slot"


def test_concurrent_invocations_never_share_module_state(runtime: InProcessRuntime) -> None:
    fn = FakeFunction("remember")
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda me: answer(runtime.invoke(fn, {"me": me})), ["a", "b"]))

    assert answers == [{"me": "a"}, {"me": "b"}], "each invocation has a sandbox of its own"


RACE_LAYER = {
    "__init__.py": "",
    # slow enough to be caught halfway by a cold start's swap of the layer's modules
    "heavy.py": "import time\ntime.sleep(0.01)\n",
    "lazy.py": "import time\ntime.sleep(0.01)\nVALUE = 42\n",
}
RACE_HANDLER = """
import racelayer.heavy  # noqa: F401  (a cold start imports the layer)


def lazy(event, context):
    seen = set()
    for _ in range(event["times"]):
        from racelayer.lazy import VALUE  # imported at call time, as our workflow tasks do

        seen.add(VALUE)
    return {"values": sorted(seen)}


def cold(event, context):
    return {}
"""


def test_a_cold_start_never_breaks_another_invocations_call_time_import(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    (layer / "racelayer").mkdir(parents=True)
    for name, text in RACE_LAYER.items():
        (layer / "racelayer" / name).write_text(text)
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(RACE_HANDLER)
    runtime = InProcessRuntime()
    runtime.add_layer(layer)
    runtime.register("lazy", FunctionCode("lazy", code, "app.lazy"))
    colds = [f"cold{i}" for i in range(15)]
    for name in colds:
        runtime.register(name, FunctionCode(name, code, "app.cold"))

    with ThreadPoolExecutor(2) as pool:
        lazy = pool.submit(runtime.invoke, FakeFunction("lazy", timeout=30), {"times": 3000})
        cold = [runtime.invoke(FakeFunction(name), {}) for name in colds]  # each a cold start
        payload, errored, _ = lazy.result()

    assert not errored, payload
    assert json.loads(payload) == {"values": [42]}
    assert [e for _, e, _ in cold] == [False] * len(colds)


def test_an_import_that_fails_leaves_the_gate_as_it_found_it() -> None:
    gate = lambda_runtime._ImportGate()
    with pytest.raises(ImportError), gate.importing(), gate.importing():  # nested, as imports are
        raise ImportError("a module that fails half-way")

    swapping, release = threading.Event(), threading.Event()

    def cold_start() -> None:
        with gate.swapping():
            swapping.set()
            release.wait(5)

    starter = threading.Thread(target=cold_start)
    starter.start()
    assert swapping.wait(5), "the failed import still counts as one in progress"
    threading.Timer(0.3, release.set).start()
    began = time.monotonic()
    with gate.importing():
        waited = time.monotonic() - began
    starter.join(5)

    assert waited >= 0.25, "the thread whose import failed still passes the gate as its holder"


def test_a_cold_start_is_not_charged_to_the_timeout_but_the_invocation_is(
    tmp_path: Path,
) -> None:
    """As on Lambda: the Init phase (importing the handler module) has its own limit, and
    the function's Timeout runs from when the handler is called."""
    (tmp_path / "slowinit.py").write_text(
        "import time\ntime.sleep(1.5)\n\ndef handler(event, context):\n"
        "    time.sleep(event['seconds'])\n"
        "    return {'left_ms': context.get_remaining_time_in_millis()}\n"
    )
    runtime = InProcessRuntime()
    runtime.register("init", FunctionCode("init", tmp_path, "slowinit.handler"))
    fn = FakeFunction("init", timeout=1)

    payload, errored, _ = runtime.invoke(fn, {"seconds": 0.1})
    assert not errored, payload
    assert 500 < json.loads(payload)["left_ms"] <= 1000, "the clock started after the import"

    runtime.register("init2", FunctionCode("init2", tmp_path, "slowinit.handler"))
    payload, errored, _ = runtime.invoke(FakeFunction("init2", timeout=1), {"seconds": 1.5})
    assert errored and json.loads(payload)["errorType"] == "Sandbox.Timedout"
