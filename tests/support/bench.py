"""Runs a bench script in a fresh process (a stack of its own) and reads its figures back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(script: str, *arguments: str) -> dict[str, Any]:
    """Run ``bench/<script>`` with ``arguments`` and ``--json``; return the figures it printed
    last. A run that fails fails the test, with the end of what the script wrote to stderr."""
    done = subprocess.run(  # noqa: S603 (our own bench, by path)
        [sys.executable, str(BENCH / script), *arguments, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures
