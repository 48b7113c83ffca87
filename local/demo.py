"""The journey an app would take, on the local stack, narrated for a person watching."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from local import photos
from local.client import ApiClient, wait_until
from local.stack import LocalConfig, LocalStack
from local.webhook_receiver import Delivery, WebhookReceiver, local_secret

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
        for i in range(SELFIES_PER_USER - 2)
    ]
    # what phones make: an iPhone's HEIC and an Android or browser WebP among the JPEGs
    files.append(("image/heic", photos.selfie_heic(seed + SELFIES_PER_USER - 2), "IMG_0001.HEIC"))
    files.append(("image/webp", photos.selfie_webp(seed + SELFIES_PER_USER - 1), "selfie.webp"))
    if bad_file:
        files.append(("image/jpeg", photos.text_file_named_jpg(), "notes.jpg"))
    upload_selfies(client, model["model_id"], files)
    if bad_file:
        # once those are in: photos that would waste a training, refused with their reasons
        settled_selfies(client, model["model_id"])
        again = [
            ("image/jpeg", photos.selfie_jpeg(seed + 1, quality=75), "selfie-2-again.jpg"),
            ("image/jpeg", photos.blurred_selfie_jpeg(seed + SELFIES_PER_USER), "blurred.jpg"),
        ]
        upload_selfies(client, model["model_id"], again)
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


def _extension(content_type: str) -> str:
    return {"image/png": ".png", "image/webp": ".webp"}.get(content_type, ".jpg")


def save_avatars(avatars: list[dict[str, Any]], folder: Path, label: str = "face") -> list[Path]:
    """Download each avatar from our bucket through its short-lived presigned URL."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for number, avatar in enumerate(avatars, start=1):
        response = requests.get(avatar["url"], timeout=30)
        response.raise_for_status()
        style = avatar.get("style") or label
        path = folder / f"{number:02d}-{style}{_extension(avatar['content_type'])}"
        path.write_bytes(response.content)
        saved.append(path)
    return saved


def generate(journey: dict[str, Any], styles: list[dict[str, Any]], out_dir: Path) -> None:
    client: ApiClient = journey["client"]
    model_id = journey["model"]["model_id"]
    response = client.create_generation(model_id, styles, idempotency_key=f"demo-gen-{model_id}")
    if response.status_code != 202:
        raise RuntimeError(f"generation did not start: {response.status_code} {response.text}")
    generation_id = response.json()["generation_id"]
    asked = ", ".join(f"{s['count']}x {s['style']}" for s in styles)
    say(f"  {journey['user']}: generation {generation_id} ({asked})")
    generation = wait_until(
        lambda: client.get_generation(generation_id),
        lambda g: g["status"] in ("succeeded", "failed"),
        timeout=300,
        interval=0.25,
        on_change=lambda g: say(f"    {g['status']:<9} {len(g['avatars'])} copied to our bucket"),
    )
    if generation["status"] != "succeeded":
        raise RuntimeError(f"generation failed: {generation.get('error')}")
    saved = save_avatars(generation["avatars"], out_dir / journey["user"] / generation_id)
    journey.setdefault("saved", []).extend(saved)
    say(f"    saved {len(saved)} avatars to {saved[0].parent}")


def face_avatars(stack: LocalStack, user: str, out_dir: Path) -> list[Path]:
    client = ApiClient(stack.api_url, stack.token(user))
    slot = client.call("POST", "/face-avatars/uploads", json={"content_type": "image/jpeg"})
    slot.raise_for_status()
    upload = slot.json()
    ApiClient.upload(upload, photos.selfie_jpeg(900, size=(3000, 2000)), "reference.jpg")
    image = wait_until(
        lambda: client.call("GET", f"/face-avatars/uploads/{upload['image_id']}").json(),
        lambda i: i["status"] != "pending",
        timeout=60,
    )
    say(
        f"  {user}: reference {image['image_id']} {image['status']} "
        f"(3000x2000 fitted to {image['width']}x{image['height']})"
    )
    body = {
        "image_id": image["image_id"],
        "gender": "female",
        "batch": 4,
        "width": 512,
        "height": 640,
        "bg_color": "#2E86AB",
    }
    response = client.call(
        "POST", "/face-avatars", json=body, headers={"Idempotency-Key": f"demo-{image['image_id']}"}
    )
    if response.status_code != 202:
        raise RuntimeError(f"face-avatar job did not start: {response.status_code} {response.text}")
    job_id = response.json()["job_id"]
    say(f"    job {job_id}: batch of 4, 512x640 on #2E86AB (default prompt, gender=female)")
    job = wait_until(
        lambda: client.call("GET", f"/face-avatars/{job_id}").json(),
        lambda j: j["status"] in ("succeeded", "failed"),
        timeout=300,
        interval=0.25,
        on_change=lambda j: say(f"    {j['status']:<9} {len(j['avatars'])} copied to our bucket"),
    )
    if job["status"] != "succeeded":
        raise RuntimeError(f"face-avatar job failed: {job.get('error')}")
    saved = save_avatars(job["avatars"], out_dir / user / job_id)
    say(f"    saved {len(saved)} face avatars to {saved[0].parent}")
    return saved


