"""Configuration, parsed once per function from its environment into a typed model.

Logic never reads ``os.environ``: a handler builds ``Settings.from_env()`` at cold start
and passes what is needed. Every name, URL, limit and schedule lives here, set by
``template.yaml`` (deployed) or by the local stack.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from avatar_core.ids import iso, now


def _csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    table_name: str = ""
    uploads_bucket: str = ""
    results_bucket: str = ""

    # uploads
    upload_max_bytes: int = Field(default=15 * 1024 * 1024, ge=1)
    upload_url_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    max_selfies_per_model: int = Field(default=30, ge=1)
    min_selfies_for_training: int = Field(default=5, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    min_image_side: int = Field(default=256, ge=1)
    normalised_side: int = Field(default=512, ge=64)
    face_reference_max_side: int = Field(default=1536, ge=256)
    # refusing what would waste a training (logic/photo_checks.py); the thresholds are chosen
    # from bench/selfie_checks.py's measurements, shown in the README
    selfie_max_transparent_share: float = Field(default=0.9, gt=0, le=1)
    selfie_min_grey_stddev: float = Field(default=10.0, ge=0)
    selfie_min_sharpness: float = Field(default=8.0, ge=0)
    selfie_duplicate_max_distance: int = Field(default=10, ge=0, le=64)

    # downloads handed out by the API
    download_url_ttl_seconds: int = Field(default=900, ge=60, le=43200)
    provider_fetch_url_ttl_seconds: int = Field(default=3600, ge=1800, le=43200)

    # biometric data: seconds to keep selfies after a successful training (0: delete at once)
    selfie_retention_seconds: int = Field(default=0, ge=0)
    # hours a failed model keeps its selfies so it can be trained again; then we delete them
    failed_selfie_retention_hours: int = Field(default=24, ge=0, le=720)
    # biometric data: seconds to keep a face/instant reference image once the last open job
    # made from it has finished (0: delete at once); its workflow waits them out
    reference_retention_seconds: int = Field(default=0, ge=0, le=900)

    # reconciliation: how many times a workflow that ended abnormally is started again
    # (only ever to poll and copy a provider job whose id is stored; never to submit)
    max_resumes: int = Field(default=2, ge=0, le=10)
    # when a record still open is overdue for the sweep: its execution's TimeoutSeconds
    # (train_model 4 h, avatar_job 12 h) plus a margin for the end event to arrive first
    training_deadline_seconds: int = Field(default=4 * 3600 + 900, ge=60)
    job_deadline_seconds: int = Field(default=12 * 3600 + 900, ge=60)
    sweep_batch: int = Field(default=50, ge=1, le=1000)

    def deadline(self, seconds: int) -> str:
        """The ISO time ``seconds`` from now, for ``active_until``."""
        return iso(now() + timedelta(seconds=seconds))

    # the app builder's wallet (logic/quotas.py): per-owner limits, 0 = unlimited, each over
    # a rolling 24 h except the concurrent trainings; and a cap on the whole stack's paid
    # submissions per clock hour (the spending guard)
    owner_concurrent_trainings: int = Field(default=2, ge=0)
    owner_trainings_per_day: int = Field(default=5, ge=0)
    owner_avatars_per_day: int = Field(default=200, ge=0)
    owner_face_batches_per_day: int = Field(default=20, ge=0)
    owner_face_images_per_day: int = Field(default=100, ge=0)
    paid_submissions_per_hour: int = Field(default=1000, ge=0)

    # providers: URLs and the names of the parameters that hold their secrets
    picsart_base_url: str = "https://genai-avatars-api.picsart.io/v1"
    picsart_api_key_parameter: str = ""
    qolaba_base_url: str = ""
    qolaba_api_key_parameter: str = ""
    qolaba_app_id: str = ""
    provider_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    provider_read_timeout_seconds: float = Field(default=20.0, gt=0)
    secret_cache_seconds: int = Field(default=300, ge=0)

    # the providers' circuit breaker (logic/breaker.py): once an account is exhausted, new
    # paid work for it answers 503 for this long, then one probe submission is let through
    # (and has this long to show whether the account works again before another may go)
    breaker_cool_off_seconds: int = Field(default=900, ge=1)
    breaker_probe_seconds: int = Field(default=600, ge=1)

    # admission control (logic/limiter.py): requests a minute each provider's account takes
    # from the whole stack (0: no limiter), counted in fixed windows over shards of the
    # table; the time factor is local only: emulated seconds per wall second
    picsart_requests_per_minute: int = Field(default=500, ge=0)
    qolaba_requests_per_minute: int = Field(default=60, ge=0)
    limiter_window_seconds: float = Field(default=10.0, gt=0, le=60)
    limiter_shards: int = Field(default=8, ge=1, le=100)
    limiter_time_factor: float = Field(default=1.0, gt=0)
    # the cap on provider jobs running at once (logic/run_slots.py), 0: no cap
    picsart_concurrent_jobs: int = Field(default=0, ge=0, le=5000)
    qolaba_concurrent_jobs: int = Field(default=0, ge=0, le=5000)
    # the most submissions one owner holds in a provider's queue (logic/owner_share.py), 0: any
    owner_queue_share: int = Field(default=50, ge=0, le=100_000)

    # poll schedules (seconds) and bounds
    training_first_poll_seconds: int = Field(default=300, ge=1)
    training_poll_seconds: int = Field(default=120, ge=1)
    training_max_polls: int = Field(default=20, ge=1)
    generation_first_poll_seconds: int = Field(default=20, ge=1)
    generation_poll_seconds: int = Field(default=10, ge=1)
    generation_max_polls: int = Field(default=60, ge=1)
    face_first_poll_seconds: int = Field(default=10, ge=1)
    face_poll_seconds: int = Field(default=5, ge=1)
    face_max_polls: int = Field(default=60, ge=1)
    instant_first_poll_seconds: int = Field(default=20, ge=1)
    instant_poll_seconds: int = Field(default=10, ge=1)
    instant_max_polls: int = Field(default=60, ge=1)

    # subjects on offer: trained models (Picsart's model "type") and Instant Avatars
    model_subjects: list[str] = Field(
        default_factory=lambda: ["man", "woman", "couple", "dog", "cat"], min_length=1
    )
    instant_subjects: list[str] = Field(
        default_factory=lambda: ["man", "woman", "couple"], min_length=1
    )
    max_instant_avatars: int = Field(default=10, ge=1)

    # generations
    avatar_styles: list[str] = Field(default_factory=lambda: ["realistic"])
    max_avatars_per_generation: int = Field(default=40, ge=1)

    # copying results: only from these hosts, only this big
    result_allowed_hosts: list[str] = Field(default_factory=list)
    # broader "*.example.com" patterns, only ever from an explicit stack parameter
    result_allowed_host_patterns: list[str] = Field(default_factory=list)
    result_allow_loopback: bool = False
    result_allow_http: bool = False
    result_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    result_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    result_read_timeout_seconds: float = Field(default=30.0, gt=0)
    result_total_timeout_seconds: float = Field(default=60.0, gt=0)

    # events: the stack's bus, its source name, the webhook deliveries' FIFO queue (empty:
    # no webhook), and how long GET /v1/events holds back the newest entries (see list_events)
    event_bus_name: str = ""
    event_source: str = "avatar-pipeline"
    webhook_queue_url: str = ""
    events_settle_seconds: float = Field(default=5.0, ge=0, le=60)

    # webhooks to the app's backend (empty URL: none); the URL is checked on every attempt
    # by avatar_core.store.webhooks: https on a public address, http/loopback only locally
    webhook_url: str = ""
    webhook_secret_parameter: str = ""
    webhook_dead_letter_queue_url: str = ""
    webhook_timeout_seconds: float = Field(default=10, gt=0, le=60)
    webhook_retry_seconds: int = Field(default=86400, ge=0)
    webhook_allow_http: bool = False
    webhook_allow_loopback: bool = False

    # DELETE /v1/me: records per page of the deletion, how long it waits before its final
    # sweep (longer than anything still in flight can write: a result copy's 120 s, an
    # upload link's TTL), and when a receipt still "running" is stale (the workflow's
    # TimeoutSeconds, 4 h, plus a margin), so a new DELETE may start over
    deletion_page_size: int = Field(default=100, ge=1, le=1000)
    deletion_settle_seconds: int = Field(default=600, ge=0, le=3600)
    deletion_stale_seconds: int = Field(default=4 * 3600 + 900, ge=60)
    # the time a page task leaves itself to record its counts before its Lambda timeout
    deletion_reserve_ms: int = Field(default=20_000, ge=0)

    # workflows
    delete_state_machine_arn: str = ""
    train_state_machine_arn: str = ""
    generate_state_machine_arn: str = ""
    face_state_machine_arn: str = ""
    instant_state_machine_arn: str = ""

    _split_lists = field_validator(
        "avatar_styles",
        "result_allowed_hosts",
        "result_allowed_host_patterns",
        "model_subjects",
        "instant_subjects",
        mode="before",
    )(staticmethod(_csv))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every field from its upper-case environment variable, when set."""
        env = os.environ if environ is None else environ
        values = {name: env[name.upper()] for name in cls.model_fields if name.upper() in env}
        return cls.model_validate(values)
