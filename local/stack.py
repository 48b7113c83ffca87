"""The embedded local stack: moto in server mode running the real template, Lambda handlers
in this process, the provider emulator and the HTTP front, all on loopback.

``LocalStack`` is what ``make run``, ``make demo``, the integration tests and the benches
start. Nothing here is deployed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests

from local import dynamodb_atomic, s3_atomic, s3_post_policy, sfn_events
from local.deploy import DeployedStack, TemplateDeployer
from local.event_sources import EventSources
from local.lambda_runtime import InProcessRuntime
from local.template import ACCOUNT_ID

ROOT = Path(__file__).resolve().parent.parent
# Metrics are disabled locally; powertools still warns on every flush that nothing was sent.
warnings.filterwarnings("ignore", "No application metrics to publish")
# moto's state-machine interpreter logs every Fail state as an error with its internals; a
# failed execution is already in its history and in the job's record.
logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
REGION = "us-east-1"
STACK_NAME = "avatar-local"
# The emulator renders each in its own look; a Picsart account offers what its contract says.
LOCAL_STYLES = ("realistic", "anime", "sketch")
log = logging.getLogger("local.stack")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ``make run`` gives the emulator the providers' rate limits from these variables (requests
# per emulated minute, 0 or unset: unlimited).
EMULATOR_LIMIT_VARIABLES = {
    "PICSART_REQUESTS_PER_MINUTE": "picsart_requests_per_minute",
    "QOLABA_REQUESTS_PER_MINUTE": "qolaba_requests_per_minute",
}


def emulator_limits_from_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, int]:
    """``EmulatorConfig`` overrides for the rate-limit variables that are set."""
    limits: dict[str, int] = {}
    for variable, option in EMULATOR_LIMIT_VARIABLES.items():
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        if not raw.isdigit():
            raise ValueError(
                f"{variable} must be a whole number of requests per minute, not {raw!r}"
            )
        limits[option] = int(raw)
    return limits


@dataclass
class LocalConfig:
    api_port: int = 3000
    moto_port: int = 0
    time_factor: float = 60.0
    state_dir: Path = ROOT / ".local"
    log_level: str = "WARNING"
    access_log: bool = False
    static_dir: Path | None = ROOT / "web"
    emulator_overrides: dict[str, Any] = field(default_factory=dict)
    function_env: dict[str, str] = field(default_factory=dict)
    # S3 delivers events at least once: deliver every upload event twice, the second time
    # from another thread, to prove duplicates change nothing.
    duplicate_s3_events: bool = False
    # where every event is posted, signed (loopback http allowed locally); empty: no webhooks
    webhook_url: str = ""


def _configure_process_env(moto_port: int) -> dict[str, str | None]:
    """Point every boto3 client of this process (handlers included) at the moto server.

    Returns what the variables were before, so ``stop()`` can put them back.
    """
    values = {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",  # moto accepts any credentials
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
        "MOTO_PORT": str(moto_port),
        "MOTO_ACCOUNT_ID": ACCOUNT_ID,
    }
    saved = {key: os.environ.get(key) for key in [*values, "AWS_PROFILE"]}
    os.environ.update(values)
    os.environ.pop("AWS_PROFILE", None)
    return saved


def _deliver_s3_events_twice() -> Any:
    """Patch moto's S3→Lambda delivery to send each event again; returns the original."""
    import threading

    from moto.s3 import notifications

    original = notifications._invoke_awslambda

    def twice(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        threading.Thread(target=original, args=args, kwargs=kwargs, daemon=True).start()

    notifications._invoke_awslambda = twice
    return original


def _scale_sqs_visibility_changes(factor: float) -> None:
    """A ChangeMessageVisibility (a webhook retry's backoff) lasts 1/factor of its seconds,
    as Wait states do; the visibility a receive gives a message in flight is left as is."""
    from moto.sqs.models import SQSBackend

    original = getattr(SQSBackend, "_unscaled_change_message_visibility", None)
    if original is None:
        original = SQSBackend.change_message_visibility
        SQSBackend._unscaled_change_message_visibility = original  # type: ignore[attr-defined]

    def change_message_visibility(
        self: Any, queue_name: str, receipt_handle: str, visibility_timeout: int
    ) -> None:
        original(self, queue_name, receipt_handle, visibility_timeout / factor)

    SQSBackend.change_message_visibility = change_message_visibility  # type: ignore[method-assign]


def _scale_step_functions_time(factor: float) -> None:
    """Make Wait states and Retry back-off sleep 1/factor of their declared time."""
    import time as real_time
    from types import SimpleNamespace

    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function

    def _wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        if wait_seconds > 0:
            env.program_state_event.wait(wait_seconds / factor)

    wait_function.WaitFunction._wait_interval = _wait_interval  # type: ignore[method-assign]
    retrier_decl.time = SimpleNamespace(  # type: ignore[attr-defined]
        sleep=lambda seconds: real_time.sleep(seconds / factor), time=real_time.time
    )


class LocalStack:
    _running = False

    def __init__(self, config: LocalConfig | None = None) -> None:
        self.config = config or LocalConfig()
        self.runtime: InProcessRuntime | None = None
        self.stack: DeployedStack | None = None
        self._moto: Any = None
        self._front: Any = None
        self.emulator: Any = None
        self.moto_url = ""
        self.api_url = ""
        self.page_url = ""
        self._saved_env: dict[str, str | None] = {}
        self._undelivered: Any = None
        self._lambda: Any = None
        self.event_sources: EventSources | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LocalStack:
        from moto.server import ThreadedMotoServer

        from local.auth import LOCAL_AUDIENCE, LOCAL_ISSUER

        started = time.monotonic()
        if LocalStack._running:
            raise RuntimeError(
                "a local stack is already running in this process (moto's state is global)"
            )
        LocalStack._running = True
        port = self.config.moto_port or free_port()
        self._saved_env = _configure_process_env(port)
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._moto.start()
        self.moto_url = f"http://127.0.0.1:{port}"
        requests.post(
            f"{self.moto_url}/moto-api/config",
            json={"stepfunctions": {"execute_state_machine": True}},
            timeout=10,
        ).raise_for_status()
        _scale_step_functions_time(self.config.time_factor)
        _scale_sqs_visibility_changes(self.config.time_factor)
        dynamodb_atomic.install()
        s3_atomic.install()
        s3_post_policy.install()
        self.duplicate_s3_events(self.config.duplicate_s3_events)

        self._start_emulator()
        self.runtime = InProcessRuntime(
            base_env=self._base_function_env(), overrides=self._local_overrides()
        )
        self.runtime.install()
        self._put_provider_secrets()
        self._put_webhook_secret()
        deployer = TemplateDeployer(ROOT, self.runtime, REGION)
        self.stack = deployer.deploy(
            STACK_NAME,
            {
                "JwtIssuer": LOCAL_ISSUER,
                "JwtAudience": LOCAL_AUDIENCE,
                "AvatarStyles": ",".join(LOCAL_STYLES),
                "WebhookUrl": self.config.webhook_url,
            },
        )
        # Execution status changes reach the template's EventBridge rules, as on AWS.
        self._lambda = boto3.client("lambda", region_name=REGION)
        sfn_events.install(self._invoke_event_target)
        self.event_sources = EventSources(
            self.stack.event_sources, self._invoke_mapped, REGION
        ).start()
        self._start_front()
        log.info("local stack up in %.1fs", time.monotonic() - started)
        return self

    def stop(self) -> None:
        if self.event_sources is not None:
            self.event_sources.stop()
        sfn_events.enable(False)
        sfn_events.wait_for_deliveries()
        if self._front is not None:
            self._front.stop()
        if self.emulator is not None:
            self.emulator.stop()
        if self._moto is not None:
            self._moto.stop()
            from moto.core.models import reset_model_data

            reset_model_data()
        self.duplicate_s3_events(False)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        LocalStack._running = False

    def _invoke_event_target(self, function_arn: str, event: dict[str, Any]) -> bool:
        """EventBridge invoking a rule's Lambda target: True when the function succeeded."""
        response = self._lambda.invoke(FunctionName=function_arn, Payload=json.dumps(event))
        response["Payload"].read()
        return "FunctionError" not in response

    def _invoke_mapped(self, function_name: str, event: dict[str, Any]) -> dict[str, Any] | None:
        """An event source mapping invoking its function: its answer, or None if it failed."""
        response = self._lambda.invoke(FunctionName=function_name, Payload=json.dumps(event))
        payload = json.loads(response["Payload"].read() or b"null")
        if "FunctionError" in response:
            log.warning("%s failed on a mapped batch: %s", function_name, payload)
            return None
        return payload if isinstance(payload, dict) else {}

    def wait_for_events(self, timeout: float = 30.0) -> None:
        """Until every change so far has been published (and every webhook attempted)."""
        assert self.event_sources is not None
        if not self.event_sources.wait_idle(timeout):
            raise TimeoutError(f"events still in flight after {timeout}s")

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def dev_tokens(self, enabled: bool) -> None:
        """Serve ``POST /local/token`` (the try-it page's sign-in) or not, as a deployed stack."""
        assert self._front is not None
        self._front.dev_tokens = self.token if enabled else None

    def duplicate_s3_events(self, enabled: bool) -> None:
        """Switch at-least-once delivery on or off: every upload event delivered twice."""
        if enabled and self._undelivered is None:
            self._undelivered = _deliver_s3_events_twice()
        elif not enabled and self._undelivered is not None:
            from moto.s3 import notifications

            notifications._invoke_awslambda = self._undelivered
            self._undelivered = None

    # -- pieces ---------------------------------------------------------------------------

    def _start_emulator(self) -> None:
        from local.emulator.app import EmulatorServer
        from local.emulator.core import EmulatorConfig

        config = EmulatorConfig(
            time_factor=self.config.time_factor, **self.config.emulator_overrides
        )
        self.emulator = EmulatorServer(config).start()

    def _base_function_env(self) -> dict[str, str]:
        return {
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
        }

    def _local_overrides(self) -> dict[str, str]:
        """Local configuration that the deployed template can never express."""
        overrides = {
            "POWERTOOLS_LOG_LEVEL": self.config.log_level,
            "PICSART_BASE_URL": self.emulator.picsart_base_url,
            "QOLABA_BASE_URL": self.emulator.qolaba_base_url,
            "RESULT_ALLOWED_HOSTS": "127.0.0.1",
            "RESULT_ALLOW_LOOPBACK": "true",
            "RESULT_ALLOW_HTTP": "true",
            "WEBHOOK_ALLOW_LOOPBACK": "true",
            "WEBHOOK_ALLOW_HTTP": "true",
            # one process, no clock skew: GET /v1/events need not hold back 5 s (unit-tested)
            "EVENTS_SETTLE_SECONDS": "1",
            # the providers' limiters count the emulator's seconds, as its Wait states do
            "LIMITER_TIME_FACTOR": str(self.config.time_factor),
        }
        # `make run` hands the stack's limiters the rates the emulator enforces, its caps
        # on running provider jobs (logic/run_slots.py) and the owners' share of the queue
        for name in (
            "PICSART_REQUESTS_PER_MINUTE",
            "QOLABA_REQUESTS_PER_MINUTE",
            "PICSART_CONCURRENT_JOBS",
            "QOLABA_CONCURRENT_JOBS",
            "OWNER_QUEUE_SHARE",
        ):
            if name in os.environ:
                overrides[name] = os.environ[name]
        overrides.update(self.config.function_env)
        return overrides

    def _put_provider_secrets(self) -> None:
        ssm = boto3.client("ssm", region_name=REGION)
        secrets = {
            "/avatar-pipeline/picsart-api-key": self.emulator.config.picsart_api_key,
            "/avatar-pipeline/qolaba-api-token": self.emulator.config.qolaba_token,
        }
        for name, value in secrets.items():
            ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)

    def _put_webhook_secret(self) -> None:
        """The signing secret ``make webhook-secret`` prints, where the template reads it."""
        if not self.config.webhook_url:
            return
        from local.webhook_receiver import local_secret

        boto3.client("ssm", region_name=REGION).put_parameter(
            Name="/avatar-pipeline/webhook-secret",
            Value=local_secret(self.config.state_dir),
            Type="SecureString",
            Overwrite=True,
        )

    def _start_front(self) -> None:
        from local.auth import LocalSigner
        from local.front import ApiFront, cors_from_template, routes_from_template

        assert self.stack is not None
        template = self.stack.template
        verifier = LocalSigner(self.config.state_dir / "jwt").verifier()
        lambda_client = boto3.client("lambda", region_name=REGION)
        stack = self.stack

        def invoke(logical_id: str, event: dict[str, Any]) -> dict[str, Any]:
            import json

            response = lambda_client.invoke(
                FunctionName=stack.function_name(logical_id), Payload=json.dumps(event).encode()
            )
            payload: dict[str, Any] = json.loads(response["Payload"].read() or b"null")
            if response.get("FunctionError"):
                raise RuntimeError(f"{logical_id} failed: {payload}")
            return payload

        self._front = ApiFront(
            routes_from_template(template),
            invoke,
            verifier,
            cors_from_template(template),
            port=self.config.api_port,
            static_dir=self.config.static_dir,
            access_log=self.config.access_log,
            # the try-it page asks the local stack for a token; a deployed stack has no such door
            dev_tokens=self.token,
        )
        self._front.start()
        self.page_url = f"{self._front.base_url}/"
        self.api_url = f"{self._front.base_url}/v1"

    # -- conveniences for tests, the demo and benches ---------------------------------------

    def token(self, user: str, ttl_seconds: int = 3600) -> str:
        from local.auth import LocalSigner

        return LocalSigner(self.config.state_dir / "jwt").mint(user, ttl_seconds=ttl_seconds)

    def output(self, name: str) -> str:
        assert self.stack is not None
        return self.stack.outputs[name]