def instant_avatars(stack: LocalStack, user: str, out_dir: Path) -> list[Path]:
    """Picsart's Instant Avatar: one reference (uploaded like a face reference), no training."""
    client = ApiClient(stack.api_url, stack.token(user))
    slot = client.call("POST", "/face-avatars/uploads", json={"content_type": "image/jpeg"})
    slot.raise_for_status()
    upload = slot.json()
    ApiClient.upload(upload, photos.selfie_jpeg(950, size=(1200, 1600)), "reference.jpg")
    image = wait_until(
        lambda: client.call("GET", f"/face-avatars/uploads/{upload['image_id']}").json(),
        lambda i: i["status"] != "pending",
        timeout=60,
    )
    body = {"image_id": image["image_id"], "subject": "man", "count": 2, "prompt": "astronaut"}
    response = client.call(
        "POST",
        "/instant-avatars",
        json=body,
        headers={"Idempotency-Key": f"demo-instant-{image['image_id']}"},
    )
    if response.status_code != 202:
        raise RuntimeError(f"instant avatars did not start: {response.status_code} {response.text}")
    job_id = response.json()["job_id"]
    say(f"  {user}: instant-avatar job {job_id}: 2 of subject man, prompt 'astronaut'")
    job = wait_until(
        lambda: client.call("GET", f"/instant-avatars/{job_id}").json(),
        lambda j: j["status"] in ("succeeded", "failed"),
        timeout=300,
        interval=0.25,
        on_change=lambda j: say(f"    {j['status']:<9} {len(j['avatars'])} copied to our bucket"),
    )
    if job["status"] != "succeeded":
        raise RuntimeError(f"instant-avatar job failed: {job.get('error')}")
    saved = save_avatars(job["avatars"], out_dir / user / job_id, label="instant")
    size = f"{job['avatars'][0]['width']}x{job['avatars'][0]['height']}"
    say(f"    saved {len(saved)} instant avatars ({size}) to {saved[0].parent}")
    return saved


def show_webhooks(deliveries: list[Delivery]) -> None:
    """Every webhook the receiver verified, in the order it got them."""
    say(f"  {len(deliveries)} webhooks, each signature verified with the standardwebhooks library")
    for number, delivery in enumerate(deliveries, 1):
        data = delivery.data
        about = (
            data.get("generation_id")
            or data.get("job_id")
            or data.get("selfie_id")
            or data.get("image_id")
            or data.get("model_id")
        )
        detail = f"  ({data['reason']})" if data.get("reason") else ""
        say(f"    {number:3} {data['owner']:<6} {delivery.type:<26} {about}{detail}")


def run_demo(out: str) -> int:
    started = time.monotonic()
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    say("Starting the local stack (moto + in-process Lambdas + provider emulator)...")
    state = out_dir / ".state"
    receiver = WebhookReceiver(local_secret(state)).start()
    config = LocalConfig(api_port=0, time_factor=600.0, state_dir=state, webhook_url=receiver.url)
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
        say("\n3. Avatars, copied from the provider into our results bucket, then downloaded")
        generate(
            journeys[0],
            [{"style": "realistic", "count": 2}, {"style": "anime", "count": 2}],
            out_dir,
        )
        generate(journeys[1], [{"style": "sketch", "count": 2}], out_dir)
        say("\n4. Face avatars from one reference image")
        journeys[0].setdefault("saved", []).extend(face_avatars(stack, "alice", out_dir))
        say("\n5. Instant avatars from one reference image (no training)")
        journeys[1].setdefault("saved", []).extend(instant_avatars(stack, "bob", out_dir))
        say("\n6. What the apps were told: signed webhooks, verified by a receiver on loopback")
        stack.wait_for_events()
        show_webhooks(receiver.deliveries)
        say("\nSummary")
        for journey in journeys:
            model = journey["model"]
            counts = model["selfies"]
            say(
                f"  {journey['user']:<6} {model['model_id']}  status={model['status']}  "
                f"accepted={counts['accepted']} rejected={counts['rejected']} "
                f"pending={counts['pending']}  avatars saved={len(journey.get('saved', []))}"
            )
    receiver.stop()
    say(f"\nDone in {time.monotonic() - started:.1f}s. Avatars are under {out_dir}")
    say("(Made by the local provider emulator: every image carries an EMULATED band.)")
    return 0
