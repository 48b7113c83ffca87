"""Forty generations at once against a provider held to a small rate, on the real local stack.

    python bench/burst.py [--generations 40] [--rate 30] [--json]
    python bench/burst.py --flood 12 [--share 2] [--concurrent 1] [--json]

The same limit on both sides: the emulator answers Picsart's 429 (with its reset-time
header) beyond ``--rate`` requests in any 60 emulated seconds, and the stack's own limiter
and queue are configured with the same rate (``PICSART_REQUESTS_PER_MINUTE``), as a
deployment is with ``PicsartRequestsPerMinute``. One model is trained, then the generations
are started (4 POSTs at a time), their submits held until all have started so that they meet
the provider together, and followed until they end. Printed: how many
succeeded, were submitted, the most requests the emulator saw in any 60 emulated seconds
against the limit, and the 429s it sent.

Time runs 60 times faster than the wall here (not the tests' 600): a request reaches the
emulator a few milliseconds after its token, which must stay small against the limiter's
10-second windows for the comparison to be about the limiter and not about this machine.

``--flood N`` is the owner share's journey instead (``logic/owner_share.py``): at most
``--concurrent`` Picsart jobs run at once (``PICSART_CONCURRENT_JOBS``) and an owner holds at
most ``--share`` places in the queue (``OWNER_QUEUE_SHARE``; 0: no share). One owner starts
N generations together; once the provider has the first of them, a second owner starts one.
Printed: where the second owner's generation came among the provider's submits, and how many
of the first owner's were submitted after it arrived and before it ("overtaken by", at most
the share when the share holds; nearly N without it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# bench/copy.py would shadow the standard library's copy module: keep bench/ off the path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT)]

import json  # noqa: E402  (imports copy: only once bench/ is off the path)
from typing import Any  # noqa: E402

import requests  # noqa: E402

from local import photos  # noqa: E402
from local.client import ApiClient, wait_until  # noqa: E402
from local.stack import LocalConfig, LocalStack  # noqa: E402


def trained_model(client: ApiClient) -> str:
    model_id: str = client.create_model("woman")["model_id"]
    files = [photos.selfie_jpeg(400 + i, size=(600, 800)) for i in range(5)]
    slots = client.request_uploads(model_id, ["image/jpeg"] * len(files))
    for slot, data in zip(slots, files, strict=True):
        ApiClient.upload(slot, data).raise_for_status()
    wait_until(
        lambda: client.list_selfies(model_id),
        lambda items: all(s["status"] == "accepted" for s in items),
        timeout=60,
    )
    response = client.start_training(model_id)
    if response.status_code != 202:
        raise RuntimeError(f"training did not start: {response.status_code} {response.text}")
    model = wait_until(
        lambda: client.get_model(model_id),
        lambda m: m["status"] in ("ready", "failed"),
        timeout=300,
    )
    if model["status"] != "ready":
        raise RuntimeError(f"training failed: {model.get('error')}")
    return model_id


def start_generation(client: ApiClient, model_id: str, key: str) -> str:
    response = client.create_generation(
        model_id, [{"style": "realistic", "count": 1}], idempotency_key=key
    )
    if response.status_code != 202:
        raise RuntimeError(f"generation refused: {response.status_code} {response.text}")
    generation_id: str = response.json()["generation_id"]
    return generation_id


def start_together(stack: LocalStack, client: ApiClient, model_id: str, count: int) -> list[str]:
    """Start ``count`` generations (4 POSTs at a time); every submit waits until all have
    started, so they meet the provider together, as a burst does."""
    runtime = stack.runtime
    assert runtime is not None
    release = threading.Event()
    earlier = runtime.fault

    def hold(logical_id: str) -> str | None:
        if logical_id == "GenerationSubmitFunction":
            release.wait(timeout=120)
        return earlier(logical_id) if earlier is not None else None

    def start(index: int) -> str:
        return start_generation(client, model_id, f"burst-{index}")

    runtime.fault = hold
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(start, range(count)))
    finally:
        release.set()
        runtime.fault = earlier


def wait_ended(client: ApiClient, ids: list[str]) -> list[dict[str, Any]]:
    ended: list[dict[str, Any]] = wait_until(
        lambda: [client.get_generation(g) for g in ids],
        lambda answers: all(g["status"] in ("succeeded", "failed", "cancelled") for g in answers),
        timeout=900,
        interval=1.0,
    )
    return ended


def emulator_jobs(stack: LocalStack, kind: str) -> list[dict[str, Any]]:
    """The jobs the emulator created, in the order their submits arrived."""
    listed = requests.get(f"{stack.emulator.base_url}/_emulator/jobs", timeout=5).json()
    return [job for job in listed if job["kind"] == kind]


def burst(stack: LocalStack, generations: int) -> dict[str, Any]:
    client = ApiClient(stack.api_url, stack.token("burst"))
    model_id = trained_model(client)
    emulator = stack.emulator.base_url
    requests.post(f"{emulator}/_emulator/reset", timeout=5).raise_for_status()
    started = time.monotonic()
    ids = start_together(stack, client, model_id, generations)
    ended = wait_ended(client, ids)
    seconds = time.monotonic() - started
    stats = requests.get(f"{emulator}/_emulator/stats", timeout=5).json()
    return {
        "generations": generations,
        "succeeded": sum(g["status"] == "succeeded" for g in ended),
        "failed": {g["generation_id"]: g.get("error") for g in ended if g["status"] != "succeeded"},
        "submitted": stats["inferences_submitted"],
        "peak_requests_per_minute": stats["peak_requests_per_minute"]["picsart"],
        "rate_limited": stats["rate_limited"]["picsart"],
        "wall_seconds": round(seconds, 1),
    }


def flood(stack: LocalStack, generations: int) -> dict[str, Any]:
    flooder = ApiClient(stack.api_url, stack.token("flooder"))
    other = ApiClient(stack.api_url, stack.token("other"))
    flooder_model, other_model = trained_model(flooder), trained_model(other)
    # the emulator's model ids, in the order the trainings were submitted (one at a time)
    other_upstream = emulator_jobs(stack, "training")[1]["id"]
    requests.post(f"{stack.emulator.base_url}/_emulator/reset", timeout=5).raise_for_status()
    started = time.monotonic()
    ids = start_together(stack, flooder, flooder_model, generations)
    wait_until(lambda: emulator_jobs(stack, "inference"), bool, timeout=300, interval=0.05)
    ahead = len(emulator_jobs(stack, "inference"))
    other_id = start_generation(other, other_model, "other-1")
    ended = wait_ended(flooder, ids) + wait_ended(other, [other_id])
    sources = [job["source"] for job in emulator_jobs(stack, "inference")]
    position = sources.index(other_upstream) + 1 if other_upstream in sources else None
    return {
        "generations": generations + 1,
        "succeeded": sum(g["status"] == "succeeded" for g in ended),
        "failed": {g["generation_id"]: g.get("error") for g in ended if g["status"] != "succeeded"},
        "submitted": len(sources),
        "ahead_when_it_arrived": ahead,
        "other_position": position,
        "overtaken_by": None if position is None else position - 1 - ahead,
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=40)
    parser.add_argument("--rate", type=int, default=30, help="Picsart requests a minute")
    parser.add_argument(
        "--flood", type=int, default=0, help="the owner share's journey: one owner's N first"
    )
    parser.add_argument("--share", type=int, default=2, help="with --flood: OWNER_QUEUE_SHARE")
    parser.add_argument(
        "--concurrent", type=int, default=1, help="with --flood: PICSART_CONCURRENT_JOBS"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for name in ("werkzeug", "local.lambda", "avatar_core", "aws_lambda_powertools"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if args.flood:
        return flood_main(args)
    config = LocalConfig(
        api_port=0,
        time_factor=60.0,
        log_level="CRITICAL",
        function_env={"PICSART_REQUESTS_PER_MINUTE": str(args.rate)},
        emulator_overrides={"picsart_requests_per_minute": args.rate},
    )
    with LocalStack(config) as stack:
        figures = burst(stack, args.generations)
    figures["limit_per_minute"] = args.rate
    if args.json:
        print(json.dumps(figures))
        return 0
    print(
        f"{figures['succeeded']} of {figures['generations']} generations succeeded"
        f" ({figures['submitted']} submitted to the provider) in {figures['wall_seconds']} s;"
        f" Picsart peak {figures['peak_requests_per_minute']} requests in 60 emulated s"
        f" (limit {args.rate}), {figures['rate_limited']} 429s sent"
    )
    return 0 if figures["succeeded"] == figures["generations"] else 1


def flood_main(args: argparse.Namespace) -> int:
    config = LocalConfig(
        api_port=0,
        time_factor=60.0,
        log_level="CRITICAL",
        function_env={
            "PICSART_CONCURRENT_JOBS": str(args.concurrent),
            "OWNER_QUEUE_SHARE": str(args.share),
        },
    )
    with LocalStack(config) as stack:
        figures = flood(stack, args.flood)
    figures.update(share=args.share, concurrent=args.concurrent)
    if args.json:
        print(json.dumps(figures))
        return 0
    share = f"an owner share of {args.share}" if args.share else "no owner share"
    print(
        f"{figures['succeeded']} of {figures['generations']} generations succeeded in"
        f" {figures['wall_seconds']} s, {args.concurrent} Picsart job(s) at a time, {share}:"
        f" the other owner's one came {figures['other_position']} of {figures['submitted']} at"
        f" the provider; {figures['ahead_when_it_arrived']} of the flood were submitted before"
        f" it arrived, {figures['overtaken_by']} after it arrived and before it"
    )
    return 0 if figures["succeeded"] == figures["generations"] else 1


if __name__ == "__main__":
    sys.exit(main())
