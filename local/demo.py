"""The journey an app would take, on the local stack, narrated for a person watching."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from local import photos
from local.client import ApiClient, wait_until
from local.stack import LocalConfig, LocalStack

SELFIES_PER_USER = 6


def say(message: str) -> None:
    print(message, flush=True)


def upload_selfies(client: ApiClient, model_id: str, files: list[tuple[str, bytes, str]]) -> None:
    slots = client.request_uploads(model_id, [content_type for content_type, _, _ in files])
    for slot, (_, data, filename) in zip(slots, files, strict=True):
        response = ApiClient.upload(slot, data, filename)
        response.raise_for_status()
        say(f"    uploaded {filename:<22} {len(data) / 1024:7.0f} KiB -> S3 (presigned POST)")


def settled_selfies(client: ApiClient, model_id: str) -> list[dict[str, Any]]:
    return wait_until(
        lambda: client.list_selfies(model_id),
        lambda items: all(s["status"] != "pending" for s in items),
        timeout=60,
    )


def intake(stack: LocalStack, user: str, subject: str, seed: int, bad_file: bool) -> dict[str, Any]:
    client = ApiClient(stack.api_url, stack.token(user))
    model = client.create_model(subject, name=f"{user}'s {subject} model")
    say(f"  {user}: created model {model['model_id']} ({subject})")
    files = [
        (
            "image/jpeg",
            photos.selfie_jpeg(seed + i, exif_orientation=6 if i == 0 else None),
            f"selfie-{i + 1}.jpg",
        )
        for i in range(SELFIES_PER_USER)
    ]
    if bad_file:
        files.append(("image/jpeg", photos.text_file_named_jpg(), "notes.jpg"))
    upload_selfies(client, model["model_id"], files)
    selfies = settled_selfies(client, model["model_id"])
    for selfie in selfies:
        reason = f"  ({selfie['reason']})" if selfie.get("reason") else ""
        say(f"    {selfie['selfie_id']}  {selfie['status']}{reason}")
    return {"user": user, "client": client, "model": client.get_model(model["model_id"])}


def train(journey: dict[str, Any]) -> None:
    client: ApiClient = journey["client"]
    model_id = journey["model"]["model_id"]
    response = client.start_training(model_id, idempotency_key=f"demo-train-{model_id}")
    if response.status_code != 202:
        raise RuntimeError(f"training did not start: {response.status_code} {response.text}")
    say(f"  {journey['user']}: training {model_id} (execution train-{model_id})")

    def show(model: dict[str, Any]) -> None:
        progress = model.get("training_progress")
        shown = f"{progress:5.1f}%" if progress is not None else "   -  "
        say(f"    {model['status']:<9} {shown}")

    model = wait_until(
        lambda: client.get_model(model_id),
        lambda m: m["status"] in ("ready", "failed"),
        timeout=300,
        interval=0.25,
        on_change=lambda m: show(m),
    )
    if model["status"] != "ready":
        raise RuntimeError(f"training failed: {model.get('error')}")
    model = wait_until(
        lambda: client.get_model(model_id),
        lambda m: m.get("selfies_deleted_at") is not None,
        timeout=60,
    )
    say(f"    selfies deleted at {model['selfies_deleted_at']} (biometric data is not kept)")
    journey["model"] = model


def run_demo(out: str) -> int:
    started = time.monotonic()
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    say("Starting the local stack (moto + in-process Lambdas + provider emulator)...")
    config = LocalConfig(api_port=0, time_factor=600.0, state_dir=out_dir / ".state")
    with LocalStack(config) as stack:
        say(f"  ready in {time.monotonic() - started:.1f}s; API at {stack.api_url}")
        say("\n1. Selfie intake")
        journeys = [
            intake(stack, "alice", "woman", seed=100, bad_file=True),
            intake(stack, "bob", "man", seed=200, bad_file=False),
        ]
        say("\n2. Training on the provider emulator (20 emulated minutes each)")
        for journey in journeys:
            train(journey)
        say("\nSummary")
        for journey in journeys:
            model = journey["model"]
            counts = model["selfies"]
            say(
                f"  {journey['user']:<6} {model['model_id']}  status={model['status']}  "
                f"accepted={counts['accepted']} rejected={counts['rejected']} "
                f"pending={counts['pending']}"
            )
    say(f"\nDone in {time.monotonic() - started:.1f}s. Output folder: {out_dir}")
    return 0
