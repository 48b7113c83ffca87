"""A cold start imports only what the function uses and builds no AWS client before its first
request (bench/cold_start.py measures what that buys)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(path.parent.name for path in ROOT.glob("functions/*/app.py"))
# Only ingest decodes at import's reach; the result copier loads Pillow on its first copy.
DECODES = {"ingest"}
# What calls providers or webhooks over requests.
CALLS_OUT = {"avatar_jobs", "train_workflow", "webhook_delivery"}
PROBE = """
import json, sys
import app, boto3
heavy = ("PIL", "pillow_heif", "pi_heif", "requests", "aws_lambda_powertools.utilities.parameters")
print(json.dumps({
    "loaded": [name for name in heavy if name in sys.modules],
    "clients_made": boto3.DEFAULT_SESSION is not None,
}))
"""


def _import_cold(function: str) -> dict[str, object]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "functions" / function), str(ROOT / "layers/core")]
        ),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": "table",
        "UPLOADS_BUCKET": "uploads",
        "RESULTS_BUCKET": "results",
        "PICSART_API_KEY_PARAMETER": "/picsart",
        "QOLABA_API_KEY_PARAMETER": "/qolaba",
        "QOLABA_BASE_URL": "https://qolaba.example",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    run = subprocess.run(  # noqa: S603 - our own interpreter and a fixed probe
        [sys.executable, "-c", PROBE], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    answer: dict[str, object] = json.loads(run.stdout.splitlines()[-1])
    return answer


@pytest.mark.parametrize("function", FUNCTIONS)
def test_importing_a_handler_makes_no_client_and_loads_only_what_it_uses(function: str) -> None:
    cold = _import_cold(function)

    assert cold["clients_made"] is False
    loaded = set(cold["loaded"])  # type: ignore[arg-type]
    assert ("PIL" in loaded) == (function in DECODES), loaded
    assert not {"pillow_heif", "pi_heif"} & loaded  # libheif: on the first HEIC only
    if function not in CALLS_OUT:
        assert not {"requests", "aws_lambda_powertools.utilities.parameters"} & loaded, loaded
