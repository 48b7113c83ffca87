"""``python -m local run`` serves the local stack; ``python -m local demo`` runs the journey."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from local.stack import LocalConfig, LocalStack, emulator_limits_from_env


def _quiet_servers() -> None:
    for name in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run(port: int, time_factor: float, access_log: bool) -> int:
    started = time.monotonic()
    webhook_url = os.environ.get("WEBHOOK_URL", "")
    try:
        emulator_limits = emulator_limits_from_env(os.environ)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    stack = LocalStack(
        LocalConfig(
            api_port=port,
            time_factor=time_factor,
            access_log=access_log,
            webhook_url=webhook_url,
            emulator_overrides=emulator_limits,
        )
    )
    stack.start()
    print(f"avatar-pipeline local stack ready in {time.monotonic() - started:.1f}s")
    # Each line starts with its name, so a script can pick it out (docs/api.md).
    print(f"try-it     {stack.page_url}")
    print(f"API        {stack.api_url}")
    print(
        f"AWS        {stack.moto_url}  (S3, DynamoDB, Step Functions, EventBridge, SQS; "
        "any credentials: aws --endpoint-url)"
    )
    print(f"emulator   {stack.emulator.base_url}  (provider emulator: results are EMULATED)")
    if emulator_limits:
        limits = stack.emulator.state.limits.limits()
        described = ", ".join(
            f"{provider} {limit}/min" if limit else f"{provider} unlimited"
            for provider, limit in limits.items()
        )
        print(f"limits     {described}  (the emulator's rate limits, per emulated minute)")
    if webhook_url:
        print(f"webhooks   {webhook_url}  (signed: make webhook-secret prints the secret)")
    print("token      make token USER=<name>")
    print("Ctrl-C to stop.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="serve the API on loopback until interrupted")
    run_parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT", "3000")))
    run_parser.add_argument("--time-factor", type=float, default=60.0)
    run_parser.add_argument("--access-log", action="store_true")
    demo_parser = sub.add_parser("demo", help="run the whole journey and print where results are")
    demo_parser.add_argument("--out", default="demo-output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_servers()
    if args.command == "run":
        return run(args.port, args.time_factor, args.access_log)
    from local.demo import run_demo

    return run_demo(args.out)


if __name__ == "__main__":
    sys.exit(main())
