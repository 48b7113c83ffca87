"""Run the provider emulator on its own: ``python -m local.emulator --port 8900 --time-factor 60``.

With ``--time-factor 60`` a 20-minute training takes 20 seconds; use the same factor the
local stack applies to the state machine's waits, so polls count the same.
"""

from __future__ import annotations

import argparse
import threading

from local.emulator.app import EmulatorServer
from local.emulator.core import EmulatorConfig


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m local.emulator",
        description="Emulate the Picsart AI Avatars and Qolaba Face Avatar APIs on loopback.",
    )
    parser.add_argument("--port", type=int, default=8900, help="0 picks a free port")
    parser.add_argument(
        "--time-factor",
        type=float,
        default=defaults.time_factor,
        help="emulated seconds per real second (match the local stack's wait scale)",
    )
    parser.add_argument("--picsart-api-key", default=defaults.picsart_api_key)
    parser.add_argument("--qolaba-token", default=defaults.qolaba_token)
    parser.add_argument("--training-seconds", type=float, default=defaults.training_seconds)
    parser.add_argument("--inference-seconds", type=float, default=defaults.inference_seconds)
    parser.add_argument("--face-seconds", type=float, default=defaults.face_seconds)
    parser.add_argument("--result-ttl-seconds", type=float, default=defaults.result_ttl_seconds)
    parser.add_argument(
        "--fetch-timeout-seconds", type=float, default=defaults.fetch_timeout_seconds
    )
    parser.add_argument(
        "--picsart-requests-per-minute",
        type=int,
        default=defaults.picsart_requests_per_minute,
        help="Picsart's rate limit in emulated minutes; over it, 429 (0: unlimited)",
    )
    parser.add_argument(
        "--qolaba-requests-per-minute",
        type=int,
        default=defaults.qolaba_requests_per_minute,
        help="Qolaba's rate limit in emulated minutes; over it, 429 (0: unlimited)",
    )
    return parser.parse_args(argv)


def _describe_limits(limits: dict[str, int]) -> str:
    return ", ".join(
        f"{provider} {limit}/min" if limit else f"{provider} unlimited"
        for provider, limit in limits.items()
    )


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    config = EmulatorConfig(
        time_factor=args.time_factor,
        result_ttl_seconds=args.result_ttl_seconds,
        picsart_api_key=args.picsart_api_key,
        qolaba_token=args.qolaba_token,
        training_seconds=args.training_seconds,
        inference_seconds=args.inference_seconds,
        face_seconds=args.face_seconds,
        fetch_timeout_seconds=args.fetch_timeout_seconds,
        picsart_requests_per_minute=args.picsart_requests_per_minute,
        qolaba_requests_per_minute=args.qolaba_requests_per_minute,
    )
    server = EmulatorServer(config, port=args.port).start()
    print(f"provider emulator (time factor {config.time_factor:g}) on {server.base_url}")
    print(
        f"  Picsart AI Avatars  {server.picsart_base_url}  X-Picsart-API-Key: "
        f"{config.picsart_api_key}"
    )
    print(
        f"  Qolaba Face Avatar  {server.qolaba_base_url}  Authorization: Bearer "
        f"{config.qolaba_token}"
    )
    print(f"  test hooks          {server.base_url}/_emulator/  (stats, script, reset, ...)")
    limits = server.state.limits.limits()
    if any(limits.values()):
        print(f"  rate limits         {_describe_limits(limits)} (emulated minutes)")
    print("Ctrl-C to stop.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
